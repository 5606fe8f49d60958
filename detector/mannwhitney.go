package detector

import (
	"fmt"
	"math"
)

const (
	wilcoxExactMethod  = "Wilcoxon rank sum exact test"
	wilcoxNormalMethod = "Wilcoxon rank sum test with continuity correction"
)

// MannWhitney tests canary against baseline like R's
// wilcox.test(canary, baseline, alternative=…, conf.int=TRUE, conf.level=…) with R's defaults (correct=TRUE, exact=NULL).
//
// W counts the pairs where the canary is above the baseline (ties count
// one half). With fewer than 50 values in each sample and no ties, the
// p-value and the interval come from the exact distribution of W;
// otherwise from the normal approximation with continuity correction and
// the tie correction of the variance. Estimate is the Hodges-Lehmann
// difference in location, the median of the differences canary[i] −
// baseline[j], and the interval is made of such differences. Where the
// exact distribution cannot reach the requested level, Confidence is the
// level achieved, as R reports it.
//
// Errors wrap ErrTooFewSamples for an empty sample, ErrNonFinite for NaN
// or ±Inf (or differences beyond float64), ErrInvalidOption, and
// ErrConstant when all values are equal (R's p-value is then NaN). When
// each sample is constant but they differ, R stops in its root finder;
// here the estimate and the interval are the one difference.
//
// The samples are not modified. The whole test costs O((n+m) log(n+m))
// (a radix sort, then a few counting passes per interval end): the n·m
// differences are never listed.
func MannWhitney(canary, baseline []float64, opt Options) (Result, error) {
	if err := checkSample("canary", canary, 1); err != nil {
		return Result{}, fmt.Errorf("mann-whitney: %w", err)
	}
	if err := checkSample("baseline", baseline, 1); err != nil {
		return Result{}, fmt.Errorf("mann-whitney: %w", err)
	}
	conf, err := opt.confidence()
	if err != nil {
		return Result{}, fmt.Errorf("mann-whitney: %w", err)
	}
	alt := opt.Alternative
	if alt != TwoSided && alt != Greater && alt != Less {
		return Result{}, fmt.Errorf("mann-whitney: %w: alternative %v", ErrInvalidOption, alt)
	}

	if len(baseline) > math.MaxInt32 {
		// The interval search indexes the baseline with int32.
		return Result{}, fmt.Errorf("mann-whitney: %w: baseline has %d values, at most %d", ErrInvalidOption, len(baseline), math.MaxInt32)
	}

	x, y := sortedCopy(canary), sortedCopy(baseline)
	nx, ny := float64(len(x)), float64(len(y))
	// The smallest and largest differences: float subtraction is monotone.
	mumin, mumax := x[0]-y[len(y)-1], x[len(x)-1]-y[0]
	if math.IsInf(mumin, 0) || math.IsInf(mumax, 0) {
		return Result{}, fmt.Errorf("mann-whitney: %w: differences overflow float64", ErrNonFinite)
	}

	rs, ties := rankSum(x, y, 0)
	res := Result{
		Test:          "mann-whitney",
		Alternative:   alt,
		Confidence:    conf,
		StatisticName: "W",
		Statistic:     rs - nx*(nx+1)/2,
		DF:            math.NaN(),
		EstimateName:  "difference in location",
		NCanary:       nx,
		NBaseline:     ny,
	}
	if len(x) < wilcoxExactMax && len(y) < wilcoxExactMax && ties == 0 {
		mannWhitneyExact(&res, x, y, conf)
		return res, nil
	}
	if err := mannWhitneyNormal(&res, x, y, ties, conf); err != nil {
		return Result{}, fmt.Errorf("mann-whitney: %w", err)
	}
	return res, nil
}

