package detector

import (
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/stat/distuv"
)

// fleet simulates n instances over steps: a daily cycle all of them go
// through, a persistent difference of each instance from the others (an
// AR(1) with coefficient phi and stationary sd persist) and white noise
// of sd 1. values[i][t] is instance i at step t.
func fleet(r *rand.Rand, n, steps int, phi, persist float64) [][]float64 {
	out := make([][]float64, n)
	for i := range out {
		out[i] = make([]float64, steps)
		off := persist * r.NormFloat64()
		for t := range steps {
			off = phi*off + persist*math.Sqrt(1-phi*phi)*r.NormFloat64()
			out[i][t] = 10 + 5*math.Sin(2*math.Pi*float64(t)/288) + off + r.NormFloat64()
		}
	}
	return out
}

// split returns the KPI of the instances in set and of the others at each
// of the steps from..to: their mean.
func split(values [][]float64, set map[int]bool, from, to int) (in, out []float64) {
	for t := from; t < to; t++ {
		si, so, ni, no := 0.0, 0.0, 0.0, 0.0
		for i, v := range values {
			if set[i] {
				si, ni = si+v[t], ni+1
			} else {
				so, no = so+v[t], no+1
			}
		}
		in, out = append(in, si/ni), append(out, so/no)
	}
	return in, out
}

// TestCalibrateConcurrent: instances that differ from one another for
// hours fail harmless deploys when the canary is compared with the other
// instances as if the differences were independent. Calibrated, the share
// stays near alpha both on A/A comparisons of random subsets (what a
// canary of new instances gets) and on the canary's own past with its
// offset from the others taken out (what a canary of instances that were
// there gets), and a real rise is caught, far more often on the canary's
// own past.
func TestCalibrateConcurrent(t *testing.T) {
	const (
		instances = 8
		history   = 2000
		lookback  = 48
		window    = 24
		alpha     = 0.05
		deploys   = 300
		rise      = 1.5 // 1.5 times the white noise
	)
	r := rand.New(rand.NewPCG(11, 12))
	var iidFail, fail, caught [2]int // pooled uncentered, own centered
	for range deploys {
		v := fleet(r, instances, history+window, 0.99, 1)
		var canary, base [][]float64
		for i := range instances {
			c, b := split(v, map[int]bool{i: true}, 0, history)
			canary, base = append(canary, c), append(base, b)
		}
		pooled := CalibrateConcurrent(canary, base, 0, window, Increase, 0)
		if pooled.N() == 0 || pooled.Subsets != instances {
			t.Fatalf("%d placebos over %d subsets, want some over %d", pooled.N(), pooled.Subsets, instances)
		}
		pick := r.IntN(instances)
		own := CalibrateConcurrent(canary[pick:pick+1], base[pick:pick+1], lookback, window, Increase, 0)
		if n := history - lookback - window + 1; own.N() != n {
			t.Fatalf("%d placebos of the canary's own past, want %d", own.N(), n)
		}
		c, b := split(v, map[int]bool{pick: true}, history, history+window)
		d := make([]float64, lookback)
		for j := range d {
			d[j] = canary[pick][history-lookback+j] - base[pick][history-lookback+j]
		}
		for i, x := range []struct {
			cal    *Calibration
			offset float64
		}{{&pooled, 0}, {&own, Offset(d)}} {
			max := func(shift float64) float64 {
				m := math.Inf(-1)
				for k := 1; k <= window; k++ {
					up := append([]float64(nil), c[:k]...)
					for j := range up {
						up[j] += shift
					}
					offs := make([]float64, k)
					for j := range offs {
						offs[j] = x.offset
					}
					m = math.Max(m, ConcurrentStatistic(b[:k], up, Increase, x.cal.DiffScale, offs))
				}
				return m
			}
			m := max(0)
			if x.cal.P(m) <= alpha {
				fail[i]++
			}
			// As if the differences were independent normal draws of the
			// history's scale: the z's normal p-value times the looks.
			if 0.5*math.Erfc(m/math.Sqrt2)*window <= alpha {
				iidFail[i]++
			}
			if x.cal.P(max(rise)) <= alpha {
				caught[i]++
			}
		}
	}
	for i, name := range []string{"random subsets, uncentred", "the canary's own past, centred"} {
		t.Logf("%s: harmless deploys failed: %.1f%% calibrated, %.1f%% as if independent; a rise of %g caught %.1f%%",
			name, 100*float64(fail[i])/deploys, 100*float64(iidFail[i])/deploys, rise, 100*float64(caught[i])/deploys)
		if float64(iidFail[i])/deploys < 2*alpha {
			t.Errorf("%s, judged as if independent, %d of %d harmless deploys failed: the fleet does not show what calibration is for", name, iidFail[i], deploys)
		}
		if float64(fail[i])/deploys > 1.6*alpha {
			t.Errorf("%s, calibrated, %d of %d harmless deploys failed, want about %.0f%%", name, fail[i], deploys, 100*alpha)
		}
	}
	if float64(caught[1])/deploys < 0.6 || 2*caught[1] < 3*caught[0] {
		t.Errorf("a rise of %g caught in %d of %d deploys on the canary's own past, %d on random subsets: want most, and half as many again on its own past", rise, caught[1], deploys, caught[0])
	}
}

