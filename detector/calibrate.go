package detector

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"sync"
)

// Calibration is what a KPI's statistic does at harmless deploys of its own
// past: for placebo deploys in the history before the real one (every
// point of the history with a full lookback before it and a full window
// after it, the window ending before the deploy's own lookback begins), the largest value the statistic
// reached over the window. A real deploy's statistic is judged against
// these maxima instead of a textbook distribution, so the drift, daily
// cycles, bursts and autocorrelation of the KPI are in the null
// distribution, and looking at every step of the window costs nothing
// extra: the placebos were looked at every step too.
type Calibration struct {
	// Maxima are the placebos' window maxima, in increasing order.
	Maxima []float64
	// IID are the window maxima of the statistic on independent,
	// identically distributed data (simulated: on such data the statistic
	// is distribution-free), in increasing order; P never goes below
	// their p-value. Nil for a calibration built by hand.
	IID []float64
	// Lookback and Window are the sizes, in steps, the placebos had.
	Lookback, Window int
	// Period, when not 0, is the period in steps whose phase the
	// placebos share with the deploy (CalibrateInPhase).
	Period int
	// Season and Seasons, when Seasons is not 0, say that the placebos
	// were compared with Seasons earlier seasons of Season steps each
	// (CalibrateSeasonal) instead of a lookback.
	Season, Seasons int
	// DiffScale, for a seasonal or a concurrent calibration, is the
	// robust scale of the history's differences from its seasons (or of
	// the canary's from the other instances; 0 when unknown or when they
	// never moved): the scale of the minimum detectable effect.
	DiffScale float64
	// Counts says that the placebos measured CountsStatistic, the
	// two-proportion z of an events/trials KPI (CalibrateCounts).
	Counts bool
	// Subsets, when not 0, says that the placebos were A/A comparisons
	// among the instances before the deploy, this many subsets of them
	// (CalibrateConcurrent): a concurrent baseline's.
	Subsets int
	// Offset, for a calibration across instances with a lookback (a
	// centred one, of the canary's own instances), is those instances'
	// mean difference from the other instances over the lookback before
	// the deploy (Offset of its last lookback differences; for an
	// events/trials KPI the RateOffset of their pooled counts), set by the
	// caller: what KPI.Offsets and KPI.RateOffset are made of. Before,
	// for an events/trials KPI, are the lookback's counts behind it: of
	// the canary's instances and of the others.
	Offset float64
	Before [2]Counts
	// Unavailable, when not empty, says why the KPI could not be
	// calibrated (its history names no instances, say): it is then
	// inconclusive, with this reason.
	Unavailable string
}

// Statistic is the statistic of this calibration at one look of a
// deploy: the running maximum of the Mann-Whitney z over the canary's
// values against a lookback (Statistic), or for a seasonal calibration the
// z of the look's canary against the look's seasonal baseline
// (SeasonalStatistic), or for a concurrent one the look's standardized sum
// of the canary's differences from the baseline (ConcurrentStatistic);
// NaN when the two of a paired statistic cannot be paired step by step.
func (c Calibration) Statistic(baseline, canary []float64, bad Direction) float64 {
	if c.Subsets > 0 {
		return ConcurrentStatistic(baseline, canary, bad, c.concurrentScale(), nil)
	}
	if c.Seasons > 0 {
		return SeasonalStatistic(baseline, canary, bad, c.Seasons)
	}
	return Statistic(baseline, canary, bad)
}

// Paired reports whether the statistic pairs the canary's values with the
// baseline's step by step (a seasonal or a concurrent calibration of a
// continuous KPI): the two must then be read on the step grid, and kept
// where both have a value.
func (c Calibration) Paired() bool { return !c.Counts && (c.Seasons > 0 || c.Subsets > 0) }

// HistoryFor is the number of steps of history before the deploy (the
// deploy's own step included) that n placebos need.
func (c Calibration) HistoryFor(n int) int {
	if c.Subsets > 0 {
		return (n+c.Subsets-1)/c.Subsets + c.Lookback + c.Window - 1
	}
	if c.Seasons > 0 {
		return n + 2*c.Seasons*c.Season + c.Window - 1
	}
	return n + 2*c.Lookback + c.Window - 1
}

// MaxPlacebos bounds the placebos of a calibration by default: a longer
// history is sampled with a stride. Calibrate takes a larger bound where a
// KPI's share of alpha needs more placebos (PlacebosFor).
const MaxPlacebos = 2000

// PlacebosFor is the number of placebos a calibration needs before its
// p-value can reach a: 1/(N+1) ≤ a.
func PlacebosFor(a float64) int {
	if !(a > 0) {
		return math.MaxInt32
	}
	return int(math.Ceil(1/a-1e-9)) - 1
}

