package detector

import (
	"fmt"
	"math"
	"slices"
)

// KS runs the two-sample Kolmogorov-Smirnov test of the canary against
// the baseline, as R 4.2's ks.test(canary, baseline, alternative).
//
// The statistic D is the largest gap between the samples' empirical
// distribution functions Fc − Fb: its absolute value for TwoSided, its
// maximum for Greater (the canary's CDF lies above the baseline's, so its
// values tend to be smaller) and minus its minimum for Less. When
// len(canary)·len(baseline) < 10000 the p-value is exact, conditional on
// the ties if there are any (Schröer and Trenkler 1995), as R 4.2 does;
// otherwise it comes from the limiting distribution: Kolmogorov's series
// for TwoSided, exp(−2·n·D²) for one-sided alternatives, n the harmonic
// size nc·nb/(nc + nb).
//
// The test has no estimate: Estimate, CILow, CIHigh and DF are NaN.
// Each sample needs at least one value.
func KS(canary, baseline []float64, opt Options) (Result, error) {
	conf, err := opt.confidence()
	if err != nil {
		return Result{}, fmt.Errorf("ks: %w", err)
	}
	if opt.Alternative != TwoSided && opt.Alternative != Greater && opt.Alternative != Less {
		return Result{}, fmt.Errorf("ks: %w: alternative %v", ErrInvalidOption, opt.Alternative)
	}
	if err := checkSample("canary", canary, 1); err != nil {
		return Result{}, fmt.Errorf("ks: %w", err)
	}
	if err := checkSample("baseline", baseline, 1); err != nil {
		return Result{}, fmt.Errorf("ks: %w", err)
	}

	nx, ny := float64(len(canary)), float64(len(baseline))
	exact := nx*ny < 10000
	gaps := ksGaps(canary, baseline, exact)

	var stat float64
	mn := nx * ny
	switch opt.Alternative {
	case TwoSided:
		stat = float64(max(gaps.max, -gaps.min)) / mn
	case Greater:
		stat = float64(gaps.max) / mn
	case Less:
		stat = float64(-gaps.min) / mn
	}

	var p float64
	if exact {
		p = ksExactUpper(stat, len(canary), len(baseline), gaps.constrained, opt.Alternative == TwoSided)
	} else {
		n := nx * ny / (nx + ny)
		if opt.Alternative == TwoSided {
			p = 1
			if stat >= 0x1p-52 { // R: ret[q < .Machine$double.eps] <- 0
				p = ksLimitUpper(math.Sqrt(n)*stat, 1e-6)
			}
		} else {
			p = math.Exp(-2 * n * (stat * stat))
		}
	}
	p = math.Min(1, math.Max(0, p))

	method := "Asymptotic two-sample Kolmogorov-Smirnov test"
	if exact {
		method = "Exact two-sample Kolmogorov-Smirnov test"
	}
	return Result{
		Test:          "ks",
		Method:        method,
		Alternative:   opt.Alternative,
		Confidence:    conf,
		StatisticName: "D",
		Statistic:     stat,
		DF:            math.NaN(),
		PValue:        p,
		Estimate:      math.NaN(),
		CILow:         math.NaN(),
		CIHigh:        math.NaN(),
		NCanary:       nx,
		NBaseline:     ny,
		Exact:         exact,
	}, nil
}

// ksPath describes the path of Fc − Fb over the pooled sorted sample, in
// units of 1/(nc·nb): at the end of the k-th pooled value its height is
// i·nb − j·nc, with i canary and j baseline values at or below it.
type ksPath struct {
	// max and min are the extreme heights at the ends of runs of equal
	// values (R evaluates the path only there when there are ties).
	max, min int
	// constrained[k], for k in 1..nc+nb, is false when the k-th and the
	// (k+1)-th pooled values are equal, so that the path may cross the
	// critical band between them (R's TIES vector); nil when there are no
	// ties or it is not needed.
	constrained []bool
}

