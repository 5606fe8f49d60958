package analysis

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/immune-project/immune/collector"
	"github.com/immune-project/immune/collector/embedded"
	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/detector"
	"github.com/immune-project/immune/rules"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2024, 3, 4, 12, 0, 0, 0, time.UTC)

const step = 5 * time.Minute

func parseRules(t *testing.T, src string) *rules.File {
	t.Helper()
	f, errs := rules.Parse("test.yaml", []byte(src))
	if len(errs) > 0 {
		t.Fatalf("rules: %v", errs)
	}
	return f
}

// series makes a 5-minute series from `from` with values f(i).
func series(from time.Time, n int, f func(i int) float64, kv ...string) collector.Series {
	l := collector.Labels{}
	for i := 0; i+1 < len(kv); i += 2 {
		l[kv[i]] = kv[i+1]
	}
	s := collector.Series{Labels: l}
	for i := range n {
		s.Samples = append(s.Samples, collector.Sample{T: from.Add(time.Duration(i) * step), V: f(i)})
	}
	return s
}

// noise returns N(mu, sd) draws that change from mu to mu+shift at the
// deploy time t0 (samples after t0).
func noise(seed uint64, from time.Time, mu, sd, shift float64) func(i int) float64 {
	r := rand.New(rand.NewPCG(seed, 7))
	return func(i int) float64 {
		v := mu + sd*r.NormFloat64()
		if from.Add(time.Duration(i) * step).After(t0) {
			v += shift
		}
		return v
	}
}

func store(t testing.TB, ss ...collector.Series) *embedded.Store {
	t.Helper()
	s, err := embedded.Open(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Write(context.Background(), ss); err != nil {
		t.Fatal(err)
	}
	return s
}

const beforeRules = `
service: checkout
analysis: {baseline: before, lookback: 4h, window: 2h, step: 5m, alpha: 0.01}
kpis:
  - name: conversion
    query: conversion
    bad: decrease
`

func TestReplayBefore(t *testing.T) {
	// A day of history: 289 samples up to the deploy, so 289 − 2·48 − 24 + 1
	// = 170 placebo deploys with a 4h
	// lookback and a 2h window, all ending before the deploy's lookback.
	from := t0.Add(-24 * time.Hour)
	tests := []struct {
		name      string
		shift     float64
		want      detector.Outcome
		wantLooks int // 0: any
	}{
		{"harmless", 0, detector.Pass, 24},
		{"harmless direction", +20, detector.Pass, 24},
		{"drop of 4 sd", -20, detector.Fail, 0},
	}
	f := parseRules(t, beforeRules)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := store(t, series(from, 24*12+24+1, noise(1, from, 100, 5, tt.shift), "__name__", "conversion"))
			dec, err := Replay(context.Background(), src, f, deploy.Deploy{ID: "d1", Time: t0}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if dec.Verdict.Outcome != tt.want {
				t.Fatalf("verdict %v, want %v\n%s", dec.Verdict.Outcome, tt.want, strings.Join(dec.Verdict.Explanation(), "\n"))
			}
			if tt.wantLooks != 0 && dec.Looks != tt.wantLooks {
				t.Errorf("looks %d, want %d", dec.Looks, tt.wantLooks)
			}
			if dec.Planned != 24 || dec.Alpha != 0.01 {
				t.Errorf("planned %d alpha %v, want 24 and 0.01", dec.Planned, dec.Alpha)
			}
			if k := dec.Verdict.KPIs[0]; k.Placebos != 170 {
				t.Errorf("calibrated on %d placebos, want 170: %s", k.Placebos, k.Sentence)
			}
			if tt.want == detector.Fail {
				if !dec.DecidedAt.Equal(dec.At) || dec.Looks >= 24 {
					t.Errorf("fail decided at %v (look %d), want early and equal to At %v", dec.DecidedAt, dec.Looks, dec.At)
				}
				k := dec.Verdict.KPIs[0]
				if n := len(dec.Verdict.KPIs); n != 1 || k.Decision == nil || k.Decision.NCanary != float64(dec.Looks) || k.Decision.NBaseline != 48 {
					t.Errorf("kpi sizes: %+v, want canary %d and baseline 48", k.Decision, dec.Looks)
				}
			} else if !dec.DecidedAt.IsZero() {
				t.Errorf("DecidedAt %v set for %v", dec.DecidedAt, dec.Verdict.Outcome)
			}
		})
	}
}

// TestNoLookAhead: the verdict at every look is the same whether or not
// the store holds the data after that look.
func TestNoLookAhead(t *testing.T) {
	from := t0.Add(-24 * time.Hour)
	f := parseRules(t, beforeRules)
	d := deploy.Deploy{ID: "d1", Time: t0}
	for _, shift := range []float64{0, -8} {
		full := series(from, 24*12+24+1, noise(3, from, 100, 5, shift), "__name__", "conversion")
		all := store(t, full)
		// The calibration reads nothing after the deploy.
		upTo := full
		upTo.Samples = nil
		for _, s := range full.Samples {
			if !s.T.After(t0) {
				upTo.Samples = append(upTo.Samples, s)
			}
		}
		before, err := Calibrate(context.Background(), store(t, upTo), f, d)
		if err != nil {
			t.Fatal(err)
		}
		after, err := Calibrate(context.Background(), all, f, d)
		if err != nil {
			t.Fatal(err)
		}
		if b, a := before["conversion"], after["conversion"]; b.N() == 0 || !slices.Equal(b.Maxima, a.Maxima) {
			t.Fatalf("shift %v: calibration with data up to the deploy: %d placebos; with all data: %d", shift, b.N(), a.N())
		}
		// Each look needs a store of its own (opening one takes a while):
		// the first looks, where the samples are few, and spread to the last.
		for _, look := range []int{1, 2, 3, 5, 8, 13, 21, Looks(f.Analysis)} {
			at := t0.Add(time.Duration(look) * step)
			cut := full
			cut.Samples = nil
			for _, s := range full.Samples {
				if !s.T.After(at) {
					cut.Samples = append(cut.Samples, s)
				}
			}
			wantCal, err := Calibrate(context.Background(), all, f, d)
			if err != nil {
				t.Fatal(err)
			}
			want, err := JudgeAt(context.Background(), all, f, d, at, wantCal)
			if err != nil {
				t.Fatal(err)
			}
			cutStore := store(t, cut)
			gotCal, err := Calibrate(context.Background(), cutStore, f, d)
			if err != nil {
				t.Fatal(err)
			}
			got, err := JudgeAt(context.Background(), cutStore, f, d, at, gotCal)
			if err != nil {
				t.Fatal(err)
			}
			w, g := want.KPIs[0], got.KPIs[0]
			if got.Outcome != want.Outcome || g.PValue != w.PValue || g.Effect != w.Effect || g.Placebos != w.Placebos || g.Placebos == 0 {
				t.Fatalf("shift %v, look %d: with data up to the look %v p=%v effect=%v; with all data %v p=%v effect=%v",
					shift, look, got.Outcome, g.PValue, g.Effect, want.Outcome, w.PValue, w.Effect)
			}
		}
	}
}

