package detector

import (
	"math"
	"math/rand/v2"
	"slices"
)

// diffSelector answers order statistics of the nx·ny pairwise differences
// x[i] − y[j] of two sorted samples without listing them all.
//
// It keeps a bracket (lo, hi] of values holding the wanted difference and,
// per row i, the first column with x[i] − y[j] ≤ lo and ≤ hi (y ascending,
// so the differences of a row fall as j grows and those ≤ t form a
// suffix). Float subtraction is monotone, so counting the differences ≤ t
// takes one merge-like pass that only walks the columns inside the
// bracket, and the answer is always one of the computed differences, bit
// for bit.
//
// A sorted random sample of differences gives a first bracket a few
// percent wide in rank whatever the distribution (heavy tails included).
// Then each probe interpolates linearly on the counts, aimed alternately a
// little below and above the wanted rank (by twice the last miss) so that
// both ends close in; a probe that does not cut the bracket by a quarter
// is followed by a bisection (arithmetic, then over the ordered float64
// bit patterns, which ends after at most 64 halvings whatever the scales)
// and by tightening the ends to the nearest differences, which ends the
// search at once when the wanted difference is heavily tied. Once few
// candidates are left they are listed and selected. The bounds found by
// one query start the next.
type diffSelector struct {
	x, y []float64
	n    int64 // len(x)·len(y)
	// known holds the bounds met by earlier queries.
	known []diffBound
	// lo and hi are the current bracket, probe the last probe.
	lo, hi, probe diffBound
	spare         [][]int32 // position arrays not in use
	sample        []float64 // sorted random differences
	cand          []float64
	// passes counts the counting passes, for tests.
	passes int
}

// diffBound is a value t with the number of differences ≤ t and, per row
// i, the first column j with x[i] − y[j] ≤ t.
type diffBound struct {
	t     float64
	count int64
	pos   []int32
}

// diffSampleSize bounds the size of the random sample that brackets each
// query, within ±3 sample standard deviations: a few percent of the ranks.
const diffSampleSize = 2048

// newDiffSelector takes sorted x and y; len(y) must fit an int32.
func newDiffSelector(x, y []float64) *diffSelector {
	nx, ny := len(x), len(y)
	s := &diffSelector{x: x, y: y, n: int64(nx) * int64(ny)}
	// Position arrays for lo, hi, probe, the two ends and three queries'
	// brackets, in one allocation.
	const arrays = 11
	buf := make([]int32, arrays*nx)
	for i := range arrays {
		s.spare = append(s.spare, buf[i*nx:(i+1)*nx:(i+1)*nx])
	}
	// Below every difference, and at the largest one.
	bottom := diffBound{t: math.Inf(-1), pos: s.array()}
	for i := range bottom.pos {
		bottom.pos[i] = int32(ny)
	}
	top := diffBound{t: x[nx-1] - y[0], count: s.n, pos: s.array()}
	clear(top.pos)
	s.known = append(s.known, bottom, top)
	s.lo.pos, s.hi.pos, s.probe.pos = s.array(), s.array(), s.array()
	return s
}

// array returns a position array of len(x), reusing a spare one.
func (s *diffSelector) array() []int32 {
	if n := len(s.spare); n > 0 {
		a := s.spare[n-1]
		s.spare = s.spare[:n-1]
		return a
	}
	return make([]int32, len(s.x))
}

// save appends a copy of b to the known bounds.
func (s *diffSelector) save(b *diffBound) {
	c := diffBound{t: b.t, count: b.count, pos: s.array()}
	copy(c.pos, b.pos)
	s.known = append(s.known, c)
}

// limit is the number of candidates left to list and select.
func (s *diffSelector) limit() int64 { return int64(max(len(s.x)+len(s.y), 64)) }

// count sets s.probe to t, for t inside the current bracket.
func (s *diffSelector) count(t float64) {
	s.passes++
	x, y := s.x, s.y
	pos, loPos, hiPos := s.probe.pos[:len(x)], s.lo.pos[:len(x)], s.hi.pos[:len(x)]
	ny := int32(len(y))
	var c int64
	j := int32(0)
	for i, xi := range x {
		// pos is non-decreasing in i and hiPos[i] ≤ pos[i] ≤ loPos[i].
		j = max(j, hiPos[i])
		end := loPos[i]
		for j < end && xi-y[j] > t {
			j++
		}
		pos[i] = j
		c += int64(ny - j)
	}
	s.probe.t, s.probe.count = t, c
}

// take makes the probe the new lo or hi end of the bracket for rank k.
func (s *diffSelector) take(k int64) {
	if s.probe.count >= k {
		s.hi, s.probe = s.probe, s.hi
	} else {
		s.lo, s.probe = s.probe, s.lo
	}
}

