package detector

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// zPower is the normal quantile of the power the minimum detectable
// effect is stated at: 80%.
const zPower = 0.8416212335729143

// guardPower sets the minimum detectable effect of a KPI that did not fail
// and, where the KPI has a min_effect that the data could not have
// detected, turns its pass into inconclusive: too little data is never a
// pass.
func guardPower(kv *KPIVerdict, k KPI) {
	if kv.Outcome != Pass || math.IsNaN(kv.Threshold) || strings.HasPrefix(kv.Reason, "no change:") {
		return
	}
	mde := minDetectable(kv, k)
	if math.IsNaN(mde) || math.IsInf(mde, 0) {
		if math.IsInf(mde, 1) && kv.MinEffect.Value > 0 {
			kv.Outcome = Inconclusive
			kv.Reason = fmt.Sprintf("too little data to detect min_effect %s: no change could have been detected", kv.MinEffect)
		}
		return
	}
	kv.MDE = mde
	if kv.Relative {
		kv.RelMDE = mde / math.Abs(kv.BaselineLevel)
	}
	m := kv.MinEffect
	if m.Value == 0 {
		return
	}
	size := mde
	if m.Relative {
		if !kv.Relative {
			return
		}
		size = kv.RelMDE
	}
	if size > m.Value && !ruledOut(kv) {
		kv.Outcome = Inconclusive
		what := formatNumber(mde)
		if m.Relative {
			what = formatPercent(100 * kv.RelMDE)
		}
		kv.Reason = fmt.Sprintf("too little data to detect min_effect %s: the smallest change it could have detected (80%% power) is %s", m, what)
	}
}

// ruledOut reports whether the KPI's interval already excludes a harmful
// change as large as its min_effect: then the data suffice, whatever the
// power, as when the canary is clearly better than the baseline.
func ruledOut(kv *KPIVerdict) bool {
	m := kv.MinEffect
	lo, hi := kv.EffectLow, kv.EffectHigh
	if m.Relative {
		lo, hi = kv.RelLow, kv.RelHigh
	}
	if math.IsNaN(lo) || math.IsNaN(hi) {
		return false
	}
	switch kv.Bad {
	case Increase:
		return hi < m.Value
	case Decrease:
		return lo > -m.Value
	default:
		return hi < m.Value && lo > -m.Value
	}
}

// formatSize formats a change, as a percentage of the baseline's level
// where there is one.
func formatSize(kv *KPIVerdict, x float64) string {
	if kv.Relative {
		return formatPercent(100 * x / math.Abs(kv.BaselineLevel))
	}
	return formatNumber(x)
}

// minDetectable is the smallest change of the KPI, in its unit, that its
// decision would have caught with 80% power at its threshold, from normal
// approximations: +Inf when no change could have been, NaN when it is not
// computed.
func minDetectable(kv *KPIVerdict, k KPI) float64 {
	thr := kv.Threshold
	if kv.Looks > 1 {
		thr /= float64(kv.Looks) // the per-look level of an uncalibrated KPI
	}
	if kv.Bad == Either {
		thr /= 2
	}
	switch {
	case k.HasCounts:
		cb, cc := k.BaselineCounts, k.CanaryCounts
		if cb.Trials == 0 || cc.Trials == 0 {
			return math.Inf(1)
		}
		p := cb.Events / cb.Trials
		if c := k.Calibration; c != nil && c.Counts && c.Subsets > 0 && c.Lookback > 0 && !math.IsNaN(k.RateOffset) {
			// Judged on its own past: where the canary's rate would be.
			p = math.Min(math.Max(p+k.RateOffset, 0), 1)
		}
		if p == 0 {
			p = 0.5 / cb.Trials // no event yet: half an event's worth of rate
		}
		crit := mwQnorm(thr, false)
		if c := k.Calibration; c != nil && c.Counts && kv.Placebos > 0 {
			// Calibrated: the z must pass the placebos' critical value as
			// well as the test's (the p-value is the larger of the two).
			crit = math.Max(crit, c.critical(kv.Threshold))
			if math.IsInf(crit, 1) {
				return math.Inf(1)
			}
		}
		return countsDetectable(p, cc.Trials, cb.Trials, crit+zPower, kv.Bad)
	case kv.Test == KSTest:
		return math.NaN()
	}
	if c := k.Calibration; c != nil && c.Subsets > 0 && kv.Placebos > 0 {
		// Concurrent: the standardized sum of the k differences from the
		// baseline moves by δ·√k/σ for a shift δ, σ the scale it is
		// standardized by, so the smallest shift that passes the
		// placebos' critical value with 80 % power is (crit + z)·σ/√k.
		n := len(k.Canary)
		if n == 0 || n != len(k.Baseline) {
			return math.Inf(1)
		}
		crit := c.critical(kv.Threshold)
		if math.IsInf(crit, 1) {
			return math.Inf(1)
		}
		return (crit + zPower) * c.DiffScale / math.Sqrt(float64(n)) // 0 where the history never moved
	}
	if c := k.Calibration; c != nil && c.Seasons > 0 && kv.Placebos > 0 {
		// Seasonal: the signed-rank z of the k differences from the
		// seasons moves by about δ/σ_d·sqrt(3k/π) for a shift δ of normal
		// data (its efficiency relative to the t-test is 3/π), σ_d the
		// differences' robust scale: the daily cycle that the pairing
		// cancels does not count, as it would in the pooled baseline.
		// σ_d from the history's differences when the calibration has
		// them (a window's own few are a noisy scale).
		d := seasonalDiffs(k.Baseline, k.Canary, c.Seasons)
		if len(d) < 2 {
			return math.Inf(1)
		}
		sigma := c.DiffScale
		if !(sigma > 0) {
			sigma = robustScale(d)
		}
		if sigma == 0 {
			return math.NaN()
		}
		crit := c.critical(kv.Threshold)
		if math.IsInf(crit, 1) {
			return math.Inf(1)
		}
		return (crit + zPower) * sigma * math.Sqrt(math.Pi/(3*float64(len(d))))
	}
	nc, nb := float64(len(k.Canary)), float64(len(k.Baseline))
	if nc == 0 || nb < 2 {
		return math.Inf(1)
	}
	sigma := robustScale(k.Baseline)
	if sigma == 0 {
		return math.NaN() // a constant baseline: any change shows
	}
	var crit float64
	if c := k.Calibration; c != nil && kv.Placebos > 0 {
		crit = c.critical(kv.Threshold)
		if math.IsInf(crit, 1) {
			return math.Inf(1)
		}
	} else {
		crit = mwQnorm(thr, false)
	}
	if kv.Test == WelchTest {
		return (crit + zPower) * sigma * math.Sqrt(1/nc+1/nb)
	}
	// Mann-Whitney: a shift δ of normal data moves z by about
	// δ/σ·sqrt(3·nc·nb/(π·(N+1))).
	return (crit + zPower) * sigma * math.Sqrt(math.Pi*(nc+nb+1)/(3*nc*nb))
}

