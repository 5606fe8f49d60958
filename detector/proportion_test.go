package detector

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
)

func TestProportionR(t *testing.T) {
	// When Yates' correction is capped at |delta|/sum(1/n) the corrected
	// deviations cancel, and R's statistic is rounding noise (1e-30).
	dev := rrefDeviation{absFloor: 1e-12}
	for _, c := range rrefLoad(t, "testdata/proportion.txt") {
		if len(c.x) != 2 || len(c.y) != 2 {
			t.Fatalf("testdata/proportion.txt:%d: x and y must be events and trials", c.line)
		}
		canary, baseline := Counts{Events: c.x[0], Trials: c.x[1]}, Counts{Events: c.y[0], Trials: c.y[1]}
		if c.err != "" {
			t.Run(c.name, func(t *testing.T) {
				_, err := Proportion(canary, baseline, Options{})
				want := ErrConstant // R returns NaN
				if strings.HasPrefix(c.err, "elements of") {
					want = ErrInvalidCounts
				}
				if !errors.Is(err, want) {
					t.Errorf("testdata/proportion.txt:%d: err = %v, want %v (R: %s)", c.line, err, want, c.err)
				}
			})
			continue
		}
		for _, w := range c.wants {
			name := fmt.Sprintf("%s/%v/%v", c.name, w.alt, w.conf)
			t.Run(name, func(t *testing.T) {
				got, err := Proportion(canary, baseline, Options{Alternative: w.alt, Confidence: w.conf})
				if err != nil {
					t.Fatalf("testdata/proportion.txt:%d: %v", w.line, err)
				}
				dev.check(t, name, got, w, c.method)
				if got.Test != "proportion" || got.StatisticName != "X-squared" || got.EstimateName != "difference in proportions" {
					t.Errorf("names = %q, %q, %q", got.Test, got.StatisticName, got.EstimateName)
				}
				if got.NCanary != canary.Trials || got.NBaseline != baseline.Trials {
					t.Errorf("n = %v, %v; want %v, %v", got.NCanary, got.NBaseline, canary.Trials, baseline.Trials)
				}
			})
		}
	}
	dev.log(t)
}

func TestProportionErrors(t *testing.T) {
	ok := Counts{Events: 3, Trials: 40}
	tests := []struct {
		name             string
		canary, baseline Counts
		opt              Options
		want             error
	}{
		{"negative events", Counts{-1, 10}, ok, Options{}, ErrInvalidCounts},
		{"negative trials", ok, Counts{0, -10}, Options{}, ErrInvalidCounts},
		{"no trials", Counts{0, 0}, ok, Options{}, ErrInvalidCounts},
		{"too few trials", Counts{0, 1e-320}, ok, Options{}, ErrInvalidCounts},
		{"events over trials", ok, Counts{11, 10}, Options{}, ErrInvalidCounts},
		{"nan events", Counts{math.NaN(), 10}, ok, Options{}, ErrInvalidCounts},
		{"infinite trials", ok, Counts{1, math.Inf(1)}, Options{}, ErrInvalidCounts},
		{"no events", Counts{0, 10}, Counts{0, 20}, Options{}, ErrConstant},
		{"all events", Counts{10, 10}, Counts{20, 20}, Options{Alternative: Less}, ErrConstant},
		{"confidence", ok, ok, Options{Confidence: math.NaN()}, ErrInvalidOption},
		{"alternative", ok, ok, Options{Alternative: Alternative(3)}, ErrInvalidOption},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Proportion(tt.canary, tt.baseline, tt.opt)
			if !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestProportionHugeCounts checks counts beyond the range where R's
// (|x − E| − YATES)² overflows: the statistic grows with the counts, the
// estimate and interval stay put.
func TestProportionHugeCounts(t *testing.T) {
	got, err := Proportion(Counts{Events: 2e300, Trials: 1e301}, Counts{Events: 1e300, Trials: 1e301}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if math.IsInf(got.Statistic, 0) || math.IsNaN(got.Statistic) || got.PValue != 0 {
		t.Errorf("statistic, p = %v, %v; want finite, 0", got.Statistic, got.PValue)
	}
	if math.Abs(got.Estimate-0.1) > 1e-15 || math.Abs(got.CILow-0.1) > 1e-15 || math.Abs(got.CIHigh-0.1) > 1e-15 {
		t.Errorf("estimate [%v, %v, %v], want 0.1", got.CILow, got.Estimate, got.CIHigh)
	}
}

func FuzzProportion(f *testing.F) {
	f.Add(3.0, 40.0, 9.0, 41.0, uint8(0), 0.95)
	f.Add(1200.0, 1e5, 1500.0, 1e5, uint8(1), 0.9)
	f.Add(0.0, 10.0, 0.0, 20.0, uint8(2), 0.8)
	f.Fuzz(func(t *testing.T, xc, nc, xb, nb float64, alt uint8, conf float64) {
		opt := Options{Alternative: Alternative(alt % 3), Confidence: conf}
		r, err := Proportion(Counts{xc, nc}, Counts{xb, nb}, opt)
		if err != nil {
			return
		}
		rrefCheckResult(t, r)
		if !(r.Statistic >= 0) {
			t.Errorf("X-squared = %v", r.Statistic)
		}
		// A one-sided interval below 50% confidence need not hold the
		// estimate, nor stay in [-1, 1] (R's neither).
		if (r.Alternative == TwoSided || r.Confidence >= 0.5) &&
			!(r.CILow >= -1 && r.CILow <= r.Estimate && r.Estimate <= r.CIHigh && r.CIHigh <= 1) {
			t.Errorf("estimate %v, interval [%v, %v]", r.Estimate, r.CILow, r.CIHigh)
		}
	})
}
