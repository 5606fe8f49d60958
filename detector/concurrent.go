package detector

import (
	"math"
	"sort"
)

// CalibrateConcurrent is Calibrate for a concurrent baseline, where the
// canary is compared with the other instances over the same steps. Before
// the deploy no instance runs the new version, so the placebos are A/A
// comparisons among the instances that were there: for each subset of
// instances as large as the canary, canary[i] is the KPI over subset i
// and baseline[i] over the other instances, at each step of the history
// before the deploy on the step grid (NaN where a step has no value), all
// of one length, oldest first.
//
// The statistic pairs the two sides step by step, as a deploy's
// (ConcurrentStatistic): d_j = canary_j − baseline_j, and at look k the
// standardized sum (d_1 + … + d_k) / (σ·√k), σ the robust scale of the
// history's differences. What the whole fleet goes through, its daily
// cycle and drift, cancels in the differences. A rank statistic would not
// do here: where one instance runs above the others for days, its
// placebos have every difference positive, the largest rank statistic
// there is, and a canary on it could never fail, however far it rose.
//
// A placebo is a window of window steps in one subset's history, at every
// step (every stride-th beyond max placebos in all, max ≤ 0 meaning
// MaxPlacebos); one touching a step without a value on either side is
// left out. What one instance does differently from the others for hours,
// a warmer cache or a busier host, is in the placebos' maxima: a deploy
// fails only when its canary departs from the rest by more than subsets
// of the same size did before it.
//
// This holds alpha when the canary's instances are as good as any others
// of the fleet to have been picked (the deployment manager does not pick
// the busiest host, say), and the fleet behaves before the deploy as
// during it. The calibration has no IID maxima: the statistic has no
// distribution-free null.
func CalibrateConcurrent(canary, baseline [][]float64, window int, bad Direction, max int) Calibration {
	if max <= 0 {
		max = MaxPlacebos
	}
	c := Calibration{Window: window, Subsets: len(canary)}
	if window < 1 || len(canary) == 0 || len(canary) != len(baseline) {
		return c
	}
	steps := len(canary[0])
	for i := range canary {
		if len(canary[i]) != steps || len(baseline[i]) != steps {
			return c
		}
	}
	d := make([][]float64, len(canary))
	var all []float64
	first := steps // the first step with a difference in any subset
	for i := range canary {
		d[i] = make([]float64, steps)
		for j := range steps {
			d[i][j] = canary[i][j] - baseline[i][j] // NaN when either is
			if !math.IsNaN(d[i][j]) {
				all = append(all, d[i][j])
				first = min(first, j)
			}
		}
	}
	c.DiffScale = 1
	if len(all) >= 2 {
		if s := robustScale(all); s > 0 {
			c.DiffScale = s
		}
	}
	n := steps - first - window + 1 // placebo windows per subset
	if n <= 0 {
		return c
	}
	stride := (n*len(canary) + max - 1) / max
	for i := range d {
		// The most recent placebos first, as the other calibrations.
	placebo:
		for q := steps - window; q >= first; q -= stride {
			m, sum := math.Inf(-1), 0.0
			for k, v := range d[i][q : q+window] {
				if math.IsNaN(v) {
					continue placebo
				}
				sum += v
				m = math.Max(m, orient(sum/(c.DiffScale*math.Sqrt(float64(k+1))), bad))
			}
			c.Maxima = append(c.Maxima, m)
		}
	}
	sort.Float64s(c.Maxima)
	return c
}

// ConcurrentStatistic is the statistic of a concurrent calibration at one
// look: the canary's differences from the baseline at the same steps,
// d_j = canary_j − baseline_j, summed and standardized by the history's
// scale of the differences, (Σ d_j) / (scale·√k) over the look's k steps,
// oriented so that large is bad. NaN when the two cannot be paired (not
// as many values on each side) or there is none.
func ConcurrentStatistic(baseline, canary []float64, bad Direction, scale float64) float64 {
	if len(canary) == 0 || len(canary) != len(baseline) || !(scale > 0) {
		return math.NaN()
	}
	sum := 0.0
	for j := range canary {
		sum += canary[j] - baseline[j]
	}
	return orient(sum/(scale*math.Sqrt(float64(len(canary)))), bad)
}

// CalibrateConcurrentCounts is CalibrateConcurrent for an events/trials
// KPI: for each subset of instances as large as the canary, its events
// and trials (canaryEvents[i], canaryTrials[i]) and the other instances'
// (baselineEvents[i], baselineTrials[i]) at each step of the history on
// the step grid, NaN where a step has no value. A placebo's statistic at
// each look is the CountsStatistic of the subset's pooled counts over the
// window so far against the other instances' over the same steps, as a
// deploy's is; a step without valid counts on a side adds nothing to
// that side, as in a deploy's own sums. Placebos are placed as
// CalibrateConcurrent places them.
func CalibrateConcurrentCounts(canaryEvents, canaryTrials, baselineEvents, baselineTrials [][]float64, window int, bad Direction, max int) Calibration {
	if max <= 0 {
		max = MaxPlacebos
	}
	m := len(canaryEvents)
	c := Calibration{Window: window, Subsets: m, Counts: true}
	if window < 1 || m == 0 || len(canaryTrials) != m || len(baselineEvents) != m || len(baselineTrials) != m {
		return c
	}
	steps := len(canaryEvents[0])
	for i := range m {
		for _, s := range [][]float64{canaryEvents[i], canaryTrials[i], baselineEvents[i], baselineTrials[i]} {
			if len(s) != steps {
				return c
			}
		}
	}
	n := steps - window + 1
	if n <= 0 {
		return c
	}
	stride := (n*m + max - 1) / max
	// prefix returns the prefix sums of the valid counts of one side.
	prefix := func(events, trials []float64) (pe, pt []float64) {
		pe, pt = make([]float64, steps+1), make([]float64, steps+1)
		for j := range steps {
			e, t := events[j], trials[j]
			if !(e >= 0 && e <= t && !math.IsInf(t, 0)) {
				e, t = 0, 0
			}
			pe[j+1], pt[j+1] = pe[j]+e, pt[j]+t
		}
		return pe, pt
	}
	for i := range m {
		ce, ct := prefix(canaryEvents[i], canaryTrials[i])
		be, bt := prefix(baselineEvents[i], baselineTrials[i])
		for q := n - 1; q >= 0; q -= stride {
			mx := math.Inf(-1)
			for k := 1; k <= window; k++ {
				z := CountsStatistic(Counts{Events: be[q+k] - be[q], Trials: bt[q+k] - bt[q]},
					Counts{Events: ce[q+k] - ce[q], Trials: ct[q+k] - ct[q]}, bad)
				if !math.IsNaN(z) {
					mx = math.Max(mx, z)
				}
			}
			c.Maxima = append(c.Maxima, mx)
		}
	}
	sort.Float64s(c.Maxima)
	return c
}
