package promtest

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Start starts a Prometheus of the test's own with config as its
// prometheus.yml (@PORT@ stands for the server's port), through
// scripts/prometheus.sh start --config, and stops it when the test ends.
// It returns the server's URL. For tests that need a configuration of
// their own (scrape targets, remote_write to a test server); the others
// share the server of URL.
//
// The test is skipped under -short, and when there is no prometheus
// binary, unless IMMUNE_REQUIRE_SERVERS=1: then it fails.
func Start(t testing.TB, config string) string {
	t.Helper()
	url, _ := StartStoppable(t, config)
	return url
}

// StartStoppable is Start, and also returns a stop for a test that stops
// the server before it ends (to see immune through a Prometheus outage).
// The stop may be called any number of times, from any goroutine: the
// first call stops the server, and the test's end does nothing more.
func StartStoppable(t testing.TB, config string) (url string, stop func()) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test against a real Prometheus: skipped under -short")
	}
	bin := os.Getenv("PROMETHEUS")
	if bin == "" {
		bin = "prometheus"
	}
	if _, err := exec.LookPath(bin); err != nil {
		msg := "no prometheus binary (scripts/install-deps.sh installs Debian's): " + err.Error()
		if os.Getenv("IMMUNE_REQUIRE_SERVERS") == "1" {
			t.Fatal(msg + " (IMMUNE_REQUIRE_SERVERS=1: a missing server is a failure)")
		}
		t.Skip(msg)
	}
	script, err := script()
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(script, "start", "--config", cfg)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s start: %v: %s", script, err, stderr.Bytes())
	}
	env := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "=")
		if ok {
			// %q of bash's printf: plain values come unquoted.
			env[k] = strings.Trim(v, `'"`)
		}
	}
	url = env["IMMUNE_TEST_PROMETHEUS_URL"]
	if url == "" || env["IMMUNE_TEST_PROMETHEUS_PID"] == "" {
		t.Fatalf("%s start printed %q", script, out)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cmd := exec.Command(script, "stop")
			cmd.Env = os.Environ()
			for k, v := range env {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("%s stop: %v: %s", script, err, out)
			}
		})
	}
	t.Cleanup(stop)
	return url, stop
}

// script finds scripts/prometheus.sh above the working directory (a
// test runs in its package's directory).
func script() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, "scripts", "prometheus.sh")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("promtest: no scripts/prometheus.sh above the working directory")
		}
		dir = parent
	}
}