// tighten returns the smallest difference above lo and moves hi down to
// the largest difference ≤ hi (which keeps its count).
func (s *diffSelector) tighten() (loAbove float64) {
	ny := len(s.y)
	loAbove, hiAt := math.Inf(1), math.Inf(-1)
	for i, xi := range s.x {
		if j := s.lo.pos[i]; j > 0 {
			loAbove = min(loAbove, xi-s.y[j-1])
		}
		if j := int(s.hi.pos[i]); j < ny {
			hiAt = max(hiAt, xi-s.y[j])
		}
	}
	if hiAt < s.hi.t {
		s.hi.t = hiAt
	}
	return loAbove
}

// kth returns the k-th smallest difference, k in [1, n].
func (s *diffSelector) kth(k int64) float64 {
	a, _ := s.find(k, false)
	return a
}

// kthPair returns the k-th and (k+1)-th smallest differences, k in
// [1, n−1].
func (s *diffSelector) kthPair(k int64) (float64, float64) {
	return s.find(k, true)
}

// median returns the median difference, the mean of the two middle ones
// when there is an even number of them.
func (s *diffSelector) median() float64 {
	if s.n%2 == 1 {
		return s.kth(s.n/2 + 1)
	}
	return midpoint(s.kthPair(s.n / 2))
}

func (s *diffSelector) find(k int64, next bool) (kth, after float64) {
	s.bracket(k)
	limit := s.limit()
	// loAbove is the smallest difference > lo when known, for
	// interpolation; the candidates lie in [loAbove, hi].
	loAbove := s.x[0] - s.y[len(s.y)-1]
	if !math.IsInf(s.lo.t, -1) {
		loAbove = s.lo.t
	}
	var (
		bisect  bool
		bisects int
		side    int64 = -1
		m             = (s.hi.count - s.lo.count) / 32
	)
	for s.hi.count-s.lo.count > limit {
		lo, hi := s.lo.t, s.hi.t
		if loAbove >= hi {
			break // every candidate is hi
		}
		width := s.hi.count - s.lo.count
		t, target := math.NaN(), int64(-1)
		if bisect {
			if bisects < 40 {
				t = loAbove/2 + hi/2
			}
			bisects++
		} else {
			// Never more than halfway to either end of the bracket.
			target = min(max(k+side*m, s.lo.count+(k-s.lo.count)/2+1), k+(s.hi.count-k)/2)
			side = -side
			t = loAbove + (hi-loAbove)*(float64(target-s.lo.count)/float64(width))
		}
		if !(t > lo && t < hi) {
			t = bitMidpoint(lo, hi)
			if !(t > lo && t < hi) {
				break // no float64 strictly inside: every candidate is hi
			}
		}
		s.count(t)
		if target >= 0 {
			miss := s.probe.count - target
			m = max(2*max(miss, -miss), limit/8)
		}
		s.take(k)
		if s.lo.t == t {
			// No difference in (old lo, loAbove): still the smallest above
			// the new lo if that is below it.
			loAbove = max(loAbove, t)
		}
		bisect = !bisect && s.hi.count-s.lo.count > width*3/4
		if bisect {
			loAbove = s.tighten()
		}
	}
	s.save(&s.lo)
	s.save(&s.hi)

	cLo, cHi := s.lo.count, s.hi.count
	if cHi-cLo > limit {
		// Every candidate in (lo, hi] equals hi.
		kth = s.hi.t
		if next && k+1 <= cHi {
			return kth, kth
		}
	} else {
		if s.cand == nil {
			s.cand = make([]float64, 0, limit)
		}
		s.cand = s.cand[:0]
		for i, xi := range s.x {
			for j := s.hi.pos[i]; j < s.lo.pos[i]; j++ {
				s.cand = append(s.cand, xi-s.y[j])
			}
		}
		r := int(k - cLo - 1)
		kth = selectNth(s.cand, r)
		if next && k+1 <= cHi {
			return kth, slices.Min(s.cand[r+1:])
		}
	}
	if !next {
		return kth, math.NaN()
	}
	// The (k+1)-th lies above hi: the smallest difference > hi, found in
	// each row just left of its first column ≤ hi.
	after = math.Inf(1)
	for i, xi := range s.x {
		if j := s.hi.pos[i]; j > 0 {
			after = min(after, xi-s.y[j-1])
		}
	}
	return kth, after
}

