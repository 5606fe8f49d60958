package detector

import (
	"math"
	"slices"
)

// diffSelector answers order statistics of the nx·ny pairwise differences
// x[i] − y[j] of two sorted samples without listing them all.
//
// It keeps a bracket (lo, hi] of values holding the wanted difference and,
// per row i, the first column with x[i] − y[j] ≤ lo and ≤ hi (y ascending,
// so the differences of a row fall as j grows and those ≤ t form a
// suffix). Float subtraction is monotone, so counting the differences ≤ t
// takes one merge-like pass, and the answer is always one of the computed
// differences, bit for bit. The bracket shrinks by interpolation on the
// counts, falling back to bisection over the ordered float64 bit patterns
// (at most 64 halvings) when interpolation stalls; once few candidates are
// left they are listed and selected.
type diffSelector struct {
	x, y []float64
	n    int64 // len(x)·len(y)
	// loPos, hiPos and tmp are per-row first columns, for lo, hi and a
	// probe.
	loPos, hiPos, tmp []int
	cand              []float64
}

func newDiffSelector(x, y []float64) *diffSelector {
	return &diffSelector{
		x:     x,
		y:     y,
		n:     int64(len(x)) * int64(len(y)),
		loPos: make([]int, len(x)),
		hiPos: make([]int, len(x)),
		tmp:   make([]int, len(x)),
	}
}

// count returns the number of differences ≤ t, for t in the current
// bracket, and sets pos[i] to the first j with x[i] − y[j] ≤ t.
func (s *diffSelector) count(t float64, pos []int) int64 {
	ny := len(s.y)
	var c int64
	j := 0
	for i, xi := range s.x {
		// pos is non-decreasing in i and hiPos[i] ≤ pos[i] ≤ loPos[i].
		j = max(j, s.hiPos[i])
		end := s.loPos[i]
		for j < end && xi-s.y[j] > t {
			j++
		}
		pos[i] = j
		c += int64(ny - j)
	}
	return c
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

func (s *diffSelector) find(k int64, next bool) (kth, after float64) {
	nx, ny := len(s.x), len(s.y)
	for i := range nx {
		s.loPos[i], s.hiPos[i] = ny, 0
	}
	// lo starts below every difference (count 0), hi at the largest
	// (count n).
	minDiff := s.x[0] - s.y[ny-1]
	lo, hi := math.Inf(-1), s.x[nx-1]-s.y[0]
	cLo, cHi := int64(0), s.n
	limit := int64(max(2*(nx+ny), 1024))
	bisect, movedHi := false, false
	for cHi-cLo > limit {
		width := cHi - cLo
		t := math.NaN()
		if !bisect {
			// Aim a little past k, on the side that did not move last,
			// so that both ends close in.
			m := max(width/32, limit/4)
			target := k + m
			if movedHi {
				target = k - m
			}
			target = min(max(target, cLo+1), cHi-1)
			base := lo
			if math.IsInf(base, -1) {
				base = minDiff
			}
			t = base + (hi-base)*((float64(target-cLo)-0.5)/float64(width))
		}
		if !(t > lo && t < hi) {
			t = bitMidpoint(lo, hi)
			if !(t > lo && t < hi) {
				break // no float64 strictly inside: every candidate is hi
			}
		}
		c := s.count(t, s.tmp)
		if c >= k {
			hi, cHi = t, c
			s.hiPos, s.tmp = s.tmp, s.hiPos
			movedHi = true
		} else {
			lo, cLo = t, c
			s.loPos, s.tmp = s.tmp, s.loPos
			movedHi = false
		}
		// Bisect next when this step did not halve the candidates.
		bisect = !bisect && cHi-cLo > width/2
	}

	if cHi-cLo > limit {
		// Every candidate in (lo, hi] equals hi.
		kth = hi
		if next && k+1 <= cHi {
			return kth, hi
		}
	} else {
		s.cand = s.cand[:0]
		for i, xi := range s.x {
			for j := s.hiPos[i]; j < s.loPos[i]; j++ {
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
		if j := s.hiPos[i]; j > 0 {
			after = min(after, xi-s.y[j-1])
		}
	}
	return kth, after
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