// Calibrate builds the calibration of a continuous KPI from its history:
// its values at each step before the deploy, oldest first, non-finite
// values left out by the caller; its last lookback values are the deploy's
// own lookback. Placebo deploys are placed at every point of the history
// (or every stride-th, beyond max placebos; max ≤ 0 means MaxPlacebos)
// that has lookback values before it and window values after it, the
// window ending before the deploy's lookback: no placebo's window shares
// data with the lookback the deploy is compared with.
func Calibrate(history []float64, lookback, window int, bad Direction, max int) Calibration {
	if max <= 0 {
		max = MaxPlacebos
	}
	c := Calibration{Lookback: lookback, Window: window, IID: IIDMaxima(lookback, window, bad)}
	if lookback < 1 || window < 1 {
		return c
	}
	n := len(history) - 2*lookback - window + 1
	if n <= 0 {
		return c
	}
	stride := (n + max - 1) / max
	var tr trajectory
	// The most recent placebos first: with a stride, the history closest
	// to the deploy is the one kept. With a stride of 1 the sorted
	// lookback slides by one value from a placebo to the next.
	var sorted []float64
	for p := len(history) - window - lookback; p >= lookback; p -= stride {
		lb := history[p-lookback : p]
		if sorted == nil || stride != 1 {
			sorted = append(sorted[:0], lb...)
			sort.Float64s(sorted)
		} else {
			sorted = slide(sorted, history[p], history[p-lookback])
		}
		m := math.Inf(-1)
		for _, z := range tr.run(sorted, history[p:p+window], bad) {
			m = math.Max(m, z)
		}
		c.Maxima = append(c.Maxima, m)
	}
	sort.Float64s(c.Maxima)
	return c
}

// slide removes out from the sorted slice s and inserts in, keeping it
// sorted, in place.
func slide(s []float64, out, in float64) []float64 {
	i := sort.SearchFloat64s(s, out)
	if i == len(s) || s[i] != out {
		// Not there (a NaN the caller should have left out): resort.
		s = append(s, in)
		sort.Float64s(s)
		return s
	}
	copy(s[i:], s[i+1:])
	s = s[:len(s)-1]
	j := sort.SearchFloat64s(s, in)
	s = append(s, 0)
	copy(s[j+1:], s[j:])
	s[j] = in
	return s
}

// CalibrateInPhase is Calibrate with the placebos taken at the same phase
// of a period as the deploy: placebo deploys whose distance to the deploy
// (at len(history), the first step after the history) is within tol steps
// of a whole number of periods, the most recent max of them. A KPI with a
// daily cycle is then compared with harmless deploys at the same time of
// day, not with all of them. When the history holds fewer than need such
// placebos, or does not repeat from one period to the next (dailyCycle
// below MinDailyCycle), it is Calibrate.
func CalibrateInPhase(history []float64, lookback, window int, bad Direction, max, period, tol, need int) Calibration {
	if max <= 0 {
		max = MaxPlacebos
	}
	if period <= 2*tol+1 || lookback < 1 || window < 1 || dailyCycle(history, period) < MinDailyCycle {
		return Calibrate(history, lookback, window, bad, max)
	}
	at, inPhase := placeboStarts(len(history), lookback, window, max, period, tol, need)
	if !inPhase {
		return Calibrate(history, lookback, window, bad, max)
	}
	c := Calibration{Lookback: lookback, Window: window, Period: period, IID: IIDMaxima(lookback, window, bad)}
	var tr trajectory
	sorted := make([]float64, 0, lookback)
	for _, p := range at {
		sorted = append(sorted[:0], history[p-lookback:p]...)
		sort.Float64s(sorted)
		m := math.Inf(-1)
		for _, z := range tr.run(sorted, history[p:p+window], bad) {
			m = math.Max(m, z)
		}
		c.Maxima = append(c.Maxima, m)
	}
	sort.Float64s(c.Maxima)
	return c
}

// N is the number of placebos.
func (c Calibration) N() int { return len(c.Maxima) }

// P is the conformal p-value of a window maximum m: the share of the
// placebos, and the deploy itself, whose maximum is at least m,
// (1 + #{placebos ≥ m}) / (N + 1). If the deploy is exchangeable with its
// placebos, P(P ≤ a) ≤ a for every a: looking at every step and stopping
// at the first P ≤ alpha fails a harmless deploy with probability at most
// alpha.
//
// Placebos that overlap one another (they slide by one step) are far
// fewer independent draws than their number, so the quantile they give
// is noisy, and a noisy quantile lets through more than its share: on
// i.i.d. Gaussian noise the conformal p alone failed 1.3 % to 2.0 % of
// harmless deploys at alpha 1 %. P is therefore the larger of the
// conformal p and the p-value of m among the statistic's window maxima
// on i.i.d. data (IID), which is exact there: the placebos can only make
// the test stricter than it is on independent data, where drift,
// cycles and bursts call for it, never looser.
func (c Calibration) P(m float64) float64 {
	if math.IsNaN(m) {
		return 1 // no statistic: no evidence
	}
	i := sort.SearchFloat64s(c.Maxima, m) // first placebo ≥ m
	p := float64(1+len(c.Maxima)-i) / float64(len(c.Maxima)+1)
	if len(c.IID) > 0 {
		j := sort.SearchFloat64s(c.IID, m)
		p = math.Max(p, float64(1+len(c.IID)-j)/float64(len(c.IID)+1))
	}
	return p
}

