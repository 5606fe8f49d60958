package scrape

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/immune-project/immune/collector/embedded"
)

// t0 is the time of the first scrape in deterministic tests.
var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func openStore(t testing.TB) *embedded.Store {
	t.Helper()
	s, err := embedded.Open(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// exposer is an HTTP target whose answer the test sets.
type exposer struct {
	mu          sync.Mutex
	status      int
	contentType string
	body        string
	delay       time.Duration
	accept      string // the Accept header of the last request
	srv         *httptest.Server
}

func newExposer(t testing.TB, contentType, body string) *exposer {
	t.Helper()
	e := &exposer{status: http.StatusOK, contentType: contentType, body: body}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		status, ct, body, delay := e.status, e.contentType, e.body, e.delay
		e.accept = r.Header.Get("Accept")
		e.mu.Unlock()
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", ct)
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *exposer) set(body string) {
	e.mu.Lock()
	e.body = body
	e.mu.Unlock()
}

func (e *exposer) address() string { return strings.TrimPrefix(e.srv.URL, "http://") }

const (
	textType = "text/plain; version=0.0.4; charset=utf-8"
	omType   = "application/openmetrics-text; version=1.0.0; charset=utf-8"
)

// newTestScraper scrapes e into store with labels, its own metrics
// registered in reg (when not nil).
func newTestScraper(t testing.TB, store Appendable, e *exposer, opts Options, ls map[string]string) *scraper {
	t.Helper()
	o := newSettings(opts)
	if opts.Registerer != nil {
		if err := o.metrics.register(opts.Registerer); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(o.client.CloseIdleConnections)
	return newScraper(Target{Address: e.address(), Labels: ls}, store, o)
}

// series returns the series of query at ts as sorted lines "labels value".
func series(t testing.TB, s *embedded.Store, query string, ts time.Time) []string {
	t.Helper()
	vec, _, err := s.Query(context.Background(), query, ts)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, el := range vec {
		out = append(out, fmt.Sprintf("%s %g", el.Labels, el.Sample.V))
	}
	slices.Sort(out)
	return out
}

func wantLines(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s:\ngot  %q\nwant %q", what, got, want)
	}
}

var checkoutLabels = map[string]string{"service": "checkout", "instance": "checkout-1", "version": "v1"}

func TestScrapeFormats(t *testing.T) {
	for _, tc := range []struct {
		name, contentType, body string
	}{
		{"text", textType, `# HELP requests_total Requests.
# TYPE requests_total counter
requests_total{code="200"} 10
requests_total{code="500"} 1 1700000000000
# TYPE temperature gauge
temperature 21.5
`},
		{"openmetrics", omType, `# TYPE requests counter
# HELP requests Requests.
requests_total{code="200"} 10
requests_created{code="200"} 1.7e9
requests_total{code="500"} 1
# TYPE temperature gauge
temperature 21.5
# EOF
`},
		{"no content type: text", "", "requests_total{code=\"200\"} 10\nrequests_total{code=\"500\"} 1\ntemperature 21.5\n"},
		{"unknown content type: text", "application/json", "requests_total{code=\"200\"} 10\nrequests_total{code=\"500\"} 1\ntemperature 21.5\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := openStore(t)
			e := newExposer(t, tc.contentType, tc.body)
			s := newTestScraper(t, Embedded{store}, e, Options{}, checkoutLabels)
			rep := s.scrape(context.Background(), t0)
			if rep.Err != nil || rep.Samples != 3 || rep.Appended != 3 {
				t.Fatalf("report %+v, want 3 samples appended and no error", rep)
			}
			// Exposed timestamps are not honoured: every sample is stamped
			// with the scrape's time.
			wantLines(t, "scraped", series(t, store, `{__name__=~"requests_total|temperature"}`, t0),
				`requests_total{code="200", instance="checkout-1", service="checkout", version="v1"} 10`,
				`requests_total{code="500", instance="checkout-1", service="checkout", version="v1"} 1`,
				`temperature{instance="checkout-1", service="checkout", version="v1"} 21.5`)
			wantLines(t, "report", series(t, store, `{__name__=~"up|scrape_samples_scraped"}`, t0),
				`scrape_samples_scraped{instance="checkout-1", service="checkout", version="v1"} 3`,
				`up{instance="checkout-1", service="checkout", version="v1"} 1`)
			if !strings.HasPrefix(e.accept, "application/openmetrics-text;version=1.0.0") || !strings.Contains(e.accept, "text/plain;version=0.0.4") {
				t.Errorf("Accept %q", e.accept)
			}
		})
	}
}

// TestScrapeFailures: a failed scrape stores none of the body, reports up
// 0 and counts the reason.
func TestScrapeFailures(t *testing.T) {
	const good = "a 1\nb 2\nc 3\n"
	for _, tc := range []struct {
		name        string
		contentType string
		body        string
		status      int
		delay       time.Duration
		opts        Options
		reason      string
		err         error
		msg         string
	}{
		{name: "status", body: good, status: 503, reason: reasonStatus, err: ErrStatus, msg: "503 Service Unavailable"},
		{name: "timeout", body: good, delay: 5 * time.Second, opts: Options{Timeout: 100 * time.Millisecond}, reason: reasonTimeout, err: ErrTimeout, msg: "after 100ms"},
		{name: "body too large", body: good + strings.Repeat("# padding\n", 20), opts: Options{BodySizeLimit: 100}, reason: reasonBodySize, err: ErrBodySizeLimit, msg: "more than 100 bytes"},
		{name: "bad text", body: good + "d{x=} 4\n", reason: reasonParse, err: ErrParse},
		{name: "bad value", body: "a one\n", reason: reasonParse, err: ErrParse},
		{name: "openmetrics without EOF", contentType: omType, body: good, reason: reasonParse, err: ErrParse, msg: "EOF"},
		{name: "series limit", body: good, opts: Options{SeriesLimit: 2}, reason: reasonSeriesLimit, err: ErrSeriesLimit, msg: "more than 2 series"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := openStore(t)
			ct := tc.contentType
			if ct == "" {
				ct = textType
			}
			e := newExposer(t, ct, tc.body)
			e.status, e.delay = cmpOr(tc.status, 200), tc.delay
			reg := prometheus.NewPedanticRegistry()
			tc.opts.Registerer = reg
			s := newTestScraper(t, Embedded{store}, e, tc.opts, checkoutLabels)
			rep := s.scrape(context.Background(), t0)
			if !errors.Is(rep.Err, tc.err) || rep.Reason != tc.reason || !strings.Contains(rep.Err.Error(), tc.msg) {
				t.Fatalf("report %+v (%v), want reason %s, error %v containing %q", rep, rep.Err, tc.reason, tc.err, tc.msg)
			}
			if !strings.Contains(rep.Err.Error(), e.srv.URL) {
				t.Errorf("the error does not name the target: %v", rep.Err)
			}
			wantLines(t, "stored", series(t, store, `{__name__=~"a|b|c|d|up"}`, t0),
				`up{instance="checkout-1", service="checkout", version="v1"} 0`)
			if got := testutil.ToFloat64(s.o.metrics.failures.WithLabelValues(tc.reason)); got != 1 {
				t.Errorf("immune_scrape_failures_total{reason=%q} %v, want 1", tc.reason, got)
			}
			if got := testutil.ToFloat64(s.o.metrics.appended); got != 0 {
				t.Errorf("immune_scrape_samples_appended_total %v, want 0", got)
			}
		})
	}
}

