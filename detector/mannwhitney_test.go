package detector

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Tolerances against R (testdata/mannwhitney.R):
//
//   - p-values: 1e-12 absolute. Both sides sum the same exact counts or
//     evaluate the normal tail to full precision; what is left is the
//     rounding of choose(m+n, n) and of erfc.
//   - exact test (no ties, both samples < 50): W, estimate and interval
//     ends 1e-12 absolute; they are the same pairwise differences, picked
//     by the same quantiles, so they agree bit for bit in practice.
//   - normal approximation: R finds the interval ends with uniroot at
//     tol.root = 1e-4 on a step function, so its root lies within about
//     1e-4 of the jump we return exactly: ends 2e-4 absolute. Its estimate
//     is any point of the flat zero step between the two middle
//     differences when there is an even number of them, while ours is the
//     midpoint: (D(N/2+1) − D(N/2))/2 + 2e-4.
const (
	mwTolP     = 1e-12
	mwTolExact = 1e-12
	mwTolRoot  = 2e-4
)

type mwCase struct {
	line        int
	data        string
	x, y        []float64
	mid         [2]float64
	alt         Alternative
	conf        float64
	errMsg      string // R stopped computing the interval with this message
	method      string
	w, p        float64
	est, lo, hi float64
	level       float64
}

