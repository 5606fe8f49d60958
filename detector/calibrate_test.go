package detector

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// mwZ is the textbook Mann-Whitney z of x against y, ties counted half,
// tie-corrected variance, no continuity correction.
func mwZ(x, y []float64) float64 {
	u := 0.0
	for _, a := range x {
		for _, b := range y {
			switch {
			case a > b:
				u++
			case a == b:
				u += 0.5
			}
		}
	}
	counts := map[float64]float64{}
	for _, v := range append(append([]float64(nil), x...), y...) {
		counts[v]++
	}
	ties := 0.0
	for _, c := range counts {
		ties += c*c*c - c
	}
	nx, ny := float64(len(x)), float64(len(y))
	n := nx + ny
	v := nx * ny / 12 * ((n + 1) - ties/(n*(n-1)))
	if v <= 0 {
		return 0
	}
	return (u - nx*ny/2) / math.Sqrt(v)
}

func TestTrajectory(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for trial := range 200 {
		nb, nc := 1+r.IntN(60), 1+r.IntN(30)
		base, canary := make([]float64, nb), make([]float64, nc)
		q := 1.0
		if trial%2 == 0 {
			q = 4 // rounded: many ties
		}
		for i := range base {
			base[i] = math.Round(q*r.NormFloat64()) / q
		}
		for i := range canary {
			canary[i] = math.Round(q*(r.NormFloat64()+0.5)) / q
		}
		var tr trajectory
		sorted := append([]float64(nil), base...)
		slices.Sort(sorted)
		for _, bad := range []Direction{Increase, Decrease, Either} {
			got := tr.run(sorted, canary, bad)
			for k := range canary {
				want := mwZ(canary[:k+1], base)
				switch bad {
				case Decrease:
					want = -want
				case Either:
					want = math.Abs(want)
				}
				if math.Abs(got[k]-want) > 1e-9 {
					t.Fatalf("trial %d %v, k=%d: z %v, want %v", trial, bad, k+1, got[k], want)
				}
			}
		}
	}
}

func TestCalibrate(t *testing.T) {
	h := normals(7, 500, 0, 1)
	c := Calibrate(h, 48, 24, Increase, 0)
	if c.N() != 500-2*48-24+1 || c.Lookback != 48 || c.Window != 24 {
		t.Fatalf("N %d (%d, %d), want %d placebos", c.N(), c.Lookback, c.Window, 500-2*48-24+1)
	}
	for i := 1; i < c.N(); i++ {
		if c.Maxima[i] < c.Maxima[i-1] {
			t.Fatal("maxima not sorted")
		}
	}
	// The last placebo's window ends where the deploy's lookback begins.
	if m := Statistic(h[500-24-96:500-24-48], h[500-24-48:500-48], Increase); c.P(m) > 1 || c.P(m) < c.MinP() {
		t.Errorf("P(%v) = %v out of range", m, c.P(m))
	}
	if got, want := c.P(math.Inf(1)), 1/float64(c.N()+1); got != want {
		t.Errorf("P(+Inf) = %v, want %v", got, want)
	}
	if got := c.P(math.Inf(-1)); got != 1 {
		t.Errorf("P(-Inf) = %v, want 1", got)
	}
	long := Calibrate(normals(8, 10000, 0, 1), 48, 24, Increase, 0)
	if long.N() > MaxPlacebos || long.N() < MaxPlacebos/2 {
		t.Errorf("a long history gave %d placebos, want at most %d and not far below", long.N(), MaxPlacebos)
	}
	if n := Calibrate(h[:119], 48, 24, Increase, 0).N(); n != 0 {
		t.Errorf("119 values gave %d placebos, want 0", n)
	}
	if n := Calibrate(normals(8, 10000, 0, 1), 48, 24, Increase, 5000).N(); n < 4900 || n > 5000 {
		t.Errorf("max 5000 gave %d placebos", n)
	}
	for _, tt := range []struct {
		a    float64
		want int
	}{{0.01, 99}, {0.05, 19}, {0.0025, 399}, {0.01 / 3, 299}, {0.5, 1}} {
		if got := PlacebosFor(tt.a); got != tt.want {
			t.Errorf("PlacebosFor(%v) = %d, want %d", tt.a, got, tt.want)
		}
	}
}

