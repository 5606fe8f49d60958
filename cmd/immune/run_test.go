package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/immune-project/immune/internal/config"
)

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const runRule = "service: checkout\nkpis:\n  - name: errors\n    query: sum(rate(errors_total[5m]))\n    bad: increase\n"

// TestRunSignals runs `immune run` on embedded defaults: it serves
// everything on its address, reloads its rules on SIGHUP, and stops
// cleanly with exit 0 on SIGTERM.
func TestRunSignals(t *testing.T) {
	if testing.Short() {
		t.Skip("starts immune run and signals it: skipped under -short")
	}
	dir := t.TempDir()
	rule := filepath.Join(dir, "checkout.yaml")
	if err := os.WriteFile(rule, []byte(runRule), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"run", "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data"), "--rules", rule}, &stdout, &stderr)
	}()
	addr := regexp.MustCompile(`serving on (http://[0-9.:]+)`)
	var base string
	for i := 0; i < 200 && base == ""; i++ {
		if m := addr.FindStringSubmatch(stdout.String()); m != nil {
			base = m[1]
		}
		time.Sleep(50 * time.Millisecond)
	}
	if base == "" {
		t.Fatalf("immune run did not start: %s", stderr.String())
	}
	get := func(path string) (int, string) {
		t.Helper()
		var resp *http.Response
		var err error
		for i := 0; i < 50; i++ {
			if resp, err = http.Get(base + path); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, p := range []string{"/-/healthy", "/-/ready", "/metrics", "/deploys", "/api/v1/annotations",
		"/api/v1/deploys", "/api/v1/labels", "/api/v1/status/buildinfo"} {
		if code, body := get(p); code != 200 {
			t.Errorf("GET %s: %d %s", p, code, body)
		}
	}
	if _, body := get("/metrics"); !strings.Contains(body, "immune_rules_last_reload_successful 1") {
		t.Error("/metrics lacks immune_rules_last_reload_successful 1")
	}

	// A broken rule file and SIGHUP: the old rules stay, the metric says so.
	if err := os.WriteFile(rule, []byte("service: checkout\nkpis: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		_, body := get("/metrics")
		return strings.Contains(body, "immune_rules_last_reload_successful 0")
	}, "the failed reload to show in /metrics")
	if !strings.Contains(stderr.String(), "previous rules stay in force") || !strings.Contains(stderr.String(), "checkout.yaml:") {
		t.Errorf("the log does not say why the reload failed:\n%s", stderr.String())
	}

	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != exitOK {
			t.Fatalf("exit %d after SIGTERM; stderr:\n%s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("immune run did not stop within 30 s of SIGTERM")
	}
	if !strings.Contains(stderr.String(), "immune stopped") {
		t.Errorf("no clean stop in the log:\n%s", stderr.String())
	}
}

// TestReloadOnChange: a rule file that changes on disk is reloaded
// without a signal; a fixed file takes again.
func TestReloadOnChange(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the rule reloader: skipped under -short")
	}
	dir := t.TempDir()
	rule := filepath.Join(dir, "checkout.yaml")
	if err := os.WriteFile(rule, []byte(runRule), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.DataDir, cfg.Rules = filepath.Join(dir, "data"), []string{rule}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := newServer(ctx, cfg, serverOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx, ln, nil) }()
	defer func() {
		cancel()
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}()
	rewrite := func(content string, n int) {
		if err := os.WriteFile(rule, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		future := time.Now().Add(time.Duration(n) * time.Minute)
		_ = os.Chtimes(rule, future, future)
	}
	rewrite(strings.ReplaceAll(runRule, "errors", "failures"), 1)
	waitFor(t, func() bool { return testutil.ToFloat64(s.rulesReloads.WithLabelValues("success")) == 1 }, "a reload after the change")
	if f := s.rules.For("checkout"); f == nil || f.KPIs[0].Name != "failures" {
		t.Fatalf("rules after the change: %+v", f)
	}
	rewrite("not: [a rule file", 2)
	waitFor(t, func() bool { return testutil.ToFloat64(s.rulesReloads.WithLabelValues("failure")) == 1 }, "a failed reload")
	if f := s.rules.For("checkout"); f == nil || f.KPIs[0].Name != "failures" || testutil.ToFloat64(s.rulesOK) != 0 {
		t.Fatal("a bad file replaced the rules in force")
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestRunCheck: --check validates a config and its rule files, starts nothing.
func TestRunCheck(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("listen: x\nrules: [missing/*.yaml]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args      []string
		code      int
		out, errs string
	}{
		{[]string{"run", "--check", "--config", "../../examples/config/immune.yaml"}, exitOK, "ok: listen 127.0.0.1:9797, metrics embedded, zookeeper no, trigger webhook, 2 rule files", ""},
		{[]string{"run", "--check"}, exitOK, "trigger shadow, 0 rule files", ""},
		{[]string{"run", "--check", "--config", bad}, exitUsage, "", `bad.yaml:1: listen: "x" is not host:port`},
		{[]string{"run", "--check", "--rules", filepath.Join(dir, "none.yaml")}, exitUsage, "", "no such file"},
	}
	for _, tt := range tests {
		code, out, errs := runArgs(tt.args...)
		if code != tt.code || !strings.Contains(out, tt.out) || !strings.Contains(errs, tt.errs) {
			t.Errorf("immune %v: exit %d, stdout %q, stderr %q; want %d, %q, %q", tt.args, code, out, errs, tt.code, tt.out, tt.errs)
		}
	}
}
