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
// (ConcurrentStatistic): d_j = canary_j − baseline_j less the subset's
// offset μ, its mean difference over the lookback steps before the
// window, and at look k the standardized sum (d_1 + … + d_k) / (σ·√k), σ
// the robust scale of the history's differences. What the whole fleet
// goes through, its daily cycle and drift, cancels in the differences;
// what one instance does differently from the others for days (a busier
// host, older hardware) cancels in the offset. What is left is how far a
// subset's difference from the rest moves between a lookback and a
// window: a deploy fails when its canary's moves further than the
// subsets' did before it. A rank statistic would not do here: where one
// instance runs above the others, its placebos have every difference
// positive, the largest rank statistic there is, and a canary on it could
// never fail, however far it rose.
//
// A placebo is a window of window steps in one subset's history with
// lookback steps before it, at every step (every stride-th beyond max
// placebos in all, max ≤ 0 meaning MaxPlacebos); one touching a step
// without a value in its window, or without any value in its lookback, is
// left out. With lookback 0 nothing is taken out (the offset is 0).
//
// With one subset, the canary's own instances (analysis does this when
// they were there before the deploy), the placebos are those instances'
// own past moves: the test holds alpha when they move during the window
// as they did before. With random subsets of other instances, as for a
// canary of new instances that has no past (lookback 0), it holds alpha
// when the canary is as good as any instances of the fleet to have been
// picked, and the fleet behaves before the deploy as during it. The
// calibration has no IID maxima: the statistic has no distribution-free
// null.
func CalibrateConcurrent(canary, baseline [][]float64, lookback, window int, bad Direction, max int) Calibration {
	if max <= 0 {
		max = MaxPlacebos
	}
	c := Calibration{Lookback: lookback, Window: window, Subsets: len(canary)}
	if window < 1 || lookback < 0 || len(canary) == 0 || len(canary) != len(baseline) {
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
	if len(all) >= 2 {
		c.DiffScale = robustScale(all)
	}
	scale := c.concurrentScale()
	n := steps - first - lookback - window + 1 // placebo windows per subset
	if n <= 0 {
		return c
	}
	stride := (n*len(canary) + max - 1) / max
	for i := range d {
		// The most recent placebos first, as the other calibrations.
		for q := steps - window; q >= first+lookback; q -= stride {
			off := 0.0
			if lookback > 0 {
				if off = Offset(d[i][q-lookback : q]); math.IsNaN(off) {
					continue
				}
			}
			if m := concurrentMax(d[i][q:q+window], off, scale, bad); !math.IsNaN(m) {
				c.Maxima = append(c.Maxima, m)
			}
		}
	}
	sort.Float64s(c.Maxima)
	return c
}

// concurrentMax is the largest ConcurrentStatistic over the looks of a
// window of differences, NaN when one of them is.
func concurrentMax(d []float64, offset, scale float64, bad Direction) float64 {
	m, sum := math.Inf(-1), 0.0
	for k, v := range d {
		if math.IsNaN(v) {
			return math.NaN()
		}
		sum += v - offset
		m = math.Max(m, orient(sum/(scale*math.Sqrt(float64(k+1))), bad))
	}
	return m
}

// Offset is the mean of the differences that are not NaN, NaN when none
// is: a subset's (or the canary's) offset from the other instances over a
// lookback.
func Offset(d []float64) float64 {
	sum, n := 0.0, 0
	for _, v := range d {
		if !math.IsNaN(v) {
			sum, n = sum+v, n+1
		}
	}
	if n == 0 {
		return math.NaN()
	}
	return sum / float64(n)
}

// ConcurrentStatistic is the statistic of a concurrent calibration at one
// look: the canary's differences from the baseline at the same steps less
// the canary's offsets, d_j = canary_j − baseline_j − offsets_j (nil
// offsets: none), summed and standardized by the history's scale of the
// differences, (Σ d_j) / (scale·√k) over the look's k steps, oriented so
// that large is bad. NaN when the values cannot be paired (not as many on
// each side, or offsets of another length), there is none, or an offset
// is NaN.
func ConcurrentStatistic(baseline, canary []float64, bad Direction, scale float64, offsets []float64) float64 {
	if len(canary) == 0 || len(canary) != len(baseline) || !(scale > 0) || (offsets != nil && len(offsets) != len(canary)) {
		return math.NaN()
	}
	sum := 0.0
	for j := range canary {
		sum += canary[j] - baseline[j]
		if offsets != nil {
			sum -= offsets[j]
		}
	}
	return orient(sum/(scale*math.Sqrt(float64(len(canary)))), bad)
}

// CalibrateConcurrentCounts is CalibrateConcurrent for an events/trials
// KPI: for each subset of instances as large as the canary, its events
// and trials (canaryEvents[i], canaryTrials[i]) and the other instances'
// (baselineEvents[i], baselineTrials[i]) at each step of the history on
// the step grid, NaN where a step has no value. A placebo's statistic at
// each look is the CountsStatisticOffset of the subset's pooled counts
// over the window so far against the other instances' over the same
// steps, less the subset's offset: the difference of their pooled rates
// over the lookback steps before the window (with lookback 0, none). A
// step without valid counts on a side adds nothing to that side, as in a
// deploy's own sums; a window whose statistic is never defined (no trials
// on a side), or whose lookback has no trials on a side, is left out.
// Placebos are placed as CalibrateConcurrent places them.
func CalibrateConcurrentCounts(canaryEvents, canaryTrials, baselineEvents, baselineTrials [][]float64, lookback, window int, bad Direction, max int) Calibration {
	if max <= 0 {
		max = MaxPlacebos
	}
	m := len(canaryEvents)
	c := Calibration{Lookback: lookback, Window: window, Subsets: m, Counts: true}
	if window < 1 || lookback < 0 || m == 0 || len(canaryTrials) != m || len(baselineEvents) != m || len(baselineTrials) != m {
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
	n := steps - lookback - window + 1
	if n <= 0 {
		return c
	}
	stride := (n*m + max - 1) / max
	for i := range m {
		ce, ct := countsPrefix(canaryEvents[i], canaryTrials[i])
		be, bt := countsPrefix(baselineEvents[i], baselineTrials[i])
		for q := steps - window; q >= lookback; q -= stride {
			off := 0.0
			if lookback > 0 {
				off = RateOffset(Counts{Events: ce[q] - ce[q-lookback], Trials: ct[q] - ct[q-lookback]},
					Counts{Events: be[q] - be[q-lookback], Trials: bt[q] - bt[q-lookback]})
				if math.IsNaN(off) {
					continue
				}
			}
			mx := math.Inf(-1)
			for k := 1; k <= window; k++ {
				z := CountsStatisticOffset(Counts{Events: be[q+k] - be[q], Trials: bt[q+k] - bt[q]},
					Counts{Events: ce[q+k] - ce[q], Trials: ct[q+k] - ct[q]}, bad, off)
				if !math.IsNaN(z) {
					mx = math.Max(mx, z)
				}
			}
			if !math.IsInf(mx, -1) {
				// A window without trials on a side (an instance not yet
				// there) is no placebo: it could never exceed a deploy.
				c.Maxima = append(c.Maxima, mx)
			}
		}
	}
	sort.Float64s(c.Maxima)
	return c
}

// countsPrefix returns the prefix sums of the valid counts of a series of
// events and trials: the counts of steps [i, j) are pe[j] − pe[i] and
// pt[j] − pt[i]. A step without valid counts adds nothing.
func countsPrefix(events, trials []float64) (pe, pt []float64) {
	pe, pt = make([]float64, len(events)+1), make([]float64, len(events)+1)
	for j := range events {
		e, t := events[j], trials[j]
		if !(e >= 0 && e <= t && !math.IsInf(t, 0)) {
			e, t = 0, 0
		}
		pe[j+1], pt[j+1] = pe[j]+e, pt[j]+t
	}
	return pe, pt
}

// RateOffset is how far the canary's pooled rate is above the baseline's:
// canary.Events/canary.Trials − baseline.Events/baseline.Trials, NaN when
// a side has no trials.
func RateOffset(canary, baseline Counts) float64 {
	if !(canary.Trials > 0) || !(baseline.Trials > 0) {
		return math.NaN()
	}
	return canary.Events/canary.Trials - baseline.Events/baseline.Trials
}

// CountsStatisticOffset is CountsStatistic of the difference of the
// rates less offset: (p̂_c − p̂_b − offset) / sqrt(p̄(1−p̄)(1/n_c + 1/n_b)),
// oriented. With offset 0 it is CountsStatistic. NaN where that is, or
// when offset is NaN.
func CountsStatisticOffset(baseline, canary Counts, bad Direction, offset float64) float64 {
	nb, nc := baseline.Trials, canary.Trials
	if !(nb > 0) || !(nc > 0) || math.IsNaN(offset) {
		return math.NaN()
	}
	p := (baseline.Events + canary.Events) / (nb + nc)
	v := p * (1 - p) * (1/nb + 1/nc)
	if !(v > 0) {
		return math.NaN()
	}
	return orient((canary.Events/nc-baseline.Events/nb-offset)/math.Sqrt(v), bad)
}

// concurrentScale is the scale a concurrent calibration's statistic is
// standardized by: DiffScale, or 1 where the history's differences have
// no spread (constant series).
func (c Calibration) concurrentScale() float64 {
	if c.DiffScale > 0 {
		return c.DiffScale
	}
	return 1
}