func cmpOr(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}

func TestTargetLabelsWin(t *testing.T) {
	store := openStore(t)
	e := newExposer(t, textType, `x{service="other",exported_service="older",version="",shard="7",job="j"} 1`+"\n")
	s := newTestScraper(t, Embedded{store}, e, Options{}, map[string]string{"service": "checkout", "instance": "i", "version": "v2", "shard": ""})
	if rep := s.scrape(context.Background(), t0); rep.Err != nil {
		t.Fatal(rep.Err)
	}
	// A target label with an empty value (shard) is absent, and still
	// keeps the scraped one out.
	wantLines(t, "labels", series(t, store, `x`, t0),
		`x{exported_exported_service="other", exported_service="older", exported_shard="7", instance="i", job="j", service="checkout", version="v2"} 1`)
}

// TestStaleness: a series missing from a scrape, every series of a failed
// scrape, and every series of a removed target end with a staleness
// marker: an instant query finds them no more, at once rather than after
// the 5 minutes of lookback.
func TestStaleness(t *testing.T) {
	store := openStore(t)
	e := newExposer(t, textType, "a 1\nb 1\nc 1\n")
	reg := prometheus.NewPedanticRegistry()
	s := newTestScraper(t, Embedded{store}, e, Options{Registerer: reg}, map[string]string{"instance": "i"})
	ctx := context.Background()
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * 15 * time.Second) }
	const names = `{__name__=~"a|b|c|d|up"}`

	s.scrape(ctx, at(0))
	e.set("a 2\nc 2\nd 2\n")
	s.scrape(ctx, at(1))
	wantLines(t, "b gone", series(t, store, names, at(1)),
		`a{instance="i"} 2`, `c{instance="i"} 2`, `d{instance="i"} 2`, `up{instance="i"} 1`)
	// b is still there just before its marker.
	wantLines(t, "b before its marker", series(t, store, `b`, at(1).Add(-time.Millisecond)), `b{instance="i"} 1`)

	e.set("a 3\nc 3\nd 3\n")
	s.scrape(ctx, at(2)) // nothing goes stale: the full scan is skipped
	e.set("garbage{")
	s.scrape(ctx, at(3))
	wantLines(t, "failed scrape", series(t, store, names, at(3)), `up{instance="i"} 0`)
	if len(s.cache) != 3 {
		t.Errorf("after the failure the cache holds %d series, want a, c, d", len(s.cache))
	}
	e.set("a 4\n")
	s.scrape(ctx, at(4))
	wantLines(t, "back", series(t, store, names, at(4)), `a{instance="i"} 4`, `up{instance="i"} 1`)
	if len(s.cache) != 1 {
		t.Errorf("the cache holds %d series, want 1", len(s.cache))
	}

	if err := s.markStale(ctx, at(5)); err != nil {
		t.Fatal(err)
	}
	wantLines(t, "removed", series(t, store, `{__name__=~"a|b|c|d|up|scrape_.*"}`, at(5)))
	// 1 (b) + 3 (a, c, d after the failure) + 1 (a) + 3 report series.
	if got := testutil.ToFloat64(s.o.metrics.stale); got != 8 {
		t.Errorf("immune_scrape_stale_markers_total %v, want 8", got)
	}
	// The samples before the markers remain: a range query over the
	// past sees them.
	m, _, err := store.QueryRange(ctx, `a`, at(0), at(4), 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 1 || len(m[0].Samples) != 4 { // at(3) is stale
		t.Errorf("a over the past: %v, want 4 samples", m)
	}
}

