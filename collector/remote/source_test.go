package remote_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/immune-project/immune/collector"
	"github.com/immune-project/immune/collector/embedded"
	"github.com/immune-project/immune/collector/queryapi"
	"github.com/immune-project/immune/collector/remote"
	"github.com/immune-project/immune/collector/sourcetest"
)

var t0 = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

func newSource(t *testing.T, opts remote.Options) *remote.Source {
	t.Helper()
	if opts.MinBackoff == 0 {
		opts.MinBackoff, opts.MaxBackoff = time.Millisecond, 4*time.Millisecond
	}
	s, err := remote.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func serve(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// The acceptance suite, against the embedded store behind Prometheus's API.
func TestSource(t *testing.T) {
	sourcetest.Run(t, func(t *testing.T, data []collector.Series) collector.Source {
		store, err := embedded.Open(embedded.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
		if err := store.Write(context.Background(), data); err != nil {
			t.Fatal(err)
		}
		a, err := queryapi.New(store, queryapi.Options{})
		if err != nil {
			t.Fatal(err)
		}
		mux := http.NewServeMux()
		a.Register(mux)
		srv := serve(t, mux)
		return newSource(t, remote.Options{URL: srv.URL})
	})
}

// answer is a canned response.
type answer struct {
	code int
	body string
}

// scripted answers in turn, then repeats the last answer; it counts
// requests and keeps the last one.
type scripted struct {
	mu      sync.Mutex
	answers []answer
	n       int
	last    *http.Request
	form    string
}

func (s *scripted) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	a := s.answers[min(s.n, len(s.answers)-1)]
	s.n++
	s.last = r.Clone(context.Background())
	r.ParseForm()
	s.form = r.Form.Encode()
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(a.code)
	io.WriteString(w, a.body)
}

func (s *scripted) requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

const okVector = `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"x"},"value":[1704067200,"1"]}]}}`

func errBody(typ, msg string) string {
	return fmt.Sprintf(`{"status":"error","errorType":%q,"error":%q}`, typ, msg)
}

func TestStatusCodes(t *testing.T) {
	for _, tc := range []struct {
		name     string
		answers  []answer
		want     error  // nil: success
		wantMsg  string // in the error
		requests int
	}{
		{"ok", []answer{{200, okVector}}, nil, "", 1},
		{"503 then ok", []answer{{503, "overloaded"}, {503, "overloaded"}, {200, okVector}}, nil, "", 3},
		{"502 html then ok", []answer{{502, "<html>bad gateway</html>"}, {200, okVector}}, nil, "", 2},
		{"500 always", []answer{{500, errBody("internal", "disk on fire")}}, collector.ErrUnavailable, "HTTP 500 Internal Server Error: disk on fire (after 4 attempts)", 4},
		{"400 bad query", []answer{{400, errBody("bad_data", `1:5: parse error: unclosed left parenthesis`)}}, collector.ErrBadQuery, "bad query: 1:5: parse error: unclosed left parenthesis", 1},
		{"422 execution", []answer{{422, errBody("execution", "many-to-many matching not allowed")}}, collector.ErrBadQuery, "many-to-many matching not allowed", 1},
		{"422 too many samples", []answer{{422, errBody("execution", "query processing would load too many samples into memory in query execution")}}, collector.ErrTooManySamples, "would load too many samples", 1},
		{"503 timeout", []answer{{503, errBody("timeout", "query timed out in expression evaluation")}}, collector.ErrTimeout, "query timed out in expression evaluation", 1},
		{"401", []answer{{401, "Unauthorized"}}, collector.ErrUnauthorized, "HTTP 401 Unauthorized: Unauthorized", 1},
		{"403 (api/v1 retries as GET)", []answer{{403, "Forbidden"}}, collector.ErrUnauthorized, "HTTP 403 Forbidden", 2},
		{"404", []answer{{404, "<html>404 page not found</html>"}}, collector.ErrBadResponse, "HTTP 404 Not Found: <html>404 page not found</html>", 1},
		{"429 not retried", []answer{{429, "slow down"}}, collector.ErrBadResponse, "HTTP 429 Too Many Requests", 1},
		{"200 garbage", []answer{{200, "<html>"}}, collector.ErrBadResponse, "", 1},
		{"200 error body", []answer{{200, errBody("bad_data", "odd")}}, collector.ErrBadQuery, "odd", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &scripted{answers: tc.answers}
			srv := serve(t, h)
			src := newSource(t, remote.Options{URL: srv.URL})
			v, _, err := src.Query(context.Background(), "up", t0)
			switch {
			case tc.want == nil && err != nil:
				t.Fatalf("got %v", err)
			case tc.want == nil:
				if len(v) != 1 || v[0].Sample.V != 1 || v[0].Labels["job"] != "x" {
					t.Errorf("got %v", v)
				}
			case !errors.Is(err, tc.want):
				t.Errorf("got %v, want %v", err, tc.want)
			case !strings.Contains(err.Error(), tc.wantMsg):
				t.Errorf("error %q lacks %q", err, tc.wantMsg)
			}
			if got := h.requests(); got != tc.requests {
				t.Errorf("%d requests, want %d", got, tc.requests)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "remote "+srv.URL+`: query "up": `) {
				t.Errorf("error %q does not say where", err)
			}
		})
	}
}

func TestRetryMetrics(t *testing.T) {
	h := &scripted{answers: []answer{{503, "x"}, {500, "x"}, {200, okVector}}}
	srv := serve(t, h)
	reg := prometheus.NewPedanticRegistry()
	src := newSource(t, remote.Options{URL: srv.URL, Registerer: reg})
	if _, _, err := src.Query(context.Background(), "up", t0); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP immune_collector_remote_requests_total HTTP requests to the remote query API, by status code ("error" when no answer came).
# TYPE immune_collector_remote_requests_total counter
immune_collector_remote_requests_total{code="200"} 1
immune_collector_remote_requests_total{code="500"} 1
immune_collector_remote_requests_total{code="503"} 1
# HELP immune_collector_remote_retries_total Query attempts retried after a network error or an HTTP 5xx.
# TYPE immune_collector_remote_retries_total counter
immune_collector_remote_retries_total 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

func TestNetworkErrorRetried(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	src := newSource(t, remote.Options{URL: "http://" + addr, MaxAttempts: 3})
	_, _, err = src.QueryRange(context.Background(), "up", t0, t0.Add(time.Hour), time.Minute)
	if !errors.Is(err, collector.ErrUnavailable) || !strings.Contains(err.Error(), "after 3 attempts") {
		t.Errorf("got %v, want unavailable after 3 attempts", err)
	}
}

func TestAttemptTimeout(t *testing.T) {
	var n atomic.Int32
	srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm() // a consumed body lets the server notice the client leave
		if n.Add(1) == 1 {
			select { // the first attempt hangs
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			return
		}
		io.WriteString(w, okVector)
	}))
	src := newSource(t, remote.Options{URL: srv.URL, Timeout: 100 * time.Millisecond})
	if _, _, err := src.Query(context.Background(), "up", t0); err != nil {
		t.Fatalf("got %v, want the second attempt to answer", err)
	}
	if n.Load() != 2 {
		t.Errorf("%d attempts, want 2", n.Load())
	}
}