// IIDSimulations is the number of simulated windows behind
// Calibration.IID: its p-values go down to 1/(IIDSimulations+1).
const IIDSimulations = 20000

type iidKey struct {
	lookback, window int
	bad              Direction
}

var iidCache sync.Map // iidKey → func() []float64 (sync.OnceValue)

// cachedIID returns the simulated maxima of key, computing them once per
// process however many deploys ask at the same time.
func cachedIID(key iidKey, simulate func() []float64) []float64 {
	f, _ := iidCache.LoadOrStore(key, sync.OnceValue(simulate))
	return f.(func() []float64)()
}

// IIDMaxima returns the sorted window maxima of the statistic (the
// running maximum of the oriented Mann-Whitney z of a growing canary of
// up to window values against a baseline of lookback values) over
// IIDSimulations windows of independent uniform values. Ranks of
// continuous i.i.d. data are uniformly random whatever their
// distribution, so these are the statistic's exact null there, up to
// simulation error. Reproducible (the seed is the sizes) and cached.
func IIDMaxima(lookback, window int, bad Direction) []float64 {
	if lookback < 1 || window < 1 {
		return nil
	}
	return cachedIID(iidKey{lookback, window, bad}, func() []float64 {
		return simulateIID(lookback, window, bad)
	})
}

func simulateIID(lookback, window int, bad Direction) []float64 {
	r := rand.New(rand.NewPCG(uint64(lookback), uint64(window)<<8|uint64(bad)))
	base := make([]float64, lookback)
	canary := make([]float64, window)
	var tr trajectory
	out := make([]float64, IIDSimulations)
	for i := range out {
		for j := range base {
			base[j] = r.Float64()
		}
		sort.Float64s(base)
		for j := range canary {
			canary[j] = r.Float64()
		}
		m := math.Inf(-1)
		for _, z := range tr.run(base, canary, bad) {
			m = math.Max(m, z)
		}
		out[i] = m
	}
	sort.Float64s(out)
	return out
}

// MinP is the smallest p-value the calibration can give: 1/(N+1).
func (c Calibration) MinP() float64 { return 1 / float64(len(c.Maxima)+1) }

// Statistic returns the running maximum, over the canary's samples so far,
// of the oriented Mann-Whitney z of the canary against the baseline: the
// statistic the placebos of Calibrate were measured with.
func Statistic(baseline, canary []float64, bad Direction) float64 {
	sorted := append([]float64(nil), baseline...)
	sort.Float64s(sorted)
	var tr trajectory
	m := math.Inf(-1)
	for _, z := range tr.run(sorted, canary, bad) {
		m = math.Max(m, z)
	}
	return m
}

// trajectory computes the Mann-Whitney z of a growing canary against a
// fixed baseline, after each canary value, with the tie-corrected variance
// and without continuity correction, oriented so that large is bad:
// z for increase, −z for decrease, |z| for either. It reuses its buffers.
type trajectory struct {
	seen []float64 // the canary values so far, sorted
	out  []float64
}

// run takes the baseline sorted.
func (t *trajectory) run(sorted, canary []float64, bad Direction) []float64 {
	// Σ (c³ − c) over the tie groups of the combined sample, starting
	// with the baseline's own.
	tieSum := 0.0
	for i := 0; i < len(sorted); {
		j := i + 1
		for j < len(sorted) && sorted[j] == sorted[i] {
			j++
		}
		if c := float64(j - i); c > 1 {
			tieSum += c*c*c - c
		}
		i = j
	}
	nb := float64(len(sorted))
	u := 0.0
	t.seen = t.seen[:0]
	t.out = t.out[:0]
	for k, x := range canary {
		lo := sort.SearchFloat64s(sorted, x)
		hi := lo
		for hi < len(sorted) && sorted[hi] == x {
			hi++
		}
		u += float64(lo) + 0.5*float64(hi-lo)
		// x joins a tie group of c values: (c+1)³ − (c+1) − (c³ − c).
		j := sort.SearchFloat64s(t.seen, x)
		e := j
		for e < len(t.seen) && t.seen[e] == x {
			e++
		}
		c := float64(hi - lo + e - j)
		tieSum += 3*c*c + 3*c
		t.seen = append(t.seen, 0)
		copy(t.seen[j+1:], t.seen[j:])
		t.seen[j] = x

		nc := float64(k + 1)
		n := nc + nb
		v := nc * nb / 12 * ((n + 1) - tieSum/(n*(n-1)))
		z := 0.0
		if v > 0 {
			z = (u - nc*nb/2) / math.Sqrt(v)
		}
		t.out = append(t.out, orient(z, bad))
	}
	return t.out
}

// String describes the calibration for explanations.
func (c Calibration) String() string {
	return fmt.Sprintf("%d placebo deploys", len(c.Maxima))
}
