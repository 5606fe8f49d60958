package main

import (
	"testing"
)

func seq(from, to, by float64) []float64 {
	var xs []float64
	for x := from; x <= to; x += by {
		xs = append(xs, x)
	}
	return xs
}

func plus(xs []float64, d float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = x + d
	}
	return out
}

func repeat(x float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = x
	}
	return out
}

func TestKayenta(t *testing.T) {
	base := seq(1, 48, 1)
	odd := seq(1, 47, 2) // 24 values, the baseline's spread
	for _, tc := range []struct {
		name          string
		baseline, can []float64
		want          refVerdict
	}{
		// R: wilcox.test(seq(1,47,2)+10.25, 1:48, conf.int=TRUE,
		// conf.level=0.98): HL 9.75, interval [1.25, 18.25]: significant,
		// but the lower end is below 0.25·9.75 = 2.44: pass.
		{"significant but below the tolerance", base, plus(odd, 10.25), refVerdict{}},
		// +12.25: HL 11.75, interval [3.25, 20.25]; 3.25 > 2.94: fail.
		{"above the tolerance", base, plus(odd, 12.25), refVerdict{Fail: true, Delay: 24}},
		{"no change", base, odd, refVerdict{}},
		{"a large decrease is not bad", base, plus(odd, -100), refVerdict{}},
		{"a large increase", base, plus(odd, 100), refVerdict{Fail: true, Delay: 24}},
		// Kayenta passes equal data (the test is undefined).
		{"all equal", repeat(3, 48), repeat(3, 24), refVerdict{}},
		{"delay is the window's length", base, plus(seq(1, 20, 1), 100), refVerdict{Fail: true, Delay: 20}},
	} {
		got, err := kayenta(tc.baseline, tc.can)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%s: kayenta = %+v, want %+v", tc.name, got, tc.want)
		}
	}
	if _, err := kayenta(base, nil); err == nil {
		t.Error("kayenta with an empty window: no error")
	}
}

func TestThreshold(t *testing.T) {
	base := []float64{8, 12, 9, 11, 10} // mean 10: the limit is 12
	for _, tc := range []struct {
		name string
		base []float64
		can  []float64
		want refVerdict
	}{
		// k=1, 2, 3: means 13, 13, 13: the third breach at k = 3.
		{"breached from the start", base, repeat(13, 24), refVerdict{Fail: true, Delay: 3}},
		// means 13, 13, 12 (not above 12: the run restarts), 12.33,
		// 12.67, 14: the third consecutive breach at k = 6.
		{"a run broken and restarted", base, []float64{13, 13, 10, 14, 14, 14, 14}, refVerdict{Fail: true, Delay: 6}},
		{"at the limit is no breach", base, repeat(12, 24), refVerdict{}},
		{"two breaches only", base, []float64{20, 20}, refVerdict{}},
		{"a decrease", base, repeat(1, 24), refVerdict{}},
		// One spike of 40 lifts three consecutive 3-sample means to 20.
		{"one spike", base, []float64{10, 10, 40, 10, 10, 10, 10}, refVerdict{Fail: true, Delay: 5}},
		// A negative level: 1.2 × the mean lies below the mean, so an
		// unchanged level breaches (as `result < baseline * 1.2` would).
		{"negative level", repeat(-10, 5), repeat(-10, 24), refVerdict{Fail: true, Delay: 3}},
	} {
		if got := threshold(tc.base, tc.can); got != tc.want {
			t.Errorf("%s: threshold = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}