func readMannWhitneyFixtures(t *testing.T) []mwCase {
	t.Helper()
	f, err := os.Open("testdata/mannwhitney.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		cases []mwCase
		cur   mwCase
	)
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<24)
	n := 0
	for sc.Scan() {
		n++
		text := sc.Text()
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Split(text, "\t")
		nums := func(ss []string) []float64 {
			vs := make([]float64, len(ss))
			for i, s := range ss {
				v, err := strconv.ParseFloat(s, 64)
				if err != nil {
					t.Fatalf("mannwhitney.txt:%d: %v", n, err)
				}
				vs[i] = v
			}
			return vs
		}
		switch fields[0] {
		case "data":
			cur = mwCase{data: fields[1]}
		case "x":
			cur.x = nums(fields[1:])
		case "y":
			cur.y = nums(fields[1:])
		case "mid":
			copy(cur.mid[:], nums(fields[1:3]))
		case "test", "error":
			c := cur
			c.line = n
			alt, err := ParseAlternative(strings.ReplaceAll(fields[1], ".", "-"))
			if err != nil {
				t.Fatalf("mannwhitney.txt:%d: %v", n, err)
			}
			c.alt = alt
			c.conf = nums(fields[2:3])[0]
			if fields[0] == "error" {
				c.errMsg, c.method = fields[3], fields[4]
				v := nums(fields[5:7])
				c.w, c.p = v[0], v[1]
			} else {
				c.method = fields[3]
				v := nums(fields[4:10])
				c.w, c.p, c.est, c.lo, c.hi, c.level = v[0], v[1], v[2], v[3], v[4], v[5]
			}
			cases = append(cases, c)
		default:
			t.Fatalf("mannwhitney.txt:%d: unknown record %q", n, fields[0])
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(cases) < 100 {
		t.Fatalf("read %d cases from mannwhitney.txt, want hundreds", len(cases))
	}
	return cases
}

// mwDev tracks the largest deviation from R seen per quantity.
type mwDev struct {
	mu  sync.Mutex
	max map[string]float64
}

func (d *mwDev) note(what string, got, want float64) {
	dev := 0.0
	if got != want { // unequal, and not both ±Inf
		dev = math.Abs(got - want)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.max[what] = max(d.max[what], dev)
}

// mannWhitneyWhereRStops checks the cases where R fails to compute the
// interval: when all values are equal (R's p-value is NaN, or a degenerate
// 1 one-sided) MannWhitney fails with ErrConstant; when each sample is
// constant but they differ, the test is R's and every difference, hence
// the estimate and the interval, is the one shift between the samples.
func mannWhitneyWhereRStops(t *testing.T, c mwCase, got Result, err error) {
	t.Helper()
	allEqual := true
	for _, v := range slices.Concat(c.x, c.y) {
		allEqual = allEqual && v == c.x[0]
	}
	if allEqual {
		if !errors.Is(err, ErrConstant) {
			t.Fatalf("mannwhitney.txt:%d: MannWhitney() error = %v, want ErrConstant (R: %s)", c.line, err, c.errMsg)
		}
		return
	}
	if err != nil {
		t.Fatalf("mannwhitney.txt:%d: MannWhitney() error = %v", c.line, err)
	}
	d := c.x[0] - c.y[0]
	lo, hi := d, d
	switch c.alt {
	case Greater:
		hi = math.Inf(1)
	case Less:
		lo = math.Inf(-1)
	}
	if got.Method != c.method || got.Statistic != c.w || math.Abs(got.PValue-c.p) > mwTolP ||
		got.Estimate != d || got.CILow != lo || got.CIHigh != hi || got.Confidence != c.conf {
		t.Errorf("mannwhitney.txt:%d: MannWhitney() = %+v, want method %q, W %v, p %v (R), estimate %v in [%v, %v] at %v",
			c.line, got, c.method, c.w, c.p, d, lo, hi, c.conf)
	}
}

func TestMannWhitneyAgainstR(t *testing.T) {
	cases := readMannWhitneyFixtures(t)
	dev := &mwDev{max: map[string]float64{}}
	for _, c := range cases {
		name := fmt.Sprintf("%s/%v/%v", c.data, c.alt, c.conf)
		t.Run(name, func(t *testing.T) {
			got, err := MannWhitney(c.x, c.y, Options{Alternative: c.alt, Confidence: c.conf})
			if c.errMsg != "" {
				mannWhitneyWhereRStops(t, c, got, err)
				return
			}
			if err != nil {
				t.Fatalf("mannwhitney.txt:%d: MannWhitney() error = %v", c.line, err)
			}
			exact := strings.Contains(c.method, "exact")
			if got.Method != c.method || got.Exact != exact {
				t.Errorf("mannwhitney.txt:%d: Method, Exact = %q, %v, want %q, %v", c.line, got.Method, got.Exact, c.method, exact)
			}
			check := func(what string, got, want, tol float64) {
				t.Helper()
				dev.note(what, got, want)
				if !(got == want || math.Abs(got-want) <= tol) {
					t.Errorf("mannwhitney.txt:%d: %s = %.17g, want %.17g (R), off by %.3g, tolerance %.3g", c.line, what, got, want, math.Abs(got-want), tol)
				}
			}
			check("W", got.Statistic, c.w, mwTolExact)
			if exact {
				check("p-value (exact)", got.PValue, c.p, mwTolP)
				check("estimate (exact)", got.Estimate, c.est, mwTolExact)
				check("interval low (exact)", got.CILow, c.lo, mwTolExact)
				check("interval high (exact)", got.CIHigh, c.hi, mwTolExact)
			} else {
				check("p-value (normal)", got.PValue, c.p, mwTolP)
				halfGap := (c.mid[1] - c.mid[0]) / 2
				check("estimate (normal)", got.Estimate, c.est, halfGap+mwTolRoot)
				dev.note("estimate (normal) beyond half the middle gap", max(math.Abs(got.Estimate-c.est)-halfGap, 0), 0)
				check("interval low (normal)", got.CILow, c.lo, mwTolRoot)
				check("interval high (normal)", got.CIHigh, c.hi, mwTolRoot)
			}
			check("confidence", got.Confidence, c.level, 1e-12)
			if got.Test != "mann-whitney" || got.StatisticName != "W" || got.EstimateName != "difference in location" ||
				!math.IsNaN(got.DF) || got.Alternative != c.alt ||
				got.NCanary != float64(len(c.x)) || got.NBaseline != float64(len(c.y)) {
				t.Errorf("mannwhitney.txt:%d: labels = %+v", c.line, got)
			}
		})
	}
	keys := make([]string, 0, len(dev.max))
	for k := range dev.max {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		t.Logf("largest deviation from R: %-24s %.3g", k, dev.max[k])
	}
}

func TestMannWhitneyErrors(t *testing.T) {
	ok := []float64{1, 2, 3}
	tests := []struct {
		name             string
		canary, baseline []float64
		opt              Options
		want             error
	}{
		{"empty canary", nil, ok, Options{}, ErrTooFewSamples},
		{"empty baseline", ok, []float64{}, Options{}, ErrTooFewSamples},
		{"NaN canary", []float64{1, math.NaN()}, ok, Options{}, ErrNonFinite},
		{"Inf baseline", ok, []float64{math.Inf(1)}, Options{}, ErrNonFinite},
		{"-Inf canary", []float64{math.Inf(-1)}, ok, Options{}, ErrNonFinite},
		{"all equal", []float64{2, 2, 2}, []float64{2, 2}, Options{}, ErrConstant},
		{"one each, equal", []float64{5}, []float64{5}, Options{Alternative: Greater}, ErrConstant},
		{"confidence 1", ok, ok, Options{Confidence: 1}, ErrInvalidOption},
		{"confidence -0.5", ok, ok, Options{Confidence: -0.5}, ErrInvalidOption},
		{"confidence NaN", ok, ok, Options{Confidence: math.NaN()}, ErrInvalidOption},
		{"alternative 7", ok, ok, Options{Alternative: 7}, ErrInvalidOption},
		{"overflowing differences", []float64{1e308}, []float64{-1e308}, Options{}, ErrNonFinite},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := MannWhitney(tt.canary, tt.baseline, tt.opt)
			if !errors.Is(err, tt.want) {
				t.Fatalf("MannWhitney() = %+v, %v, want error %v", got, err, tt.want)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "mann-whitney: ") {
				t.Errorf("error %q, want prefix \"mann-whitney: \"", msg)
			}
		})
	}
}

