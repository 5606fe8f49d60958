package main

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/common/model"

	"github.com/immune-project/immune/analysis"
	"github.com/immune-project/immune/annotator"
	"github.com/immune-project/immune/collector/scrape"
	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/internal/config"
	"github.com/immune-project/immune/rollback/webhook"
	"github.com/immune-project/immune/sim"
)

//go:embed demo-rules.yaml
var demoRules []byte

const demoUsage = `Usage: immune demo [--speed N] [--keep] [--listen ADDR]

The whole story on one machine, nothing to install: a fleet of 8 simulated
checkout instances serving real /metrics over HTTP, scraped by immune; a
deployment manager rolling out a good version in exponential groups (1, 2,
4, 1), which immune lets through group by group and passes, then a bad one
whose conversion drops by 30%, which immune catches in its first groups and
reverts through the webhook trigger, the same revert path a real pipeline
exposes. A live timeline is printed with immune's verdict sentences; the
on-call pages are served at the printed URL. It ends with a summary after
about two minutes of simulated time (exit 0 when the story happened as told:
the good version promoted, the bad one reverted).

Flags:
`

func runDemo(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("immune demo", demoUsage, stderr)
	speed := fs.Float64("speed", 1, "how many simulated seconds pass per second (1 to 20)")
	keep := fs.Bool("keep", false, "stay up after the story, serving the pages, until Ctrl-C")
	listen := fs.String("listen", "127.0.0.1:9797", "immune's HTTP address (pages, API); port 0 picks a free one")
	dataDir := fs.String("data-dir", "", "keep immune's data here (default: a temporary directory, removed at the end)")
	seed := fs.Uint64("seed", 1, "the seed of the simulated traffic")
	verbose := fs.Bool("v", false, "also print immune's own log (warnings and errors)")
	pos, code, done := parseFlags(fs, args)
	if done {
		return code
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "immune demo: unexpected argument %q\n", pos[0])
		return exitUsage
	}
	if *speed < 1 || *speed > 20 {
		fmt.Fprintf(stderr, "immune demo: --speed %g: want 1 to 20\n", *speed)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	d := &demo{out: stdout, speed: *speed, seed: *seed, keep: *keep, listen: *listen, dataDir: *dataDir}
	if *verbose {
		d.log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	if err := d.run(ctx); err != nil {
		fmt.Fprintf(stderr, "immune demo: %v\n", err)
		return exitFail
	}
	return exitOK
}

type demo struct {
	out     io.Writer
	speed   float64
	seed    uint64
	keep    bool
	listen  string
	dataDir string
	log     *slog.Logger

	mu    sync.Mutex
	start time.Time
	clock *sim.Clock

	lastGood, lastBad sim.Result
}

func modelDur(d time.Duration) model.Duration { return model.Duration(d) }

// say prints one timeline line, stamped with the simulated time since the start.
func (d *demo) say(format string, args ...any) {
	d.sayLines(fmt.Sprintf(format, args...), nil)
}

// sayLines prints a timeline line and its indented continuation lines
// (empty ones skipped) as one block: the manager, the fleet and immune's
// annotators print from goroutines of their own.
func (d *demo) sayLines(first string, more []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	el := d.clock.Now().Sub(d.start).Round(time.Second)
	fmt.Fprintf(d.out, "%6s  %s\n", "+"+fmtDur(el), first)
	for _, line := range more {
		if line != "" {
			fmt.Fprintf(d.out, "          %s\n", line)
		}
	}
}

// printf prints to the timeline's output unstamped, under the same lock.
func (d *demo) printf(format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintf(d.out, format, args...)
}

func fmtDur(d time.Duration) string {
	m, s := int(d.Minutes()), int(d.Seconds())%60
	return fmt.Sprintf("%d:%02d", m, s)
}

func (d *demo) run(ctx context.Context) error {
	dir := d.dataDir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "immune-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	rulesFile := filepath.Join(dir, "checkout.yaml")
	if err := os.WriteFile(rulesFile, demoRules, 0o644); err != nil {
		return err
	}
	d.clock = sim.NewClock(nil, d.speed)
	d.start = d.clock.Now()
	wall := func(simd time.Duration) time.Duration { return time.Duration(float64(simd) / d.speed) }

	// The deployment manager's revert webhook, where immune's webhook
	// trigger posts, on a port of its own, as a real pipeline's would be.
	hookLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", d.listen)
	if err != nil {
		hookLn.Close()
		return fmt.Errorf("listen %s: %w (another immune running? use --listen 127.0.0.1:0)", d.listen, err)
	}
	immuneURL := "http://" + ln.Addr().String()

	cfg := config.Default()
	cfg.Listen, cfg.ExternalURL, cfg.DataDir, cfg.Instance = ln.Addr().String(), immuneURL, dir, "immune-demo"
	cfg.Rules = []string{rulesFile}
	cfg.Rollback.Trigger = "webhook"
	cfg.Rollback.Webhook = &webhook.Config{URL: "http://" + hookLn.Addr().String() + "/revert", Timeout: 5 * time.Second, Deadline: 30 * time.Second}
	delay := 2 * time.Second
	cfg.Analysis.Delay = (*config.Duration)(&delay)
	scrapeEvery := wall(time.Second)
	cfg.Scrape.Interval, cfg.Scrape.Timeout = modelDur(scrapeEvery), modelDur(scrapeEvery)

	d.say("immune starts: embedded store, HTTP deploy API, webhook trigger; rules %s", "checkout.yaml (conversion, error rate, p90 latency; concurrent baseline)")
	srv, err := newServer(ctx, cfg, serverOptions{
		Log: d.log, Now: d.clock.Now, Scraper: true,
		After:      func(x time.Duration) <-chan time.Time { return time.After(wall(x)) },
		Annotators: []annotator.Annotator{demoTimeline{d}},
	})
	if err != nil {
		ln.Close()
		hookLn.Close()
		return err
	}
	defer srv.Close()

	// The fleet: 8 instances of checkout on v1.
	var fleet *sim.Fleet
	setTargets := func() {
		var ts []scrape.Target
		for _, t := range fleet.Targets() {
			if t.Addr == "" {
				continue
			}
			ts = append(ts, scrape.Target{Address: t.Addr, Labels: map[string]string{"service": "checkout", "instance": t.Instance}})
		}
		srv.scraper.SetTargets("demo", ts)
	}
	fleet, err = sim.NewFleet(sim.FleetOptions{Service: "checkout", Size: 8, Version: "v1", Seed: d.seed, Clock: d.clock,
		Traffic: sim.Traffic{RequestRate: 200, CheckoutRate: 60},
		OnEvent: func(ev sim.Event) {
			if ev.Kind == sim.EventSelfTestFailed {
				d.say("%s: self test failed: %s", ev.Instance, ev.Detail)
			}
		}})
	if err != nil {
		return err
	}
	defer fleet.Close()
	if err := fleet.Start(ctx); err != nil {
		return err
	}
	setTargets()
	d.say("fleet: 8 instances of checkout on v1, serving /metrics, scraped every second")

	tr, err := sim.NewHTTPTransport(sim.HTTPOptions{URL: immuneURL, PollInterval: wall(time.Second), Logger: d.log})
	if err != nil {
		return err
	}
	hookMux := http.NewServeMux()
	tr.Register(hookMux)
	hook := &http.Server{Handler: hookMux, ReadHeaderTimeout: 5 * time.Second}
	go hook.Serve(hookLn)
	defer hook.Close()

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		fleet.Run(runCtx, tick.C)
	}()
	go func() {
		defer wg.Done()
		_ = srv.Run(runCtx, ln, nil)
	}()
	defer wg.Wait()
	defer cancel()
	d.printf("        the on-call pages: %s/deploys\n", immuneURL)

	mgr, err := sim.NewManager(sim.ManagerOptions{Transport: tr, Fleet: fleet, Now: d.clock.Now, GateTimeout: wall(time.Minute),
		OnGateTimeout: sim.GateTimeoutStop, SkipFinalGate: true, Logger: d.log,
		OnEvent: func(ev sim.Event) {
			if ev.DeployID != "" {
				setTargets()
			}
			switch ev.Kind {
			case sim.EventDeployStarted, sim.EventGroupStarted, sim.EventGateProceed, sim.EventGateRevert,
				sim.EventGateTimeout, sim.EventRevertRequest, sim.EventReverted, sim.EventDone, sim.EventError:
				d.say("manager: %s", managerLine(ev))
			}
		}})
	if err != nil {
		return err
	}

	// A little traffic before the first deploy.
	if err := sleepCtx(ctx, wall(10*time.Second)); err != nil {
		return err
	}
	good, err := d.deploy(ctx, mgr, srv, "checkout-v2", "v2", "v1")
	if err != nil {
		return err
	}
	bad, err := d.deploy(ctx, mgr, srv, "checkout-v2-bad", "v2-bad", "v2")
	if err != nil {
		return err
	}

	d.printf("\nSummary\n")
	ok := true
	for _, x := range []struct {
		r    analysis.Record
		res  sim.Result
		want string
	}{{good, d.lastGood, "pass"}, {bad, d.lastBad, "fail"}} {
		rev := "not reverted"
		if x.r.Revert != nil && x.r.Revert.Reverted {
			rev = "reverted through the " + x.r.Revert.Trigger + " trigger"
		}
		d.printf("  %-16s %-7s verdict %-5s deploy %-9s %s\n", x.r.Deploy.ID, x.r.Deploy.Version, x.r.Verdict, x.res.Record.State, rev)
		if x.r.Verdict != x.want {
			ok = false
		}
	}
	if bad.Revert == nil || !bad.Revert.Reverted || d.lastBad.Record.State != deploy.StateReverted {
		ok = false
	}
	d.printf("  reports: %s/deploys/%s and %s/deploys/%s\n", immuneURL, good.Deploy.ID, immuneURL, bad.Deploy.ID)
	if d.keep {
		d.printf("\nStill serving %s/deploys (Ctrl-C to stop).\n", immuneURL)
		<-ctx.Done()
	}
	if !ok {
		return errors.New("the story did not happen as told (see the timeline above)")
	}
	return nil
}