// ksGaps walks the pooled sorted samples. withTies asks for the
// constrained positions when there are ties.
func ksGaps(canary, baseline []float64, withTies bool) ksPath {
	xs, ys := slices.Clone(canary), slices.Clone(baseline)
	slices.Sort(xs)
	slices.Sort(ys)
	nx, ny := len(xs), len(ys)
	var path ksPath
	var runs []int // lengths of the runs of equal pooled values
	ties := false
	i, j := 0, 0
	for i < nx || j < ny {
		var v float64
		switch {
		case j == ny || i < nx && xs[i] <= ys[j]:
			v = xs[i]
		default:
			v = ys[j]
		}
		run := 0
		for i < nx && xs[i] == v {
			i++
			run++
		}
		for j < ny && ys[j] == v {
			j++
			run++
		}
		if run > 1 {
			ties = true
		}
		if withTies {
			runs = append(runs, run)
		}
		h := i*ny - j*nx
		path.max = max(path.max, h)
		path.min = min(path.min, h)
	}
	if withTies && ties {
		path.constrained = make([]bool, nx+ny+1)
		k := 0
		for _, run := range runs {
			k += run
			path.constrained[k] = true
		}
	}
	return path
}

// ksExactUpper returns P(D ≥ d) for samples of m and n values under the
// null hypothesis, conditional on the ties described by constrained (nil
// for none): the probability that a random lattice path from (0, 0) to
// (m, n) touches a point (i, j) where the statistic reaches d and the
// path is constrained.
//
// R 4.2's psmirnov counts the paths that stay below d and divides by
// choose(m+n, m); this computes the complementary probability directly,
// with the recursion of Viehmann (2021) that R ≥ 4.3 uses, so that small
// p-values keep their precision. As in R (and R's C_pSmirnov2x), d is
// moved to the middle between attainable values,
// (0.5 + floor(d·m·n − 1e-7))/(m·n), so that rounding cannot turn an
// equality into an inequality.
func ksExactUpper(d float64, m, n int, constrained []bool, twoSided bool) float64 {
	md, nd := float64(m), float64(n)
	q := (0.5 + math.Floor(float64(d*md*nd)-1e-7)) / (md * nd)
	hits := func(i, j int) bool {
		if constrained != nil && !constrained[i+j] {
			return false
		}
		g := float64(i)/md - float64(j)/nd
		if twoSided {
			g = math.Abs(g)
		}
		return !(q > g) // R keeps the paths with q > d
	}
	u := make([]float64, n+1)
	u[0] = 0
	for j := 1; j <= n; j++ {
		if hits(0, j) {
			u[j] = 1
		} else {
			u[j] = u[j-1]
		}
	}
	for i := 1; i <= m; i++ {
		if hits(i, 0) {
			u[0] = 1
		}
		for j := 1; j <= n; j++ {
			if hits(i, j) {
				u[j] = 1
			} else {
				s := float64(i + j)
				u[j] = float64(i)/s*u[j] + float64(j)/s*u[j-1]
			}
		}
	}
	return u[n]
}

// ksLimitUpper is 1 − K(x) for Kolmogorov's limiting distribution
// K(x) = 1 − 2·Σ_{k≥1} (−1)^(k−1) exp(−2k²x²), computed as R's pkstwo
// (ks.c) with tolerance tol: for x < 1 the series
// K(x) = √(2π)/x · Σ exp(−(2k−1)²π²/(8x²)) with k_max = ⌊√(2 − log tol)⌋,
// otherwise the alternating series until a term is at most tol. R 4.2
// returns 1 − pkstwo(x); the alternating series is summed here in the
// upper tail (as R ≥ 4.3 does), which gives the same terms without the
// cancellation.
func ksLimitUpper(x, tol float64) float64 {
	if x < 1 {
		kmax := int(math.Sqrt(2 - math.Log(tol)))
		const piOver2, piOver4 = math.Pi / 2, math.Pi / 4 // C's M_PI_2, M_PI_4
		z := -(float64(piOver2) * float64(piOver4)) / (x * x)
		w := math.Log(x)
		s := 0.0
		for k := 1; k < kmax; k += 2 {
			s += math.Exp(float64(float64(k*k)*z) - w)
		}
		const oneOverSqrt2Pi = 0.398942280401432677939946059934 // C's M_1_SQRT_2PI
		return 1 - s/oneOverSqrt2Pi
	}
	z := -2 * x * x
	sgn := -1.0
	k := 2
	old, cur := 0.0, 2*math.Exp(z)
	for math.Abs(old-cur) > tol {
		old = cur
		cur += 2 * sgn * math.Exp(z*float64(k)*float64(k))
		sgn = -sgn
		k++
	}
	return cur
}
