package web

import (
	"math"
	"testing"
	"time"
)

func TestNiceRange(t *testing.T) {
	for _, tc := range []struct {
		lo, hi               float64
		wantLo, wantHi, step float64
	}{
		{2.28, 3.27, 2.2, 3.4, 0.2},
		{201, 229, 200, 230, 10},
		{0.098, 0.152, 0.09, 0.16, 0.01},
		{5, 5, 4.4, 5.6, 0.2},
		{0, 0, -1, 1, 0.5},
		{-3, 7, -4, 8, 2},
	} {
		lo, hi, step := niceRange(tc.lo, tc.hi, 5)
		if math.Abs(lo-tc.wantLo) > 1e-9 || math.Abs(hi-tc.wantHi) > 1e-9 || math.Abs(step-tc.step) > 1e-9 {
			t.Errorf("niceRange(%v, %v) = %v, %v, %v, want %v, %v, %v", tc.lo, tc.hi, lo, hi, step, tc.wantLo, tc.wantHi, tc.step)
		}
	}
}

func TestTimeStep(t *testing.T) {
	for _, tc := range []struct {
		span, want time.Duration
	}{
		{5 * time.Minute, time.Minute},
		{85 * time.Minute, 15 * time.Minute},
		{3 * time.Hour, 30 * time.Minute},
		{30 * time.Hour, 6 * time.Hour},
		{30 * 24 * time.Hour, 5 * 24 * time.Hour},
	} {
		if got := timeStep(tc.span, 7); got != tc.want {
			t.Errorf("timeStep(%v) = %v, want %v", tc.span, got, tc.want)
		}
	}
}

func TestPathBreaksAtNaN(t *testing.T) {
	t0 := time.Unix(0, 0)
	ps := []Point{{t0, 1}, {t0.Add(time.Minute), 2}, {t0.Add(2 * time.Minute), math.NaN()}, {t0.Add(3 * time.Minute), 3}, {t0.Add(4 * time.Minute), math.Inf(1)}}
	x := func(t time.Time) float64 { return float64(t.Unix()) / 60 }
	y := func(v float64) float64 { return v * 10 }
	if got, want := path(ps, x, y), "M0.0,10.0 L1.0,20.0 M3.0,30.0"; got != want {
		t.Errorf("path = %q, want %q", got, want)
	}
}

func TestChart(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 2, 50, 0, 0, time.UTC)
	empty := newChart("c", KPIReport{Name: "x", Canary: []Point{{t0, math.NaN()}}}, t0, time.Time{}, nil)
	if !empty.Empty {
		t.Error("a chart without a finite point is not empty")
	}
	rev := t0.Add(31 * time.Minute)
	k := KPIReport{Name: "x",
		Baseline: []Point{{t0.Add(-10 * time.Minute), 5}, {t0, 7}},
		Canary:   []Point{{t0.Add(time.Minute), 9}, {t0.Add(20 * time.Minute), 11}}}
	c := newChart("c", k, t0, t0.Add(30*time.Minute), &rev)
	if c.Empty || len(c.Markers) != 3 {
		t.Fatalf("chart = %+v", c)
	}
	// The time axis spans the data and the markers: the revert is at the
	// right edge, the first baseline point at the left.
	if c.Markers[2].X != c.Right || c.Markers[2].Anchor != "end" {
		t.Errorf("revert marker at %v (%s), want %v (end)", c.Markers[2].X, c.Markers[2].Anchor, c.Right)
	}
	// Labels sit 4 units off their line, on the side they are anchored to.
	if m := c.Markers[2]; m.LabelX != m.X-4 {
		t.Errorf("revert label at %v, want %v", m.LabelX, m.X-4)
	}
	if m := c.Markers[0]; m.Anchor != "start" || m.LabelX != m.X+4 {
		t.Errorf("deploy label at %v (%s), want %v (start)", m.LabelX, m.Anchor, m.X+4)
	}
	if c.Baseline[:6] != "M64.0," {
		t.Errorf("baseline starts %q, want at the left edge", c.Baseline)
	}
	if len(c.YTicks) < 3 || c.YTicks[0].Label != "4" || c.YTicks[len(c.YTicks)-1].Label != "12" {
		t.Errorf("y ticks %+v", c.YTicks)
	}
	if c.XTicks[0].Label != "02:40" {
		t.Errorf("first x tick %+v", c.XTicks[0])
	}
}

func TestFormats(t *testing.T) {
	for _, tc := range []struct {
		got, want string
	}{
		{num(3.1), "3.1"}, {num(2.4123), "2.412"}, {num(212), "212"}, {num(-0.69), "−0.69"}, {num(0.00012), "0.00012"},
		{num(1234567), "1.23e+06"}, {num(math.NaN()), "—"}, {num(0), "0"}, {num(12345.6), "12346"},
		{signed(6), "+6"}, {signed(-3), "−3"}, {signed(0), "0"},
		{pval(0.0004, 0.005), "0.0004"}, {threshold(0.0004, 0.005), "0.005"}, {pval(3.2e-7, 0.005), "3.2e-07"}, {pval(1, 0.005), "1"},
		{pval(math.NaN(), math.NaN()), "—"}, {threshold(math.NaN(), math.NaN()), "—"}, {threshold(0.2, math.NaN()), "—"},
		// Different numbers never read the same: 4 fixed decimals printed
		// both of these as 0.0005.
		{pval(0.00049, 0.0005), "0.00049"}, {threshold(0.00049, 0.0005), "0.0005"},
		{duration(45 * time.Second), "45s"}, {duration(25 * time.Minute), "25m"}, {duration(25*time.Minute + 10*time.Second), "25m10s"},
		{duration(62 * time.Minute), "1h02m"}, {duration(-time.Minute), "-1m"},
		{slug("latency p99/GET"), "latency-p99-get"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