// countsDetectable is the change δ of a proportion p (the baseline's) that
// moves the two-proportion z (CountsStatistic, whose variance is the
// pooled proportion's) by zz: δ = zz·se(p̄), p̄ = p ± δ·nc/(nc+nb) the pooled
// proportion after the change, solved by fixed-point iteration. The
// pooled proportion moves with the change, so the baseline's alone would
// understate δ for a rise.
func countsDetectable(p, nc, nb, zz float64, bad Direction) float64 {
	share := nc / (nc + nb)
	se := func(q float64) float64 {
		q = math.Min(math.Max(q, 0.5/(nc+nb)), 1-0.5/(nc+nb))
		return math.Sqrt(q * (1 - q) * (1/nc + 1/nb))
	}
	d := zz * se(p)
	for range 50 {
		q := p + d*share
		if bad == Decrease {
			q = p - d*share
		}
		next := zz * se(q)
		if math.Abs(next-d) <= 1e-12*math.Max(d, 1e-300) {
			return next
		}
		d = next
	}
	return d
}

// critical is the smallest window maximum whose p-value (P: the larger of
// the placebos' and the i.i.d. null's) is at most a.
func (c Calibration) critical(a float64) float64 {
	crit := criticalOf(c.Maxima, a)
	if len(c.IID) > 0 {
		crit = math.Max(crit, criticalOf(c.IID, a))
	}
	return crit
}

// criticalOf is the smallest m with (1 + #{sorted ≥ m})/(n+1) ≤ a.
func criticalOf(sorted []float64, a float64) float64 {
	n := len(sorted)
	// (1 + #{≥ m})/(n+1) ≤ a needs #{≥ m} ≤ a(n+1) − 1 =: r.
	r := int(math.Floor(a*float64(n+1)+1e-9)) - 1
	if r < 0 {
		return math.Inf(1)
	}
	if r >= n {
		return math.Inf(-1)
	}
	// m just above the (r+1)-th largest maximum.
	return math.Nextafter(sorted[n-1-r], math.Inf(1))
}

// robustScale is 1.4826 × the median absolute deviation, or the standard
// deviation when the MAD is 0 (mostly-constant data with outliers).
func robustScale(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	med := median(s)
	for i, x := range s {
		s[i] = math.Abs(x - med)
	}
	if mad := 1.4826 * median(s); mad > 0 {
		return mad
	}
	m := mean(xs)
	ss := 0.0
	for _, x := range xs {
		ss += (x - m) * (x - m)
	}
	sd := math.Sqrt(ss / float64(len(xs)-1))
	if sd <= 1e-12*math.Abs(m) {
		return 0 // constant but for rounding
	}
	return sd
}