// TestCalibratedFalseAlarms: on i.i.d. and on strongly autocorrelated
// (AR(1), φ = 0.9) series, harmless deploys judged against their own
// placebos fail at about alpha; the textbook test with the looks
// corrected for (Bonferroni) holds alpha on i.i.d. data but not under
// autocorrelation, which is why calibration exists.
// TestCalibrateSliding: the sorted lookback that slides from one placebo to
// the next gives the maxima a fresh sort would, ties included.
func TestCalibrateSliding(t *testing.T) {
	h := normals(5, 400, 0, 1)
	for i := range h {
		h[i] = math.Round(2*h[i]) / 2 // many ties
	}
	got := Calibrate(h, 48, 24, Either, 0)
	var want []float64
	for p := len(h) - 24 - 48; p >= 48; p-- {
		want = append(want, Statistic(h[p-48:p], h[p:p+24], Either))
	}
	slices.Sort(want)
	if !slices.Equal(got.Maxima, want) {
		t.Fatalf("sliding maxima differ from sorting each lookback")
	}
}

func TestCalibratedFalseAlarms(t *testing.T) {
	const (
		L, W, history = 48, 24, 600
		deploys       = 400
		alpha         = 0.05
	)
	for _, phi := range []float64{0, 0.9} {
		r := rand.New(rand.NewPCG(uint64(phi*10)+3, 9))
		calibrated, textbook := 0, 0
		for range deploys {
			x := make([]float64, history+W)
			for i := range x {
				x[i] = r.NormFloat64()
				if i > 0 {
					x[i] += phi * x[i-1]
				}
			}
			c := Calibrate(x[:history], L, W, Increase, 0)
			base, canary := x[history-L:history], x[history:]
			if c.P(Statistic(base, canary, Increase)) <= alpha {
				calibrated++
			}
			for k := 1; k <= W; k++ {
				res, err := MannWhitney(canary[:k], base, Options{Alternative: Greater})
				if err == nil && res.PValue*W <= alpha {
					textbook++
					break
				}
			}
		}
		rate := float64(calibrated) / deploys
		// Binomial(400, 0.05) has sd 0.011: 0.085 is three of them above.
		if rate > 0.085 {
			t.Errorf("φ=%v: calibrated false alarm rate %v, want about %v", phi, rate, alpha)
		}
		t.Logf("φ=%v: false alarms calibrated %.3f, textbook with Bonferroni %.3f (alpha %v)", phi, rate, float64(textbook)/deploys, alpha)
		if phi == 0.9 && float64(textbook)/deploys < 2*alpha {
			t.Errorf("φ=0.9: the textbook test failed only %v of harmless deploys; the test no longer shows why calibration is needed", float64(textbook)/deploys)
		}
	}
}

func TestJudgeCalibrated(t *testing.T) {
	h := normals(11, 400, 100, 5)
	c := Calibrate(h, 48, 24, Decrease, 0)
	base := h[len(h)-48:]
	drop := normals(12, 10, 85, 5)
	v, err := Judge([]KPI{{Name: "conversion", Bad: Decrease, Canary: drop, Baseline: base, Calibration: &c}}, JudgeOptions{Alpha: 0.01, Looks: 24})
	if err != nil {
		t.Fatal(err)
	}
	k := v.KPIs[0]
	if v.Outcome != Fail || k.Placebos != c.N() || k.PValue != c.MinP() || !strings.Contains(k.Sentence, "placebo deploys") {
		t.Errorf("%v p=%v (min %v): %s", v.Outcome, k.PValue, c.MinP(), k.Sentence)
	}
	// 50 placebos cannot reach 0.01: inconclusive, never a pass.
	short := Calibrate(h[:169], 48, 24, Decrease, 0)
	v, err = Judge([]KPI{{Name: "conversion", Bad: Decrease, Canary: drop, Baseline: base, Calibration: &short}}, JudgeOptions{Alpha: 0.01, Looks: 24})
	if err != nil {
		t.Fatal(err)
	}
	if v.Outcome != Inconclusive || !strings.Contains(v.KPIs[0].Reason, "too little history to calibrate: 50 placebo deploys, need 99, that is 218 steps of history before the deploy") {
		t.Errorf("%v: %s", v.Outcome, v.KPIs[0].Sentence)
	}
	// Without calibration the test's p-value is multiplied by the looks.
	v, err = Judge([]KPI{{Name: "conversion", Bad: Decrease, Canary: drop, Baseline: base}}, JudgeOptions{Alpha: 0.01, Looks: 24})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := MannWhitney(drop, base, Options{Alternative: Less})
	if k := v.KPIs[0]; k.PValue != math.Min(1, raw.PValue*24) || k.Looks != 24 || !strings.Contains(k.Sentence, "×24 looks") {
		t.Errorf("p %v, want %v: %s", k.PValue, raw.PValue*24, k.Sentence)
	}
}

