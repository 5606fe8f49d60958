package detector

import (
	"math"
	"math/rand/v2"
	"sort"
)

// CalibrateSeasonal is Calibrate for a seasonal baseline: a window is
// compared with the same steps one season earlier, two seasons earlier, …
// (seasons of them, each season steps long). history is the KPI's value
// at each step up to the deploy, oldest first, its last value the one at
// the deploy itself, NaN where a step has no value.
//
// The statistic pairs each canary value with the same step in the earlier
// seasons: d_j = canary_j − median of the seasons' values at step j, and
// at look k it is the Wilcoxon signed-rank z of d_1 … d_k
// (SeasonalStatistic). A daily cycle cancels in the differences, where a
// rank test of the pooled values would drown a shift in it.
//
// A placebo deploy at history index q has its window at q+1 … q+window and
// its baselines at the same offsets season, 2·season, … steps earlier.
// Placebos are placed at every index whose baselines are in the history
// and whose window ends before the deploy's own earliest baseline begins
// (no placebo shares data with what the deploy is compared with), the
// most recent first, every stride-th beyond max (max ≤ 0 means
// MaxPlacebos); a placebo touching a step without a value is left out.
// The history N placebos need is HistoryFor(N) = N + 2·seasons·season +
// window − 1 steps.
//
// The placebos record the largest z over their window. A deploy fails at
// the first look whose z reaches the placebos' quantile: the same event as
// its window maximum reaching it, so Calibration.P holds alpha over every
// look, as for a `before` baseline.
func CalibrateSeasonal(history []float64, season, seasons, window int, bad Direction, max int) Calibration {
	if max <= 0 {
		max = MaxPlacebos
	}
	c := Calibration{Window: window, Season: season, Seasons: seasons}
	if season < 1 || seasons < 1 || window < 1 {
		return c
	}
	c.IID = iidSeasonalMaxima(seasons, window, bad)
	back := seasons * season
	first := back - 1                        // the earliest placebo: its baselines start at index 0
	last := len(history) - back - window - 1 // its window ends before the deploy's earliest baseline
	n := last - first + 1
	if n <= 0 {
		return c
	}
	stride := (n + max - 1) / max
	var st seasonalRun
	for q := last; q >= first; q -= stride {
		zs := st.run(history, q, season, seasons, window, bad)
		if zs == nil {
			continue
		}
		m := math.Inf(-1)
		for _, z := range zs {
			m = math.Max(m, z)
		}
		c.Maxima = append(c.Maxima, m)
	}
	sort.Float64s(c.Maxima)
	// The differences from the seasons over the whole history, for the
	// minimum detectable effect: a window's own few are a noisy scale.
	var diffs []float64
	col := make([]float64, seasons)
	for i := back; i < len(history); i++ {
		ok := !math.IsNaN(history[i])
		for s := 1; s <= seasons && ok; s++ {
			col[s-1] = history[i-s*season]
			ok = !math.IsNaN(col[s-1])
		}
		if ok {
			diffs = append(diffs, history[i]-medianOf(col))
		}
	}
	if len(diffs) >= 2 {
		c.DiffScale = robustScale(diffs)
	}
	return c
}

// SeasonalStatistic is the oriented Wilcoxon signed-rank z (midranks,
// tie-corrected variance, zero differences left out, no continuity
// correction) of the canary's differences from the median of the seasons
// at the same step, as they stand at one look: baseline holds the seasons
// one after the other, each as long as the canary. NaN when it does not
// (a step missing on one side): the values cannot be paired.
func SeasonalStatistic(baseline, canary []float64, bad Direction, seasons int) float64 {
	d := seasonalDiffs(baseline, canary, seasons)
	if d == nil {
		return math.NaN()
	}
	var sr signedRanks
	return orient(sr.z(d), bad)
}

// seasonalDiffs returns the canary's differences from the median of the
// seasons at the same step, or nil when baseline does not hold seasons
// seasons as long as the canary.
func seasonalDiffs(baseline, canary []float64, seasons int) []float64 {
	k := len(canary)
	if seasons < 1 || k == 0 || len(baseline) != seasons*k {
		return nil
	}
	d := make([]float64, k)
	col := make([]float64, seasons)
	for j := range canary {
		for s := range seasons {
			col[s] = baseline[s*k+j]
		}
		d[j] = canary[j] - medianOf(col)
	}
	return d
}

