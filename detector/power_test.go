package detector

import (
	"math"
	"strings"
	"testing"
)

func TestLowTrafficGuard(t *testing.T) {
	errs := func(canaryTrials float64, min MinEffect) KPI {
		return KPI{Name: "errors", Bad: Increase, HasCounts: true, MinEffect: min,
			CanaryCounts:   Counts{Events: 0.01 * canaryTrials, Trials: canaryTrials},
			BaselineCounts: Counts{Events: 1000, Trials: 100000}}
	}
	tests := []struct {
		name   string
		kpi    KPI
		want   Outcome
		reason string
	}{
		// Telling 1% from 1.5% takes requests: with 200 it cannot be done.
		{"200 requests, min_effect 0.5 points", errs(200, MinEffect{Value: 0.005}), Inconclusive,
			"too little data to detect min_effect 0.005: the smallest change it could have detected (80% power) is"},
		{"200 000 requests, min_effect 0.5 points", errs(200000, MinEffect{Value: 0.005}), Pass, "no significant change"},
		{"200 requests, relative min_effect 50%", errs(200, MinEffect{Value: 0.5, Relative: true}), Inconclusive, "too little data to detect min_effect 50%"},
		{"no min_effect: a pass that says what it could see", errs(200, MinEffect{}), Pass, "no significant change"},
		{"no canary traffic", errs(0, MinEffect{Value: 0.005}), Inconclusive, "proportion: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := Judge([]KPI{tt.kpi}, JudgeOptions{Alpha: 0.01, Looks: 12})
			if err != nil {
				t.Fatal(err)
			}
			k := v.KPIs[0]
			if k.Outcome != tt.want || !strings.HasPrefix(k.Reason, tt.reason) {
				t.Errorf("%v %q, want %v %q", k.Outcome, k.Reason, tt.want, tt.reason)
			}
			if k.Outcome == Pass && (math.IsNaN(k.MDE) || !strings.Contains(k.Sentence, "it could have detected a change of")) {
				t.Errorf("a pass without its detectable change: %s", k.Sentence)
			}
		})
	}
}

func TestMinDetectableShrinksWithData(t *testing.T) {
	base := normals(1, 48, 100, 5)
	prev := math.Inf(1)
	for _, n := range []int{3, 6, 12, 24} {
		v, err := Judge([]KPI{{Name: "x", Bad: Increase, Canary: normals(2, n, 100, 5), Baseline: base}}, JudgeOptions{Alpha: 0.01, Looks: 24})
		if err != nil {
			t.Fatal(err)
		}
		mde := v.KPIs[0].MDE
		if !(mde < prev) || mde <= 0 {
			t.Errorf("n=%d: MDE %v, want positive and below %v", n, mde, prev)
		}
		prev = mde
	}
	// With 24 canary values against 48, alpha 0.01 over 24 looks, a shift
	// of about (z + 0.84)·σ·sqrt(π(N+1)/(3·24·48)) ≈ 1.4σ: 7 for σ = 5.
	if prev < 5 || prev > 9 {
		t.Errorf("MDE at n=24: %v, want about 7", prev)
	}
}

func TestCalibrationCritical(t *testing.T) {
	c := Calibration{Maxima: []float64{1, 2, 3, 4, 5, 6, 7, 8, 9}} // n = 9
	for _, tt := range []struct {
		a    float64
		want float64 // the smallest m with P(m) ≤ a
	}{
		{0.1, math.Nextafter(9, 10)}, // P(>9) = 1/10
		{0.2, math.Nextafter(8, 9)},  // P(>8) = 2/10
		{0.05, math.Inf(1)},          // never
		{1, math.Inf(-1)},
	} {
		got := c.critical(tt.a)
		if got != tt.want {
			t.Errorf("critical(%v) = %v, want %v", tt.a, got, tt.want)
		}
		if !math.IsInf(got, 0) && (c.P(got) > tt.a || c.P(math.Nextafter(got, 0)) <= tt.a) {
			t.Errorf("critical(%v) = %v is not the boundary: P = %v", tt.a, got, c.P(got))
		}
	}
	// Where the i.i.d. null is the stricter, it sets the boundary, as it
	// does in P.
	c.IID = []float64{5, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27} // n = 19
	got := c.critical(0.1)
	if got != math.Nextafter(26, 27) || c.P(got) > 0.1 || c.P(math.Nextafter(got, 0)) <= 0.1 {
		t.Errorf("with the i.i.d. null: critical(0.1) = %v, P = %v", got, c.P(got))
	}
}
