package detector

import (
	"fmt"
	"math"
)

// Alternative is the alternative hypothesis of a two-sample test, always
// stated for the canary against the baseline (the canary is R's x).
type Alternative int

const (
	// TwoSided: the canary differs from the baseline.
	TwoSided Alternative = iota
	// Greater: the canary is greater than the baseline.
	Greater
	// Less: the canary is less than the baseline.
	Less
)

func (a Alternative) String() string {
	switch a {
	case TwoSided:
		return "two-sided"
	case Greater:
		return "greater"
	case Less:
		return "less"
	}
	return fmt.Sprintf("Alternative(%d)", int(a))
}

// ParseAlternative accepts two-sided (or two.sided), greater and less.
func ParseAlternative(s string) (Alternative, error) {
	switch s {
	case "two-sided", "two.sided":
		return TwoSided, nil
	case "greater":
		return Greater, nil
	case "less":
		return Less, nil
	}
	return 0, fmt.Errorf("alternative %q: must be one of two-sided, greater, less", s)
}

// Options are the settings shared by every two-sample test.
type Options struct {
	Alternative Alternative
	// Confidence is the confidence level of the interval, in (0, 1).
	// Zero means 0.95.
	Confidence float64
}

func (o Options) confidence() (float64, error) {
	c := o.Confidence
	if c == 0 {
		c = 0.95
	}
	if !(c > 0 && c < 1) {
		return 0, fmt.Errorf("%w: confidence %v must be in (0, 1)", ErrInvalidOption, o.Confidence)
	}
	return c, nil
}

// Result is the outcome of one two-sample test of the canary against the
// baseline. The numbers mean what R reports for the same call with the
// canary as x and the baseline as y.
type Result struct {
	// Test is the short name: mann-whitney, welch, ks or proportion.
	Test string
	// Method is the long name, as R prints it
	// ("Wilcoxon rank sum exact test").
	Method      string
	Alternative Alternative
	Confidence  float64

	// StatisticName is W, t, D or X-squared.
	StatisticName string
	Statistic     float64
	// DF is the degrees of freedom of t and X-squared; NaN otherwise.
	DF     float64
	PValue float64

	// EstimateName says what Estimate is: "difference in location"
	// (Hodges-Lehmann, canary − baseline), "difference in means",
	// "difference in proportions". Empty, and Estimate NaN, where the
	// test has none (ks).
	EstimateName string
	Estimate     float64
	// CILow and CIHigh bound the Confidence interval of Estimate; ±Inf
	// for the open side of a one-sided interval, NaN where the test has
	// none.
	CILow, CIHigh float64

	// NCanary and NBaseline are the sample sizes (for proportion, the
	// numbers of trials).
	NCanary, NBaseline float64
	// Exact is true when the p-value comes from the exact distribution.
	Exact bool
}

// HasEstimate reports whether the test produced an estimate and interval.
func (r Result) HasEstimate() bool { return !math.IsNaN(r.Estimate) }
