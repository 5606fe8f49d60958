package detector

import (
	"errors"
	"fmt"
	"math"
	"testing"
)

func TestKSR(t *testing.T) {
	// R sums the ECDF differences with rounding error, so that a
	// one-sided D that is exactly 0 comes out as ±7e-17 in R.
	dev := rrefDeviation{absFloor: 1e-14}
	for _, c := range rrefLoad(t, "testdata/ks.txt") {
		for _, w := range c.wants {
			name := fmt.Sprintf("%s/%v", c.name, w.alt)
			t.Run(name, func(t *testing.T) {
				got, err := KS(c.x, c.y, Options{Alternative: w.alt})
				if err != nil {
					t.Fatalf("testdata/ks.txt:%d: %v", w.line, err)
				}
				dev.check(t, name, got, w, c.method)
				if got.Test != "ks" || got.StatisticName != "D" || got.EstimateName != "" || got.HasEstimate() {
					t.Errorf("names = %q, %q, %q, estimate %v", got.Test, got.StatisticName, got.EstimateName, got.Estimate)
				}
				if got.NCanary != float64(len(c.x)) || got.NBaseline != float64(len(c.y)) {
					t.Errorf("n = %v, %v; want %d, %d", got.NCanary, got.NBaseline, len(c.x), len(c.y))
				}
			})
		}
	}
	dev.log(t)
}

func TestKSErrors(t *testing.T) {
	ok := []float64{1, 2, 3}
	tests := []struct {
		name             string
		canary, baseline []float64
		opt              Options
		want             error
	}{
		{"empty canary", nil, ok, Options{}, ErrTooFewSamples},
		{"empty baseline", ok, []float64{}, Options{}, ErrTooFewSamples},
		{"nan", []float64{1, math.NaN()}, ok, Options{}, ErrNonFinite},
		{"inf", ok, []float64{math.Inf(1)}, Options{}, ErrNonFinite},
		{"confidence", ok, ok, Options{Confidence: 2}, ErrInvalidOption},
		{"alternative", ok, ok, Options{Alternative: Alternative(-1)}, ErrInvalidOption},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := KS(tt.canary, tt.baseline, tt.opt)
			if !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestKSExactSmallP checks that the exact p-value keeps its precision
// far below R's 1 − P(D < d): with the samples completely apart, only the
// two paths along the edges reach D = 1 (one for a one-sided test), out of
// choose(m+n, m).
func TestKSExactSmallP(t *testing.T) {
	tests := []struct {
		m, n int
		alt  Alternative
		want float64
	}{
		{30, 40, TwoSided, 2 / ksChoose(70, 30)},
		{30, 40, Greater, 1 / ksChoose(70, 30)},
		{60, 60, TwoSided, 2 / ksChoose(120, 60)},
		{1, 1, TwoSided, 1},
		{2, 2, TwoSided, 2 / ksChoose(4, 2)},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%dx%d/%v", tt.m, tt.n, tt.alt), func(t *testing.T) {
			canary, baseline := make([]float64, tt.m), make([]float64, tt.n)
			for i := range canary {
				canary[i] = float64(i)
			}
			for i := range baseline {
				baseline[i] = float64(1000 + i)
			}
			got, err := KS(canary, baseline, Options{Alternative: tt.alt})
			if err != nil {
				t.Fatal(err)
			}
			if got.Statistic != 1 || rrefRelDiff(got.PValue, tt.want) > 1e-12 {
				t.Errorf("D, p = %v, %.17g; want 1, %.17g", got.Statistic, got.PValue, tt.want)
			}
		})
	}
}

func ksChoose(n, k int) float64 {
	c := 1.0
	for i := 1; i <= k; i++ {
		c = c * float64(n-k+i) / float64(i)
	}
	return c
}

// TestKSLimit checks the limiting distribution against values of
// Kolmogorov's distribution, 1 − K(x), from R 4.2.2:
// 1 - .Call(stats:::C_pKS2, x, 1e-6).
func TestKSLimit(t *testing.T) {
	tests := []struct{ x, want float64 }{
		{0.3, 0.99999069419866549},
		{0.5, 0.96394524366487511},
		{0.9, 0.39273380987443252},
		{1, 0.26999967167737982},
		{1.36, 0.049485876755370861},
		{2, 0.00067092525577971962},
		{3, 3.0459959443618345e-08},
		{5, 0},
	}
	for _, tt := range tests {
		got := ksLimitUpper(tt.x, 1e-6)
		if math.Abs(got-tt.want) > 1e-15 {
			t.Errorf("ksLimitUpper(%v) = %.17g, want %.17g", tt.x, got, tt.want)
		}
	}
}

func FuzzKS(f *testing.F) {
	f.Add([]byte("\x3f\xf0\x00\x00\x00\x00\x00\x00\x40\x00\x00\x00\x00\x00\x00\x00\x40\x08\x00\x00\x00\x00\x00\x00\x3f\xf0\x00\x00\x00\x00\x00\x00"), uint8(2), uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, split, alt uint8) {
		canary, baseline := rrefFuzzSamples(data, split)
		r, err := KS(canary, baseline, Options{Alternative: Alternative(alt % 3)})
		if err != nil {
			return
		}
		rrefCheckResult(t, r)
		if !(r.Statistic >= 0 && r.Statistic <= 1) {
			t.Errorf("D = %v", r.Statistic)
		}
	})
}
