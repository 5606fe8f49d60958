package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/immune-project/immune/rollback"
	"github.com/immune-project/immune/rollback/audit"
	"github.com/immune-project/immune/rollback/rollbacktest"
	"github.com/immune-project/immune/rollback/webhook"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// receiver is a deployment manager's revert endpoint: it answers with
// the scripted statuses in turn (then 200), and counts the reverts it
// performed (2xx answers) per deploy.
type receiver struct {
	mu       sync.Mutex
	script   []int
	status   int // answered after the script when not 0
	requests int
	reverts  map[string]int
	bodies   []webhook.Body
	headers  []http.Header
	srv      *httptest.Server
}

func newReceiver(t *testing.T, script ...int) *receiver {
	r := &receiver{script: script, reverts: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	b, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	r.headers = append(r.headers, req.Header.Clone())
	code := http.StatusOK
	switch {
	case len(r.script) > 0:
		code, r.script = r.script[0], r.script[1:]
	case r.status != 0:
		code = r.status
	}
	if code >= 300 {
		// A careless server echoing the credentials it got.
		http.Error(w, "refused; you sent "+req.Header.Get("Authorization"), code)
		return
	}
	var body webhook.Body
	if err := json.Unmarshal(b, &body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.bodies = append(r.bodies, body)
	r.reverts[req.Header.Get("Idempotency-Key")]++
	w.WriteHeader(code)
}

func (r *receiver) count(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reverts[id]
}

func (r *receiver) n() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests
}

func (r *receiver) setStatus(code int) {
	r.mu.Lock()
	r.status = code
	r.mu.Unlock()
}

func fast(url string) webhook.Config {
	return webhook.Config{URL: url, MinBackoff: 10 * time.Millisecond, MaxBackoff: 40 * time.Millisecond, Timeout: 2 * time.Second, Deadline: 5 * time.Second}
}

func newTrigger(t *testing.T, cfg webhook.Config, opts webhook.Options) *webhook.Trigger {
	t.Helper()
	tr, err := webhook.New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestSuite(t *testing.T) {
	rollbacktest.Run(t, func(t *testing.T) rollbacktest.Harness {
		r := newReceiver(t)
		return rollbacktest.Harness{
			Trigger: newTrigger(t, fast(r.srv.URL), webhook.Options{}),
			Name:    webhook.Name,
			Reverts: func(t *testing.T, id string) int { return r.count(id) },
			Break: func(t *testing.T) func() {
				r.setStatus(http.StatusForbidden)
				return func() { r.setStatus(0) }
			},
		}
	})
}

// TestOnceSuite: behind Once, a restart (a new trigger over the same
// audit log) does not post again.
func TestOnceSuite(t *testing.T) {
	rollbacktest.Run(t, func(t *testing.T) rollbacktest.Harness {
		r := newReceiver(t)
		path := filepath.Join(t.TempDir(), "audit.jsonl")
		open := func(t *testing.T) rollback.Trigger {
			l, err := audit.Open(path, audit.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			return rollback.Once(newTrigger(t, fast(r.srv.URL), webhook.Options{}), l, rollback.OnceOptions{Name: webhook.Name})
		}
		return rollbacktest.Harness{
			Trigger: open(t),
			Name:    webhook.Name,
			Reverts: func(t *testing.T, id string) int { return r.count(id) },
			Restart: open,
		}
	})
}

func auditOf(t *testing.T, tr rollback.Trigger) (*rollback.OnceTrigger, *audit.Log) {
	l, err := audit.Open(filepath.Join(t.TempDir(), "audit.jsonl"), audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return rollback.Once(tr, l, rollback.OnceOptions{Name: webhook.Name}), l
}

// TestRetry500Then200: one revert, after a retry; the audit log says so.
func TestRetry500Then200(t *testing.T) {
	r := newReceiver(t, http.StatusInternalServerError)
	reg := prometheus.NewPedanticRegistry()
	once, log := auditOf(t, newTrigger(t, fast(r.srv.URL), webhook.Options{Metrics: rollback.NewMetrics(reg)}))
	d := rollbacktest.Deploy(t, 1)
	res, err := once.Revert(context.Background(), rollbacktest.Request(d))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Reverted || res.Attempts != 2 || res.Detail != "HTTP 200" {
		t.Errorf("result %+v, want reverted after 2 attempts", res)
	}
	if r.n() != 2 || r.count(d.ID) != 1 {
		t.Errorf("%d requests, %d reverts; want 2, 1", r.n(), r.count(d.ID))
	}
	b := r.bodies[0]
	if b.DeployID != d.ID || b.Service != d.Service || b.Version != d.Version || b.PreviousVersion != d.PreviousVersion || !strings.Contains(string(b.Evidence), "conversion") {
		t.Errorf("body %+v", b)
	}
	if got := r.headers[1].Get("Idempotency-Key"); got != d.ID {
		t.Errorf("Idempotency-Key %q, want %q", got, d.ID)
	}
	recs := reread(t, log.Path(), d.ID)
	if len(recs) != 1 || recs[0].Result != audit.ResultReverted || recs[0].Attempts != 2 || recs[0].Trigger != webhook.Name {
		t.Errorf("audit %+v", recs)
	}
	want := `
# HELP immune_trigger_attempts_total Tries of a trigger (HTTP requests, ZooKeeper transactions, command runs), by trigger and result.
# TYPE immune_trigger_attempts_total counter
immune_trigger_attempts_total{result="200",trigger="webhook"} 1
immune_trigger_attempts_total{result="500",trigger="webhook"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "immune_trigger_attempts_total"); err != nil {
		t.Error(err)
	}
}

// TestNoRetryOn400: a 4xx is final: one request, the error reported,
// no revert, and the audit log says it failed.
func TestNoRetryOn400(t *testing.T) {
	r := newReceiver(t, http.StatusBadRequest)
	once, log := auditOf(t, newTrigger(t, fast(r.srv.URL), webhook.Options{}))
	d := rollbacktest.Deploy(t, 1)
	res, err := once.Revert(context.Background(), rollbacktest.Request(d))
	if !errors.Is(err, rollback.ErrRejected) || !strings.Contains(err.Error(), "HTTP 400") {
		t.Fatalf("err %v, want ErrRejected with HTTP 400", err)
	}
	if res.Reverted || res.Attempts != 1 || r.n() != 1 || r.count(d.ID) != 0 {
		t.Errorf("result %+v, %d requests, %d reverts", res, r.n(), r.count(d.ID))
	}
	recs := reread(t, log.Path(), d.ID)
	if len(recs) != 1 || recs[0].Result != audit.ResultFailed || !strings.Contains(recs[0].Error, "HTTP 400") {
		t.Errorf("audit %+v", recs)
	}
	if _, ok := log.Reverted(d.ID); ok {
		t.Error("the audit log shows a revert")
	}
}

// TestDeadline: a receiver that keeps failing is given up at the deadline.
func TestDeadline(t *testing.T) {
	r := newReceiver(t)
	r.setStatus(http.StatusServiceUnavailable)
	cfg := fast(r.srv.URL)
	cfg.Deadline = 300 * time.Millisecond
	tr := newTrigger(t, cfg, webhook.Options{})
	_, err := tr.Revert(context.Background(), rollbacktest.Request(rollbacktest.Deploy(t, 1)))
	if !errors.Is(err, rollback.ErrUnavailable) || !strings.Contains(err.Error(), "deadline") {
		t.Fatalf("err %v, want ErrUnavailable at the deadline", err)
	}
	if r.n() < 2 {
		t.Errorf("%d requests: no retry before the deadline", r.n())
	}
}

// TestNetworkError: a receiver that cannot be reached is retried, and
// reported as unavailable.
func TestNetworkError(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	cfg := fast(url)
	cfg.Deadline = 200 * time.Millisecond
	reg := prometheus.NewPedanticRegistry()
	tr := newTrigger(t, cfg, webhook.Options{Metrics: rollback.NewMetrics(reg)})
	res, err := tr.Revert(context.Background(), rollbacktest.Request(rollbacktest.Deploy(t, 1)))
	if !errors.Is(err, rollback.ErrUnavailable) || res.Attempts < 2 {
		t.Fatalf("err %v after %d attempts, want ErrUnavailable after retries", err, res.Attempts)
	}
	if n := attempts(t, reg, "network"); n < 2 {
		t.Errorf("network attempts counted: %v", n)
	}
}

// attempts is the value of immune_trigger_attempts_total{trigger="webhook",result=…}.
func attempts(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "immune_trigger_attempts_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestSecretNeverLeaks: the auth header is sent as read from its file;
// a server echoing it back does not get it into the error, the result,
// the logs or the audit log.
func TestSecretNeverLeaks(t *testing.T) {
	const secret = "Bearer tok-3xYz-s3cr3t"
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := newReceiver(t, http.StatusBadGateway, http.StatusUnauthorized)
	var logs bytes.Buffer
	lg := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := fast(r.srv.URL)
	cfg.AuthFile = file
	l, err := audit.Open(filepath.Join(t.TempDir(), "audit.jsonl"), audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	once := rollback.Once(newTrigger(t, cfg, webhook.Options{Logger: lg}), l, rollback.OnceOptions{Name: webhook.Name, Logger: lg})
	res, err := once.Revert(context.Background(), rollbacktest.Request(rollbacktest.Deploy(t, 1)))
	if err == nil {
		t.Fatal("no error from a 401")
	}
	if got := r.headers[0].Get("Authorization"); got != secret {
		t.Errorf("Authorization %q, want the file's content", got)
	}
	raw, _ := os.ReadFile(l.Path())
	for what, s := range map[string]string{"error": err.Error(), "detail": res.Detail, "logs": logs.String(), "audit": string(raw)} {
		if strings.Contains(s, "s3cr3t") {
			t.Errorf("the secret is in the %s: %s", what, s)
		}
	}
	if !strings.Contains(logs.String(), "retrying") || !strings.Contains(err.Error(), "<redacted>") {
		t.Errorf("the check proves nothing: logs %q, err %v", logs.String(), err)
	}
	// A missing auth file: named, not retried.
	cfg.AuthFile = filepath.Join(t.TempDir(), "missing")
	_, err = newTrigger(t, cfg, webhook.Options{}).Revert(context.Background(), rollbacktest.Request(rollbacktest.Deploy(t, 2)))
	if !errors.Is(err, rollback.ErrRejected) || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing auth file: %v", err)
	}
}

// TestRedirectNotFollowed: a 3xx is a rejection: the request is not
// re-sent (a 302 or 303 would turn the POST into a GET that a 200 would
// make a revert done) and the auth header goes nowhere else.
func TestRedirectNotFollowed(t *testing.T) {
	const secret = "tok-r3d1r3ct"
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var (
		mu     sync.Mutex
		landed []string
	)
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		mu.Lock()
		landed = append(landed, req.Method+" "+req.Header.Get("X-Revert-Token"))
		mu.Unlock()
	}))
	defer target.Close()
	for i, code := range []int{http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect} {
		src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			http.Redirect(w, req, target.URL+"/elsewhere", code)
		}))
		cfg := fast(src.URL)
		cfg.AuthFile, cfg.AuthHeader = file, "X-Revert-Token"
		res, err := newTrigger(t, cfg, webhook.Options{}).Revert(context.Background(), rollbacktest.Request(rollbacktest.Deploy(t, i+1)))
		src.Close()
		if !errors.Is(err, rollback.ErrRejected) || res.Reverted || res.Attempts != 1 || !strings.Contains(res.Detail, "redirect to "+target.URL+"/elsewhere") {
			t.Errorf("HTTP %d: result %+v, err %v; want a rejection naming the redirect", code, res, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(landed) > 0 {
		t.Errorf("redirects followed: %q", landed)
	}
}

// TestAuthFileError: an auth file that cannot be read, or is empty, is
// a rejection named after the file, counted as an error.
func TestAuthFileError(t *testing.T) {
	r := newReceiver(t)
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	m := rollback.NewMetrics(reg)
	for i, file := range []string{filepath.Join(dir, "missing"), empty} {
		cfg := fast(r.srv.URL)
		cfg.AuthFile = file
		_, err := newTrigger(t, cfg, webhook.Options{Metrics: m}).Revert(context.Background(), rollbacktest.Request(rollbacktest.Deploy(t, i+1)))
		if !errors.Is(err, rollback.ErrRejected) || !strings.Contains(err.Error(), "auth_file") || !strings.Contains(err.Error(), file) {
			t.Errorf("%s: %v", file, err)
		}
	}
	if r.n() != 0 {
		t.Errorf("%d requests sent without the auth header", r.n())
	}
	if n := attempts(t, reg, "error"); n != 2 {
		t.Errorf("error attempts counted: %v, want 2", n)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  webhook.Config
		want string
	}{
		{webhook.Config{URL: "https://deploy.example/revert"}, ""},
		{webhook.Config{URL: "ftp://x/y"}, "webhook url"},
		{webhook.Config{URL: "https://user:hunter2@x/"}, ""},
		{webhook.Config{URL: "x"}, "webhook url"},
		{webhook.Config{URL: "http://x/", AuthHeader: "Bad Header"}, "auth_header"},
		{webhook.Config{URL: "http://x/", Timeout: -1}, "timeout"},
		{webhook.Config{URL: "http://x/", MinBackoff: 2 * time.Second, MaxBackoff: time.Second}, "min_backoff"},
	} {
		err := tc.cfg.Validate()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
	if err := (webhook.Config{URL: "ftp://user:hunter2@x/"}).Validate(); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("the URL's password in an error: %v", err)
	}
}

// reread reads the audit log back from its file: a deploy's revert records.
func reread(t *testing.T, path, id string) []audit.Record {
	t.Helper()
	all, err := audit.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var recs []audit.Record
	for _, r := range all {
		if r.DeployID == id && r.Kind == audit.KindRevert {
			recs = append(recs, r)
		}
	}
	return recs
}