// TestNoLookAheadEventsTrials: TestNoLookAhead for an events/trials KPI,
// whose calibration reads two series: the calibration is the same with or
// without the data after the deploy, and the verdict at each look the
// same with or without the data after the look.
func TestNoLookAheadEventsTrials(t *testing.T) {
	from := t0.Add(-24 * time.Hour)
	f := parseRules(t, `
service: api
analysis: {baseline: before, lookback: 4h, window: 2h, step: 5m, alpha: 0.01}
kpis:
  - name: errors
    events: errors
    trials: requests
    bad: increase
`)
	d := deploy.Deploy{ID: "d1", Time: t0}
	n := 24*12 + 24 + 1
	errs := noise(5, from, 50, 7, 15)
	full := []collector.Series{
		series(from, n, func(i int) float64 { return math.Round(math.Max(0, errs(i))) }, "__name__", "errors"),
		series(from, n, func(int) float64 { return 10000 }, "__name__", "requests"),
	}
	all := store(t, full...)
	cutAt := func(at time.Time) []collector.Series {
		var cut []collector.Series
		for _, fs := range full {
			c := fs
			c.Samples = nil
			for _, s := range fs.Samples {
				if !s.T.After(at) {
					c.Samples = append(c.Samples, s)
				}
			}
			cut = append(cut, c)
		}
		return cut
	}
	// The calibration reads nothing after the deploy: the same from a
	// store that ends there.
	before, err := Calibrate(context.Background(), store(t, cutAt(t0)...), f, d)
	if err != nil {
		t.Fatal(err)
	}
	after, err := Calibrate(context.Background(), all, f, d)
	if err != nil {
		t.Fatal(err)
	}
	if b, a := before["errors"], after["errors"]; b.N() == 0 || !slices.Equal(b.Maxima, a.Maxima) {
		t.Fatalf("calibration with data up to the deploy: %d placebos; with all data: %d (maxima equal: %v)", b.N(), a.N(), slices.Equal(b.Maxima, a.Maxima))
	}
	for _, look := range []int{1, 2, 5, 13, Looks(f.Analysis)} {
		at := t0.Add(time.Duration(look) * step)
		cut := cutAt(at)
		judge := func(src collector.Source) detector.Verdict {
			cal, err := Calibrate(context.Background(), src, f, d)
			if err != nil {
				t.Fatal(err)
			}
			v, err := JudgeAt(context.Background(), src, f, d, at, cal)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		want, got := judge(all), judge(store(t, cut...))
		w, g := want.KPIs[0], got.KPIs[0]
		if got.Outcome != want.Outcome || g.PValue != w.PValue || g.Effect != w.Effect || g.Placebos != w.Placebos || g.Placebos == 0 {
			t.Fatalf("look %d: with data up to the look %v p=%v effect=%v placebos=%d; with all data %v p=%v effect=%v placebos=%d",
				look, got.Outcome, g.PValue, g.Effect, g.Placebos, want.Outcome, w.PValue, w.Effect, w.Placebos)
		}
	}
}

// TestCalibrateCountsAbsentEvents: an error counter without samples where
// no error happened (it appears with the first error) calibrates as the
// same counter with zeros written: absent events are none, as the deploy's
// own sums count them, for the before and the seasonal baselines.
func TestCalibrateCountsAbsentEvents(t *testing.T) {
	from := t0.Add(-3 * 24 * time.Hour)
	n := 3*24*12 + 1
	errs := func(i int) float64 { return float64(i % 3) } // 0, 1, 2, …
	full := series(from, n, errs, "__name__", "errors")
	gappy := full
	gappy.Samples = nil
	for _, s := range full.Samples {
		if s.V != 0 {
			gappy.Samples = append(gappy.Samples, s)
		}
	}
	requests := series(from, n, func(int) float64 { return 100 }, "__name__", "requests")
	for _, baseline := range []string{"{baseline: before, lookback: 4h, window: 1h, step: 5m, alpha: 0.01}",
		"{baseline: seasonal, season: 1d, seasons: 1, window: 1h, step: 5m, alpha: 0.01}"} {
		f := parseRules(t, `
service: api
analysis: `+baseline+`
kpis:
  - name: errors
    events: errors
    trials: requests
    bad: increase
`)
		d := deploy.Deploy{ID: "d1", Time: t0}
		want, err := Calibrate(context.Background(), store(t, full, requests), f, d)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Calibrate(context.Background(), store(t, gappy, requests), f, d)
		if err != nil {
			t.Fatal(err)
		}
		w, g := want["errors"], got["errors"]
		if w.N() < 99 || !slices.Equal(w.Maxima, g.Maxima) {
			t.Errorf("%s: %d placebos with zeros written, %d with the zeros absent (maxima equal: %v)", baseline, w.N(), g.N(), slices.Equal(w.Maxima, g.Maxima))
		}
	}
}

func TestReplayConcurrent(t *testing.T) {
	f := parseRules(t, `
service: checkout
analysis: {baseline: concurrent, window: 1h, step: 5m, alpha: 0.01}
selectors:
  canary: '{version="$version"}'
  baseline: '{version="$previous_version"}'
kpis:
  - name: latency
    query: latency
    bad: increase
`)
	from := t0.Add(-time.Hour)
	n := 12 + 12 + 1
	// Before the deploy both series are the same; after it the canary's
	// latency rises by 4 sd.
	src := store(t,
		series(from, n, noise(1, from, 200, 10, 40), "__name__", "latency", "version", "v2"),
		series(from, n, noise(2, from, 200, 10, 0), "__name__", "latency", "version", "v1"),
	)
	d := deploy.Deploy{ID: "d1", Time: t0, Version: "v2", PreviousVersion: "v1"}
	dec, err := Replay(context.Background(), src, f, d, nil)
	if err != nil {
		t.Fatal(err)
	}
	if dec.Verdict.Outcome != detector.Fail {
		t.Fatalf("verdict %v, want fail\n%s", dec.Verdict.Outcome, strings.Join(dec.Verdict.Explanation(), "\n"))
	}
	k := dec.Verdict.KPIs[0]
	if k.Decision.NCanary != k.Decision.NBaseline {
		t.Errorf("concurrent sizes differ: canary %v baseline %v", k.Decision.NCanary, k.Decision.NBaseline)
	}
	// Swapped versions: the canary is the good one.
	d.Version, d.PreviousVersion = "v1", "v2"
	dec, err = Replay(context.Background(), src, f, d, nil)
	if err != nil {
		t.Fatal(err)
	}
	if dec.Verdict.Outcome != detector.Pass {
		t.Fatalf("swapped: verdict %v, want pass\n%s", dec.Verdict.Outcome, strings.Join(dec.Verdict.Explanation(), "\n"))
	}
}

func TestReplaySeasonal(t *testing.T) {
	f := parseRules(t, `
service: checkout
analysis: {baseline: seasonal, season: 1d, seasons: 2, window: 1h, step: 5m, alpha: 0.01}
kpis:
  - name: orders
    query: orders
    bad: decrease
`)
	// A daily cycle: the hour after the deploy is a busy hour every day,
	// busier than the hours before it. A "before" baseline would call the
	// rise a change; the seasonal one compares like with like. Today the
	// canary hour is 30% down on the same hour of the last two days. Six
	// days of history calibrate the seasonal comparison (2 000 placebos
	// need 2 000 + 2·2·288 + 11 steps).
	from := t0.Add(-6 * 24 * time.Hour)
	r := rand.New(rand.NewPCG(5, 5))
	cycle := func(i int) float64 {
		ts := from.Add(time.Duration(i) * step)
		v := 100 + 50*math.Sin(2*math.Pi*float64(ts.Hour()*60+ts.Minute())/1440) + 3*r.NormFloat64()
		if ts.After(t0) {
			v *= 0.7
		}
		return v
	}
	src := store(t, series(from, (6*24+1)*12, cycle, "__name__", "orders"))
	dec, err := Replay(context.Background(), src, f, deploy.Deploy{ID: "d1", Time: t0}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if dec.Verdict.Outcome != detector.Fail {
		t.Fatalf("verdict %v, want fail\n%s", dec.Verdict.Outcome, strings.Join(dec.Verdict.Explanation(), "\n"))
	}
	k := dec.Verdict.KPIs[0]
	if k.Decision.NBaseline != 2*k.Decision.NCanary {
		t.Errorf("baseline has %v values, want two seasons of the canary's %v", k.Decision.NBaseline, k.Decision.NCanary)
	}
	if k.Placebos == 0 || !strings.Contains(k.Sentence, "placebo deploys") {
		t.Errorf("not calibrated: %s", k.Sentence)
	}
	t.Log(strings.Join(dec.Verdict.Explanation(), "\n"))

	// Two days of history: too few placebos, inconclusive with the
	// history it needs, never a pass.
	short := store(t, series(t0.Add(-49*time.Hour), 50*12, cycle, "__name__", "orders"))
	dec, err = Replay(context.Background(), short, f, deploy.Deploy{ID: "d1", Time: t0}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if dec.Verdict.Outcome != detector.Inconclusive || !strings.Contains(dec.Verdict.KPIs[0].Reason, "too little history to calibrate") {
		t.Errorf("two days of history: %v\n%s", dec.Verdict.Outcome, strings.Join(dec.Verdict.Explanation(), "\n"))
	}
}

// TestReplayEventsTrials: an events/trials KPI with a before baseline is
// calibrated on placebo deploys of its own history: with a steady error
// rate before, a doubling fails at the first look; without history it is
// inconclusive, never a pass; and a rise the history shows to be the
// rate's ordinary move, which the binomial test alone would call certain,
// does not fail.
func TestReplayEventsTrials(t *testing.T) {
	f := parseRules(t, `
service: api
analysis: {lookback: 2h, window: 1h, step: 5m, alpha: 0.01}
kpis:
  - name: errors
    events: errors
    trials: requests
    bad: increase
`)
	const history = 400 // steps before the deploy: 99 placebos need 158
	steady := func(i int) float64 { return 50 }
	// 0.5 % errors and 0.8 % in turns of three hours: the deploy's
	// lookback falls in a low turn and its window in a high one.
	turns := func(i int) float64 {
		if (history-i-1)/36%2 == 1 {
			return 80
		}
		return 50
	}
	for _, tc := range []struct {
		name    string
		history int
		before  func(i int) float64
		after   float64
		want    detector.Outcome
		looks   int
		reason  string
	}{
		{"doubled after a steady history", history, steady, 100, detector.Fail, 1, "placebo deploys"},
		{"no history", 36, steady, 100, detector.Inconclusive, 12, "too little history to calibrate"},
		{"the rate's ordinary move", history, turns, 80, detector.Pass, 12, "placebo deploys"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			from := t0.Add(-time.Duration(tc.history) * step)
			n := tc.history + 12 + 1
			errs := func(i int) float64 {
				if from.Add(time.Duration(i) * step).After(t0) {
					return tc.after
				}
				return tc.before(i)
			}
			src := store(t,
				series(from, n, errs, "__name__", "errors"),
				series(from, n, func(int) float64 { return 10000 }, "__name__", "requests"),
			)
			dec, err := Replay(context.Background(), src, f, deploy.Deploy{ID: "d1", Time: t0}, nil)
			if err != nil {
				t.Fatal(err)
			}
			expl := strings.Join(dec.Verdict.Explanation(), "\n")
			if dec.Verdict.Outcome != tc.want || dec.Looks != tc.looks {
				t.Fatalf("verdict %v after %d looks, want %v after %d\n%s", dec.Verdict.Outcome, dec.Looks, tc.want, tc.looks, expl)
			}
			if !strings.Contains(expl, tc.reason) {
				t.Errorf("explanation without %q:\n%s", tc.reason, expl)
			}
			d := dec.Verdict.KPIs[0]
			if tc.want == detector.Fail && (d.Decision.NCanary != 10000 || d.Decision.NBaseline != 24*10000) {
				t.Errorf("trials canary %v baseline %v, want 10000 and 240000", d.Decision.NCanary, d.Decision.NBaseline)
			}
			if tc.want == detector.Pass {
				// The binomial test alone: 0.8 % of 120 000 against 0.5 %
				// of 240 000 is beyond doubt.
				res, err := detector.Proportion(detector.Counts{Events: 80 * 12, Trials: 120000}, detector.Counts{Events: 50 * 24, Trials: 240000}, detector.Options{Alternative: detector.Greater})
				if err != nil || res.PValue*12 > 1e-6 {
					t.Fatalf("the binomial test gives p = %v (%v): the case does not show what calibration adds", res.PValue, err)
				}
				// The smallest detectable change is the placebos' too: the
				// binomial test's alone would be about 20 %.
				if !(d.RelMDE > 0.4) {
					t.Errorf("smallest detectable change %.0f%%, want above 40%% (the rate moves 60%% on its own)", 100*d.RelMDE)
				}
			}
		})
	}
}

// TestReplaySeasonalEventsTrials: an events/trials KPI against the day
// before is calibrated on placebo deploys too: a doubling fails against
// them, and without the history they need it is inconclusive.
func TestReplaySeasonalEventsTrials(t *testing.T) {
	f := parseRules(t, `
service: api
analysis: {baseline: seasonal, season: 1d, seasons: 1, window: 1h, step: 5m, alpha: 0.01}
kpis:
  - name: errors
    events: errors
    trials: requests
    bad: increase
`)
	for _, tc := range []struct {
		name    string
		history int
		want    detector.Outcome
		reason  string
	}{
		{"three days of history", 3 * 288, detector.Fail, "placebo deploys"},
		{"one day and a half", 432, detector.Inconclusive, "too little history to calibrate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			from := t0.Add(-time.Duration(tc.history) * step)
			n := tc.history + 12 + 1
			errs := func(i int) float64 {
				if from.Add(time.Duration(i) * step).After(t0) {
					return 100
				}
				return float64(50 + i%7) // steady, with some noise
			}
			src := store(t,
				series(from, n, errs, "__name__", "errors"),
				series(from, n, func(int) float64 { return 10000 }, "__name__", "requests"),
			)
			dec, err := Replay(context.Background(), src, f, deploy.Deploy{ID: "d1", Time: t0}, nil)
			if err != nil {
				t.Fatal(err)
			}
			expl := strings.Join(dec.Verdict.Explanation(), "\n")
			if dec.Verdict.Outcome != tc.want || !strings.Contains(expl, tc.reason) {
				t.Fatalf("verdict %v, want %v with %q:\n%s", dec.Verdict.Outcome, tc.want, tc.reason, expl)
			}
		})
	}
}

func TestGatherMissingData(t *testing.T) {
	f := parseRules(t, `
service: checkout
analysis: {lookback: 1h, window: 1h, step: 5m, alpha: 0.01}
kpis:
  - name: absent
    query: nothing_here
    bad: decrease
  - name: many
    query: per_instance
    bad: decrease
  - name: fine
    query: fine
    bad: decrease
`)
	from := t0.Add(-2 * time.Hour)
	n := 3 * 12
	src := store(t,
		series(from, n, noise(1, from, 10, 1, 0), "__name__", "per_instance", "instance", "a"),
		series(from, n, noise(2, from, 10, 1, 0), "__name__", "per_instance", "instance", "b"),
		series(from, n, noise(3, from, 10, 1, 0), "__name__", "fine"),
	)
	v, err := JudgeAt(context.Background(), src, f, deploy.Deploy{ID: "d1", Time: t0}, t0.Add(30*time.Minute), nil)
	if err != nil {
		t.Fatal(err)
	}
	if v.Outcome != detector.Inconclusive {
		t.Fatalf("verdict %v, want inconclusive", v.Outcome)
	}
	want := map[string]string{
		"absent": "no canary data: the query returned no series",
		"many":   "canary query returned 2 series",
	}
	for _, k := range v.KPIs {
		if k.Name == "fine" {
			if k.Outcome != detector.Pass {
				t.Errorf("fine: %v, want pass: %s", k.Outcome, k.Sentence)
			}
			continue
		}
		if k.Outcome != detector.Inconclusive || !strings.HasPrefix(k.Reason, want[k.Name]) {
			t.Errorf("%s: reason %q, want prefix %q", k.Name, k.Reason, want[k.Name])
		}
	}
}

func TestGatherCancelled(t *testing.T) {
	f := parseRules(t, beforeRules)
	src := store(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Gather(ctx, src, f, deploy.Deploy{ID: "d1", Time: t0}, t0.Add(step), nil); err == nil {
		t.Fatal("no error from a cancelled context")
	}
}

func TestSplit(t *testing.T) {
	s := time.Second
	tests := []struct {
		name string
		span Span
		want []Span
	}{
		{"small", Span{t0, t0.Add(10 * s)}, []Span{{t0, t0.Add(10 * s)}}},
		{"exactly max", Span{t0, t0.Add((maxPoints - 1) * s)}, []Span{{t0, t0.Add((maxPoints - 1) * s)}}},
		{"one more", Span{t0, t0.Add(maxPoints * s)}, []Span{{t0, t0.Add((maxPoints - 1) * s)}, {t0.Add(maxPoints * s), t0.Add(maxPoints * s)}}},
		{"a week at 1s", Span{t0, t0.Add(7 * 24 * time.Hour)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := split([]Span{tt.span}, s)
			if tt.want != nil {
				if len(got) != len(tt.want) {
					t.Fatalf("got %v, want %v", got, tt.want)
				}
				for i := range got {
					if !got[i].From.Equal(tt.want[i].From) || !got[i].To.Equal(tt.want[i].To) {
						t.Fatalf("got %v, want %v", got, tt.want)
					}
				}
			}
			// Whatever the span, the pieces cover its instants once each.
			n := 0
			next := tt.span.From
			for _, p := range got {
				if !p.From.Equal(next) || p.To.Sub(p.From)/s >= maxPoints {
					t.Fatalf("piece %v: want start %v and fewer than %d points", p, next, maxPoints)
				}
				n += int(p.To.Sub(p.From)/s) + 1
				next = p.To.Add(s)
			}
			if want := int(tt.span.To.Sub(tt.span.From)/s) + 1; n != want {
				t.Errorf("%d instants, want %d", n, want)
			}
		})
	}
}

// TestCalibrateWithoutHistory: a KPI whose history cannot be read gets an
// empty calibration, so it is inconclusive like one with too little
// history, not judged by the uncalibrated test.
func TestCalibrateWithoutHistory(t *testing.T) {
	f := parseRules(t, beforeRules)
	cal, err := Calibrate(context.Background(), store(t), f, deploy.Deploy{ID: "d1", Time: t0})
	if err != nil {
		t.Fatal(err)
	}
	if c := cal["conversion"]; c == nil || c.N() != 0 {
		t.Fatalf("calibration %+v, want an empty one", c)
	}
}

// TestSeasonalCalibrationBounded: a calibration that would read more than
// MaxSeasonalHistory steps is not attempted (the KPI keeps its test's
// p-value times the looks); a day's season at 5 minutes is calibrated.
func TestSeasonalCalibrationBounded(t *testing.T) {
	src := store(t, series(t0.Add(-time.Hour), 12, func(int) float64 { return 1 }, "__name__", "orders"))
	for _, tc := range []struct {
		analysis   string
		calibrated bool
	}{
		{"{baseline: seasonal, season: 5w, seasons: 2, window: 1h, step: 15s}", false},
		{"{baseline: seasonal, season: 1d, seasons: 1, window: 1h, step: 5m}", true},
	} {
		f := parseRules(t, "service: checkout\nanalysis: "+tc.analysis+"\nkpis:\n  - {name: orders, query: orders, bad: decrease}\n")
		cal, err := Calibrate(context.Background(), src, f, deploy.Deploy{ID: "d1", Time: t0})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := cal["orders"]; ok != tc.calibrated {
			t.Errorf("%s: calibrated %v, want %v", tc.analysis, ok, tc.calibrated)
		}
	}
}

// TestPairedSeasons: a seasonal KPI's canary and season are read on the
// step grid and only the steps with a value on both sides are kept, so a
// gap in the canary and one at another step of the season do not shift
// the pairs.
func TestPairedSeasons(t *testing.T) {
	day := 24 * time.Hour
	from := t0.Add(-day - time.Hour)
	n := int((day+2*time.Hour)/step) + 1
	v := func(i int) float64 {
		ts := from.Add(time.Duration(i) * step)
		j := int(ts.Sub(t0) / step) // the canary's step, 1 … 12
		if ts.After(t0) {
			if j == 3 {
				return math.NaN()
			}
			return 1000 + float64(j)
		}
		j = int(ts.Sub(t0.Add(-day)) / step)
		if j == 5 {
			return math.NaN()
		}
		return 2000 + float64(j)
	}
	src := store(t, series(from, n, v, "__name__", "x"))
	a := rules.Analysis{Baseline: rules.BaselineSeasonal, Season: day, Seasons: 1, Step: step}
	canary, seasons := Spans(a, t0, t0.Add(time.Hour))
	c, b, err := paired(context.Background(), src, "x", "x", step, canary, seasons)
	if err != nil {
		t.Fatal(err)
	}
	if len(c) != 10 || len(b) != 10 {
		t.Fatalf("%d canary and %d season values, want 10 each: %v %v", len(c), len(b), c, b)
	}
	for i := range c {
		j := c[i] - 1000
		if j == 3 || j == 5 || b[i]-2000 != j {
			t.Errorf("pair %d: canary step %v with season step %v", i, j, b[i]-2000)
		}
	}
}

// TestReplayConcurrentCalibrated: instances that differ from one another
// for good (one runs 2 sd above the rest) make a harmless canary on that
// instance fail against the other instances when the looks are judged as
// independent; with selectors.instance the KPI is calibrated on A/A
// comparisons among the instances before the deploy, and passes, while a
// real rise still fails, even one smaller than the instances' spread: the
// canary instance's own offset from the others before the deploy is taken
// out. A new instance, without that offset, is judged against the
// placebos without offsets. Without instances under the label the KPI is
// inconclusive and says why.
func TestReplayConcurrentCalibrated(t *testing.T) {
	const rulesFmt = `
service: checkout
analysis: {baseline: concurrent, window: 1h, step: 5m, alpha: 0.01}
selectors:
  canary: '{version="$version"}'
  baseline: '{version="$previous_version"}'
%s
kpis:
  - name: latency
    query: avg(latency)
    bad: increase
`
	const history = 600 // steps before the deploy
	offsets := []float64{2, -1, 0.5, -2, 1, -0.5}
	for _, tc := range []struct {
		name     string
		instance string
		shift    float64
		want     detector.Outcome
		reason   string
	}{
		{"uncalibrated, harmless", "", 0, detector.Fail, "×12 looks"},
		{"calibrated, harmless", "instance: instance", 0, detector.Pass, "the canary's instances' own past"},
		{"calibrated, a rise of 10 sd", "instance: instance", 10, detector.Fail, "the canary's instances' own past"},
		// Smaller than the spread of the instances (from -2 to 2), but
		// not than the canary's own moves from its offset.
		{"calibrated, a rise of 2 sd", "instance: instance", 2, detector.Fail, "less their offset of +2."},
		{"no such label", "instance: pod", 10, detector.Inconclusive, "0 instance(s) under label pod"},
		// A new instance has no offset to take out: the placebos without
		// offsets judge it, and only a move beyond the instances' spread
		// fails. (Its values are instance 0's, 102 + shift, against the
		// others' 99.6.)
		{"new instance, a rise of 10 sd", "instance: instance", 10, detector.Fail, "among the instances before the deploy)"},
		{"new instance, within the spread", "instance: instance", -1, detector.Pass, "among the instances before the deploy)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := parseRules(t, fmt.Sprintf(rulesFmt, "  "+tc.instance))
			ss := fleetSeries(offsets, history, 12, tc.shift, t0.Add(12*step))
			if strings.HasPrefix(tc.name, "new instance") {
				for _, x := range ss {
					if x.Labels["version"] == "v2" {
						x.Labels["instance"] = "host-new:8080"
					}
				}
			}
			src := store(t, ss...)
			d := deploy.Deploy{ID: "d1", Time: t0, Version: "v2", PreviousVersion: "v1", Groups: []int{1, 5}}
			dec, err := Replay(context.Background(), src, f, d, nil)
			if err != nil {
				t.Fatal(err)
			}
			expl := strings.Join(dec.Verdict.Explanation(), "\n")
			if dec.Verdict.Outcome != tc.want {
				t.Fatalf("verdict %v, want %v\n%s", dec.Verdict.Outcome, tc.want, expl)
			}
			if !strings.Contains(expl, tc.reason) {
				t.Errorf("explanation without %q:\n%s", tc.reason, expl)
			}
		})
	}
}

// fleetSeries is a fleet of instances host-0 … host-n on 5-minute steps:
// `history` steps before t0 and `window` after, instance i's latency
// 100 + offsets[i] + N(0, 1) noise. Instance 0 is the canary: version v2
// after t0 (its values then up by shift), v1 up to t0; the others are v1
// throughout. No sample is after `until`.
func fleetSeries(offsets []float64, history, window int, shift float64, until time.Time) []collector.Series {
	from := t0.Add(-time.Duration(history) * step)
	var ss []collector.Series
	for i, off := range offsets {
		r := rand.New(rand.NewPCG(uint64(i), 99))
		v := func(int) float64 { return 100 + off + r.NormFloat64() }
		name := fmt.Sprintf("host-%d:8080", i)
		ls := []string{"__name__", "latency", "instance", name, "version", "v1"}
		if i != 0 {
			ss = append(ss, series(from, history+window+1, v, ls...))
		} else {
			ss = append(ss, series(from, history+1, v, ls...),
				series(t0.Add(step), window, func(int) float64 { return v(0) + shift }, "__name__", "latency", "instance", name, "version", "v2"))
		}
	}
	for i := range ss {
		ss[i].Samples = slices.DeleteFunc(ss[i].Samples, func(p collector.Sample) bool { return p.T.After(until) })
	}
	return ss
}

const concurrentRules = `
service: checkout
analysis: {baseline: concurrent, window: 1h, step: 5m, alpha: 0.01}
selectors:
  canary: '{version="$version"}'
  baseline: '{version="$previous_version"}'
  instance: instance
kpis:
  - name: latency
    query: avg(latency)
    bad: increase
`

// TestNoLookAheadConcurrent: a concurrent calibration reads nothing after
// the deploy (the same with a store that ends at it), and each look's
// verdict is the same from a store that ends at the look.
func TestNoLookAheadConcurrent(t *testing.T) {
	f := parseRules(t, concurrentRules)
	offsets := []float64{1, -1, 0.5, -0.5, 0}
	d := deploy.Deploy{ID: "d1", Time: t0, Version: "v2", PreviousVersion: "v1", Groups: []int{1}}
	all := store(t, fleetSeries(offsets, 400, 12, 3, t0.Add(12*step))...)
	// The A/A calibration (made at a look, from the history before the
	// deploy).
	want, got := Calibrations{}, Calibrations{}
	w, err := aaCalibration(context.Background(), all, f, &f.KPIs[0], d, want)
	if err != nil {
		t.Fatal(err)
	}
	g, err := aaCalibration(context.Background(), store(t, fleetSeries(offsets, 400, 12, 3, t0)...), f, &f.KPIs[0], d, got)
	if err != nil {
		t.Fatal(err)
	}
	if g.N() == 0 || g.Subsets != len(offsets) || !slices.Equal(w.Maxima, g.Maxima) || w.DiffScale != g.DiffScale {
		t.Fatalf("calibration up to the deploy: %d placebos over %d subsets; with all data: %d", g.N(), g.Subsets, w.N())
	}
	// Each look, with its own past calibrated at the look.
	for _, look := range []int{1, 2, 5, 12} {
		at := t0.Add(time.Duration(look) * step)
		wantV, err := JudgeAt(context.Background(), all, f, d, at, want)
		if err != nil {
			t.Fatal(err)
		}
		cut := store(t, fleetSeries(offsets, 400, 12, 3, at)...)
		gotV, err := JudgeAt(context.Background(), cut, f, d, at, got)
		if err != nil {
			t.Fatal(err)
		}
		w, g := wantV.KPIs[0], gotV.KPIs[0]
		if gotV.Outcome != wantV.Outcome || g.PValue != w.PValue || g.Effect != w.Effect || !g.AcrossInstances {
			t.Fatalf("look %d: up to the look %v p=%v; with all data %v p=%v", look, gotV.Outcome, g.PValue, wantV.Outcome, w.PValue)
		}
	}
}

// TestConcurrentSubsets: a first rollout group of two makes subsets of
// two; a deploy that names no groups, subsets of one; a fleet of one
// instance cannot be calibrated and says so.
func TestConcurrentSubsets(t *testing.T) {
	f := parseRules(t, concurrentRules)
	offsets := []float64{1, -1, 0.5, -0.5, 0, 2, -2}
	src := store(t, fleetSeries(offsets, 300, 12, 0, t0)...)
	for _, tc := range []struct {
		groups  []int
		subsets int
	}{{[]int{2, 5}, 21}, {nil, 7}, {[]int{0}, 7}, {[]int{3}, MaxSubsets}, {[]int{9}, 7}} {
		d := deploy.Deploy{ID: "d1", Time: t0, Version: "v2", PreviousVersion: "v1", Groups: tc.groups}
		c, err := aaCalibration(context.Background(), src, f, &f.KPIs[0], d, Calibrations{})
		if err != nil {
			t.Fatal(err)
		}
		if c.Subsets != tc.subsets || c.N() == 0 {
			t.Errorf("groups %v: %d placebos over %d subsets, want some over %d", tc.groups, c.N(), c.Subsets, tc.subsets)
		}
	}
	one := store(t, fleetSeries(offsets[:1], 300, 12, 0, t0)...)
	c, err := aaCalibration(context.Background(), one, f, &f.KPIs[0], deploy.Deploy{ID: "d1", Time: t0, Version: "v2", PreviousVersion: "v1"}, Calibrations{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(c.Unavailable, "1 instance(s) under label instance") {
		t.Errorf("one instance: %q, want it to say there is one instance", c.Unavailable)
	}
}

func TestDrawSubsets(t *testing.T) {
	names := []string{"a.1", "b", "c", "d", "e", "f", "g", "h", "i", "j"}
	all := drawSubsets(names[:4], 2, "d1")
	if want := []string{`a\.1|b`, `a\.1|c`, `a\.1|d`, "b|c", "b|d", "c|d"}; !slices.Equal(all, want) {
		t.Errorf("4 choose 2: %q, want %q", all, want)
	}
	drawn := drawSubsets(names, 3, "d1") // 120 > MaxSubsets
	if len(drawn) != MaxSubsets {
		t.Fatalf("%d subsets, want %d", len(drawn), MaxSubsets)
	}
	seen := map[string]bool{}
	for _, s := range drawn {
		if seen[s] || strings.Count(s, "|") != 2 {
			t.Errorf("subset %q: repeated or not of 3", s)
		}
		seen[s] = true
	}
	if again := drawSubsets(names, 3, "d1"); !slices.Equal(again, drawn) {
		t.Error("the same deploy drew other subsets: a restart would calibrate differently")
	}
	if other := drawSubsets(names, 3, "d2"); slices.Equal(other, drawn) {
		t.Error("another deploy drew the same subsets")
	}
	for _, tc := range []struct{ n, k, want int }{{4, 2, 6}, {7, 1, 7}, {7, 2, 21}, {7, 3, MaxSubsets + 1}, {40, 1, MaxSubsets + 1}, {5, 4, 5}} {
		if got := binomial(tc.n, tc.k); got != tc.want {
			t.Errorf("binomial(%d, %d) = %d, want %d", tc.n, tc.k, got, tc.want)
		}
	}
}

// TestReplayConcurrentEventsTrials: an error rate that is higher on one
// instance than on the others for good fails a harmless canary on it by
// the binomial test; calibrated on its own past, less its rate offset
// from the others, it passes, and a doubled or 1.3 times rate fails; a
// new instance is judged on A/A comparisons among the instances.
func TestReplayConcurrentEventsTrials(t *testing.T) {
	const rulesFmt = `
service: checkout
analysis: {baseline: concurrent, window: 1h, step: 5m, alpha: 0.01}
selectors:
  canary: '{version="$version"}'
  baseline: '{version="$previous_version"}'
  %s
kpis:
  - name: errors
    events: sum(errors)
    trials: sum(requests)
    bad: increase
`
	const history = 400
	rates := []float64{0.013, 0.01, 0.009, 0.011, 0.01}
	for _, tc := range []struct {
		name     string
		instance string
		factor   float64
		want     detector.Outcome
		reason   string
	}{
		{"binomial test, harmless", "", 1, detector.Fail, "×12 looks"},
		{"calibrated, harmless", "instance: instance", 1, detector.Pass, "the canary's instances' own past"},
		{"calibrated, doubled", "instance: instance", 2, detector.Fail, "the canary's instances' own past"},
		{"calibrated, 1.3 times", "instance: instance", 1.3, detector.Fail, "the canary's instances' own past"},
		// A new instance (no past): A/A comparisons, and a rate within the
		// instances' spread passes.
		{"new instance", "instance: instance", 1, detector.Pass, "A/A placebos among the instances"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := parseRules(t, fmt.Sprintf(rulesFmt, tc.instance))
			ss := countsFleet(rates, history, tc.factor, tc.name == "new instance")
			d := deploy.Deploy{ID: "d1", Time: t0, Version: "v2", PreviousVersion: "v1", Groups: []int{1}}
			dec, err := Replay(context.Background(), store(t, ss...), f, d, nil)
			if err != nil {
				t.Fatal(err)
			}
			expl := strings.Join(dec.Verdict.Explanation(), "\n")
			if dec.Verdict.Outcome != tc.want {
				t.Fatalf("verdict %v, want %v\n%s", dec.Verdict.Outcome, tc.want, expl)
			}
			if !strings.Contains(expl, tc.reason) {
				t.Errorf("explanation without %q:\n%s", tc.reason, expl)
			}
		})
	}
}

// BenchmarkCalibrateConcurrent: a concurrent KPI's A/A calibration (for
// a canary of new instances) from the embedded store, a fleet of 8
// instances with 2 100 steps of history: the instances found, 8 subsets
// and the rest read over 2 023 steps each.
func BenchmarkCalibrateConcurrent(b *testing.B) {
	f, errs := rules.Parse("bench.yaml", []byte(concurrentRules))
	if len(errs) > 0 {
		b.Fatal(errs)
	}
	src := store(b, fleetSeries([]float64{1, -1, 0.5, -0.5, 0, 2, -2, 0.2}, 2100, 12, 0, t0)...)
	d := deploy.Deploy{ID: "d1", Time: t0, Version: "v2", PreviousVersion: "v1", Groups: []int{1}}
	for b.Loop() {
		c, err := aaCalibration(context.Background(), src, f, &f.KPIs[0], d, Calibrations{})
		if err != nil || c.N() == 0 {
			b.Fatal(err, c.N())
		}
	}
}

// BenchmarkOwnCalibration: a concurrent KPI's first look, where the
// canary's instances were there before the deploy: the look's data, its
// instances found, and their own past and the others' read and
// calibrated (2 071 steps); the next looks reuse it.
func BenchmarkOwnCalibration(b *testing.B) {
	f, errs := rules.Parse("bench.yaml", []byte(concurrentRules))
	if len(errs) > 0 {
		b.Fatal(errs)
	}
	src := store(b, fleetSeries([]float64{1, -1, 0.5, -0.5, 0, 2, -2, 0.2}, 2100, 12, 0, t0.Add(12*step))...)
	d := deploy.Deploy{ID: "d1", Time: t0, Version: "v2", PreviousVersion: "v1", Groups: []int{1}}
	for b.Loop() {
		v, err := JudgeAt(context.Background(), src, f, d, t0.Add(step), Calibrations{})
		if err != nil || !strings.Contains(v.KPIs[0].Sentence, "own past") {
			b.Fatal(err, v.KPIs[0].Sentence)
		}
	}
}

// TestConcurrentLaterGroup: a second rollout group joining the canary
// changes the offsets of its own steps only. Host 0, always 5 above the
// others, is the first group; hosts 1 and 2, like the rest, join four
// steps later: the harmless deploy passes at every look (with one offset
// for the whole window, the second group's steps would carry host 0's
// offset diluted and the first ones the wrong one).
func TestConcurrentLaterGroup(t *testing.T) {
	f := parseRules(t, concurrentRules)
	const history, window = 400, 12
	from := t0.Add(-time.Duration(history) * step)
	joins := map[int]int{0: 0, 1: 4, 2: 4} // host → steps after the deploy it moves to v2
	var ss []collector.Series
	for i := range 10 {
		r := rand.New(rand.NewPCG(uint64(i), 7))
		off := 0.0
		if i == 0 {
			off = 5
		}
		v := func(int) float64 { return 100 + off + r.NormFloat64() }
		name := fmt.Sprintf("host-%d:8080", i)
		after, moves := joins[i]
		if !moves {
			ss = append(ss, series(from, history+window+1, v, "__name__", "latency", "instance", name, "version", "v1"))
			continue
		}
		ss = append(ss, series(from, history+after+1, v, "__name__", "latency", "instance", name, "version", "v1"),
			series(t0.Add(time.Duration(after+1)*step), window-after, v, "__name__", "latency", "instance", name, "version", "v2"))
	}
	src := store(t, ss...)
	d := deploy.Deploy{ID: "d1", Time: t0, Version: "v2", PreviousVersion: "v1", Groups: []int{1, 2, 7}}
	cal, err := Calibrate(context.Background(), src, f, d)
	if err != nil {
		t.Fatal(err)
	}
	for look := 1; look <= window; look++ {
		v, err := JudgeAt(context.Background(), src, f, d, t0.Add(time.Duration(look)*step), cal)
		if err != nil {
			t.Fatal(err)
		}
		k := v.KPIs[0]
		if v.Outcome != detector.Pass || !strings.Contains(k.Sentence, "own past") {
			t.Fatalf("look %d: %v: %s", look, v.Outcome, k.Sentence)
		}
		// The offset shown is the mean over the steps: host 0's 5 and,
		// after four steps, the three hosts' about 5/3 against the rest.
		if look <= 4 && math.Abs(k.Offset-5) > 1 || look == window && !(k.Offset > 2 && k.Offset < 4) {
			t.Errorf("look %d: offset %v", look, k.Offset)
		}
	}
}

// TestConcurrentOffGrid: scrapes are never on the step grid; the canary's
// instances are found at the first look, which is judged on their own
// past like the others.
func TestConcurrentOffGrid(t *testing.T) {
	f := parseRules(t, concurrentRules)
	ss := fleetSeries([]float64{5, -1, 0.5, -0.5, 0, 1}, 400, 12, 0, t0.Add(12*step))
	for i := range ss {
		for j := range ss[i].Samples {
			ss[i].Samples[j].T = ss[i].Samples[j].T.Add(-7 * time.Second)
		}
	}
	src := store(t, ss...)
	d := deploy.Deploy{ID: "d1", Time: t0, Version: "v2", PreviousVersion: "v1", Groups: []int{1}}
	cal, err := Calibrate(context.Background(), src, f, d)
	if err != nil {
		t.Fatal(err)
	}
	v, err := JudgeAt(context.Background(), src, f, d, t0.Add(step), cal)
	if err != nil {
		t.Fatal(err)
	}
	if k := v.KPIs[0]; !strings.Contains(k.Sentence, "own past") || v.Outcome != detector.Pass {
		t.Errorf("look 1: %v: %s", v.Outcome, k.Sentence)
	}
}

// TestConcurrentTooLongLookback: a lookback and window of more steps than
// a calibration reads make the KPI inconclusive, with the reason, not a
// panic.
func TestConcurrentTooLongLookback(t *testing.T) {
	f := parseRules(t, strings.Replace(concurrentRules, "window: 1h, step: 5m", "lookback: 30h, window: 1m, step: 1s", 1))
	src := store(t, fleetSeries([]float64{1, -1, 0.5}, 50, 12, 0, t0.Add(12*step))...)
	d := deploy.Deploy{ID: "d1", Time: t0, Version: "v2", PreviousVersion: "v1"}
	cal, err := Calibrate(context.Background(), src, f, d)
	if err != nil {
		t.Fatal(err)
	}
	v, err := JudgeAt(context.Background(), src, f, d, t0.Add(step), cal)
	if err != nil {
		t.Fatal(err)
	}
	if k := v.KPIs[0]; v.Outcome != detector.Inconclusive || !strings.Contains(k.Reason, "more than the 100000 steps of history a calibration reads") {
		t.Errorf("%v: %s", v.Outcome, k.Sentence)
	}
}

// countsFleet is a fleet of instances host-0 … host-n with errors and
// requests per 5-minute step (10 000 requests, errors at rates[i] with
// 10 % noise), history steps before t0 and 12 after. Instance 0 is the
// canary: version v2 after t0 (its errors times factor; named host-new
// when renamed, a new instance), v1 up to t0; the others v1 throughout.
func countsFleet(rates []float64, history int, factor float64, renamed bool) []collector.Series {
	from := t0.Add(-time.Duration(history) * step)
	var ss []collector.Series
	for i, rate := range rates {
		r := rand.New(rand.NewPCG(uint64(i), 5))
		errs := func(int) float64 { return math.Round(10000 * rate * (1 + 0.1*r.NormFloat64())) }
		reqs := func(int) float64 { return 10000 }
		name := fmt.Sprintf("host-%d:8080", i)
		v1 := func(m string) []string { return []string{"__name__", m, "instance", name, "version", "v1"} }
		if i != 0 {
			ss = append(ss, series(from, history+13, errs, v1("errors")...), series(from, history+13, reqs, v1("requests")...))
			continue
		}
		name2 := name
		if renamed {
			name2 = "host-new:8080"
		}
		v2 := func(m string) []string { return []string{"__name__", m, "instance", name2, "version", "v2"} }
		ss = append(ss, series(from, history+1, errs, v1("errors")...), series(from, history+1, reqs, v1("requests")...),
			series(t0.Add(step), 12, func(int) float64 { return factor * errs(0) }, v2("errors")...),
			series(t0.Add(step), 12, reqs, v2("requests")...))
	}
	return ss
}

// TestOnGridPartlyEmpty: a history read in pieces (more than maxPoints
// steps) where the series exists only in the last piece (a counter
// created partway) gives its values there and NaN before, not "no data";
// a span without the series in any piece is errNoSeries.
func TestOnGridPartlyEmpty(t *testing.T) {
	const n = maxPoints + 500
	from := t0.Add(-time.Duration(n-1) * step)
	late := maxPoints + 100 // the first step with a sample
	src := store(t, series(from.Add(time.Duration(late)*step), n-late, func(i int) float64 { return float64(i) }, "__name__", "errors"))
	g, err := onGrid(context.Background(), src, "errors", step, "history", Span{From: from, To: t0})
	if err != nil {
		t.Fatal(err)
	}
	if !math.IsNaN(g[0][late-1]) || g[0][late] != 0 || g[0][n-1] != float64(n-1-late) {
		t.Errorf("steps %d, %d, %d: %v %v %v", late-1, late, n-1, g[0][late-1], g[0][late], g[0][n-1])
	}
	if _, err := onGrid(context.Background(), src, "requests", step, "history", Span{From: from, To: t0}); !errors.Is(err, errNoSeries) {
		t.Errorf("a series absent throughout: %v, want errNoSeries", err)
	}
}

// TestConcurrentEventsTrialsLaterGroup: a second rollout group joining an
// events/trials canary. The canary's pooled rate is compared with the
// baseline's pooled rate, and the group's joining changes both sides'
// make-up from its step on: where the instances' rates differ, the
// expected canary rate must be built segment by segment (the others' rate
// in each plus that segment's instances' offset), or harmless deploys
// fail the more, the more traffic. At 1 000 000 requests a step, 20
// harmless deploys with the group joining at step 7 fail no more than
// alpha allows (0 of 20; with the canary-trials-weighted mean of the
// segments' offsets alone, 13 of 20 failed).
func TestConcurrentEventsTrialsLaterGroup(t *testing.T) {
	f := parseRules(t, `
service: checkout
analysis: {baseline: concurrent, window: 1h, step: 5m, alpha: 0.05}
selectors:
  canary: '{version="$version"}'
  baseline: '{version="$previous_version"}'
  instance: instance
kpis:
  - name: errors
    events: sum(errors)
    trials: sum(requests)
    bad: increase
`)
	const history, window, reqs = 400, 12, 1e6
	rates := []float64{0.013, 0.01, 0.009, 0.011, 0.01}
	joins := map[int]int{0: 0, 1: 6, 2: 6} // host → steps after the deploy it moves to v2
	from := t0.Add(-time.Duration(history) * step)
	fails := 0
	for seed := range 20 {
		var ss []collector.Series
		for i, rate := range rates {
			r := rand.New(rand.NewPCG(uint64(i), uint64(seed)))
			errs := func(int) float64 { return math.Round(reqs * rate * (1 + 0.02*r.NormFloat64())) }
			n := func(int) float64 { return reqs }
			name := fmt.Sprintf("host-%d:8080", i)
			ls := func(m, v string) []string { return []string{"__name__", m, "instance", name, "version", v} }
			after, moves := joins[i]
			if !moves {
				ss = append(ss, series(from, history+window+1, errs, ls("errors", "v1")...), series(from, history+window+1, n, ls("requests", "v1")...))
				continue
			}
			// One draw per step whatever the version, so that the series
			// before and after the move are one instance's.
			vals := make([]float64, history+window+1)
			for j := range vals {
				vals[j] = errs(j)
			}
			at := func(off int) func(int) float64 { return func(j int) float64 { return vals[off+j] } }
			ss = append(ss, series(from, history+after+1, at(0), ls("errors", "v1")...), series(from, history+after+1, n, ls("requests", "v1")...),
				series(t0.Add(time.Duration(after+1)*step), window-after, at(history+after+1), ls("errors", "v2")...),
				series(t0.Add(time.Duration(after+1)*step), window-after, n, ls("requests", "v2")...))
		}
		d := deploy.Deploy{ID: "d1", Time: t0, Version: "v2", PreviousVersion: "v1", Groups: []int{1, 2, 2}}
		dec, err := Replay(context.Background(), store(t, ss...), f, d, nil)
		if err != nil {
			t.Fatal(err)
		}
		k := dec.Verdict.KPIs[0]
		if !strings.Contains(k.Sentence, "own past") {
			t.Fatalf("seed %d: not judged on the canary's own past: %s", seed, k.Sentence)
		}
		if dec.Verdict.Outcome == detector.Fail {
			fails++
			t.Logf("seed %d failed at look %d: %s", seed, dec.Looks, k.Sentence)
		}
	}
	if fails > 3 {
		t.Errorf("%d of 20 harmless deploys failed at alpha 5%%", fails)
	}
}
