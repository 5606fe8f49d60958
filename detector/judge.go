package detector

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
)

// Outcome is the verdict on a KPI or on a deploy.
type Outcome int

const (
	// Inconclusive: too little data to tell. Never a pass. It is the zero
	// value, so an Outcome nobody set is not a pass either.
	Inconclusive Outcome = iota
	Pass
	Fail
)

func (o Outcome) String() string {
	switch o {
	case Pass:
		return "pass"
	case Fail:
		return "fail"
	case Inconclusive:
		return "inconclusive"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// MarshalText writes pass, fail or inconclusive.
func (o Outcome) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

// UnmarshalText reads pass, fail or inconclusive.
func (o *Outcome) UnmarshalText(b []byte) error {
	for _, c := range []Outcome{Pass, Fail, Inconclusive} {
		if c.String() == string(b) {
			*o = c
			return nil
		}
	}
	return fmt.Errorf("verdict %q: must be one of pass, fail, inconclusive", b)
}

// JudgeOptions set the error budget of a deploy.
type JudgeOptions struct {
	// Alpha is the most the deploy may risk being failed while harmless,
	// over all its KPIs together (family-wise). In (0, 0.5].
	Alpha float64
	// Confidence is the level of the intervals shown in explanations.
	// Zero means 0.95.
	Confidence float64
	// FailWeight is the total weight of failing KPIs that fails a deploy;
	// critical KPIs fail it alone. Zero means 1: with default weights,
	// any failing KPI fails the deploy.
	FailWeight float64
	// Looks is how many times the deploy is judged over its window (zero
	// means 1). The p-value of a KPI without a Calibration is multiplied
	// by it (Bonferroni over the looks), so that judging at every look
	// keeps the chance of failing a harmless deploy at most Alpha; a
	// calibrated KPI's p-value already accounts for every look (an
	// events/trials KPI's is never below its test's times Looks, though).
	Looks int
}

// KPIVerdict is the judgement of one KPI, with the numbers behind it.
type KPIVerdict struct {
	Name    string
	Outcome Outcome
	// NoData is set when the KPI's data could not be had (KPI.Missing,
	// then the Reason): it is inconclusive for want of data, not of power.
	NoData   bool
	Critical bool
	Weight   float64
	Bad      Direction
	// Test is the test that decided (after auto), Alternative its
	// alternative (the bad direction).
	Test        TestKind
	Alternative Alternative
	// Decision is the decision test's result; nil when it could not run.
	Decision *Result
	// PValue is the KPI's p-value over the window (NaN when it could not
	// be had): the calibrated p-value, or the decision test's multiplied
	// by the looks. Threshold is what it had to be at most to count
	// (weighted Holm), and Significant whether it was.
	PValue      float64
	Threshold   float64
	Significant bool
	// BaselineLevel and CanaryLevel are the medians (rank tests), means
	// (Welch) or proportions of the two samples.
	BaselineLevel, CanaryLevel float64
	// Effect is the change, canary − baseline (Hodges-Lehmann shift,
	// difference in means or in proportions; difference in medians for
	// ks), with its two-sided interval at Confidence (NaN where the test
	// has none). Relative is true when the effects below are also given as
	// fractions of |BaselineLevel|.
	Effect, EffectLow, EffectHigh float64
	Confidence                    float64
	Relative                      bool
	RelEffect, RelLow, RelHigh    float64
	MinEffect                     MinEffect
	// Placebos is the size of the calibration (0: not calibrated), and
	// Looks the Bonferroni factor of an uncalibrated p-value. InPhase is
	// true when the placebos share the deploy's phase of a period (the
	// same time of day).
	Placebos, Looks int
	InPhase         bool
	// AcrossInstances is true when the placebos were A/A comparisons
	// among the instances before the deploy (a concurrent baseline).
	AcrossInstances bool
	// Offset is, for a calibration across instances with a lookback, the
	// canary's instances' mean difference from the others before the
	// deploy, taken out of the deploy's differences (the KPI's unit); NaN
	// otherwise.
	Offset float64
	// MDE is the smallest change (in the KPI's unit, as Effect) that the
	// data could have detected, with 80% power at the KPI's threshold; NaN
	// where it was not computed (failing KPIs, ks). RelMDE is MDE as a
	// fraction of |BaselineLevel|, when Relative.
	MDE, RelMDE float64
	// Reason says, in words, why the outcome is what it is.
	Reason string
	// Sentence is the explanation in one line, numbers included.
	Sentence string
}

// Verdict is the judgement of a deploy.
type Verdict struct {
	Outcome Outcome
	// Reason is the verdict in one sentence.
	Reason string
	KPIs   []KPIVerdict
	Alpha  float64
	// Correction names the family-wise control: "Holm" or
	// "weighted Holm"; empty for a single KPI.
	Correction    string
	FailingWeight float64
	FailWeight    float64
}

// Explanation is the verdict's reason followed by one sentence per KPI,
// failing KPIs first.
func (v Verdict) Explanation() []string {
	lines := []string{v.Reason}
	for _, o := range []Outcome{Fail, Inconclusive, Pass} {
		for _, k := range v.KPIs {
			if k.Outcome == o {
				lines = append(lines, k.Sentence)
			}
		}
	}
	return lines
}

// ErrNoKPIs: a deploy needs at least one KPI to be judged.
var ErrNoKPIs = errors.New("no kpis to judge")

// Judge decides a deploy from its KPIs.
//
// Each KPI is tested in its bad direction (one-sided for increase and
// decrease, so a change in the harmless direction never fails). The
// p-values are compared with weighted Holm thresholds, so the chance of
// failing a harmless deploy stays at most Alpha however many KPIs it has.
// A KPI fails when it is significant and its effect is at least its
// MinEffect. The deploy fails when a critical KPI fails or the failing
// weight reaches FailWeight; otherwise it is inconclusive when any KPI
// could not be judged, and passes only when every KPI was.
//
// The error is for invalid options or KPI definitions, never for data:
// a KPI whose data cannot be tested is inconclusive, with the reason.
func Judge(kpis []KPI, opt JudgeOptions) (Verdict, error) {
	if len(kpis) == 0 {
		return Verdict{}, ErrNoKPIs
	}
	if !(opt.Alpha > 0 && opt.Alpha <= 0.5) {
		return Verdict{}, fmt.Errorf("%w: alpha %v must be in (0, 0.5]", ErrInvalidOption, opt.Alpha)
	}
	conf, err := Options{Confidence: opt.Confidence}.confidence()
	if err != nil {
		return Verdict{}, err
	}
	failWeight := opt.FailWeight
	if failWeight == 0 {
		failWeight = 1
	}
	if !(failWeight > 0) || math.IsInf(failWeight, 0) {
		return Verdict{}, fmt.Errorf("%w: fail weight %v must be positive", ErrInvalidOption, opt.FailWeight)
	}
	seen := map[string]bool{}
	for _, k := range kpis {
		if seen[k.Name] {
			return Verdict{}, fmt.Errorf("%w: kpi %q appears twice", ErrInvalidOption, k.Name)
		}
		seen[k.Name] = true
		if k.Bad < Increase || k.Bad > Either {
			return Verdict{}, fmt.Errorf("%w: kpi %q: bad direction not set", ErrInvalidOption, k.Name)
		}
		if w := k.weight(); !(w > 0) || math.IsInf(w, 0) {
			return Verdict{}, fmt.Errorf("%w: kpi %q: weight %v must be positive", ErrInvalidOption, k.Name, k.Weight)
		}
		if m := k.MinEffect.Value; !(m >= 0) || math.IsInf(m, 0) {
			return Verdict{}, fmt.Errorf("%w: kpi %q: min effect %v must be a non-negative number", ErrInvalidOption, k.Name, m)
		}
		if _, err := k.testKind(); err != nil {
			return Verdict{}, fmt.Errorf("%w: %v", ErrInvalidOption, err)
		}
	}

	looks := max(opt.Looks, 1)
	totalWeight := 0.0
	for _, k := range kpis {
		totalWeight += k.weight()
	}
	v := Verdict{Alpha: opt.Alpha, FailWeight: failWeight, KPIs: make([]KPIVerdict, len(kpis))}
	for i, k := range kpis {
		v.KPIs[i] = evaluate(k, conf)
		windowP(&v.KPIs[i], k, looks, opt.Alpha*k.weight()/totalWeight)
	}
	v.Correction = holm(v.KPIs, opt.Alpha)
	for i := range v.KPIs {
		decide(&v.KPIs[i])
		guardPower(&v.KPIs[i], kpis[i])
		v.KPIs[i].Sentence = sentence(v.KPIs[i], v.Correction, len(kpis))
	}
	summarize(&v)
	return v, nil
}

// evaluate runs the KPI's decision test and the two-sided test behind the
// interval it is explained with.
func evaluate(k KPI, conf float64) KPIVerdict {
	t, _ := k.testKind() // checked by Judge
	kv := KPIVerdict{
		Name: k.Name, Critical: k.Critical, Weight: k.weight(), Bad: k.Bad,
		Test: t, Alternative: alternative(t, k.Bad), MinEffect: k.MinEffect,
		PValue: math.NaN(), Threshold: math.NaN(), Confidence: conf, MDE: math.NaN(), RelMDE: math.NaN(), Offset: math.NaN(),
		Effect: math.NaN(), EffectLow: math.NaN(), EffectHigh: math.NaN(),
		RelEffect: math.NaN(), RelLow: math.NaN(), RelHigh: math.NaN(),
	}
	if k.Missing != "" {
		kv.BaselineLevel, kv.CanaryLevel = math.NaN(), math.NaN()
		kv.Reason, kv.NoData = k.Missing, true
		return kv
	}
	kv.BaselineLevel, kv.CanaryLevel = k.levels(t)

	res, err := k.runTest(t, Options{Alternative: kv.Alternative, Confidence: conf})
	if err != nil {
		if errors.Is(err, ErrConstant) && sameConstant(k) {
			// Both samples hold one and the same value: nothing changed,
			// though no test statistic is defined.
			kv.PValue, kv.Effect = 1, 0
			kv.Reason = "no change: canary and baseline hold the same constant value"
			kv.setRelative()
			return kv
		}
		kv.Reason = err.Error()
		return kv
	}
	kv.Decision = &res
	kv.PValue = res.PValue

	if t == KSTest {
		kv.Effect = kv.CanaryLevel - kv.BaselineLevel
	} else {
		two := res
		if kv.Alternative != TwoSided || res.Confidence != conf {
			if r, err := k.runTest(t, Options{Alternative: TwoSided, Confidence: conf}); err == nil {
				two = r
			}
		}
		kv.Effect, kv.EffectLow, kv.EffectHigh = two.Estimate, two.CILow, two.CIHigh
		kv.Confidence = two.Confidence
	}
	kv.setRelative()
	return kv
}

// windowP turns the test's p-value at this look into one valid over the
// whole window: the conformal p-value of the KPI's calibration, or the
// p-value times the looks. A calibration too small ever to reach the KPI's
// first Holm threshold (its share firstAlpha of alpha) makes the KPI
// inconclusive: it could never fail, so it must not pass either.
func windowP(kv *KPIVerdict, k KPI, looks int, firstAlpha float64) {
	if math.IsNaN(kv.PValue) {
		return
	}
	if c := k.Calibration; c != nil && c.Counts == k.HasCounts {
		kv.Placebos, kv.InPhase, kv.AcrossInstances = c.N(), c.Period > 0, c.Subsets > 0
		if c.Unavailable != "" {
			kv.Reason = "cannot calibrate: " + c.Unavailable
			kv.PValue = math.NaN()
			return
		}
		if c.MinP() > firstAlpha {
			need := PlacebosFor(firstAlpha)
			kv.Reason = fmt.Sprintf("too little history to calibrate: %d placebo deploys, need %d, that is %d steps of history before the deploy",
				c.N(), need, c.HistoryFor(need))
			kv.PValue = math.NaN()
			return
		}
		if c.Counts && c.Subsets > 0 && c.Lookback > 0 {
			centredCountsP(kv, k, c, looks)
			return
		}
		if c.Counts {
			// The conformal p of this look's z among the placebos' window
			// maxima (the first look whose z passes the threshold is the
			// first whose running maximum does), never below the
			// binomial test's p-value times the looks: the placebos can
			// make the test stricter, where the rate is overdispersed or
			// drifts, never looser than on binomial data.
			kv.Looks = looks
			kv.PValue = math.Max(c.P(CountsStatistic(k.BaselineCounts, k.CanaryCounts, k.Bad)),
				math.Min(1, kv.PValue*float64(looks)))
			return
		}
		stat := c.Statistic(k.Baseline, k.Canary, k.Bad)
		if c.Subsets > 0 && c.Lookback > 0 {
			// The canary's own offset from the other instances taken out,
			// as each placebo's was.
			off := Offset(k.Offsets)
			if len(k.Offsets) != len(k.Canary) || math.IsNaN(off) || slices.ContainsFunc(k.Offsets, math.IsNaN) {
				kv.Reason = "the canary's offset from the other instances before the deploy is not known"
				kv.PValue, kv.NoData = math.NaN(), true
				return
			}
			kv.Offset = off
			stat = ConcurrentStatistic(k.Baseline, k.Canary, k.Bad, c.concurrentScale(), k.Offsets)
			centredLevels(kv, k, off)
		}
		if math.IsNaN(stat) {
			// A seasonal canary and baseline that cannot be paired step
			// by step: a step is missing on one side at this look.
			kv.Reason = fmt.Sprintf("%d canary values and %d baseline values cannot be paired step by step (a step without data on one side)",
				len(k.Canary), len(k.Baseline))
			kv.PValue, kv.NoData = math.NaN(), true
			return
		}
		kv.PValue = c.P(stat)
		return
	}
	kv.Looks = looks
	kv.PValue = math.Min(1, kv.PValue*float64(looks))
}

func (kv *KPIVerdict) setRelative() {
	b := math.Abs(kv.BaselineLevel)
	if b == 0 || math.IsNaN(b) || math.IsInf(b, 0) {
		return
	}
	kv.Relative = true
	kv.RelEffect, kv.RelLow, kv.RelHigh = kv.Effect/b, kv.EffectLow/b, kv.EffectHigh/b
}

func sameConstant(k KPI) bool {
	if k.HasCounts {
		// No event on either side (or nothing but events): the rates are
		// equal only when both are 0 or both 1.
		return proportionOf(k.CanaryCounts) == proportionOf(k.BaselineCounts)
	}
	if len(k.Canary) == 0 || len(k.Baseline) == 0 {
		return false
	}
	c := k.Canary[0]
	for _, xs := range [][]float64{k.Canary, k.Baseline} {
		for _, x := range xs {
			if x != c {
				return false
			}
		}
	}
	return true
}

// holm sets Threshold and Significant on every KPI by the weighted Holm
// procedure (Holm 1979): KPIs are taken in increasing order of p/w; at each
// step the KPI's threshold is alpha·w over the weight still in play, and
// the procedure stops at the first KPI above its threshold. KPIs without a
// p-value stay in play with p = 1, which only makes it stricter. It
// returns the name of the correction.
func holm(kv []KPIVerdict, alpha float64) string {
	order := make([]int, len(kv))
	total := 0.0
	equal := true
	for i := range kv {
		order[i] = i
		total += kv[i].Weight
		if kv[i].Weight != kv[0].Weight {
			equal = false
		}
	}
	p := func(i int) float64 {
		if math.IsNaN(kv[i].PValue) {
			return 1
		}
		return kv[i].PValue
	}
	sort.SliceStable(order, func(a, b int) bool {
		return p(order[a])/kv[order[a]].Weight < p(order[b])/kv[order[b]].Weight
	})
	remaining := total
	stopped := false
	for _, i := range order {
		kv[i].Threshold = math.Min(alpha, alpha*kv[i].Weight/remaining)
		if !stopped && !math.IsNaN(kv[i].PValue) && kv[i].PValue <= kv[i].Threshold {
			kv[i].Significant = true
		} else {
			stopped = true
		}
		remaining -= kv[i].Weight
	}
	switch {
	case len(kv) == 1:
		return ""
	case equal:
		return "Holm"
	default:
		return "weighted Holm"
	}
}

// decide sets the KPI's outcome and reason.
func decide(kv *KPIVerdict) {
	switch {
	case math.IsNaN(kv.PValue):
		kv.Outcome = Inconclusive
	case !kv.Significant:
		kv.Outcome = Pass
		switch {
		case kv.Reason != "":
		case kv.Bad != Either && !math.IsNaN(kv.Effect) && kv.Effect != 0 && !harmful(kv):
			kv.Reason = "change in the harmless direction"
		default:
			kv.Reason = "no significant change"
		}
	case kv.Bad == Either || harmful(kv):
		if small, why := belowMinEffect(kv); small {
			kv.Outcome = Pass
			kv.Reason = why
			return
		}
		kv.Outcome = Fail
		kv.Reason = "significant change in the bad direction"
	default:
		// A one-sided test only rejects towards the bad direction; this
		// is reached only if the estimate disagrees with the ranks.
		kv.Outcome = Pass
		kv.Reason = "change in the harmless direction"
	}
}

func harmful(kv *KPIVerdict) bool {
	if math.IsNaN(kv.Effect) {
		return true // the one-sided test said so; no estimate to doubt it
	}
	if kv.Bad == Increase {
		return kv.Effect >= 0
	}
	return kv.Effect <= 0
}

func belowMinEffect(kv *KPIVerdict) (bool, string) {
	m := kv.MinEffect
	if m.Value == 0 || math.IsNaN(kv.Effect) {
		return false, ""
	}
	size := math.Abs(kv.Effect)
	if m.Relative {
		if !kv.Relative {
			return false, ""
		}
		size = math.Abs(kv.RelEffect)
	}
	if size < m.Value {
		return true, "significant, but smaller than min_effect " + m.String()
	}
	return false, ""
}

// summarize sets the deploy's outcome and reason from its KPIs.
func summarize(v *Verdict) {
	var failing, critical, inconclusive []string
	for _, k := range v.KPIs {
		switch k.Outcome {
		case Fail:
			v.FailingWeight += k.Weight
			failing = append(failing, k.Name)
			if k.Critical {
				critical = append(critical, k.Name)
			}
		case Inconclusive:
			inconclusive = append(inconclusive, k.Name)
		}
	}
	n := len(v.KPIs)
	switch {
	case len(critical) > 0:
		v.Outcome = Fail
		v.Reason = fmt.Sprintf("fail: critical %s %s", plural(len(critical), "KPI", "KPIs"), quoteList(critical))
		if len(failing) > len(critical) {
			v.Reason += fmt.Sprintf(" (%d of %d KPIs failing)", len(failing), n)
		}
	case len(failing) > 0 && v.FailingWeight >= v.FailWeight-1e-12:
		v.Outcome = Fail
		v.Reason = fmt.Sprintf("fail: %d of %d KPIs failing: %s", len(failing), n, quoteList(failing))
	case len(inconclusive) > 0:
		v.Outcome = Inconclusive
		v.Reason = fmt.Sprintf("inconclusive: %d of %d KPIs could not be judged: %s", len(inconclusive), n, quoteList(inconclusive))
	case len(failing) > 0:
		v.Outcome = Pass
		v.Reason = fmt.Sprintf("pass: %s failing with weight %s, below the %s that fails a deploy",
			quoteList(failing), formatNumber(v.FailingWeight), formatNumber(v.FailWeight))
	default:
		v.Outcome = Pass
		v.Reason = fmt.Sprintf("pass: none of %d %s changed for the worse", n, plural(n, "KPI", "KPIs"))
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func quoteList(names []string) string { return strings.Join(names, ", ") }

// centredLevels states a concurrent KPI judged with its canary's offsets
// taken out in the terms it is judged in: the baseline level is the other
// instances' mean plus the canary's mean offset from them before the
// deploy (where the canary would be had nothing changed), the effect the
// canary's mean less that. There is no interval: the differences are
// autocorrelated, and the placebos, not a formula, say how far they
// stray.
func centredLevels(kv *KPIVerdict, k KPI, offset float64) {
	if len(k.Canary) == 0 || len(k.Canary) != len(k.Baseline) {
		return
	}
	kv.BaselineLevel = mean(k.Baseline) + offset
	kv.CanaryLevel = mean(k.Canary)
	kv.Effect = kv.CanaryLevel - kv.BaselineLevel
	if math.Abs(kv.Effect) <= 1e-12*math.Max(math.Abs(kv.CanaryLevel), math.Abs(kv.BaselineLevel)) {
		kv.Effect = 0 // rounding: the canary is where it was
	}
	kv.EffectLow, kv.EffectHigh = math.NaN(), math.NaN()
	kv.setRelative()
}

// centredCountsP is windowP for an events/trials KPI judged on its
// canary's own past (a centred calibration across instances): the
// conformal p of the two-proportion z less the canary's rate offset,
// never below the binomial test of that difference in differences times
// the looks. The floor's variance is each side's own, its rate pooled
// over its window and lookback: p_c(1−p_c)(1/n_c + 1/n_c0) +
// p_b(1−p_b)(1/n_b + 1/n_b0) (a variance pooled over both sides would
// understate it where the canary's rate is above the others', the case
// the offset is for). The levels are stated as judged (the baseline
// level is the others' rate plus the offset).
func centredCountsP(kv *KPIVerdict, k KPI, c *Calibration, looks int) {
	off := k.RateOffset
	if math.IsNaN(off) {
		kv.Reason = "the canary's rate offset from the other instances before the deploy is not known"
		kv.PValue, kv.NoData = math.NaN(), true
		return
	}
	cb, cc := k.BaselineCounts, k.CanaryCounts
	z := CountsStatisticOffset(cb, cc, k.Bad, off)
	kv.Looks, kv.Offset = looks, off
	kv.PValue = math.Max(c.P(z), math.Min(1, didP(k, c.Before)*float64(looks)))
	if cb.Trials > 0 && cc.Trials > 0 {
		kv.BaselineLevel = cb.Events/cb.Trials + off
		kv.CanaryLevel = cc.Events / cc.Trials
		kv.Effect = kv.CanaryLevel - kv.BaselineLevel
		kv.EffectLow, kv.EffectHigh = math.NaN(), math.NaN()
		kv.setRelative()
	}
}

// didP is the one-look p-value of the binomial test of the difference in
// differences of an events/trials KPI on its canary's own past: z =
// (p̂_c − p̂_b − RateOffset) / sqrt(V), V the sum of the two sides'
// sideVariance, before the lookback's counts of the canary's instances
// and of the others; oriented; 1 when undefined.
func didP(k KPI, before [2]Counts) float64 {
	cb, cc := k.BaselineCounts, k.CanaryCounts
	v := sideVariance(cc, before[0]) + sideVariance(cb, before[1])
	if !(v > 0) || !(cb.Trials > 0) || !(cc.Trials > 0) || math.IsNaN(k.RateOffset) {
		return 1
	}
	z := (cc.Events/cc.Trials - cb.Events/cb.Trials - k.RateOffset) / math.Sqrt(v)
	p := 0.5 * math.Erfc(orient(z, k.Bad)/math.Sqrt2)
	if k.Bad == Either {
		p *= 2
	}
	return p
}

// sideVariance is the binomial variance of the difference of a side's
// rate over its window (w) and over its lookback (b), its rate pooled
// over both: p(1−p)(1/n_w + 1/n_b). 0 when either has no trials.
func sideVariance(w, b Counts) float64 {
	if !(w.Trials > 0) || !(b.Trials > 0) {
		return 0
	}
	p := (w.Events + b.Events) / (w.Trials + b.Trials)
	return p * (1 - p) * (1/w.Trials + 1/b.Trials)
}
