package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/deploy/httpapi"
	"github.com/immune-project/immune/internal/bearer"
)

// exitPending is "immune deploy status"'s answer for a deploy whose
// verdict is inconclusive or not in yet.
const exitPending = 3

// defaultURL is where "immune run" serves its HTTP API by default.
const defaultURL = "http://127.0.0.1:9797"

const deployUsage = `Usage: immune deploy <command> [flags] [args]

Announces deploys to a running immune and reads back its verdicts, over the
HTTP deploy API (docs/deploys.md), for pipelines without ZooKeeper.

Commands:
`

var deployCommands = []command{
	{"start", "announce a deploy; prints its id", runDeployStart},
	{"group", "announce that a rollout group started", runDeployGroup},
	{"selftest", "report an instance's self test result", runDeploySelfTest},
	{"state", "record that a deploy is done, reverted or abandoned", runDeployState},
	{"status", "print a deploy's verdict; exit 0 pass, 1 fail, 3 pending", runDeployStatus},
}

func deployUsageTo(w io.Writer) {
	fmt.Fprint(w, deployUsage)
	for _, c := range deployCommands {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, `Run "immune deploy <command> -h" for a command's flags.`)
}

// runDeploy dispatches "immune deploy <command>".
func runDeploy(args []string, stdout, stderr io.Writer) int {
	return dispatch("immune deploy", deployCommands, deployUsageTo, args, stdout, stderr)
}

// apiClient talks to the HTTP deploy API.
type apiClient struct {
	base      string
	tokenFile string
	http      *http.Client
}

// apiError is an answer of the API other than 2xx.
type apiError struct {
	code int
	msg  string
}

func (e *apiError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.code, e.msg) }

func addClientFlags(fs interface {
	String(name, value, usage string) *string
	Duration(name string, value time.Duration, usage string) *time.Duration
}) func() (*apiClient, error) {
	u := fs.String("url", defaultURL, "the base URL of immune's HTTP API")
	token := fs.String("token-file", "", "a file holding the API's bearer token (sent on writes)")
	timeout := fs.Duration("timeout", 30*time.Second, "the deadline of each request")
	return func() (*apiClient, error) {
		p, err := url.Parse(*u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return nil, fmt.Errorf("--url %q: want http://host:port or https://host:port", *u)
		}
		if *timeout <= 0 {
			return nil, fmt.Errorf("--timeout %v: want a positive duration", *timeout)
		}
		return &apiClient{base: strings.TrimRight(*u, "/"), tokenFile: *token, http: &http.Client{Timeout: *timeout}}, nil
	}
}

// do sends a request and decodes a 2xx answer's JSON into v.
func (c *apiClient) do(ctx context.Context, method, path string, body, v any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.tokenFile != "" && method != http.MethodGet {
		b, err := bearer.Read(c.tokenFile)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+string(b))
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, c.base+path, errors.Unwrap(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, c.base+path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(data))
			if len(e.Error) > 200 {
				e.Error = e.Error[:200] + "…"
			}
		}
		return &apiError{resp.StatusCode, e.Error}
	}
	if v != nil {
		if err := json.Unmarshal(data, v); err != nil {
			return fmt.Errorf("%s %s: the answer is not the deploy API's JSON: %w", method, c.base+path, err)
		}
	}
	return nil
}

// signalContext ends on an interrupt.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt)
}

const deployStartUsage = `Usage: immune deploy start --service S --version V [flags]

Announces a deploy (POST /api/v1/deploys) and prints its id on stdout, the
id given with --id or one immune makes up. Sending the same deploy again
with the same --id is harmless (same answer); the same id with other fields
is refused. Without --id every start is a new deploy with a fresh id: to
retry safely, give --id.

Exit status: 0 accepted; 1 refused or immune unreachable; 2 bad flags.

Flags:
`