// medianOf sorts xs in place and returns its median.
func medianOf(xs []float64) float64 {
	if len(xs) == 1 {
		return xs[0]
	}
	sort.Float64s(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// seasonalRun computes a placebo's z at each look, reusing its buffers.
type seasonalRun struct {
	col, out []float64
	sr       signedRanks
}

// run returns the z of the placebo at q after each of its window's
// values, or nil when one of the values it needs is NaN.
func (s *seasonalRun) run(x []float64, q, season, seasons, window int, bad Direction) []float64 {
	s.sr.abs, s.out = s.sr.abs[:0], s.out[:0]
	for j := 1; j <= window; j++ {
		s.col = s.col[:0]
		for k := 1; k <= seasons; k++ {
			v := x[q+j-k*season]
			if math.IsNaN(v) {
				return nil // a sorted NaN would not reach the median
			}
			s.col = append(s.col, v)
		}
		v := x[q+j] - medianOf(s.col)
		if math.IsNaN(v) {
			return nil
		}
		s.sr.add(v)
		s.out = append(s.out, orient(s.sr.current(), bad))
	}
	return s.out
}

// signedRanks computes Wilcoxon signed-rank z values, reusing a buffer.
type signedRanks struct{ abs []float64 } // the non-zero differences

// z is the signed-rank z of d: W+ is the sum of the midranks of |d_j|
// over the positive d_j, zeros left out; its variance is
// n(n+1)(2n+1)/24 − Σ(t³ − t)/48 over the tie groups of |d| (the normal
// approximation of R's wilcox.test, without its continuity correction).
// 0 when no difference is non-zero.
func (r *signedRanks) z(d []float64) float64 {
	r.abs = r.abs[:0]
	for _, v := range d {
		r.add(v)
	}
	return r.current()
}

// add inserts a difference (a zero is left out), keeping r.abs sorted by
// magnitude with the signs kept.
func (r *signedRanks) add(v float64) {
	if v == 0 {
		return
	}
	a := math.Abs(v)
	i := sort.Search(len(r.abs), func(i int) bool { return math.Abs(r.abs[i]) > a })
	r.abs = append(r.abs, 0)
	copy(r.abs[i+1:], r.abs[i:])
	r.abs[i] = v
}

// current is the z of the differences added so far.
func (r *signedRanks) current() float64 {
	n := len(r.abs)
	if n == 0 {
		return 0
	}
	w, ties := 0.0, 0.0
	for i := 0; i < n; {
		j := i + 1
		for j < n && math.Abs(r.abs[j]) == math.Abs(r.abs[i]) {
			j++
		}
		mid := float64(i+1+j) / 2 // midrank of ranks i+1 … j
		for _, v := range r.abs[i:j] {
			if v > 0 {
				w += mid
			}
		}
		if t := float64(j - i); t > 1 {
			ties += t*t*t - t
		}
		i = j
	}
	nf := float64(n)
	v := nf*(nf+1)*(2*nf+1)/24 - ties/48
	if v <= 0 {
		return 0
	}
	return (w - nf*(nf+1)/4) / math.Sqrt(v)
}

// orient makes large bad: z for increase, −z for decrease, |z| for either.
func orient(z float64, bad Direction) float64 {
	switch bad {
	case Decrease:
		return -z
	case Either:
		return math.Abs(z)
	}
	return z
}

// iidSeasonalMaxima is IIDMaxima for the seasonal statistic: its window
// maxima over IIDSimulations windows of independent uniform values,
// sorted, seeded by the sizes, cached.
func iidSeasonalMaxima(seasons, window int, bad Direction) []float64 {
	return cachedIID(iidKey{lookback: -seasons, window: window, bad: bad}, func() []float64 {
		return simulateSeasonalIID(seasons, window, bad)
	})
}

func simulateSeasonalIID(seasons, window int, bad Direction) []float64 {
	r := rand.New(rand.NewPCG(uint64(seasons)<<32|0x5ea5, uint64(window)<<8|uint64(bad)))
	// One season of window values per earlier season, then the window:
	// x holds them as the history would, season = window.
	x := make([]float64, (seasons+1)*window+1)
	q := seasons * window
	var st seasonalRun
	out := make([]float64, IIDSimulations)
	for i := range out {
		for j := range x {
			x[j] = r.Float64()
		}
		m := math.Inf(-1)
		for _, z := range st.run(x, q, window, seasons, window, bad) {
			m = math.Max(m, z)
		}
		out[i] = m
	}
	sort.Float64s(out)
	return out
}