// TestMannWhitneyEachConstant: when each sample is constant, every pairwise
// difference is the same, so the estimate and the interval are that
// difference. R computes the p-value (wilcox.test(c(2,2,2), c(1,1),
// alternative=…)$p.value, below) but stops in its root finder for the
// interval.
func TestMannWhitneyEachConstant(t *testing.T) {
	tests := []struct {
		alt          Alternative
		p, low, high float64
	}{
		{TwoSided, 0.095580704545629405, 1, 1},
		{Greater, 0.047790352272814703, 1, math.Inf(1)},
		{Less, 0.99018467137135469, math.Inf(-1), 1},
	}
	for _, tt := range tests {
		got, err := MannWhitney([]float64{2, 2, 2}, []float64{1, 1}, Options{Alternative: tt.alt})
		if err != nil {
			t.Fatalf("%v: %v", tt.alt, err)
		}
		if math.Abs(got.PValue-tt.p) > 1e-12 || got.Estimate != 1 || got.CILow != tt.low || got.CIHigh != tt.high {
			t.Errorf("%v: p %v estimate %v interval [%v, %v], want p %v estimate 1 interval [%v, %v]",
				tt.alt, got.PValue, got.Estimate, got.CILow, got.CIHigh, tt.p, tt.low, tt.high)
		}
	}
}