// TestCalibrateConcurrentCounts: an error rate that differs between
// instances for hours (each instance's log-rate is an AR(1) around the
// fleet's) is calibrated on A/A comparisons among the instances and on
// the canary's own past less its rate offset from the others; the
// binomial test alone fails many harmless deploys. Both calibrations hold
// alpha, and the canary's own past catches a 1.5× rate more often.
func TestCalibrateConcurrentCounts(t *testing.T) {
	const (
		instances = 6
		history   = 1500
		lookback  = 48
		window    = 12
		alpha     = 0.05
		deploys   = 200
		trials    = 2000.0
	)
	r := rand.New(rand.NewPCG(3, 4))
	src := rand.NewPCG(5, 6)
	var binFail int
	var calFail, caught [2]int // A/A, own past
	for range deploys {
		steps := history + window
		events := make([][]float64, instances)
		for i := range events {
			events[i] = make([]float64, steps)
			lr := 0.0
			for s := range steps {
				lr = 0.98*lr + 0.3*math.Sqrt(1-0.98*0.98)*r.NormFloat64()
				p := 0.01 * math.Exp(lr)
				events[i][s] = distuv.Binomial{N: trials, P: p, Src: src}.Rand()
			}
		}
		var ce, ct, be, bt [][]float64
		sums := func(set map[int]bool, from, to int) (e1, t1, e2, t2 []float64) {
			for s := from; s < to; s++ {
				var a, b, n1, n2 float64
				for i := range instances {
					if set[i] {
						a, n1 = a+events[i][s], n1+trials
					} else {
						b, n2 = b+events[i][s], n2+trials
					}
				}
				e1, t1, e2, t2 = append(e1, a), append(t1, n1), append(e2, b), append(t2, n2)
			}
			return
		}
		for i := range instances {
			e1, t1, e2, t2 := sums(map[int]bool{i: true}, 0, history)
			ce, ct, be, bt = append(ce, e1), append(ct, t1), append(be, e2), append(bt, t2)
		}
		aa := CalibrateConcurrentCounts(ce, ct, be, bt, 0, window, Increase, 0)
		if !aa.Counts || aa.N() == 0 {
			t.Fatalf("counts %v, %d placebos", aa.Counts, aa.N())
		}
		pick := r.IntN(instances)
		own := CalibrateConcurrentCounts(ce[pick:pick+1], ct[pick:pick+1], be[pick:pick+1], bt[pick:pick+1], lookback, window, Increase, 0)
		if n := history - lookback - window + 1; own.N() != n {
			t.Fatalf("%d placebos of the canary's own past, want %d", own.N(), n)
		}
		var cl, bl Counts
		for s := history - lookback; s < history; s++ {
			cl.Events, cl.Trials = cl.Events+ce[pick][s], cl.Trials+ct[pick][s]
			bl.Events, bl.Trials = bl.Events+be[pick][s], bl.Trials+bt[pick][s]
		}
		offset := RateOffset(cl, bl)
		e1, t1, e2, t2 := sums(map[int]bool{pick: true}, history, steps)
		var c, b Counts
		m, mUp := [2]float64{math.Inf(-1), math.Inf(-1)}, [2]float64{math.Inf(-1), math.Inf(-1)}
		minBin := 1.0
		for k := range window {
			c.Events, c.Trials = c.Events+e1[k], c.Trials+t1[k]
			b.Events, b.Trials = b.Events+e2[k], b.Trials+t2[k]
			up := Counts{Events: 1.5 * c.Events, Trials: c.Trials}
			for i, off := range []float64{0, offset} {
				m[i] = math.Max(m[i], CountsStatisticOffset(b, c, Increase, off))
				mUp[i] = math.Max(mUp[i], CountsStatisticOffset(b, up, Increase, off))
			}
			res, err := Proportion(c, b, Options{Alternative: Greater})
			if err == nil {
				minBin = math.Min(minBin, res.PValue*window)
			}
		}
		for i, cal := range []Calibration{aa, own} {
			if cal.P(m[i]) <= alpha {
				calFail[i]++
			}
			if cal.P(mUp[i]) <= alpha {
				caught[i]++
			}
		}
		if minBin <= alpha {
			binFail++
		}
	}
	pct := func(n int) float64 { return 100 * float64(n) / deploys }
	t.Logf("harmless deploys failed: %.1f%% on A/A comparisons, %.1f%% on the canary's own past, %.1f%% by the binomial test × looks; a 1.5× rate caught %.1f%% and %.1f%%",
		pct(calFail[0]), pct(calFail[1]), pct(binFail), pct(caught[0]), pct(caught[1]))
	if float64(binFail)/deploys < 4*alpha {
		t.Errorf("the binomial test failed %d of %d: the rates do not show what calibration is for", binFail, deploys)
	}
	for i, name := range []string{"A/A comparisons", "the canary's own past"} {
		if float64(calFail[i])/deploys > 1.6*alpha {
			t.Errorf("on %s, %d of %d harmless deploys failed, want about %.0f%%", name, calFail[i], deploys, 100*alpha)
		}
	}
	if caught[1] <= caught[0] || float64(caught[1])/deploys < 0.5 {
		t.Errorf("a 1.5× rate caught in %d of %d deploys on the canary's own past, %d on A/A comparisons: want most, and more on its own past", caught[1], deploys, caught[0])
	}
}