// bracket sets lo and hi to the tightest known bounds for rank k
// (count(lo) < k ≤ count(hi)), then narrows them with two probes taken
// from the random sample when the bracket is wide.
func (s *diffSelector) bracket(k int64) {
	var lo, hi *diffBound
	for i := range s.known {
		b := &s.known[i]
		if b.count < k && (lo == nil || b.count > lo.count) {
			lo = b
		}
		if b.count >= k && (hi == nil || b.count < hi.count) {
			hi = b
		}
	}
	s.lo.t, s.lo.count = lo.t, lo.count
	copy(s.lo.pos, lo.pos)
	s.hi.t, s.hi.count = hi.t, hi.count
	copy(s.hi.pos, hi.pos)
	// The sample costs about as much as a few counting passes.
	size := min(diffSampleSize, (len(s.x)+len(s.y))/4)
	if s.hi.count-s.lo.count <= 16*s.limit() || size < 64 {
		return
	}
	if s.sample == nil {
		r := rand.New(rand.NewPCG(uint64(len(s.x)), uint64(len(s.y))))
		s.sample = make([]float64, size)
		for i := range s.sample {
			s.sample[i] = s.x[r.IntN(len(s.x))] - s.y[r.IntN(len(s.y))]
		}
		slices.Sort(s.sample)
	}
	S := float64(len(s.sample))
	p := (float64(k) - 0.5) / float64(s.n)
	center, half := p*S, 3*math.Sqrt(S*p*(1-p))+1
	for _, at := range []float64{center - half, center + half} {
		i := int(at)
		if i < 0 || i >= len(s.sample) {
			continue
		}
		if t := s.sample[i]; t > s.lo.t && t < s.hi.t {
			s.count(t)
			s.take(k)
		}
	}
}

// sortedCopy returns xs sorted ascending; xs holds no NaN. Long slices
// take an LSD radix sort on order-preserving keys, several times faster
// than comparison sorting at 10⁵ values.
func sortedCopy(xs []float64) []float64 {
	n := len(xs)
	if n < 1024 {
		s := slices.Clone(xs)
		slices.Sort(s)
		return s
	}
	const (
		bits    = 11
		buckets = 1 << bits
	)
	keys, tmp := make([]uint64, n), make([]uint64, n)
	for i, x := range xs {
		keys[i] = floatKey(x)
	}
	var count [buckets]int
	for shift := 0; shift < 64; shift += bits {
		clear(count[:])
		for _, k := range keys {
			count[(k>>shift)&(buckets-1)]++
		}
		if count[(keys[0]>>shift)&(buckets-1)] == n {
			continue // one digit for all: nothing to move
		}
		sum := 0
		for d, c := range count {
			count[d] = sum
			sum += c
		}
		for _, k := range keys {
			d := (k >> shift) & (buckets - 1)
			tmp[count[d]] = k
			count[d]++
		}
		keys, tmp = tmp, keys
	}
	out := make([]float64, n)
	for i, k := range keys {
		out[i] = keyFloat(k)
	}
	return out
}

// bitMidpoint returns a float64 halfway between lo and hi in the order of
// their bit patterns (so bisection ends after at most 64 steps).
func bitMidpoint(lo, hi float64) float64 {
	a, b := floatKey(lo), floatKey(hi)
	return keyFloat(a + (b-a)/2)
}

// floatKey maps float64 to uint64 preserving order (−0 just below +0).
func floatKey(f float64) uint64 {
	b := math.Float64bits(f)
	if b>>63 != 0 {
		return ^b
	}
	return b | 1<<63
}

func keyFloat(k uint64) float64 {
	if k>>63 != 0 {
		return math.Float64frombits(k &^ (1 << 63))
	}
	return math.Float64frombits(^k)
}

// selectNth reorders a so that a[k] holds the value of rank k (0-based),
// with a[:k] ≤ a[k] ≤ a[k+1:], and returns it. Three-way partitions keep
// it linear on inputs with many equal values.
func selectNth(a []float64, k int) float64 {
	lo, hi := 0, len(a)
	for depth := 0; hi-lo > 16; depth++ {
		if depth > 64 {
			slices.Sort(a[lo:hi])
			return a[k]
		}
		p := median3(a[lo], a[lo+(hi-lo)/2], a[hi-1])
		lt, i, gt := lo, lo, hi
		for i < gt {
			switch v := a[i]; {
			case v < p:
				a[lt], a[i] = a[i], a[lt]
				lt++
				i++
			case v > p:
				gt--
				a[gt], a[i] = a[i], a[gt]
			default:
				i++
			}
		}
		switch {
		case k < lt:
			hi = lt
		case k >= gt:
			lo = gt
		default:
			return a[k]
		}
	}
	slices.Sort(a[lo:hi])
	return a[k]
}

func median3(a, b, c float64) float64 {
	if a > b {
		a, b = b, a
	}
	if b > c {
		b = c
	}
	return max(a, b)
}
