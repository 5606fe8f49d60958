package detector

import "math"

// Where placebo deploys go: the points of a history they start at, and
// whether a KPI repeats daily enough for placebos at the deploy's time of
// day (CalibrateInPhase, CalibrateCounts).

// placeboStarts returns the first window steps of the placebo deploys of
// a history of n steps, the most recent first: those at the phase of the
// deploy (at n) within tol steps of a whole number of periods, the most
// recent max of them, when there are at least need (and period > 2·tol+1);
// else every stride-th point, at most max of them. Every placebo has
// lookback steps before it and window steps after it, its window ending
// before the deploy's own lookback.
func placeboStarts(n, lookback, window, max, period, tol, need int) (at []int, inPhase bool) {
	last := n - window - lookback
	if period > 2*tol+1 {
		for p := last; p >= lookback && len(at) < max; p-- {
			if off := (n - p) % period; off <= tol || off >= period-tol {
				at = append(at, p)
			}
		}
		if len(at) >= need && len(at) > 0 {
			return at, true
		}
		at = at[:0]
	}
	count := last - lookback + 1
	if count <= 0 {
		return nil, false
	}
	stride := (count + max - 1) / max
	for p := last; p >= lookback; p -= stride {
		at = append(at, p)
	}
	return at, false
}

// MinDailyCycle is the least correlation between a history's hourly means
// and the same hours a period earlier (dailyCycle) for which placebo
// deploys at the deploy's time of day are used. Placebos within an hour of
// one time of day are a few days' worth of nearly the same window, so
// they are far fewer independent draws than placebos at every point, and
// their quantile is the noisier: worth it only where the KPI repeats
// daily, so that placebos at other hours would not be like the deploy. On
// the NAB series, in-phase placebos on the real series (whose day-to-day
// correlation is mostly weak) failed 2.8 % of harmless deploys, against
// 0.85 % for placebos at every point (docs/performance.md).
const MinDailyCycle = 0.5

// dailyCycle is how much a series repeats from one period to the next:
// repeats of its means over blocks of period/24 steps (an hour, for a
// day's period). 0 when the history holds too little for it or a side is
// constant.
func dailyCycle(x []float64, period int) float64 {
	block := max(1, period/24)
	var means []float64
	for i := 0; i+block <= len(x); i += block {
		s := 0.0
		for _, v := range x[i : i+block] {
			s += v
		}
		means = append(means, s/float64(block))
	}
	return repeats(means, period/block)
}

// repeats is how much blocks repeat from one period of n blocks to the
// next: each less the running mean of the n around it (so that a trend or
// a wandering level, which correlates at any lag, is left out),
// correlated with the same n blocks earlier.
func repeats(blocks []float64, n int) float64 {
	return lagCorrelation(detrend(blocks, n), n)
}

// detrend returns each value less the mean of the n values centred on it
// (NaN where they do not fit, or hold a NaN).
func detrend(x []float64, n int) []float64 {
	out := make([]float64, len(x))
	for i := range out {
		out[i] = math.NaN()
		lo := i - n/2
		if lo < 0 || lo+n > len(x) || math.IsNaN(x[i]) {
			continue
		}
		s := 0.0
		for _, v := range x[lo : lo+n] {
			s += v
		}
		out[i] = x[i] - s/float64(n)
	}
	return out
}

// lagCorrelation is the Pearson correlation of x[i] with x[i−lag], over
// the pairs where both are numbers; 0 with fewer than lag such pairs.
func lagCorrelation(x []float64, lag int) float64 {
	if lag < 1 {
		return 0
	}
	ok := func(i int) bool { return !math.IsNaN(x[i]) && !math.IsNaN(x[i-lag]) }
	var n, ma, mb float64
	for i := lag; i < len(x); i++ {
		if ok(i) {
			n++
			ma += x[i]
			mb += x[i-lag]
		}
	}
	if n < float64(lag) {
		return 0
	}
	ma, mb = ma/n, mb/n
	var sab, saa, sbb float64
	for i := lag; i < len(x); i++ {
		if !ok(i) {
			continue
		}
		a, b := x[i]-ma, x[i-lag]-mb
		sab += a * b
		saa += a * a
		sbb += b * b
	}
	if !(saa > 0) || !(sbb > 0) {
		return 0
	}
	return sab / math.Sqrt(saa*sbb)
}