// BenchmarkCalibrate: 2 000 placebos of a 48-sample lookback and a
// 24-sample window, as analysis.Calibrate asks for by default.
func BenchmarkCalibrate(b *testing.B) {
	h := normals(1, 2*48+24+2000-1, 100, 5)
	for b.Loop() {
		Calibrate(h, 48, 24, Increase, 0)
	}
}

func TestCalibrateInPhase(t *testing.T) {
	// A daily cycle of 24 steps, four days and a bit of history.
	const period, tol = 24, 1
	h := make([]float64, 4*period+30)
	for i := range h {
		h[i] = 10*math.Sin(2*math.Pi*float64(i)/period) + 0.1*float64(i%3)
	}
	c := CalibrateInPhase(h, 6, 4, Increase, 0, period, tol, 5)
	if c.Period != period {
		t.Fatalf("fell back to all placebos (%d)", c.N())
	}
	// The placebos are those 24k ± 1 steps before the deploy (at
	// len(h)) whose windows end before its lookback and whose lookbacks
	// start after 0.
	want := 0
	for p := len(h) - 4 - 6; p >= 6; p-- {
		if off := (len(h) - p) % period; off <= tol || off >= period-tol {
			want++
		}
	}
	if c.N() != want {
		t.Errorf("%d placebos, want %d", c.N(), want)
	}
	// Not enough of them: all placebos, as Calibrate.
	all := CalibrateInPhase(h, 6, 4, Increase, 0, period, tol, want+1)
	if all.Period != 0 || all.N() != Calibrate(h, 6, 4, Increase, 0).N() {
		t.Errorf("fallback: period %d, %d placebos", all.Period, all.N())
	}
}

// TestIIDMaximaNull: the simulated null of the statistic (uniform values)
// holds for other continuous i.i.d. data: normal windows exceed its 95th
// percentile about 5% of the time.
func TestIIDMaximaNull(t *testing.T) {
	const lookback, window, n = 48, 24, 4000
	null := IIDMaxima(lookback, window, Decrease)
	if len(null) != IIDSimulations {
		t.Fatalf("%d simulated maxima, want %d", len(null), IIDSimulations)
	}
	q := null[int(0.95*float64(len(null)))]
	r := rand.New(rand.NewPCG(99, 1))
	base := make([]float64, lookback)
	canary := make([]float64, window)
	over := 0
	for range n {
		for i := range base {
			base[i] = 100 + 5*r.NormFloat64()
		}
		for i := range canary {
			canary[i] = 100 + 5*r.NormFloat64()
		}
		if Statistic(base, canary, Decrease) > q {
			over++
		}
	}
	// Binomial(4000, 0.05): mean 200, sd 13.8.
	if over < 150 || over > 250 {
		t.Fatalf("%d of %d normal windows over the uniform null's 95th percentile, want about 200", over, n)
	}
	if again := IIDMaxima(lookback, window, Decrease); &again[0] != &null[0] {
		t.Error("IIDMaxima is not cached")
	}
}

// TestPNotBelowIID: placebos quieter than independent data do not make
// the p-value smaller than independent data would.
func TestPNotBelowIID(t *testing.T) {
	c := Calibration{Lookback: 48, Window: 24, IID: IIDMaxima(48, 24, Increase)}
	for i := range 999 {
		c.Maxima = append(c.Maxima, -10+float64(i)*1e-3) // far below any real maximum
	}
	m := c.IID[len(c.IID)/2] // the median of the i.i.d. maxima
	if p := c.P(m); p < 0.45 || p > 0.55 {
		t.Fatalf("P = %v at the i.i.d. median, want about 0.5 (the conformal p alone is %v)", p, 1/1000.0)
	}
}