// mannWhitneyExact fills res from the exact distribution of W, for small
// samples without ties; x and y are sorted.
func mannWhitneyExact(res *Result, x, y []float64, conf float64) {
	m, n := len(x), len(y)
	w := res.Statistic
	res.Method, res.Exact = wilcoxExactMethod, true
	switch res.Alternative {
	case TwoSided:
		var p float64
		if w > res.NCanary*res.NBaseline/2 {
			p = pwilcox(w-1, m, n, false)
		} else {
			p = pwilcox(w, m, n, true)
		}
		res.PValue = min(2*p, 1)
	case Greater:
		res.PValue = pwilcox(w-1, m, n, false)
	case Less:
		res.PValue = pwilcox(w, m, n, true)
	}

	// R sorts the differences and indexes them (1-based).
	sel := newDiffSelector(x, y)
	N := sel.n
	alpha := 1 - conf
	var achieved float64
	switch res.Alternative {
	case TwoSided:
		qu := max(qwilcox(alpha/2, m, n), 1)
		ql := N - int64(qu)
		achieved = 2 * pwilcox(float64(qu-1), m, n, true)
		res.CILow, res.CIHigh = sel.kth(int64(qu)), sel.kth(ql+1)
	case Greater:
		qu := max(qwilcox(alpha, m, n), 1)
		achieved = pwilcox(float64(qu-1), m, n, true)
		res.CILow, res.CIHigh = sel.kth(int64(qu)), math.Inf(1)
	case Less:
		qu := max(qwilcox(alpha, m, n), 1)
		ql := N - int64(qu)
		achieved = pwilcox(float64(qu-1), m, n, true)
		res.CILow, res.CIHigh = math.Inf(-1), sel.kth(ql+1)
	}
	if achieved-alpha > alpha/2 {
		res.Confidence = 1 - achieved
	}
	res.Estimate = sel.median()
}

// mannWhitneyNormal fills res from the normal approximation; x and y are
// sorted and ties is Σ(t³−t) over the groups of tied values of both.
//
// R finds the interval ends and the estimate with uniroot on
// wdiff(d) = (dz − correction)/σ − zq, where dz is W − nx·ny/2 for the
// canary shifted by −d. That is a non-increasing step function of d that
// jumps only at the differences x[i] − y[j]: between the k-th and the
// (k+1)-th smallest difference dz = nx·ny/2 − k and σ depends only on the
// ties within each sample. So the root is the k-th smallest difference
// for the smallest k whose step is ≤ 0, found by bisection over k and then
// selected without listing the differences. The ends mumin and mumax are
// checked first with R's own W there, ties included.
func mannWhitneyNormal(res *Result, x, y []float64, ties, conf float64) error {
	nx, ny := res.NCanary, res.NBaseline
	res.Method = wilcoxNormalMethod
	sigma := rankSigma(nx, ny, ties)
	if !(sigma > 0) {
		return fmt.Errorf("%w: all %v values are equal", ErrConstant, nx+ny)
	}
	z := res.Statistic - nx*ny/2
	z = (z - continuity(res.Alternative, z)) / sigma
	switch res.Alternative {
	case TwoSided:
		res.PValue = 2 * min(mwPnorm(z, true), mwPnorm(z, false))
	case Greater:
		res.PValue = mwPnorm(z, false)
	case Less:
		res.PValue = mwPnorm(z, true)
	}

	mumin, mumax := x[0]-y[len(y)-1], x[len(x)-1]-y[0]
	if mumin == mumax {
		// Each sample is constant, so every pairwise difference is
		// mumin: the shift is known exactly and the interval is that
		// point. R stops here instead (its root finder meets σ = 0
		// where all shifted values tie), but the p-value above is R's.
		res.Estimate = mumin
		switch res.Alternative {
		case TwoSided:
			res.CILow, res.CIHigh = mumin, mumin
		case Greater:
			res.CILow, res.CIHigh = mumin, math.Inf(1)
		case Less:
			res.CILow, res.CIHigh = math.Inf(-1), mumin
		}
		return nil
	}
	sel := newDiffSelector(x, y)
	// σ between two differences: only the ties within each sample.
	sigmaSeg := rankSigma(nx, ny, tieSum(x)+tieSum(y))
	half := nx * ny / 2
	alt := res.Alternative
	// wAt is R's W(d), ties at d included.
	wAt := func(d float64, correct bool) float64 {
		rs, t := rankSum(x, y, d)
		dz := rs - nx*(nx+1)/2 - nx*ny/2
		c := 0.0
		if correct {
			c = continuity(alt, dz)
		}
		return (dz - c) / rankSigma(nx, ny, t)
	}
	wMin, wMax := wAt(mumin, true), wAt(mumax, true)
	if math.IsNaN(wMin) || math.IsNaN(wMax) {
		return fmt.Errorf("%w: the interval is undefined", ErrConstant)
	}
	root := func(zq float64) float64 {
		if wMin-zq <= 0 {
			return mumin
		}
		if wMax-zq >= 0 {
			return mumax
		}
		// The smallest k in [1, N] with a step value ≤ 0.
		lo, hi := int64(0), sel.n // step(hi) ≤ 0 is assumed, as at mumax
		for lo+1 < hi {
			k := lo + (hi-lo)/2
			dz := half - float64(k)
			if (dz-continuity(alt, dz))/sigmaSeg-zq <= 0 {
				hi = k
			} else {
				lo = k
			}
		}
		return sel.kth(hi)
	}
	alpha := 1 - conf
	switch alt {
	case TwoSided:
		res.CILow = root(mwQnorm(alpha/2, false))
		res.CIHigh = root(mwQnorm(alpha/2, true))
	case Greater:
		res.CILow, res.CIHigh = root(mwQnorm(alpha, false)), math.Inf(1)
	case Less:
		res.CILow, res.CIHigh = math.Inf(-1), root(mwQnorm(alpha, true))
	}

	// The estimate is the root of W(d) without correction: the median
	// difference (R's uniroot returns some point between the two middle
	// differences when there is an even number of them).
	res.Estimate = sel.median()
	return nil
}

