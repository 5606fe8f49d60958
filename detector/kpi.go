package detector

import (
	"fmt"
	"math"
)

// Direction is the direction in which a change of a KPI hurts.
type Direction int

const (
	// Increase: a rise is bad (latency, errors).
	Increase Direction = iota + 1
	// Decrease: a fall is bad (conversion, revenue).
	Decrease
	// Either: any change is bad.
	Either
)

func (d Direction) String() string {
	switch d {
	case Increase:
		return "increase"
	case Decrease:
		return "decrease"
	case Either:
		return "either"
	}
	return fmt.Sprintf("Direction(%d)", int(d))
}

// ParseDirection accepts increase, decrease and either.
func ParseDirection(s string) (Direction, error) {
	for _, d := range []Direction{Increase, Decrease, Either} {
		if d.String() == s {
			return d, nil
		}
	}
	return 0, fmt.Errorf("direction %q: must be one of increase, decrease, either", s)
}

// TestKind names a two-sample test.
type TestKind int

const (
	// Auto chooses from the data: Proportion for events/trials KPIs,
	// MannWhitneyTest otherwise (robust to skew, outliers and ties, the
	// common shape of latency and business series).
	Auto TestKind = iota
	MannWhitneyTest
	WelchTest
	KSTest
	ProportionTest
)

var testNames = [...]string{"auto", "mann-whitney", "welch", "ks", "proportion"}

func (k TestKind) String() string {
	if k >= 0 && int(k) < len(testNames) {
		return testNames[k]
	}
	return fmt.Sprintf("TestKind(%d)", int(k))
}

// ParseTestKind accepts auto, mann-whitney, welch, ks and proportion.
func ParseTestKind(s string) (TestKind, error) {
	for i, n := range testNames {
		if n == s {
			return TestKind(i), nil
		}
	}
	return 0, fmt.Errorf("test %q: must be one of auto, mann-whitney, welch, ks, proportion", s)
}

// MinEffect is the smallest change that may fail a deploy. A zero Value
// means any significant change counts.
type MinEffect struct {
	Value float64
	// Relative: Value is a fraction of the baseline's level (0.05 = 5%);
	// otherwise it is in the KPI's own unit.
	Relative bool
}

func (m MinEffect) String() string {
	if m.Relative {
		return formatPercent(m.Value * 100)
	}
	return formatNumber(m.Value)
}

// KPI is one KPI of a deploy: how to judge it and the samples to judge.
type KPI struct {
	Name      string
	Bad       Direction
	Test      TestKind
	MinEffect MinEffect
	// Critical: a failure of this KPI fails the deploy whatever its weight.
	Critical bool
	// Weight is the KPI's share of the error budget (weighted Holm) and
	// of the failing weight that fails a deploy. Zero means 1.
	Weight float64

	// Canary and Baseline are the samples of a continuous KPI.
	Canary, Baseline []float64
	// HasCounts marks an events/trials KPI; its counts are in
	// CanaryCounts and BaselineCounts.
	HasCounts                    bool
	CanaryCounts, BaselineCounts Counts

	// Calibration, when set, replaces the test's p-value by the conformal
	// p-value of the running maximum of the Mann-Whitney z (Statistic)
	// against the placebo deploys of the KPI's own history: Canary and
	// Baseline must then be in time order. For an events/trials KPI a
	// calibration of CalibrateCounts: the conformal p-value of the
	// two-proportion z (CountsStatistic), never below the proportion
	// test's p-value times the looks. A calibration of the other kind is
	// ignored.
	Calibration *Calibration
	// Offsets are, for a calibration across instances with a lookback (a
	// centred one: CalibrateConcurrent on the canary's own instances),
	// the offset of each canary value's instances from the other
	// instances over the lookback before the deploy, one per canary
	// value: their own way of running above or below the others, taken
	// out of the deploy's differences as each placebo's is. A canary
	// whose instances change (a later rollout group) has the offset of
	// the instances it had at each step. Such a KPI without them, or with
	// a NaN among them, is inconclusive.
	Offsets []float64
	// RateOffset is Offsets for an events/trials KPI: how far above the
	// baseline's pooled rate the canary's would be had nothing changed,
	// from the difference of the canary's instances' pooled rate from the
	// other instances' over the lookback before the deploy (when the
	// canary's instances change, the canary-trials-weighted mean over the
	// segments with one set of instances of the others' rate there plus
	// that set's offset, less the baseline's pooled rate). The lookback's
	// counts behind it are the Calibration's Before. A NaN RateOffset
	// makes such a KPI inconclusive.
	RateOffset float64

	// Missing, when set, says why the KPI's data could not be had (the
	// query failed, returned nothing, or more than one series); the KPI is
	// then inconclusive with that reason and no test runs.
	Missing string
}

func (k KPI) weight() float64 {
	if k.Weight == 0 {
		return 1
	}
	return k.Weight
}

// testKind resolves Auto and checks that the test fits the data.
func (k KPI) testKind() (TestKind, error) {
	t := k.Test
	if t == Auto {
		if k.HasCounts {
			return ProportionTest, nil
		}
		return MannWhitneyTest, nil
	}
	if k.HasCounts != (t == ProportionTest) {
		if k.HasCounts {
			return 0, fmt.Errorf("kpi %q: test %s does not apply to events/trials counts", k.Name, t)
		}
		return 0, fmt.Errorf("kpi %q: test proportion needs events/trials counts", k.Name)
	}
	return t, nil
}

// alternative is the decision test's alternative: the bad direction.
// Kolmogorov-Smirnov's alternatives speak of distribution functions, so
// "greater" there means the canary's values are smaller.
func alternative(t TestKind, bad Direction) Alternative {
	switch {
	case bad == Either:
		return TwoSided
	case (bad == Increase) != (t == KSTest):
		return Greater
	default:
		return Less
	}
}

// runTest runs test t on the KPI's data.
func (k KPI) runTest(t TestKind, opt Options) (Result, error) {
	switch t {
	case MannWhitneyTest:
		return MannWhitney(k.Canary, k.Baseline, opt)
	case WelchTest:
		return Welch(k.Canary, k.Baseline, opt)
	case KSTest:
		return KS(k.Canary, k.Baseline, opt)
	case ProportionTest:
		return Proportion(k.CanaryCounts, k.BaselineCounts, opt)
	}
	return Result{}, fmt.Errorf("kpi %q: unknown test %v", k.Name, t)
}

// levels returns the baseline's and the canary's level in the sense of
// test t: medians for rank tests, means for Welch, proportions.
func (k KPI) levels(t TestKind) (baseline, canary float64) {
	switch t {
	case WelchTest:
		return mean(k.Baseline), mean(k.Canary)
	case ProportionTest:
		return proportionOf(k.BaselineCounts), proportionOf(k.CanaryCounts)
	default:
		return median(k.Baseline), median(k.Canary)
	}
}

func proportionOf(c Counts) float64 {
	if c.Trials == 0 {
		return math.NaN()
	}
	return c.Events / c.Trials
}

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	return medianOf(append([]float64(nil), xs...))
}