// TestRateBySelector: rate() over scraped counters, selected by the
// version label as the canary and baseline selectors of a rule file do.
func TestRateBySelector(t *testing.T) {
	store := openStore(t)
	ctx := context.Background()
	v1 := newExposer(t, textType, "")
	v2 := newExposer(t, textType, "")
	s1 := newTestScraper(t, Embedded{store}, v1, Options{}, map[string]string{"service": "s", "instance": "a", "version": "v1"})
	s2 := newTestScraper(t, Embedded{store}, v2, Options{}, map[string]string{"service": "s", "instance": "b", "version": "v2"})
	for i := range 9 {
		at := t0.Add(time.Duration(i) * 15 * time.Second)
		v1.set(fmt.Sprintf("x_total %d\n", 10*i)) // 10 per 15 s
		v2.set(fmt.Sprintf("x_total %d\n", 30*i)) // 30 per 15 s
		for _, s := range []*scraper{s1, s2} {
			if rep := s.scrape(ctx, at); rep.Err != nil {
				t.Fatal(rep.Err)
			}
		}
	}
	end := t0.Add(2 * time.Minute)
	for _, tc := range []struct {
		query string
		want  float64
	}{
		{`rate(x_total{service="s",version="v2"}[1m])`, 2},
		{`rate(x_total{service="s",version="v1"}[1m])`, 10.0 / 15},
		{`sum(rate(x_total{service="s",version!="v2"}[1m]))`, 10.0 / 15},
		{`avg_over_time(up{service="s"}[2m])`, 1},
	} {
		vec, _, err := store.Query(ctx, tc.query, end)
		if err != nil {
			t.Fatal(err)
		}
		if len(vec) == 0 || math.Abs(vec[0].Sample.V-tc.want) > 1e-9 {
			t.Errorf("%s: %v, want %g", tc.query, vec, tc.want)
		}
	}
}