func TestMannWhitneyDoesNotModifyInput(t *testing.T) {
	canary := []float64{3, 1, 2, 9, 7}
	baseline := []float64{8, 0, 4}
	c, b := slices.Clone(canary), slices.Clone(baseline)
	if _, err := MannWhitney(canary, baseline, Options{}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(canary, c) || !slices.Equal(baseline, b) {
		t.Errorf("inputs changed to %v, %v, want %v, %v", canary, baseline, c, b)
	}
}

// TestMannWhitneyLarge checks the normal approximation at sizes R's
// fixtures do not reach against the definitions: W by counting pairs, and
// the estimate and interval ends as order statistics of the listed
// differences.
func TestMannWhitneyLarge(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	tests := []struct {
		name   string
		nx, ny int
		gen    func() float64
	}{
		{"normal", 1500, 1000, r.NormFloat64},
		{"rounded", 1200, 1200, func() float64 { return math.Round(r.NormFloat64() * 3) }},
		{"lognormal", 600, 2500, func() float64 { return math.Exp(r.NormFloat64()) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x, y := make([]float64, tt.nx), make([]float64, tt.ny)
			for i := range x {
				x[i] = tt.gen() + 0.05
			}
			for i := range y {
				y[i] = tt.gen()
			}
			got, err := MannWhitney(x, y, Options{})
			if err != nil {
				t.Fatal(err)
			}
			diffs := make([]float64, 0, tt.nx*tt.ny)
			u := 0.0
			for _, xi := range x {
				for _, yj := range y {
					diffs = append(diffs, xi-yj)
					switch {
					case xi > yj:
						u++
					case xi == yj:
						u += 0.5
					}
				}
			}
			slices.Sort(diffs)
			if got.Statistic != u {
				t.Errorf("W = %v, want %v", got.Statistic, u)
			}
			N := len(diffs)
			if want := (diffs[N/2-1] + diffs[N/2]) / 2; got.Estimate != want {
				t.Errorf("estimate = %v, want %v", got.Estimate, want)
			}
			if !slices.Contains(diffs, got.CILow) || !slices.Contains(diffs, got.CIHigh) {
				t.Errorf("interval [%v, %v] ends are not pairwise differences", got.CILow, got.CIHigh)
			}
			// The ends sit about 1.96 standard deviations of W (corrected
			// for the ties within each sample) from the middle, in ranks.
			nx, ny := float64(tt.nx), float64(tt.ny)
			ties := 0.0
			for _, s := range [][]float64{x, y} {
				counts := map[float64]float64{}
				for _, v := range s {
					counts[v]++
				}
				for _, c := range counts {
					ties += c*c*c - c
				}
			}
			sd := math.Sqrt(nx * ny / 12 * (nx + ny + 1 - ties/((nx+ny)*(nx+ny-1))))
			for _, e := range []struct {
				name      string
				end, rank float64
			}{{"low", got.CILow, float64(N)/2 - 1.96*sd}, {"high", got.CIHigh, float64(N)/2 + 1.96*sd}} {
				first, _ := slices.BinarySearch(diffs, e.end)
				last, _ := slices.BinarySearch(diffs, math.Nextafter(e.end, math.Inf(1)))
				if e.rank < float64(first)-0.05*sd || e.rank > float64(last)+0.05*sd {
					t.Errorf("interval %s end %v holds ranks %d to %d, want about %v", e.name, e.end, first+1, last, e.rank)
				}
			}
		})
	}
}

// TestDiffSelector compares order statistics of pairwise differences with
// those of the listed, sorted differences.
func TestDiffSelector(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 5))
	gens := map[string]func() float64{
		"normal":   r.NormFloat64,
		"integers": func() float64 { return float64(r.IntN(5)) },
		"cauchy":   func() float64 { return math.Tan(math.Pi * (r.Float64() - 0.5)) },
		"scales":   func() float64 { return r.NormFloat64() * math.Pow(10, float64(r.IntN(600)-300)) },
		"zeros":    func() float64 { return []float64{0, math.Copysign(0, -1), 5e-324, -5e-324}[r.IntN(4)] },
	}
	for name, gen := range gens {
		for _, size := range [][2]int{{1, 1}, {1, 7}, {9, 1}, {40, 60}, {300, 200}} {
			t.Run(fmt.Sprintf("%s/%dx%d", name, size[0], size[1]), func(t *testing.T) {
				x, y := make([]float64, size[0]), make([]float64, size[1])
				for i := range x {
					x[i] = gen()
				}
				for i := range y {
					y[i] = gen()
				}
				slices.Sort(x)
				slices.Sort(y)
				var diffs []float64
				for _, xi := range x {
					for _, yj := range y {
						diffs = append(diffs, xi-yj)
					}
				}
				slices.Sort(diffs)
				s := newDiffSelector(x, y)
				N := int64(len(diffs))
				queries := 0
				for _, k := range []int64{1, 2, N / 7, N / 3, N / 2, N/2 + 1, N - 1, N} {
					queries += 2
					if k < 1 || k > N {
						continue
					}
					if got, want := s.kth(k), diffs[k-1]; got != want {
						t.Errorf("kth(%d) = %v, want %v", k, got, want)
					}
					if k < N {
						a, b := s.kthPair(k)
						if a != diffs[k-1] || b != diffs[k] {
							t.Errorf("kthPair(%d) = %v, %v, want %v, %v", k, a, b, diffs[k-1], diffs[k])
						}
					}
				}
				// Interpolation, bisection and tightening keep the
				// counting passes few whatever the data.
				if s.passes > 30*queries {
					t.Errorf("%d counting passes for %d queries, want at most %d", s.passes, queries, 30*queries)
				}
			})
		}
	}
}

func TestSelectNth(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 2, 17, 100, 1000} {
		for _, distinct := range []int{1, 3, 1 << 30} {
			a := make([]float64, n)
			for i := range a {
				a[i] = float64(r.IntN(distinct))
			}
			sorted := slices.Sorted(slices.Values(a))
			for _, k := range []int{0, n / 2, n - 1} {
				b := slices.Clone(a)
				if got := selectNth(b, k); got != sorted[k] {
					t.Errorf("n=%d distinct=%d: selectNth(%d) = %v, want %v", n, distinct, k, got, sorted[k])
				}
			}
		}
	}
}