func TestCanceledDuringBackoff(t *testing.T) {
	h := &scripted{answers: []answer{{503, "x"}}}
	srv := serve(t, h)
	src := newSource(t, remote.Options{URL: srv.URL, MinBackoff: time.Hour, MaxBackoff: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err := src.Query(ctx, "up", t0)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, collector.ErrTimeout) {
		t.Errorf("got %v, want the deadline", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestParameters(t *testing.T) {
	h := &scripted{answers: []answer{{200, `{"status":"success","data":{"resultType":"matrix","result":[]}}`}}}
	srv := serve(t, h)
	src := newSource(t, remote.Options{URL: srv.URL + "/prefix/", Timeout: 90 * time.Second})
	_, _, err := src.QueryRange(context.Background(), `sum(rate(x[5m]))`, t0, t0.Add(time.Hour), 90*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if h.last.URL.Path != "/prefix/api/v1/query_range" {
		t.Errorf("path %s", h.last.URL.Path)
	}
	want := "end=1704070800&query=sum%28rate%28x%5B5m%5D%29%29&start=1704067200&step=90&timeout=1m30s"
	if h.form != want {
		t.Errorf("form\n%s\nwant\n%s", h.form, want)
	}
}

func TestWarnings(t *testing.T) {
	h := &scripted{answers: []answer{{200, `{"status":"success","data":{"resultType":"matrix","result":[
		{"metric":{"b":"2"},"values":[[1704067200,"NaN"]]},
		{"metric":{"a":"1"},"values":[[1704067200.5,"+Inf"],[1704067260,"-1e-3"]]}]},
		"warnings":["PromQL warning: careful"],"infos":["PromQL info: metric might not be a counter"]}`}}}
	srv := serve(t, h)
	src := newSource(t, remote.Options{URL: srv.URL})
	m, warnings, err := src.QueryRange(context.Background(), "x", t0, t0.Add(time.Minute), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 2 || warnings[0] != "PromQL warning: careful" || warnings[1] != "PromQL info: metric might not be a counter" {
		t.Errorf("warnings %q", warnings)
	}
	// Sorted by labels; times in milliseconds.
	if len(m) != 2 || m[0].Labels["a"] != "1" || !m[0].Samples[0].T.Equal(t0.Add(500*time.Millisecond)) || m[0].Samples[1].V != -0.001 {
		t.Errorf("got %v", m)
	}
}

func TestUnsupportedHistograms(t *testing.T) {
	h := &scripted{answers: []answer{{200, `{"status":"success","data":{"resultType":"vector","result":[
		{"metric":{"a":"1"},"histogram":[1704067200,{"count":"1","sum":"1","buckets":[[0,"0","1","1"]]}]}]}}`}}}
	srv := serve(t, h)
	src := newSource(t, remote.Options{URL: srv.URL})
	if _, _, err := src.Query(context.Background(), "x", t0); !errors.Is(err, collector.ErrUnsupported) {
		t.Errorf("got %v, want ErrUnsupported", err)
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestAuth(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	passFile := filepath.Join(dir, "password")
	writeFile(t, tokenFile, "tok-one\n")
	writeFile(t, passFile, "pass-one\n")
	var mu sync.Mutex
	var got []string
	srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Get("Authorization"))
		mu.Unlock()
		io.WriteString(w, okVector)
	}))
	ctx := context.Background()
	bearer := newSource(t, remote.Options{URL: srv.URL, BearerTokenFile: tokenFile})
	basic := newSource(t, remote.Options{URL: srv.URL, BasicAuthUsername: "immune", BasicAuthPasswordFile: passFile})
	userinfo := newSource(t, remote.Options{URL: strings.Replace(srv.URL, "http://", "http://url-user:url-pass@", 1)})
	for _, s := range []*remote.Source{bearer, basic, userinfo} {
		if _, _, err := s.Query(ctx, "up", t0); err != nil {
			t.Fatal(err)
		}
	}
	// A rotated secret is read on the next request.
	writeFile(t, tokenFile, "tok-two")
	if _, _, err := bearer.Query(ctx, "up", t0); err != nil {
		t.Fatal(err)
	}
	want := []string{"Bearer tok-one", "Basic aW1tdW5lOnBhc3Mtb25l", "Basic dXJsLXVzZXI6dXJsLXBhc3M=", "Bearer tok-two"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("Authorization headers\n%q\nwant\n%q", got, want)
	}
	if u := userinfo.URL(); u != srv.URL {
		t.Errorf("URL() = %s, want it without userinfo", u)
	}

	// A missing file: no request, no retry, the file named.
	n := len(got)
	os.Remove(tokenFile)
	_, _, err := bearer.Query(ctx, "up", t0)
	if err == nil || !strings.Contains(err.Error(), "read bearer token file "+tokenFile+": no such file or directory") {
		t.Errorf("got %v", err)
	}
	if len(got) != n {
		t.Errorf("%d requests with a missing token file", len(got)-n)
	}
}

func TestOptionsErrors(t *testing.T) {
	for _, tc := range []struct {
		opts remote.Options
		want string
	}{
		{remote.Options{URL: "::"}, "remote: URL does not parse"},
		{remote.Options{URL: "ftp://u:hunter22@host/"}, "remote: URL ftp://host/: want http:// or https:// and a host"},
		{remote.Options{URL: "localhost:9090"}, "want http:// or https://"},
		{remote.Options{URL: "http://h", BearerTokenFile: "t", BasicAuthUsername: "u", BasicAuthPasswordFile: "p"}, "set one of"},
		{remote.Options{URL: "http://u:p@h", BearerTokenFile: "t"}, "set one of"},
		{remote.Options{URL: "http://h", BasicAuthPasswordFile: "p"}, "basic auth password file without a username"},
		{remote.Options{URL: "http://h", BasicAuthUsername: "u"}, "basic auth username without a password file"},
	} {
		_, err := remote.New(tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want %q", tc.opts, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter22") {
			t.Errorf("error shows the password: %v", err)
		}
	}
}

// No secret (token, password, URL userinfo, the Basic header's base64)
// appears in any error, warning or log line, even from a server that
// echoes them back.
func TestNoSecretLeaks(t *testing.T) {
	const (
		token    = "tok-8f14e45fceea167a5a36dedd4bea2543"
		password = "pw-c9f0f895fb98ab9159f51fd0297e236d"
		urlUser  = "user-45c48cce2e2d7fbdea1afc51c7c6ad26"
		urlPass  = "pass-d3d9446802a44259755d38e6d163e820"
	)
	basicB64 := "aW1tdW5lOnB3LWM5ZjBmODk1ZmI5OGFiOTE1OWY1MWZkMDI5N2UyMzZk" // immune:password
	urlB64 := "dXNlci00NWM0OGNjZTJlMmQ3ZmJkZWExYWZjNTFjN2M2YWQyNjpwYXNzLWQzZDk0NDY4MDJhNDQyNTk3NTVkMzhlNmQxNjNlODIw"
	secrets := []string{token, password, urlUser, urlPass, basicB64, urlB64}

	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	passFile := filepath.Join(dir, "password")
	writeFile(t, tokenFile, token+"\n")
	writeFile(t, passFile, password)

	var codes = []int{400, 422, 500, 503, 401, 403, 404, 200}
	var step atomic.Int32
	srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		echo := fmt.Sprintf("you sent %q from %s", r.Header.Get("Authorization"), r.URL.String())
		code := codes[int(step.Load())%len(codes)]
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		if code == 200 {
			fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":[]},"warnings":[%q]}`, echo)
			return
		}
		io.WriteString(w, errBody("bad_data", echo))
	}))
	var logs bytes.Buffer
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &logMu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	sources := []*remote.Source{
		newSource(t, remote.Options{URL: srv.URL, BearerTokenFile: tokenFile, Logger: logger, MaxAttempts: 2}),
		newSource(t, remote.Options{URL: srv.URL, BasicAuthUsername: "immune", BasicAuthPasswordFile: passFile, Logger: logger, MaxAttempts: 2}),
		newSource(t, remote.Options{URL: strings.Replace(srv.URL, "http://", "http://"+urlUser+":"+urlPass+"@", 1), Logger: logger, MaxAttempts: 2}),
	}
	var texts []string
	for i := range codes {
		step.Store(int32(i))
		for _, s := range sources {
			_, warnings, err := s.Query(context.Background(), "up", t0)
			if err != nil {
				texts = append(texts, err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err))
			}
			texts = append(texts, warnings...)
		}
	}
	// Errors before any request: a bad scheme, a dead server.
	_, err := remote.New(remote.Options{URL: "gopher://" + urlUser + ":" + urlPass + "@h"})
	texts = append(texts, err.Error())
	dead := newSource(t, remote.Options{URL: "http://" + urlUser + ":" + urlPass + "@127.0.0.1:1", Logger: logger, MaxAttempts: 2})
	_, _, err = dead.Query(context.Background(), "up", t0)
	texts = append(texts, err.Error())
	logMu.Lock()
	texts = append(texts, logs.String())
	logMu.Unlock()

	all := strings.Join(texts, "\n")
	if !strings.Contains(all, "<redacted>") {
		t.Errorf("the server echoed secrets, yet nothing was redacted:\n%s", all)
	}
	for _, s := range secrets {
		if strings.Contains(all, s) {
			t.Errorf("secret %q leaked:\n%s", s, all)
		}
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// A second Source on the same Registerer is an error, not a panic, and a
// failed New leaves nothing registered.
func TestMetricsRegistration(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := remote.New(remote.Options{URL: "http://h", Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := remote.New(remote.Options{URL: "http://h", Registerer: reg}); err == nil || !strings.Contains(err.Error(), "register metrics") {
		t.Errorf("second Source on one Registerer: %v, want a register metrics error", err)
	}
	// The second metric fails: the first is unregistered.
	fr := &failingRegisterer{Registerer: prometheus.NewRegistry(), failAt: 2}
	if _, err := remote.New(remote.Options{URL: "http://h", Registerer: fr}); err == nil {
		t.Fatal("New with a failing Registerer: no error")
	}
	if fr.registered != 0 {
		t.Errorf("%d metrics left registered after a failed New", fr.registered)
	}
}

// failingRegisterer fails its failAt-th Register and counts what stays
// registered.
type failingRegisterer struct {
	prometheus.Registerer
	failAt, calls, registered int
}

func (r *failingRegisterer) Register(c prometheus.Collector) error {
	r.calls++
	if r.calls == r.failAt {
		return errors.New("refused")
	}
	if err := r.Registerer.Register(c); err != nil {
		return err
	}
	r.registered++
	return nil
}

func (r *failingRegisterer) Unregister(c prometheus.Collector) bool {
	ok := r.Registerer.Unregister(c)
	if ok {
		r.registered--
	}
	return ok
}