// TestCalibrateConcurrentGaps: a placebo touching a step without a value
// is left out; subsets of unequal lengths give no placebos.
func TestCalibrateConcurrentGaps(t *testing.T) {
	c := []float64{1, 2, 3, math.NaN(), 5, 6}
	b := []float64{0, 0, 0, 0, 0, 0}
	cal := CalibrateConcurrent([][]float64{c}, [][]float64{b}, 0, 2, Increase, 0)
	// Windows at 0, 1, 2, 3, 4: those at 2 and 3 touch the gap.
	if cal.N() != 3 {
		t.Errorf("%d placebos, want 3", cal.N())
	}
	if got := cal.HistoryFor(10); got != 11 {
		t.Errorf("HistoryFor(10) = %d, want 11 (10 windows of 2 in one subset)", got)
	}
	cal = CalibrateConcurrent([][]float64{c, c[:5]}, [][]float64{b, b[:5]}, 0, 2, Increase, 0)
	if cal.N() != 0 {
		t.Errorf("unequal lengths: %d placebos, want none", cal.N())
	}
	two := Calibration{Window: 24, Seasons: 1, Subsets: 8}
	if got := two.HistoryFor(99); got != 13+23 {
		t.Errorf("HistoryFor(99) over 8 subsets = %d, want 36", got)
	}
}

// BenchmarkCalibrateConcurrent: the calibration of one KPI of a deploy
// whose fleet has 8 instances (8 single-instance subsets) over the 2 023
// steps of history analysis.Calibrate reads at a 24-step window.
func BenchmarkCalibrateConcurrent(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	v := fleet(r, 8, 2023, 0.99, 1)
	var canary, base [][]float64
	for i := range 8 {
		c, bl := split(v, map[int]bool{i: true}, 0, 2023)
		canary, base = append(canary, c), append(base, bl)
	}
	for b.Loop() {
		CalibrateConcurrent(canary, base, 48, 24, Increase, 0)
	}
}