// TestWilcoxCounts checks the exact distribution: counts sum to
// choose(m+n, n), are symmetric, and match small cases listed by hand.
func TestWilcoxCounts(t *testing.T) {
	tests := []struct {
		m, n int
		want []float64
	}{
		{1, 1, []float64{1, 1}},
		{2, 2, []float64{1, 1, 2, 1, 1}},
		{3, 2, []float64{1, 1, 2, 2, 2, 1, 1}},
		{2, 3, []float64{1, 1, 2, 2, 2, 1, 1}},
	}
	for _, tt := range tests {
		if got := wilcoxCounts(tt.m, tt.n).counts; !slices.Equal(got, tt.want) {
			t.Errorf("wilcoxCounts(%d, %d) = %v, want %v", tt.m, tt.n, got, tt.want)
		}
	}
	for _, mn := range [][2]int{{10, 10}, {25, 7}, {30, 30}} {
		m, n := mn[0], mn[1]
		tab := wilcoxCounts(m, n)
		want := 1.0
		for i := 1; i <= n; i++ {
			want = want * float64(m+i) / float64(i)
		}
		if math.Abs(tab.total-want) > 1e-12*want {
			t.Errorf("wilcoxCounts(%d, %d) total = %v, want %v", m, n, tab.total, want)
		}
		for k, c := range tab.counts {
			if c != tab.counts[m*n-k] {
				t.Errorf("wilcoxCounts(%d, %d): count(%d) = %v, count(%d) = %v, want equal", m, n, k, c, m*n-k, tab.counts[m*n-k])
				break
			}
		}
	}
}

// TestWilcoxCountsConcurrent builds the same tables from several
// goroutines (run with -race).
func TestWilcoxCountsConcurrent(t *testing.T) {
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for m := 1; m < 12; m++ {
				if p := pwilcox(float64(g), m, 13-m, true); !(p >= 0 && p <= 1) {
					t.Errorf("pwilcox(%d, %d, %d) = %v", g, m, 13-m, p)
				}
			}
		})
	}
	wg.Wait()
}

// TestQnorm checks mwQnorm against R 4.2.2's qnorm, printed with %.17g.
func TestQnorm(t *testing.T) {
	tests := []struct {
		p     float64
		lower bool
		want  float64
	}{
		{0.025, true, -1.9599639845400538},
		{0.025, false, 1.9599639845400538},
		{0.1, false, 1.2815515655446008},
		{0.005, true, -2.5758293035488999},
		{0.5, true, 0},
		{1e-10, true, -6.3613409024040557},
		{1e-300, false, 37.047096299361201},
		{0.3, true, -0.52440051270804067},
	}
	for _, tt := range tests {
		if got := mwQnorm(tt.p, tt.lower); got != tt.want {
			t.Errorf("mwQnorm(%v, %v) = %.17g, want %.17g", tt.p, tt.lower, got, tt.want)
		}
	}
}

func TestSortedCopy(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	gens := map[string]func() float64{
		"normal":   r.NormFloat64,
		"integers": func() float64 { return float64(r.IntN(7) - 3) },
		"scales":   func() float64 { return r.NormFloat64() * math.Pow(10, float64(r.IntN(600)-300)) },
		"zeros":    func() float64 { return []float64{0, math.Copysign(0, -1), 5e-324, -5e-324, 1}[r.IntN(5)] },
	}
	for name, gen := range gens {
		for _, n := range []int{0, 1, 5, 1023, 1024, 5000} {
			xs := make([]float64, n)
			for i := range xs {
				xs[i] = gen()
			}
			orig := slices.Clone(xs)
			got := sortedCopy(xs)
			want := slices.Sorted(slices.Values(xs))
			if !slices.Equal(got, want) {
				t.Errorf("%s/%d: sortedCopy() is not sorted like slices.Sort", name, n)
			}
			if !slices.Equal(xs, orig) {
				t.Errorf("%s/%d: sortedCopy() changed its input", name, n)
			}
		}
	}
}

// mwFuzzSamples splits fuzz input into a canary and a baseline: the first
// split values (modulo the count) are the canary. Mode 0 reads float64 bit
// patterns (NaN and ±Inf included), mode 1 small integers (many ties),
// mode 2 signed bytes scaled by a power of ten.
func mwFuzzSamples(data []byte, split, mode uint8) (canary, baseline []float64) {
	var xs []float64
	switch mode % 3 {
	case 0:
		for ; len(data) >= 8; data = data[8:] {
			var u uint64
			for i := range 8 {
				u = u<<8 | uint64(data[i])
			}
			xs = append(xs, math.Float64frombits(u))
		}
	case 1:
		for _, b := range data {
			xs = append(xs, float64(b%6))
		}
	case 2:
		scale := 1.0
		if len(data) > 0 {
			scale = math.Pow(10, float64(int(data[0]%40)-20))
			data = data[1:]
		}
		for _, b := range data {
			xs = append(xs, float64(int8(b))*scale)
		}
	}
	k := 0
	if len(xs) > 0 {
		k = int(split) % (len(xs) + 1)
	}
	return xs[:k], xs[k:]
}

