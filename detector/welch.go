package detector

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/stat/distuv"
)

// Welch runs Welch's two-sample t-test of the canary against the baseline,
// as R's t.test(canary, baseline, alternative, conf.level = Confidence)
// with var.equal = FALSE. The estimate is the difference in means,
// canary − baseline, with its t interval; DF is the Welch–Satterthwaite
// degrees of freedom.
//
// Each sample needs at least two values. Samples whose standard error is
// negligible next to their means (R: "data are essentially constant"),
// or zero, return an error wrapping ErrConstant.
func Welch(canary, baseline []float64, opt Options) (Result, error) {
	conf, err := opt.confidence()
	if err != nil {
		return Result{}, fmt.Errorf("welch: %w", err)
	}
	if err := checkSample("canary", canary, 2); err != nil {
		return Result{}, fmt.Errorf("welch: %w", err)
	}
	if err := checkSample("baseline", baseline, 2); err != nil {
		return Result{}, fmt.Errorf("welch: %w", err)
	}

	// Work on the samples scaled by a power of two when their magnitude
	// would let sums of squares overflow or underflow; the scaling is
	// exact, and t, df and the p-value do not depend on it.
	scale := welchScale(canary, baseline)
	nx, ny := float64(len(canary)), float64(len(baseline))
	mx, vx := welchMoments(canary, scale)
	my, vy := welchMoments(baseline, scale)

	// The same operations, in the same order, as R's t.test.default.
	stderrx := math.Sqrt(vx / nx)
	stderry := math.Sqrt(vy / ny)
	ux, uy := stderrx*stderrx, stderry*stderry
	stderr := math.Sqrt(ux + uy)
	const eps = 0x1p-52 // R's .Machine$double.eps
	if stderr < 10*eps*math.Max(math.Abs(mx), math.Abs(my)) || stderr == 0 {
		return Result{}, fmt.Errorf("welch: %w: standard error %g of means %g and %g",
			ErrConstant, stderr/scale, mx/scale, my/scale)
	}
	tstat := (mx - my) / stderr
	// R: stderr^4/(stderrx^4/(nx-1) + stderry^4/(ny-1)), as shares of
	// the variance so that the fourth powers cannot overflow.
	wx, wy := ux/(ux+uy), uy/(ux+uy)
	df := 1 / (wx*wx/(nx-1) + wy*wy/(ny-1))

	t := distuv.StudentsT{Mu: 0, Sigma: 1, Nu: df}
	var p, lo, hi float64
	switch opt.Alternative {
	case TwoSided:
		p = 2 * t.CDF(-math.Abs(tstat))
		q := t.Quantile(1 - (1-conf)/2)
		lo, hi = tstat-q, tstat+q
	case Greater:
		p = t.Survival(tstat)
		lo, hi = tstat-t.Quantile(conf), math.Inf(1)
	case Less:
		p = t.CDF(tstat)
		lo, hi = math.Inf(-1), tstat+t.Quantile(conf)
	default:
		return Result{}, fmt.Errorf("welch: %w: alternative %v", ErrInvalidOption, opt.Alternative)
	}

	return Result{
		Test:          "welch",
		Method:        "Welch Two Sample t-test",
		Alternative:   opt.Alternative,
		Confidence:    conf,
		StatisticName: "t",
		Statistic:     tstat,
		DF:            df,
		PValue:        p,
		EstimateName:  "difference in means",
		Estimate:      (mx - my) / scale,
		CILow:         lo * stderr / scale,
		CIHigh:        hi * stderr / scale,
		NCanary:       nx,
		NBaseline:     ny,
	}, nil
}

// welchScale returns 1, or the power of two that brings the largest
// magnitude in xs and ys near 1 when it is outside [2^-400, 2^400].
func welchScale(xs, ys []float64) float64 {
	m := 0.0
	for _, v := range [2][]float64{xs, ys} {
		for _, x := range v {
			if a := math.Abs(x); a > m {
				m = a
			}
		}
	}
	if m == 0 || (m >= 0x1p-400 && m <= 0x1p400) {
		return 1
	}
	_, e := math.Frexp(m)
	return math.Ldexp(1, -max(e, -1000))
}

// welchMoments returns the mean and the sample variance of xs times
// scale, computed as R does: the mean with a second pass that adds the
// mean residual, the variance from the deviations about that mean.
func welchMoments(xs []float64, scale float64) (mu, variance float64) {
	n := float64(len(xs))
	s := 0.0
	for _, x := range xs {
		s += x * scale
	}
	m := s / n
	r := 0.0
	for _, x := range xs {
		r += x*scale - m
	}
	m += r / n
	ss := 0.0
	for _, x := range xs {
		d := x*scale - m
		ss += d * d
	}
	return m, ss / (n - 1)
}