func runDeployStart(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("deploy start", deployStartUsage, stderr)
	service := fs.String("service", "", "the service deployed (required)")
	version := fs.String("version", "", "the version deployed (required)")
	previous := fs.String("previous-version", "", "the version it replaces")
	id := fs.String("id", "", "the deploy's id (default: made up by immune)")
	commit := fs.String("commit", "", "the commit deployed")
	author := fs.String("author", "", "who deployed")
	groups := fs.String("groups", "", "planned rollout group sizes, like 1,2,4")
	at := fs.String("started-at", "", "when the new version took traffic, RFC 3339 (default: now)")
	asJSON := fs.Bool("json", false, "print the accepted record as JSON instead of its id")
	client := addClientFlags(fs)
	pos, code, done := parseFlags(fs, args)
	if done {
		return code
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "immune deploy start: "+format+"\n", a...)
		return exitUsage
	}
	if len(pos) != 0 {
		return usageErr("unexpected argument %q", pos[0])
	}
	if *service == "" || *version == "" {
		return usageErr("--service and --version are required")
	}
	rec := deploy.DeployRecord{ID: *id, Service: *service, Version: *version, PreviousVersion: *previous, Commit: *commit, Author: *author}
	if *groups != "" {
		for i, s := range strings.Split(*groups, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n <= 0 {
				return usageErr("--groups %q: item %d (%q) is not a positive number of instances", *groups, i+1, s)
			}
			rec.Groups = append(rec.Groups, n)
		}
	}
	if *at != "" {
		t, err := time.Parse(time.RFC3339, *at)
		if err != nil {
			return usageErr("--started-at %q: want an RFC 3339 time like 2026-01-02T15:04:05Z", *at)
		}
		rec.StartedAt = t
	}
	c, err := client()
	if err != nil {
		return usageErr("%v", err)
	}
	ctx, cancel := signalContext()
	defer cancel()
	var got deploy.DeployRecord
	if err := c.do(ctx, http.MethodPost, "/api/v1/deploys", rec, &got); err != nil {
		fmt.Fprintf(stderr, "immune deploy start: %v\n", err)
		return exitFail
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(got)
		return exitOK
	}
	fmt.Fprintln(stdout, got.ID)
	return exitOK
}

const deployGroupUsage = `Usage: immune deploy group ID --group N [--instances a,b] [flags]

Announces that rollout group N (0, 1, 2, …) of deploy ID started
(POST /api/v1/deploys/ID/groups). Wait for the group's gate decision with
"immune deploy status ID --group N --wait" before starting the next one.

Exit status: 0 accepted; 1 refused or immune unreachable; 2 bad flags.

Flags:
`

