package main

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestWaldBound(t *testing.T) {
	for _, tc := range []struct{ delta, want float64 }{
		// ((0.95·ln(95) + 0.05·ln(0.05/0.99)) / (δ²/2)
		{1, 8.3537}, {0.5, 33.415}, {2, 2.0884},
	} {
		if got := waldBound(tc.delta, 0.01, 0.05); math.Abs(got-tc.want) > 1e-3 {
			t.Errorf("waldBound(%v) = %v, want %v", tc.delta, got, tc.want)
		}
	}
}

func rec(series, c, det, verdict string, delay int) record {
	r := record{Bench: "nab", Series: series, Case: c, Detector: det, Verdict: verdict}
	if delay > 0 {
		r.Delay = &delay
	}
	return r
}

func TestTally(t *testing.T) {
	var tl tally
	for _, r := range []record{
		rec("a/x", "shift-1", detImmune, "fail", 3),
		rec("a/x", "shift-1", detImmune, "fail", 8),
		rec("a/x", "shift-1", detImmune, "inconclusive", 0),
		rec("a/x", "shift-1", detImmune, "pass", 0),
		rec("a/x", "shift-1", detImmune, "fail", 5),
		rec("a/x", "shift-1", detImmune, "fail", 4),
	} {
		tl.add(r)
	}
	if tl.N != 6 || tl.Fail != 4 || tl.Inconclusive != 1 {
		t.Errorf("tally %+v", tl)
	}
	if got := tl.medianDelay(); got != 4.5 {
		t.Errorf("median delay %v, want 4.5", got)
	}
	if got := tl.meanDelay(); got != 5 {
		t.Errorf("mean delay %v, want 5", got)
	}
	var empty tally
	if !math.IsNaN(empty.medianDelay()) || !math.IsNaN(empty.failRate()) {
		t.Error("an empty tally has rates")
	}
}

func TestNABReport(t *testing.T) {
	var recs []record
	add := func(series, c string, im, ka, th string, delay int) {
		recs = append(recs, rec(series, c, detImmune, im, delay), rec(series, c, detKayenta, ka, 0), rec(series, c, detThreshold, th, 0))
	}
	add("g/a", "null", "fail", "pass", "pass", 4)
	add("g/a", "null", "pass", "pass", "pass", 0)
	add("g/b", "null", "inconclusive", "pass", "pass", 0)
	add("g/b", "null", "pass", "pass", "pass", 0)
	recs = append(recs, record{Bench: "nab", Series: "g/b", Deploy: 120, Verdict: verdictSkipped, Reason: "flat lookback: s = 0"})
	n := &nabReport{Params: params{L: 48, W: 24, Alpha: 0.01, Cases: nabCases[:1]},
		Files:   []fileInfo{{Name: "g/a", Step: 5 * time.Minute}, {Name: "g/b", Step: 5 * time.Minute}},
		Records: recs}
	var b strings.Builder
	n.write(&b)
	out := b.String()
	for _, want := range []string{
		"4 deploys judged, each in 1 cases; skipped: 1 with a flat lookback (s = 0)",
		"| null (false rollbacks) | 4 | 25.0% | 25.0% | 4 | 0.0% | – | 0.0% | – |",
		"| g | 4 | 25.0% | 0.0% | 0.0% |",
		"| g/a | 2 | 1 | 0 | 0 |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}