// continuity is R's continuity correction for W − nx·ny/2 = z.
func continuity(alt Alternative, z float64) float64 {
	switch alt {
	case Greater:
		return 0.5
	case Less:
		return -0.5
	}
	switch {
	case z > 0:
		return 0.5
	case z < 0:
		return -0.5
	}
	return 0
}

// rankSigma is the standard deviation of W under the null hypothesis,
// corrected for ties (Σ(t³−t) over tied groups), in R's order of
// operations.
func rankSigma(nx, ny, ties float64) float64 {
	return math.Sqrt((nx * ny / 12) * ((nx + ny + 1) - ties/((nx+ny)*(nx+ny-1))))
}

// rankSum returns the sum of the ranks of x−d in the combined sample
// (x−d, y), with mid-ranks for ties, and Σ(t³−t) over the tied groups.
// x and y are sorted ascending.
func rankSum(x, y []float64, d float64) (sum, ties float64) {
	i, j := 0, 0
	pos := 0.0 // values ranked so far
	for i < len(x) || j < len(y) {
		var v float64
		switch {
		case j == len(y):
			v = x[i] - d
		case i == len(x):
			v = y[j]
		default:
			v = min(x[i]-d, y[j])
		}
		a, b := 0.0, 0.0
		for ; i < len(x) && x[i]-d == v; i++ {
			a++
		}
		for ; j < len(y) && y[j] == v; j++ {
			b++
		}
		t := a + b
		sum += a * (pos + (t+1)/2)
		ties += t*t*t - t
		pos += t
	}
	return sum, ties
}

// tieSum is Σ(t³−t) over the groups of equal values of sorted xs.
func tieSum(xs []float64) float64 {
	s := 0.0
	for i := 0; i < len(xs); {
		j := i + 1
		for j < len(xs) && xs[j] == xs[i] {
			j++
		}
		t := float64(j - i)
		s += t*t*t - t
		i = j
	}
	return s
}

// midpoint is (a+b)/2 without overflow.
func midpoint(a, b float64) float64 {
	if m := (a + b) / 2; !math.IsInf(m, 0) {
		return m
	}
	return a/2 + b/2
}