// TestConcurrentStatisticOffsets: each step's offset is taken out of its
// own difference; offsets of another length, or none to pair, are NaN.
func TestConcurrentStatisticOffsets(t *testing.T) {
	b, c := []float64{1, 1, 1, 1}, []float64{3, 3, 5, 5}
	if got := ConcurrentStatistic(b, c, Increase, 1, []float64{2, 2, 4, 4}); got != 0 {
		t.Errorf("offsets that explain every difference: %v, want 0", got)
	}
	if got, want := ConcurrentStatistic(b, c, Increase, 2, nil), 12/(2*2.0); got != want {
		t.Errorf("no offsets: %v, want %v", got, want)
	}
	for _, offs := range [][]float64{{1}, {}} {
		if got := ConcurrentStatistic(b, c, Increase, 1, offs); !math.IsNaN(got) {
			t.Errorf("offsets %v: %v, want NaN", offs, got)
		}
	}
	if got := ConcurrentStatistic(nil, nil, Increase, 1, nil); !math.IsNaN(got) {
		t.Errorf("nothing: %v, want NaN", got)
	}
}

// TestCalibrateConcurrentCountsEmptyWindows: a window where the subset
// had no trials (an instance not there yet) is no placebo.
func TestCalibrateConcurrentCountsEmptyWindows(t *testing.T) {
	nan := math.NaN()
	ce := []float64{nan, nan, nan, nan, 1, 2, 1, 2}
	ct := []float64{nan, nan, nan, nan, 100, 100, 100, 100}
	be := []float64{3, 3, 3, 3, 3, 3, 3, 3}
	bt := []float64{300, 300, 300, 300, 300, 300, 300, 300}
	c := CalibrateConcurrentCounts([][]float64{ce}, [][]float64{ct}, [][]float64{be}, [][]float64{bt}, 0, 2, Increase, 0)
	// Windows at 0 … 6: those at 0, 1 and 2 have no canary trials.
	if c.N() != 4 {
		t.Errorf("%d placebos, want 4: %v", c.N(), c.Maxima)
	}
	for _, m := range c.Maxima {
		if math.IsInf(m, 0) || math.IsNaN(m) {
			t.Errorf("placebo maximum %v", m)
		}
	}
}

// TestDidFloor: on binomial data, the floor of an events/trials KPI on its
// canary's own past (the binomial test of the difference in differences,
// times the looks) fails at most about alpha of harmless windows, also
// where the canary's rate is well above the others' (a variance pooled
// over both sides would understate it there).
func TestDidFloor(t *testing.T) {
	const (
		lookback, window = 48, 12
		nc, nb           = 1000, 9000 // trials a step
		alpha            = 0.05
		windows          = 2000
	)
	src := rand.NewPCG(8, 9)
	draw := func(n int, p float64) float64 { return distuv.Binomial{N: float64(n), P: p, Src: src}.Rand() }
	for _, rates := range [][2]float64{{0.01, 0.01}, {0.02, 0.01}, {0.04, 0.01}} {
		fails := 0
		for range windows {
			var cl, bl Counts
			for range lookback {
				cl.Events, cl.Trials = cl.Events+draw(nc, rates[0]), cl.Trials+nc
				bl.Events, bl.Trials = bl.Events+draw(nb, rates[1]), bl.Trials+nb
			}
			k := KPI{Bad: Increase, RateOffset: RateOffset(cl, bl)}
			for range window {
				k.CanaryCounts.Events, k.CanaryCounts.Trials = k.CanaryCounts.Events+draw(nc, rates[0]), k.CanaryCounts.Trials+nc
				k.BaselineCounts.Events, k.BaselineCounts.Trials = k.BaselineCounts.Events+draw(nb, rates[1]), k.BaselineCounts.Trials+nb
				if didP(k, [2]Counts{cl, bl})*window <= alpha {
					fails++
					break
				}
			}
		}
		rate := float64(fails) / windows
		t.Logf("canary %.0f%%, others %.0f%%: the floor alone failed %.1f%% of harmless windows", 100*rates[0], 100*rates[1], 100*rate)
		if rate > 1.5*alpha {
			t.Errorf("canary %v, others %v: the floor failed %.1f%%, want at most about %.0f%%", rates[0], rates[1], 100*rate, 100*alpha)
		}
	}
	if p := didP(KPI{Bad: Increase, RateOffset: math.NaN()}, [2]Counts{}); p != 1 {
		t.Errorf("no offset: %v, want 1", p)
	}
}