// TestManager: loops at a short interval against real HTTP targets; a
// removed target's series end.
func TestManager(t *testing.T) {
	store := openStore(t)
	a := newExposer(t, textType, "m 1\n")
	b := newExposer(t, omType, "m 2\n# EOF\n")
	reg := prometheus.NewPedanticRegistry()
	mgr, err := NewManager(Embedded{store}, Options{Interval: 200 * time.Millisecond, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	mgr.SetTargets(SourceStatic, Config{Static: []StaticConfig{
		{Targets: []string{a.address(), b.address()}, Labels: map[string]string{"service": "s"}},
	}}.StaticTargets())
	go func() { done <- mgr.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	// The same target from a second source is scraped once.
	mgr.SetTargets("other", []Target{{Address: a.address(), Labels: map[string]string{"service": "s", "instance": a.address()}}})

	eventually(t, "both targets up", func() bool {
		ts := mgr.Targets()
		return len(ts) == 2 && ts[0].Last.Err == nil && !ts[0].Last.At.IsZero() && ts[1].Last.Err == nil && !ts[1].Last.At.IsZero()
	})
	if got := testutil.ToFloat64(mgr.o.metrics.targets); got != 2 {
		t.Errorf("immune_scrape_targets %v, want 2", got)
	}
	eventuallyLines(t, "scraped", func() []string { return series(t, store, `m`, time.Now()) },
		fmt.Sprintf(`m{instance="%s", service="s"} 1`, a.address()),
		fmt.Sprintf(`m{instance="%s", service="s"} 2`, b.address()))

	mgr.SetTargets(SourceStatic, []Target{{Address: a.address(), Labels: map[string]string{"service": "s", "instance": a.address()}}})
	eventually(t, "b's series end", func() bool {
		return len(series(t, store, fmt.Sprintf(`{instance=%q}`, b.address()), time.Now())) == 0
	})
	if ts := mgr.Targets(); len(ts) != 1 || ts[0].URL != a.srv.URL+"/metrics" {
		t.Errorf("targets %+v, want a only", ts)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP immune_scrape_targets Targets being scraped.
# TYPE immune_scrape_targets gauge
immune_scrape_targets 1
`), "immune_scrape_targets"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(reg, "immune_scrape_attempts_total", "immune_scrape_duration_seconds",
		"immune_scrape_failures_total", "immune_scrape_samples_appended_total", "immune_scrape_stale_markers_total"); err != nil || n != 11 {
		t.Errorf("%d self-metric series (%v), want 11", n, err)
	}
}

// eventuallyLines waits until get returns want (sorted): a loop's
// latest scrape may have failed on a loaded machine (its series are then
// stale until the next one).
func eventuallyLines(t *testing.T, what string, get func() []string, want ...string) {
	t.Helper()
	slices.Sort(want)
	var got []string
	deadline := time.Now().Add(20 * time.Second)
	for {
		if got = get(); slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s, within 20s:\ngot  %q\nwant %q", what, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 20s: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestOffset(t *testing.T) {
	interval := 15 * time.Second
	seen := map[time.Duration]bool{}
	for i := range 100 {
		key := fmt.Sprintf("http://10.0.0.%d:80/metrics{}", i)
		for _, now := range []time.Time{t0, t0.Add(7 * time.Second), t0.Add(time.Hour + 123*time.Millisecond)} {
			o := offset(key, interval, now)
			if o < 0 || o >= interval {
				t.Fatalf("offset %v outside [0, %v)", o, interval)
			}
			// The phase of the first scrape does not depend on now.
			phase := (now.Add(o).UnixNano()) % int64(interval)
			if want := (t0.Add(offset(key, interval, t0)).UnixNano()) % int64(interval); phase != want {
				t.Fatalf("%s: phase %v at %v, %v at t0", key, phase, now, want)
			}
			seen[o/time.Second] = true
		}
	}
	if len(seen) < 10 {
		t.Errorf("100 targets start in %d distinct seconds of 15: not spread", len(seen))
	}
}

func TestNewManagerErrors(t *testing.T) {
	if _, err := NewManager(nil, Options{}); !errors.Is(err, ErrNoStore) {
		t.Errorf("no store: %v", err)
	}
	reg := prometheus.NewRegistry()
	store := openStore(t)
	if _, err := NewManager(Embedded{store}, Options{Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := NewManager(Embedded{store}, Options{Registerer: reg}); err == nil || !strings.Contains(err.Error(), "register metrics") {
		t.Errorf("registering twice: %v", err)
	}
}
