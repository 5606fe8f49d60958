package detector

import (
	"math"
	"sync"
)

// The exact null distribution of the Mann-Whitney statistic, and the
// normal distribution, computed the way R 4.2.2's nmath does so that
// p-values, quantiles and thus interval ends agree with R's.

// wilcoxExactMax bounds the sample sizes of the exact distribution: R
// uses it only when both samples have fewer than 50 values.
const wilcoxExactMax = 50

// wilcoxTable holds, for samples of m and n values, the number of
// arrangements giving each value u = 0 … m·n of the statistic.
type wilcoxTable struct {
	m, n   int
	counts []float64
	// total is choose(m+n, n), as the sum of counts.
	total float64
}

var wilcoxCache sync.Map // [2]int{min(m,n), max(m,n)} → *wilcoxTable

// wilcoxCounts returns the table for samples of m and n values, both in
// 1 … wilcoxExactMax. Tables are built once and shared; building one is
// safe from several goroutines (the loser's copy is dropped).
func wilcoxCounts(m, n int) *wilcoxTable {
	key := [2]int{min(m, n), max(m, n)}
	if t, ok := wilcoxCache.Load(key); ok {
		return t.(*wilcoxTable)
	}
	t, _ := wilcoxCache.LoadOrStore(key, newWilcoxTable(key[0], key[1]))
	return t.(*wilcoxTable)
}

// newWilcoxTable counts arrangements with R's recursion
// c(k; i, j) = c(k−j; i−1, j) + c(k; i, j−1), run bottom-up over j: only
// additions of non-negative numbers, so the counts carry a relative error
// of a few ulps even beyond 2⁵³. The distribution is symmetric in m and n.
func newWilcoxTable(m, n int) *wilcoxTable {
	// a[i][k] = c(k; i, j) for the current j; row i has i·j+1 entries used.
	a := make([][]float64, m+1)
	for i := range a {
		a[i] = make([]float64, i*n+1)
		a[i][0] = 1 // j = 0: only u = 0
	}
	for j := 1; j <= n; j++ {
		for i := 1; i <= m; i++ {
			prev, cur := a[i-1], a[i]
			// cur[k] (for j−1) += prev[k−j] (already for j); prev has
			// (i−1)·j+1 meaningful entries.
			for k := i * j; k >= j; k-- {
				cur[k] += prev[k-j]
			}
		}
	}
	t := &wilcoxTable{m: m, n: n, counts: a[m]}
	for _, c := range t.counts {
		t.total += c
	}
	return t
}

// pwilcox is R's pwilcox(q, m, n, lower.tail): P(U ≤ q), or P(U > q)
// when lower is false, summed over the shorter tail as R does.
func pwilcox(q float64, m, n int, lower bool) float64 {
	mn := float64(m) * float64(n)
	q = math.Floor(q + 1e-7)
	if q < 0 {
		return boolProb(!lower)
	}
	if q >= mn {
		return boolProb(lower)
	}
	t := wilcoxCounts(m, n)
	c := t.total
	p := 0.0
	if q <= mn/2 {
		for i := 0; i <= int(q); i++ {
			p += t.counts[i] / c
		}
	} else {
		q = mn - q
		for i := 0; i < int(q); i++ {
			p += t.counts[i] / c
		}
		lower = !lower
	}
	if lower {
		return p
	}
	return 0.5 - p + 0.5
}

func boolProb(one bool) float64 {
	if one {
		return 1
	}
	return 0
}

// qwilcox is R's qwilcox(p, m, n) (lower tail), with its fuzz of
// 10·DBL_EPSILON so that a p equal to a cumulative probability maps to
// that point despite rounding.
func qwilcox(p float64, m, n int) int {
	const eps = 10 * 2.220446049250313e-16
	mn := m * n
	switch {
	case math.IsNaN(p) || p < 0 || p > 1:
		return -1
	case p == 0:
		return 0
	case p == 1:
		return mn
	}
	t := wilcoxCounts(m, n)
	c := t.total
	cum := 0.0
	if p <= 0.5 {
		p -= eps
		for q := 0; q <= mn; q++ {
			cum += t.counts[q] / c
			if cum >= p {
				return q
			}
		}
		return mn
	}
	p = 1 - p + eps
	for q := 0; q <= mn; q++ {
		cum += t.counts[q] / c
		if cum > p {
			return mn - q
		}
	}
	return 0
}

// mwPnorm is the standard normal distribution function, P(Z ≤ z), or
// P(Z > z) when lower is false; each tail keeps full relative accuracy.
func mwPnorm(z float64, lower bool) float64 {
	if !lower {
		z = -z
	}
	return 0.5 * math.Erfc(-z/math.Sqrt2)
}

// mwQnorm is R 4.2.2's qnorm(p, lower.tail = lower): Wichura's AS 241
// (PPND16), with R's handling of the upper tail.
func mwQnorm(p float64, lower bool) float64 {
	switch {
	case math.IsNaN(p) || p < 0 || p > 1:
		return math.NaN()
	case p == 0:
		if lower {
			return math.Inf(-1)
		}
		return math.Inf(1)
	case p == 1:
		if lower {
			return math.Inf(1)
		}
		return math.Inf(-1)
	}
	p_ := p // the lower-tail probability, R_DT_qIv
	if !lower {
		p_ = 0.5 - p + 0.5
	}
	q := p_ - 0.5
	if math.Abs(q) <= .425 {
		r := .180625 - q*q
		return q * (((((((r*2509.0809287301226727+
			33430.575583588128105)*r+67265.770927008700853)*r+
			45921.953931549871457)*r+13731.693765509461125)*r+
			1971.5909503065514427)*r+133.14166789178437745)*r +
			3.387132872796366608) /
			(((((((r*5226.495278852854561+
				28729.085735721942674)*r+39307.89580009271061)*r+
				21213.794301586595867)*r+5394.1960214247511077)*r+
				687.1870074920579083)*r+42.313330701600911252)*r + 1.)
	}
	// r = min(p, 1−p) < 0.075, taken from the side that holds it exactly.
	var r float64
	if q > 0 {
		r = 0.5 - p + 0.5 // R_DT_CIv
		if !lower {
			r = p
		}
	} else {
		r = p_
	}
	r = math.Sqrt(-math.Log(r))
	var val float64
	if r <= 5. {
		r += -1.6
		val = (((((((r*7.7454501427834140764e-4+
			.0227238449892691845833)*r+.24178072517745061177)*
			r+1.27045825245236838258)*r+
			3.64784832476320460504)*r+5.7694972214606914055)*
			r+4.6303378461565452959)*r +
			1.42343711074968357734) /
			(((((((r*
				1.05075007164441684324e-9+5.475938084995344946e-4)*
				r+.0151986665636164571966)*r+
				.14810397642748007459)*r+.68976733498510000455)*
				r+1.6763848301838038494)*r+
				2.05319162663775882187)*r + 1.)
	} else {
		r += -5.
		val = (((((((r*2.01033439929228813265e-7+
			2.71155556874348757815e-5)*r+
			.0012426609473880784386)*r+.026532189526576123093)*
			r+.29656057182850489123)*r+
			1.7848265399172913358)*r+5.4637849111641143699)*
			r + 6.6579046435011037772) /
			(((((((r*
				2.04426310338993978564e-15+1.4215117583164458887e-7)*
				r+1.8463183175100546818e-5)*r+
				7.868691311456132591e-4)*r+.0148753612908506148525)*
				r+.13692988092273580531)*r+
				.59983220655588793769)*r + 1.)
	}
	if q < 0 {
		val = -val
	}
	return val
}