// deploy rolls a version out and waits for immune's final verdict.
func (d *demo) deploy(ctx context.Context, mgr *sim.Manager, srv *server, id, version, prev string) (analysis.Record, error) {
	d.printf("\n")
	res, err := mgr.Deploy(ctx, sim.Request{ID: id, Version: version, PreviousVersion: prev, Author: "demo", Commit: "c0ffee"})
	if err != nil {
		return analysis.Record{}, fmt.Errorf("deploy %s: %w", version, err)
	}
	if version == "v2" {
		d.lastGood = res
	} else {
		d.lastBad = res
	}
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	if err := srv.sup.Wait(wctx, id); err != nil {
		return analysis.Record{}, fmt.Errorf("waiting for the verdict on %s: %w", id, err)
	}
	r, _ := srv.sup.Lookup(id)
	return r, nil
}

func managerLine(ev sim.Event) string {
	var b strings.Builder
	b.WriteString(ev.DeployID)
	if ev.Group >= 0 && ev.Kind != sim.EventDeployStarted && ev.Kind != sim.EventDone && ev.Kind != sim.EventReverted {
		fmt.Fprintf(&b, " group %d", ev.Group)
	}
	b.WriteString(" ")
	b.WriteString(string(ev.Kind))
	if ev.Version != "" && (ev.Kind == sim.EventDeployStarted || ev.Kind == sim.EventReverted) {
		b.WriteString(" " + ev.Version)
	}
	if ev.Detail != "" {
		b.WriteString(": " + ev.Detail)
	}
	return b.String()
}

// demoTimeline prints immune's verdicts and reverts in the timeline.
type demoTimeline struct{ d *demo }

func (t demoTimeline) Annotate(_ context.Context, ev annotator.Event) error {
	switch ev.Kind {
	case annotator.KindVerdict:
		t.d.sayLines(fmt.Sprintf("immune: %s verdict %s", ev.Deploy.ID, strings.ToUpper(ev.Verdict)), strings.Split(ev.Text, "\n"))
	case annotator.KindRevert:
		t.d.say("immune: %s revert pulled (webhook to the deployment manager)", ev.Deploy.ID)
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
