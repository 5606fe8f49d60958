package ingest_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/prompb"

	"github.com/immune-project/immune/collector/ingest"
)

// syncBuffer collects log output from concurrent handlers.
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

const secret = "s3cr3t-t0ken-value"

func TestAuth(t *testing.T) {
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := setup(t, ingest.Options{TokenFile: writeToken(t, secret), Logger: log})
	req := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{Labels: ts("__name__", "m"), Samples: []prompb.Sample{{Value: 1, Timestamp: ms(now)}}}}}
	tests := []struct {
		name, auth string
		code       int
		challenge  string
	}{
		{"none", "", 401, `Bearer realm="immune"`},
		{"wrong", "Bearer " + secret + "x", 401, `Bearer realm="immune", error="invalid_token"`},
		{"prefix", "Bearer " + secret[:5], 401, `Bearer realm="immune", error="invalid_token"`},
		{"basic", "Basic " + secret, 401, `Bearer realm="immune", error="invalid_token"`},
		{"right", "Bearer " + secret, 204, ""},
		{"case", "bearer " + secret, 204, ""},
	}
	var bodies []string
	for _, tc := range tests {
		for _, path := range []string{"/api/v1/write", "/api/v1/push"} {
			h := v1Header()
			body := v1Body(t, req)
			if path == "/api/v1/push" {
				h = text()
				body = []byte("pushed 1\n")
			}
			if tc.auth != "" {
				h.Set("Authorization", tc.auth)
			}
			code, resp, rh := e.post(t, path, h, body)
			if code != tc.code {
				t.Errorf("%s %s: HTTP %d, want %d: %s", tc.name, path, code, tc.code, resp)
			}
			if got := rh.Get("WWW-Authenticate"); got != tc.challenge {
				t.Errorf("%s %s: WWW-Authenticate %q, want %q", tc.name, path, got, tc.challenge)
			}
			bodies = append(bodies, resp)
		}
	}
	if n := e.count(t); n != 2 {
		t.Errorf("%d series stored, want 2", n)
	}
	if !strings.Contains(logs.String(), "unauthorized") {
		t.Errorf("refused requests not logged: %q", logs.String())
	}
	for _, s := range append(bodies, logs.String()) {
		if strings.Contains(s, secret[:8]) {
			t.Errorf("the token leaks: %q", s)
		}
	}
}

func TestTokenFile(t *testing.T) {
	st := setup(t, ingest.Options{}).store
	if _, err := ingest.New(st, ingest.Options{TokenFile: writeToken(t, "  \n")}); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty token file: %v", err)
	}
	if _, err := ingest.New(st, ingest.Options{TokenFile: "/nonexistent/token"}); err == nil || !strings.Contains(err.Error(), "/nonexistent/token") {
		t.Errorf("missing token file: %v", err)
	}
}

// Without a token file, write endpoints are open.
func TestNoAuth(t *testing.T) {
	e := setup(t, ingest.Options{})
	h := text()
	h.Set("Authorization", "Bearer whatever")
	if code, resp, _ := e.post(t, "/api/v1/push", h, []byte("a 1\n")); code != http.StatusNoContent {
		t.Errorf("HTTP %d: %s", code, resp)
	}
}

// A second receiver on the same registry is an error of New, and the
// first keeps its metrics.
func TestRegisterTwice(t *testing.T) {
	e := setup(t, ingest.Options{})
	if _, err := ingest.New(e.store, ingest.Options{Registerer: e.reg}); err == nil {
		t.Fatal("no error")
	}
	if code, resp, _ := e.post(t, "/api/v1/push", text(), []byte("a 1\n")); code != http.StatusNoContent {
		t.Fatalf("HTTP %d: %s", code, resp)
	}
	if got := testutil.ToFloat64(counter(t, e.reg, "immune_ingested_samples_total", map[string]string{"protocol": "push_text"})); got != 1 {
		t.Errorf("ingested %v", got)
	}
}
