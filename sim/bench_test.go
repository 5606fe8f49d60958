package sim_test

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/immune-project/immune/sim"
)

// BenchmarkTick: the cost of advancing one instance's traffic by one
// tick of simulated time (20 requests and 2 checkouts a simulated second).
func BenchmarkTick(b *testing.B) {
	for _, step := range []time.Duration{time.Second, time.Minute} {
		b.Run(step.String(), func(b *testing.B) {
			in := sim.NewInstance(sim.InstanceOptions{Service: "checkout", Name: "c-0", Version: "v1", Seed: 1}, t0)
			in.SetTraffic(true)
			at := t0
			b.ReportAllocs()
			for b.Loop() {
				at = at.Add(step)
				in.Tick(at)
			}
		})
	}
}

// BenchmarkScrape: one GET /metrics of an instance, as Prometheus does.
func BenchmarkScrape(b *testing.B) {
	in := sim.NewInstance(sim.InstanceOptions{Service: "checkout", Name: "c-0", Version: "v1", Seed: 1}, t0)
	in.SetTraffic(true)
	in.Tick(t0.Add(time.Hour))
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		in.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		if rec.Code != 200 {
			b.Fatal(rec.Code)
		}
	}
}
