package detector

import (
	"math"
	"sort"
)

// CountsStatistic is the statistic of an events/trials KPI at one look:
// the two-proportion z of the canary's pooled counts against the
// baseline's, with the pooled proportion's variance and no continuity
// correction, oriented so that large is bad (z for increase, −z for
// decrease, |z| for either). NaN when it is undefined: no trials on a
// side, or no event (or nothing but events) on both.
//
// On real per-request KPIs the z is not standard normal under no change:
// the rate moves from step to step more than binomial sampling explains
// (overdispersion), and drifts over the day, so with many trials a
// harmless deploy gets a z of 5 or 10. CalibrateCounts measures what the
// z does at harmless deploys of the KPI's own past instead.
func CountsStatistic(baseline, canary Counts, bad Direction) float64 {
	return CountsStatisticOffset(baseline, canary, bad, 0)
}

// CalibrateCounts is CalibrateInPhase for an events/trials KPI (its daily
// cycle measured on the pooled proportions of its hours): events and
// trials are its counts at each step of the history before the deploy,
// oldest first, of the same length (steps where either is missing left
// out by the caller); the last lookback steps are the deploy's own
// lookback. Each placebo deploy's maximum is the largest CountsStatistic
// of its window's pooled counts so far against its lookback's, over the
// window's looks. The calibration has no IID maxima (the z has no
// distribution-free null); the judge keeps the binomial test's p-value
// times the looks as its floor instead.
func CalibrateCounts(events, trials []float64, lookback, window int, bad Direction, max, period, tol, need int) Calibration {
	if max <= 0 {
		max = MaxPlacebos
	}
	c := Calibration{Lookback: lookback, Window: window, Counts: true}
	if lookback < 1 || window < 1 || len(events) != len(trials) {
		return c
	}
	if period > 0 && dailyCycleCounts(events, trials, period) < MinDailyCycle {
		period = 0 // no daily cycle to match: placebos at every point
	}
	at, inPhase := placeboStarts(len(events), lookback, window, max, period, tol, need)
	if inPhase {
		c.Period = period
	}
	// Prefix sums: the counts of steps [i, j) are ce[j] − ce[i].
	ce := make([]float64, len(events)+1)
	ct := make([]float64, len(trials)+1)
	for i := range events {
		ce[i+1], ct[i+1] = ce[i]+events[i], ct[i]+trials[i]
	}
	for _, p := range at {
		base := Counts{Events: ce[p] - ce[p-lookback], Trials: ct[p] - ct[p-lookback]}
		m := math.Inf(-1)
		for k := 1; k <= window; k++ {
			z := CountsStatistic(base, Counts{Events: ce[p+k] - ce[p], Trials: ct[p+k] - ct[p]}, bad)
			if !math.IsNaN(z) {
				m = math.Max(m, z)
			}
		}
		c.Maxima = append(c.Maxima, m)
	}
	sort.Float64s(c.Maxima)
	return c
}

// CalibrateSeasonalCounts is CalibrateSeasonal for an events/trials KPI:
// events and trials are its counts at each step of the history on the
// step grid (NaN where a step has no value), oldest first. A placebo at
// index q has its window at q+1 … q+window and its seasons at the same
// steps season, 2·season, … earlier; at each look its statistic is the
// CountsStatistic of the window's pooled counts so far against the pooled
// counts of the seasons at the same steps, as a deploy's is. Placebos are
// placed as CalibrateSeasonal places them; one touching a step without a
// value is left out.
func CalibrateSeasonalCounts(events, trials []float64, season, seasons, window int, bad Direction, max int) Calibration {
	if max <= 0 {
		max = MaxPlacebos
	}
	c := Calibration{Window: window, Season: season, Seasons: seasons, Counts: true}
	if season < 1 || seasons < 1 || window < 1 || len(events) != len(trials) {
		return c
	}
	back := seasons * season
	first := back - 1
	last := len(events) - back - window - 1
	n := last - first + 1
	if n <= 0 {
		return c
	}
	valid := func(i int) bool {
		e, t := events[i], trials[i]
		return e >= 0 && e <= t && !math.IsInf(t, 0)
	}
	stride := (n + max - 1) / max
	for q := last; q >= first; q -= stride {
		var canary, base Counts
		m, ok := math.Inf(-1), true
		for j := 1; j <= window && ok; j++ {
			i := q + j
			ok = valid(i)
			canary.Events += events[i]
			canary.Trials += trials[i]
			for s := 1; s <= seasons && ok; s++ {
				ok = valid(i - s*season)
				base.Events += events[i-s*season]
				base.Trials += trials[i-s*season]
			}
			if z := CountsStatistic(base, canary, bad); ok && !math.IsNaN(z) {
				m = math.Max(m, z)
			}
		}
		if ok {
			c.Maxima = append(c.Maxima, m)
		}
	}
	sort.Float64s(c.Maxima)
	return c
}

// dailyCycleCounts is dailyCycle of an events/trials KPI: the blocks'
// pooled proportions.
func dailyCycleCounts(events, trials []float64, period int) float64 {
	block := max(1, period/24)
	var rates []float64
	for i := 0; i+block <= len(events); i += block {
		e, t := 0.0, 0.0
		for j := i; j < i+block; j++ {
			e += events[j]
			t += trials[j]
		}
		r := math.NaN() // no trials in the block: no rate
		if t > 0 {
			r = e / t
		}
		rates = append(rates, r)
	}
	return repeats(rates, period/block)
}
