package sim_test

import (
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/immune-project/immune/sim"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// scrape GETs url's /metrics and parses it as Prometheus would.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /metrics: %s: %s", resp.Status, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return mf
}

// value sums the samples of a counter or gauge family whose labels
// include want.
func value(t *testing.T, mf map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	t.Helper()
	f, ok := mf[name]
	if !ok {
		t.Fatalf("no %s in the scrape", name)
	}
	var sum float64
	found := false
next:
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		found = true
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	if !found {
		t.Fatalf("no %s%v in the scrape", name, want)
	}
	return sum
}

// serve runs an instance on version for d of simulated traffic, in 15 s
// ticks, behind an httptest server.
func serve(t *testing.T, version string, seed uint64, d time.Duration) string {
	t.Helper()
	in := sim.NewInstance(sim.InstanceOptions{Service: "checkout", Name: "checkout-0", Version: version, Seed: seed}, t0)
	in.SetTraffic(true)
	for at := t0; !at.After(t0.Add(d)); at = at.Add(15 * time.Second) {
		in.Tick(at)
	}
	srv := httptest.NewServer(in)
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestBadVersionConvertsLess: scraped over HTTP and parsed with expfmt,
// v2-bad's conversion is measurably below v1's. Two simulated hours at 2
// checkouts a second: ~14 400 checkouts, so the standard error of a
// conversion near 0.3 is ~0.004; the bounds are several times that.
func TestBadVersionConvertsLess(t *testing.T) {
	conv := map[string]float64{}
	for _, v := range []string{"v1", "v2-bad"} {
		mf := scrape(t, serve(t, v, 42, 2*time.Hour))
		started := value(t, mf, "checkout_started_total", map[string]string{"version": v})
		completed := value(t, mf, "checkout_completed_total", map[string]string{"version": v})
		if started < 12000 || started > 16800 {
			t.Fatalf("%s: %v checkouts started in 2 h at 2/s", v, started)
		}
		conv[v] = completed / started
	}
	if math.Abs(conv["v1"]-0.3) > 0.02 {
		t.Errorf("v1 converts %.4f, want 0.3 ± 0.02", conv["v1"])
	}
	if r := conv["v2-bad"] / conv["v1"]; r < 0.6 || r > 0.8 {
		t.Errorf("v2-bad converts %.4f, v1 %.4f: ratio %.3f, want 0.7 ± 0.1", conv["v2-bad"], conv["v1"], r)
	}
}

// TestSlowVersion: v2-slow answers more 500s and slower.
func TestSlowVersion(t *testing.T) {
	type stats struct{ errRatio, under100ms float64 }
	got := map[string]stats{}
	for _, v := range []string{"v1", "v2-slow"} {
		mf := scrape(t, serve(t, v, 7, 30*time.Minute))
		ok := value(t, mf, "http_requests_total", map[string]string{"code": "200"})
		bad := value(t, mf, "http_requests_total", map[string]string{"code": "500"})
		h := mf["http_request_duration_seconds"].GetMetric()[0].GetHistogram()
		if float64(h.GetSampleCount()) != ok+bad {
			t.Fatalf("%s: histogram counts %d requests, counter %v", v, h.GetSampleCount(), ok+bad)
		}
		var under float64
		for _, b := range h.GetBucket() {
			if b.GetUpperBound() == 0.1 {
				under = float64(b.GetCumulativeCount()) / float64(h.GetSampleCount())
			}
		}
		got[v] = stats{bad / (ok + bad), under}
	}
	// v1: median 80 ms, sigma 0.5: P(< 100 ms) = Φ(ln(1.25)/0.5) ≈ 0.67;
	// v2-slow: median 240 ms: P(< 100 ms) = Φ(ln(0.417)/0.5) ≈ 0.04.
	if g := got["v1"]; g.errRatio > 0.01 || math.Abs(g.under100ms-0.67) > 0.03 {
		t.Errorf("v1: %+v, want errors ≈ 0.002 and 67%% under 100 ms", g)
	}
	if g := got["v2-slow"]; math.Abs(g.errRatio-0.052) > 0.01 || g.under100ms > 0.08 {
		t.Errorf("v2-slow: %+v, want errors ≈ 0.052 and ~4%% under 100 ms", g)
	}
}

// TestReproducible: the same seed gives the same counters; another seed
// other ones.
func TestReproducible(t *testing.T) {
	count := func(seed uint64) float64 {
		mf := scrape(t, serve(t, "v1", seed, 10*time.Minute))
		return value(t, mf, "checkout_completed_total", nil) + 1e6*value(t, mf, "http_requests_total", nil)
	}
	a, b, c := count(1), count(1), count(2)
	if a != b {
		t.Errorf("seed 1 twice: %v and %v", a, b)
	}
	if a == c {
		t.Errorf("seeds 1 and 2 both gave %v", a)
	}
}

// TestLifecycle: no traffic out of the ServerSet; a stopped process
// answers 503; a restart starts the counters again, on the new version.
func TestLifecycle(t *testing.T) {
	in := sim.NewInstance(sim.InstanceOptions{Service: "checkout", Name: "c-0", Version: "v1", Seed: 3}, t0)
	srv := httptest.NewServer(in)
	defer srv.Close()
	in.Tick(t0.Add(time.Hour))
	if n := value(t, scrape(t, srv.URL), "http_requests_total", nil); n != 0 {
		t.Fatalf("%v requests while out of traffic", n)
	}
	in.SetTraffic(true)
	in.Tick(t0.Add(time.Hour + time.Minute))
	mf := scrape(t, srv.URL)
	if n := value(t, mf, "http_requests_total", map[string]string{"version": "v1"}); n < 900 || n > 1500 {
		t.Fatalf("%v requests in a minute at 20/s", n)
	}
	if st := value(t, mf, "process_start_time_seconds", nil); st != float64(t0.Unix()) {
		t.Errorf("process_start_time_seconds %v, want %d", st, t0.Unix())
	}
	if v := value(t, mf, "service_build_info", map[string]string{"service": "checkout", "version": "v1"}); v != 1 {
		t.Errorf("service_build_info = %v", v)
	}
	if rec := in.SelfTest(t0); !rec.Passed || rec.Version != "v1" || rec.Instance != "c-0" {
		t.Errorf("self test of v1: %+v", rec)
	}
	in.Stop()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("stopped: GET /metrics %s, want 503", resp.Status)
	}
	in.SetTraffic(true) // a stopped process takes none
	if up, traffic := in.Up(); up || traffic {
		t.Fatalf("stopped: up %v, in traffic %v", up, traffic)
	}
	restart := t0.Add(2 * time.Hour)
	in.Start(restart, "v2-broken")
	mf = scrape(t, srv.URL)
	if n := value(t, mf, "http_requests_total", map[string]string{"version": "v2-broken"}); n != 0 {
		t.Fatalf("after a restart: %v requests, want counters from 0", n)
	}
	if rec := in.SelfTest(restart); rec.Passed || rec.Version != "v2-broken" || rec.Detail == "" {
		t.Errorf("self test of v2-broken: %+v, want a failure with a detail", rec)
	}
}

func TestClock(t *testing.T) {
	wall := t0
	c := sim.NewClock(func() time.Time { return wall }, 60)
	if got := c.Now(); !got.Equal(t0) {
		t.Fatalf("origin %v", got)
	}
	wall = wall.Add(10 * time.Second)
	if got := c.Now(); !got.Equal(t0.Add(10 * time.Minute)) {
		t.Fatalf("10 s at speed 60: %v, want +10m", got.Sub(t0))
	}
	if c.Speed() != 60 || !c.Wall().Equal(wall) {
		t.Fatalf("speed %v wall %v", c.Speed(), c.Wall())
	}
	if sim.NewClock(nil, 0).Speed() != 1 {
		t.Fatal("speed 0 is not 1")
	}
}
