package detector

import (
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestSignedRankZ: the signed-rank z against R's wilcox.test
// (testdata/signedrank.R).
func TestSignedRankZ(t *testing.T) {
	b, err := os.ReadFile("testdata/signedrank.txt")
	if err != nil {
		t.Fatal(err)
	}
	var d []float64
	n := 0
	for i, text := range strings.Split(string(b), "\n") {
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		f := strings.Split(text, "\t")
		var nums []float64
		for _, s := range f[1:] {
			v, err := strconv.ParseFloat(s, 64)
			if err != nil {
				t.Fatalf("signedrank.txt:%d: %v", i+1, err)
			}
			nums = append(nums, v)
		}
		switch f[0] {
		case "d":
			d = nums
		case "z":
			n++
			var sr signedRanks
			got := sr.z(slices.Clone(d))
			if math.Abs(got-nums[1]) > 1e-9*math.Max(1, math.Abs(nums[1])) {
				t.Errorf("signedrank.txt:%d: z %v, R %v (d %v)", i+1, got, nums[1], d)
			}
		}
	}
	if n < 20 {
		t.Fatalf("%d cases read", n)
	}
}

// TestSeasonalRun: a placebo's z at look j is the signed-rank z of its
// first j window values' differences from the median of the same offsets
// in the earlier seasons, and SeasonalStatistic of the look's arrays (the
// seasons one after the other) gives the same.
func TestSeasonalRun(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	const season, window = 10, 6
	for _, seasons := range []int{1, 3} {
		x := make([]float64, seasons*season+window+5)
		for i := range x {
			x[i] = math.Round(2*r.NormFloat64()) / 2
		}
		q := seasons*season + 2
		var st seasonalRun
		for _, bad := range []Direction{Increase, Decrease, Either} {
			got := slices.Clone(st.run(x, q, season, seasons, window, bad))
			for j := 1; j <= window; j++ {
				var c, b, d []float64
				for i := 1; i <= j; i++ {
					c = append(c, x[q+i])
				}
				for k := 1; k <= seasons; k++ {
					for i := 1; i <= j; i++ {
						b = append(b, x[q+i-k*season])
					}
				}
				for i := 1; i <= j; i++ {
					var col []float64
					for k := 1; k <= seasons; k++ {
						col = append(col, x[q+i-k*season])
					}
					slices.Sort(col)
					m := col[len(col)/2]
					if len(col)%2 == 0 {
						m = (col[len(col)/2-1] + col[len(col)/2]) / 2
					}
					d = append(d, x[q+i]-m)
				}
				var sr signedRanks
				want := orient(sr.z(d), bad)
				if math.Abs(got[j-1]-want) > 1e-9 {
					t.Fatalf("seasons %d %v look %d: z %v, want %v", seasons, bad, j, got[j-1], want)
				}
				if j == window {
					if s := SeasonalStatistic(b, c, bad, seasons); math.Abs(s-want) > 1e-9 {
						t.Fatalf("SeasonalStatistic %v, want %v", s, want)
					}
				}
			}
		}
	}
}

func TestCalibrateSeasonalPlacebos(t *testing.T) {
	h := normals(3, 300, 0, 1)
	for _, tc := range []struct{ season, seasons, window int }{{24, 1, 6}, {24, 2, 6}, {50, 2, 24}} {
		c := CalibrateSeasonal(h, tc.season, tc.seasons, tc.window, Increase, 0)
		want := len(h) - 2*tc.seasons*tc.season - tc.window + 1
		if c.N() != max(want, 0) || (want > 0 && c.HistoryFor(c.N()) != len(h)) || c.Seasons != tc.seasons {
			t.Errorf("%+v: %d placebos, want %d; history for them %d, have %d", tc, c.N(), want, c.HistoryFor(c.N()), len(h))
		}
		if len(c.IID) != IIDSimulations {
			t.Errorf("%+v: %d simulated maxima", tc, len(c.IID))
		}
	}
	// The most recent placebo's window ends just before the deploy's
	// earliest baseline: a history that is all noise but a spike there
	// and a spike inside that baseline shows only the first.
	if c := CalibrateSeasonal(h, 24, 1, 6, Increase, 10); c.N() != 10 {
		t.Errorf("max 10: %d placebos", c.N())
	}
}

// TestCalibrateSeasonalGaps: a step without a value leaves out every
// placebo that touches it, as its window or as one of its seasons.
func TestCalibrateSeasonalGaps(t *testing.T) {
	const season, window = 10, 4
	for _, seasons := range []int{1, 2, 3, 4} {
		h := normals(9, 200, 0, 1)
		full := CalibrateSeasonal(h, season, seasons, window, Increase, 0)
		gap := 120
		h[gap] = math.NaN()
		c := CalibrateSeasonal(h, season, seasons, window, Increase, 0)
		// Placebos q (window q+1 … q+window, seasons k·season earlier)
		// touching the gap.
		touched := 0
		for q := seasons*season - 1; q <= len(h)-seasons*season-window-1; q++ {
			hit := false
			for j := 1; j <= window; j++ {
				for k := 0; k <= seasons; k++ {
					hit = hit || q+j-k*season == gap
				}
			}
			if hit {
				touched++
			}
		}
		if full.N()-c.N() != touched {
			t.Errorf("seasons %d: %d placebos left out, want %d", seasons, full.N()-c.N(), touched)
		}
	}
}

// seasonalSeries is a daily cycle of period steps and amplitude 10 with
// AR(1) noise of coefficient phi and unit innovations.
func seasonalSeries(r *rand.Rand, n, period int, phi float64) []float64 {
	x := make([]float64, n)
	e := 0.0
	for i := range x {
		e = phi*e + r.NormFloat64()
		x[i] = 10*math.Sin(2*math.Pi*float64(i)/float64(period)) + e
	}
	return x
}

// TestSeasonalFalseAlarms: on a daily cycle with autocorrelated noise,
// harmless deploys judged against the day before fail about alpha of the
// time with the seasonal calibration, and on independent noise a shift of
// two noise units is caught.
func TestSeasonalFalseAlarms(t *testing.T) {
	const (
		period, window = 24, 8
		deploys        = 400
		alpha          = 0.05
	)
	for _, phi := range []float64{0, 0.7} {
		r := rand.New(rand.NewPCG(uint64(phi*10)+11, 13))
		calibrated, textbook, caught := 0, 0, 0
		for range deploys {
			x := seasonalSeries(r, 500+window, period, phi)
			h, canary := x[:500], x[500:]
			c := CalibrateSeasonal(h, period, 1, window, Increase, 0)
			d := len(h) - 1
			var base []float64
			failed, textFailed := false, false
			for j := 1; j <= window; j++ {
				base = append(base, x[d+j-period])
				if c.P(SeasonalStatistic(base, canary[:j], Increase, 1)) <= alpha {
					failed = true
				}
				res, err := MannWhitney(canary[:j], base, Options{Alternative: Greater})
				if err == nil && res.PValue*window <= alpha {
					textFailed = true
				}
			}
			if failed {
				calibrated++
			}
			if textFailed {
				textbook++
			}
			shifted := slices.Clone(canary)
			for i := range shifted {
				shifted[i] += 2 / math.Sqrt(1-phi*phi)
			}
			if c.P(SeasonalStatistic(base, shifted, Increase, 1)) <= alpha {
				caught++
			}
		}
		rate := float64(calibrated) / deploys
		t.Logf("φ=%v: false alarms calibrated %.3f, textbook with Bonferroni %.3f; 2σ caught %.3f (alpha %v)",
			phi, rate, float64(textbook)/deploys, float64(caught)/deploys, alpha)
		// Binomial(400, 0.05) has sd 0.011: 0.085 is three of them above.
		if rate > 0.085 {
			t.Errorf("φ=%v: calibrated false alarm rate %v, want about %v", phi, rate, alpha)
		}
		// With φ = 0.7 the eight differences are worth about two
		// independent ones: no power to demand there.
		if phi == 0 && float64(caught)/deploys < 0.5 {
			t.Errorf("φ=%v: a 2σ shift caught %v of the time", phi, float64(caught)/deploys)
		}
	}
}

func TestJudgeSeasonalCalibrated(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	x := seasonalSeries(r, 400+8, 24, 0)
	h := x[:400]
	c := CalibrateSeasonal(h, 24, 1, 8, Decrease, 0)
	d := len(h) - 1
	var base, drop []float64
	for j := 1; j <= 8; j++ {
		base = append(base, x[d+j-24])
		drop = append(drop, x[d+j]-6)
	}
	v, err := Judge([]KPI{{Name: "conversion", Bad: Decrease, Canary: drop, Baseline: base, Calibration: &c}}, JudgeOptions{Alpha: 0.01, Looks: 8})
	if err != nil {
		t.Fatal(err)
	}
	k := v.KPIs[0]
	if v.Outcome != Fail || k.Placebos != c.N() || k.PValue != c.P(SeasonalStatistic(base, drop, Decrease, 1)) || !strings.Contains(k.Sentence, "placebo deploys") {
		t.Errorf("%v p=%v: %s", v.Outcome, k.PValue, k.Sentence)
	}
	short := CalibrateSeasonal(h[:120], 24, 1, 8, Decrease, 0)
	v, err = Judge([]KPI{{Name: "conversion", Bad: Decrease, Canary: drop, Baseline: base, Calibration: &short}}, JudgeOptions{Alpha: 0.01, Looks: 8})
	if err != nil {
		t.Fatal(err)
	}
	if want := "too little history to calibrate: 65 placebo deploys, need 99, that is 154 steps of history before the deploy"; v.Outcome != Inconclusive || !strings.Contains(v.KPIs[0].Reason, want) {
		t.Errorf("%v: %s, want %q", v.Outcome, v.KPIs[0].Reason, want)
	}
}

// BenchmarkCalibrateSeasonal: 2 000 placebos of a 24-step window against
// the day before at 5-minute steps.
func BenchmarkCalibrateSeasonal(b *testing.B) {
	h := normals(1, 2000+2*288+24-1, 100, 5)
	for b.Loop() {
		CalibrateSeasonal(h, 288, 1, 24, Increase, 0)
	}
}

// TestSeasonalMinDetectable: the smallest change a seasonal KPI could
// have detected is measured on the differences from the seasons, which
// the daily cycle does not inflate, and a shift of that size is caught
// most of the time (the approximation is for 80 % power).
func TestSeasonalMinDetectable(t *testing.T) {
	const period, window, alpha = 24, 8, 0.05
	r := rand.New(rand.NewPCG(31, 32))
	// The window straddles the cycle's rising zero crossing (step 384),
	// where the pooled baseline's spread is mostly cycle.
	const n = 380
	x := seasonalSeries(r, n+window, period, 0)
	h := x[:n]
	c := CalibrateSeasonal(h, period, 1, window, Increase, 0)
	d := len(h) - 1
	var base, canary []float64
	for j := 1; j <= window; j++ {
		base = append(base, x[d+j-period])
		canary = append(canary, x[d+j])
	}
	v, err := Judge([]KPI{{Name: "latency", Bad: Increase, Canary: canary, Baseline: base, Calibration: &c}}, JudgeOptions{Alpha: alpha, Looks: window})
	if err != nil {
		t.Fatal(err)
	}
	kv := v.KPIs[0]
	if kv.Outcome != Pass || math.IsNaN(kv.MDE) {
		t.Fatalf("%v, MDE %v: %s", kv.Outcome, kv.MDE, kv.Sentence)
	}
	// The pooled baseline's scale holds the cycle (amplitude 10); the
	// differences' only the noise (sd √2).
	if kv.MDE > 3 {
		t.Errorf("MDE %.2f, want under 3 (noise sd 1, cycle amplitude 10): the cycle counted", kv.MDE)
	}
	caught := 0
	const trials = 300
	for range trials {
		y := seasonalSeries(r, n+window, period, 0)
		cc := CalibrateSeasonal(y[:n], period, 1, window, Increase, 0)
		var b, s []float64
		for j := 1; j <= window; j++ {
			b = append(b, y[d+j-period])
			s = append(s, y[d+j]+kv.MDE)
			if cc.P(SeasonalStatistic(b, s, Increase, 1)) <= kv.Threshold {
				caught++ // at the first look that fails
				break
			}
		}
	}
	t.Logf("MDE %.2f: caught %d of %d", kv.MDE, caught, trials)
	// Measured: 201 of 300 (67 %): the normal approximation is
	// optimistic with eight pairs, but not by much; the pooled formula
	// said 11.4 here, eight times the noise.
	if caught < trials/2 {
		t.Errorf("a shift of the MDE %.2f caught %d of %d times, want most (80 %% power by the approximation)", kv.MDE, caught, trials)
	}
}