func FuzzMannWhitney(f *testing.F) {
	f.Add([]byte("\x3f\xf0\x00\x00\x00\x00\x00\x00\x40\x00\x00\x00\x00\x00\x00\x00\x40\x08\x00\x00\x00\x00\x00\x00"), uint8(1), uint8(0), uint8(0), 0.95)
	f.Add([]byte("\x01\x02\x03\x04\x05\x00\x00\x01\x02\x02\x03\x05\x05\x01"), uint8(6), uint8(1), uint8(1), 0.9)
	f.Add([]byte("\x14\x01\x7f\x80\xfe\x05\x09\x11\x22\x33\x44\x55\x66\x77\x88\x99"), uint8(7), uint8(2), uint8(2), 0.99)
	f.Add(make([]byte, 140), uint8(60), uint8(1), uint8(0), 0.8)
	f.Fuzz(func(t *testing.T, data []byte, split, mode, alt uint8, conf float64) {
		canary, baseline := mwFuzzSamples(data, split, mode)
		opt := Options{Alternative: Alternative(alt % 3), Confidence: conf}
		r, err := MannWhitney(canary, baseline, opt)
		bad := len(canary) == 0 || len(baseline) == 0
		for _, v := range slices.Concat(canary, baseline) {
			bad = bad || math.IsNaN(v) || math.IsInf(v, 0)
		}
		if err != nil {
			if !errors.Is(err, ErrTooFewSamples) && !errors.Is(err, ErrNonFinite) &&
				!errors.Is(err, ErrConstant) && !errors.Is(err, ErrInvalidOption) {
				t.Fatalf("MannWhitney() error = %v, want one of the sentinels", err)
			}
			return
		}
		if bad {
			t.Fatalf("MannWhitney(%v, %v) = %+v, want an error", canary, baseline, r)
		}
		nx, ny := float64(len(canary)), float64(len(baseline))
		if !(r.PValue >= 0 && r.PValue <= 1) {
			t.Errorf("p-value = %v", r.PValue)
		}
		if !(r.Statistic >= 0 && r.Statistic <= nx*ny) {
			t.Errorf("W = %v, want in [0, %v]", r.Statistic, nx*ny)
		}
		if !(r.Confidence > 0 && r.Confidence <= 1) && !(r.Exact && r.Confidence == 0) {
			t.Errorf("confidence = %v", r.Confidence)
		}
		if !(r.CILow <= r.CIHigh) {
			t.Errorf("interval [%v, %v]", r.CILow, r.CIHigh)
		}
		// Below 50% a one-sided bound passes the estimate, as in R.
		if (r.Alternative == TwoSided || conf == 0 || conf >= 0.5) && !(r.CILow <= r.Estimate && r.Estimate <= r.CIHigh) {
			t.Errorf("estimate %v outside [%v, %v]", r.Estimate, r.CILow, r.CIHigh)
		}
		if nx*ny > 4096 {
			return
		}
		// Against the definitions: W counts pairs, the estimate is the
		// median difference and the interval ends are differences.
		var diffs []float64
		u := 0.0
		for _, xi := range canary {
			for _, yj := range baseline {
				diffs = append(diffs, xi-yj)
				switch {
				case xi > yj:
					u++
				case xi == yj:
					u += 0.5
				}
			}
		}
		slices.Sort(diffs)
		N := len(diffs)
		med := diffs[N/2]
		if N%2 == 0 {
			med = midpoint(diffs[N/2-1], diffs[N/2])
		}
		if r.Statistic != u {
			t.Errorf("W = %v, want %v", r.Statistic, u)
		}
		if r.Estimate != med {
			t.Errorf("estimate = %v, want median difference %v", r.Estimate, med)
		}
		for _, end := range []float64{r.CILow, r.CIHigh} {
			if !math.IsInf(end, 0) && !slices.Contains(diffs, end) {
				t.Errorf("interval end %v is not a difference", end)
			}
		}
	})
}