func runDeployGroup(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("deploy group", deployGroupUsage, stderr)
	group := fs.Int("group", -1, "the group's number, from 0 (required)")
	instances := fs.String("instances", "", "the group's instances, comma-separated")
	client := addClientFlags(fs)
	pos, code, done := parseFlags(fs, args)
	if done {
		return code
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "immune deploy group: want one deploy ID (see immune deploy group -h)")
		return exitUsage
	}
	if *group < 0 {
		fmt.Fprintln(stderr, "immune deploy group: --group N is required, N ≥ 0")
		return exitUsage
	}
	c, err := client()
	if err != nil {
		fmt.Fprintf(stderr, "immune deploy group: %v\n", err)
		return exitUsage
	}
	g := deploy.GroupRecord{Group: *group}
	if *instances != "" {
		for _, s := range strings.Split(*instances, ",") {
			g.Instances = append(g.Instances, strings.TrimSpace(s))
		}
	}
	ctx, cancel := signalContext()
	defer cancel()
	var got deploy.GroupRecord
	if err := c.do(ctx, http.MethodPost, "/api/v1/deploys/"+url.PathEscape(pos[0])+"/groups", g, &got); err != nil {
		fmt.Fprintf(stderr, "immune deploy group: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(stdout, "deploy %s: group %d started at %s\n", pos[0], got.Group, got.StartedAt.Format(time.RFC3339))
	return exitOK
}

const deploySelfTestUsage = `Usage: immune deploy selftest ID --instance I (--passed | --failed) [--detail TEXT] [flags]

Reports an instance's self test result for deploy ID
(POST /api/v1/deploys/ID/selftest). A failed self test reverts the deploy.

Exit status: 0 accepted; 1 refused or immune unreachable; 2 bad flags.

Flags:
`

func runDeploySelfTest(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("deploy selftest", deploySelfTestUsage, stderr)
	instance := fs.String("instance", "", "the instance that ran the self test (required)")
	passed := fs.Bool("passed", false, "the self test passed")
	failed := fs.Bool("failed", false, "the self test failed")
	detail := fs.String("detail", "", "what failed, for the verdict's reason")
	client := addClientFlags(fs)
	pos, code, done := parseFlags(fs, args)
	if done {
		return code
	}
	switch {
	case len(pos) != 1:
		fmt.Fprintln(stderr, "immune deploy selftest: want one deploy ID (see immune deploy selftest -h)")
		return exitUsage
	case *instance == "":
		fmt.Fprintln(stderr, "immune deploy selftest: --instance is required")
		return exitUsage
	case *passed == *failed:
		fmt.Fprintln(stderr, "immune deploy selftest: say --passed or --failed")
		return exitUsage
	}
	c, err := client()
	if err != nil {
		fmt.Fprintf(stderr, "immune deploy selftest: %v\n", err)
		return exitUsage
	}
	ctx, cancel := signalContext()
	defer cancel()
	t := deploy.SelfTestRecord{Instance: *instance, Passed: *passed, Detail: *detail}
	if err := c.do(ctx, http.MethodPost, "/api/v1/deploys/"+url.PathEscape(pos[0])+"/selftest", t, nil); err != nil {
		fmt.Fprintf(stderr, "immune deploy selftest: %v\n", err)
		return exitFail
	}
	word := "passed"
	if *failed {
		word = "failed"
	}
	fmt.Fprintf(stdout, "deploy %s: self test of %s %s\n", pos[0], *instance, word)
	return exitOK
}

const deployStateUsage = `Usage: immune deploy state ID --state STATE [flags]

Records a change of deploy ID's state (POST /api/v1/deploys/ID/state):
running, promoting, done, reverting, reverted or abandoned. immune stops
analysing a deploy that is done, reverted or abandoned.

Exit status: 0 accepted; 1 refused or immune unreachable; 2 bad flags.

Flags:
`

func runDeployState(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("deploy state", deployStateUsage, stderr)
	st := fs.String("state", "", "the deploy's new state (required)")
	client := addClientFlags(fs)
	pos, code, done := parseFlags(fs, args)
	if done {
		return code
	}
	switch {
	case len(pos) != 1:
		fmt.Fprintln(stderr, "immune deploy state: want one deploy ID (see immune deploy state -h)")
		return exitUsage
	case *st == "":
		fmt.Fprintln(stderr, "immune deploy state: --state is required")
		return exitUsage
	}
	c, err := client()
	if err != nil {
		fmt.Fprintf(stderr, "immune deploy state: %v\n", err)
		return exitUsage
	}
	ctx, cancel := signalContext()
	defer cancel()
	var got deploy.DeployRecord
	if err := c.do(ctx, http.MethodPost, "/api/v1/deploys/"+url.PathEscape(pos[0])+"/state", map[string]string{"state": *st}, &got); err != nil {
		fmt.Fprintf(stderr, "immune deploy state: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(stdout, "deploy %s: %s\n", pos[0], got.State)
	return exitOK
}

const deployStatusUsage = `Usage: immune deploy status ID [--group N] [--wait] [flags]

Prints deploy ID's verdict and its reason (GET /api/v1/deploys/ID). With
--group N it answers for the gate of rollout group N: proceed or revert.
With --wait it asks again every --interval until the answer is final (or
--wait-timeout passes), so a pipeline can gate on it:

  immune deploy group "$ID" --group 1 && immune deploy status "$ID" --group 1 --wait

Exit status:
  0  pass (or, with --group, proceed)
  1  fail, revert decided, or the deploy was reverted
  2  bad flags, or no answer: unknown deploy, token refused, immune
     unreachable (with --wait, network errors are retried until the deadline)
  3  inconclusive, or no verdict yet (still running)

Flags:
`

// outcome is what status makes of a deploy's status.
type outcome int

const (
	outPending outcome = iota
	outPass
	outFail
	outInconclusive
)

// judge reads the outcome and a line saying it.
func judge(v httpapi.View, id string, group int) (outcome, string) {
	if r := v.Revert; r != nil {
		return outFail, fmt.Sprintf("deploy %s: reverted at %s by %s: %s", id, r.At.Format(time.RFC3339), r.Instance, r.Reason)
	}
	vr := v.Verdict
	if vr == nil {
		return outPending, fmt.Sprintf("deploy %s: no verdict yet", id)
	}
	if group >= 0 {
		decision := ""
		if vr.Group == group {
			decision = vr.Decision
		}
		for _, g := range vr.Groups {
			if g.Group == group && decision == "" {
				decision = g.Decision
			}
		}
		switch {
		case decision == deploy.GateRevert || vr.Verdict == "fail":
			return outFail, fmt.Sprintf("deploy %s group %d: revert (verdict %s): %s", id, group, vr.Verdict, vr.Reason)
		case decision == deploy.GateProceed:
			return outPass, fmt.Sprintf("deploy %s group %d: proceed (verdict %s): %s", id, group, vr.Verdict, vr.Reason)
		}
		return outPending, fmt.Sprintf("deploy %s group %d: no gate decision yet (verdict %s): %s", id, group, vr.Verdict, vr.Reason)
	}
	line := fmt.Sprintf("deploy %s: %s: %s", id, vr.Verdict, vr.Reason)
	if strings.HasPrefix(vr.Reason, vr.Verdict+":") {
		// immune's reasons start with the verdict already.
		line = fmt.Sprintf("deploy %s: %s", id, vr.Reason)
	}
	switch vr.Verdict {
	case "pass":
		return outPass, line
	case "fail":
		return outFail, line
	case "inconclusive":
		return outInconclusive, line
	}
	if vr.Decision == deploy.GateRevert {
		return outFail, line
	}
	return outPending, line
}

func runDeployStatus(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("deploy status", deployStatusUsage, stderr)
	group := fs.Int("group", -1, "answer for the gate of this rollout group")
	wait := fs.Bool("wait", false, "ask again until the answer is final")
	interval := fs.Duration("interval", 5*time.Second, "with --wait, the time between two questions")
	waitTimeout := fs.Duration("wait-timeout", 2*time.Hour, "with --wait, how long to wait at most")
	asJSON := fs.Bool("json", false, "print the deploy's status as JSON")
	client := addClientFlags(fs)
	pos, code, done := parseFlags(fs, args)
	if done {
		return code
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "immune deploy status: want one deploy ID (see immune deploy status -h)")
		return exitUsage
	}
	if *interval <= 0 || *waitTimeout <= 0 {
		fmt.Fprintln(stderr, "immune deploy status: --interval and --wait-timeout must be positive")
		return exitUsage
	}
	c, err := client()
	if err != nil {
		fmt.Fprintf(stderr, "immune deploy status: %v\n", err)
		return exitUsage
	}
	id := pos[0]
	ctx, cancel := signalContext()
	defer cancel()
	deadline := time.Now().Add(*waitTimeout)
	for {
		var v httpapi.View
		err := c.do(ctx, http.MethodGet, "/api/v1/deploys/"+url.PathEscape(id), nil, &v)
		var ae *apiError
		switch {
		case err == nil:
		case !*wait || (errors.As(err, &ae) && ae.code/100 == 4) || ctx.Err() != nil:
			fmt.Fprintf(stderr, "immune deploy status: %v\n", err)
			return exitUsage
		default:
			fmt.Fprintf(stderr, "immune deploy status: %v (asking again)\n", err)
		}
		if err == nil {
			out, line := judge(v, id, *group)
			if out != outPending || !*wait || !time.Now().Add(*interval).Before(deadline) {
				if *asJSON {
					enc := json.NewEncoder(stdout)
					enc.SetIndent("", "  ")
					_ = enc.Encode(v)
				} else {
					fmt.Fprintln(stdout, line)
				}
				switch out {
				case outPass:
					return exitOK
				case outFail:
					return exitFail
				}
				if out == outPending && *wait {
					fmt.Fprintf(stderr, "immune deploy status: no final answer after %v\n", *waitTimeout)
				}
				return exitPending
			}
		} else if !time.Now().Add(*interval).Before(deadline) {
			fmt.Fprintf(stderr, "immune deploy status: no answer after %v\n", *waitTimeout)
			return exitUsage
		}
		select {
		case <-time.After(*interval):
		case <-ctx.Done():
			fmt.Fprintln(stderr, "immune deploy status: interrupted")
			return exitPending
		}
	}
}
