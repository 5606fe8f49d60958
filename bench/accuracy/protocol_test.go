package main

import (
	"math"
	"slices"
	"testing"
	"time"
)

func TestDeployPoints(t *testing.T) {
	for _, tc := range []struct {
		n, l, w int
		want    []int
	}{
		{n: 200, l: 48, w: 24, want: []int{48, 120}},
		{n: 192, l: 48, w: 24, want: []int{48, 120}}, // the last window ends at sample 143
		{n: 144, l: 48, w: 24, want: []int{48, 120}}, // a window may end on the last sample
		{n: 143, l: 48, w: 24, want: []int{48}},      // but not after it
		{n: 71, l: 48, w: 24, want: nil},             // no room for one window
		{n: 4032, l: 48, w: 24, want: nil},           // checked below
		{n: 10, l: 2, w: 3, want: []int{2, 7}},       // 7+3 = 10
		{n: 248 * 3, l: 48, w: 200, want: []int{48, 296, 544}},
	} {
		got := deployPoints(tc.n, tc.l, tc.w)
		if tc.n == 4032 {
			// The protocol on a 14-day NAB file: 56 deploys, each with
			// L samples before it and W from it on, none overlapping.
			if len(got) != 56 || got[0] != 48 || got[55] != 48+55*72 {
				t.Errorf("deployPoints(4032, 48, 24) = %d points from %d to %d, want 56 from 48 to %d", len(got), got[0], got[len(got)-1], 48+55*72)
			}
			for i := 1; i < len(got); i++ {
				if got[i]-48 < got[i-1]+24 {
					t.Errorf("deploy %d's baseline overlaps deploy %d's window", got[i], got[i-1])
				}
			}
			continue
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("deployPoints(%d, %d, %d) = %v, want %v", tc.n, tc.l, tc.w, got, tc.want)
		}
	}
}

func TestRobustScale(t *testing.T) {
	for _, tc := range []struct {
		xs     []float64
		med, s float64
	}{
		// deviations 2 1 0 1 97: MAD 1, the outlier does not count.
		{xs: []float64{3, 1, 100, 2, 4}, med: 3, s: 1.4826},
		// even count: median 2.5; deviations 1.5 .5 .5 1.5: MAD 1.
		{xs: []float64{4, 1, 3, 2}, med: 2.5, s: 1.4826},
		// more than half equal: MAD 0, a flat lookback.
		{xs: []float64{5, 5, 5, 9, 1}, med: 5, s: 0},
		{xs: []float64{-2, -4, -6}, med: -4, s: 2 * 1.4826},
	} {
		orig := slices.Clone(tc.xs)
		med, s := robustScale(tc.xs)
		if med != tc.med || math.Abs(s-tc.s) > 1e-12 {
			t.Errorf("robustScale(%v) = %v, %v, want %v, %v", orig, med, s, tc.med, tc.s)
		}
		if !slices.Equal(tc.xs, orig) {
			t.Errorf("robustScale modified its input: %v, was %v", tc.xs, orig)
		}
	}
}

func TestCaseApply(t *testing.T) {
	window := func() []float64 { return []float64{10, 12, 8, 10} }
	for _, tc := range []struct {
		c            benchCase
		center, unit float64
		want         []float64
	}{
		{benchCase{"null", 0, 1}, 10, 2, []float64{10, 12, 8, 10}},
		{benchCase{"shift-0.5", 0.5, 1}, 10, 2, []float64{11, 13, 9, 11}},
		{benchCase{"shift-4", 4, 1}, 10, 2, []float64{18, 20, 16, 18}},
		// deviations from the lookback's median, not the window's mean
		{benchCase{"scale-3", 0, 3}, 10, 2, []float64{10, 16, 4, 10}},
		{benchCase{"scale-3", 0, 3}, 9, 2, []float64{12, 18, 6, 12}},
	} {
		w := window()
		tc.c.apply(w, tc.center, tc.unit)
		if !slices.Equal(w, tc.want) {
			t.Errorf("%s.apply(center %v, unit %v) = %v, want %v", tc.c.Name, tc.center, tc.unit, w, tc.want)
		}
	}
	// The protocol's cases, in order.
	var names []string
	for _, c := range nabCases {
		names = append(names, c.Name)
	}
	if want := []string{"null", "shift-0.5", "shift-1", "shift-2", "shift-4", "scale-3"}; !slices.Equal(names, want) {
		t.Errorf("nabCases = %v, want %v", names, want)
	}
}

func TestMakeCopy(t *testing.T) {
	s := &series{Name: "g/s", Start: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), Step: 5 * time.Minute}
	for i := range 20 {
		s.Values = append(s.Values, float64(i))
	}
	orig := slices.Clone(s.Values)
	d := deployment{T: 10, Center: 7, S: 2}
	const w = 4

	all := makeCopy(s, d, benchCase{"shift-1", 1, 1}, w, 0, d.S)
	if all.ID != "g/s/10/shift-1" || all.From != 0 || len(all.Values) != 14 {
		t.Fatalf("copy %q from %d with %d values, want g/s/10/shift-1 from 0 with 14", all.ID, all.From, len(all.Values))
	}
	// Only [t, t+W) changes, and nothing after the window is kept.
	want := slices.Clone(orig[:14])
	for i := 10; i < 14; i++ {
		want[i] += 2
	}
	if !slices.Equal(all.Values, want) {
		t.Errorf("copy values %v, want %v", all.Values, want)
	}
	if !slices.Equal(s.Values, orig) {
		t.Errorf("makeCopy changed the series: %v", s.Values)
	}
	if got := all.lookback(3); !slices.Equal(got, []float64{7, 8, 9}) {
		t.Errorf("lookback(3) = %v, want [7 8 9]", got)
	}
	if got := all.window(); !slices.Equal(got, []float64{12, 13, 14, 15}) {
		t.Errorf("window() = %v, want [12 13 14 15]", got)
	}
	if got, want := all.deployTime(), s.Start.Add(9*s.Step); !got.Equal(want) {
		t.Errorf("deployTime() = %v, want sample t−1's time %v", got, want)
	}

	// History H keeps H samples before the window.
	h := makeCopy(s, d, benchCase{"scale-3", 0, 3}, w, 6, d.S)
	if h.From != 4 || len(h.Values) != 10 {
		t.Fatalf("with history 6: from %d, %d values, want from 4, 10 values", h.From, len(h.Values))
	}
	if got, want := h.Values, []float64{4, 5, 6, 7, 8, 9, 16, 19, 22, 25}; !slices.Equal(got, want) {
		t.Errorf("scale-3 copy with history 6 = %v, want %v", got, want)
	}
	if got := h.lookback(3); !slices.Equal(got, []float64{7, 8, 9}) {
		t.Errorf("lookback(3) with history = %v, want [7 8 9]", got)
	}
	// History longer than the series so far: from the first sample.
	if c := makeCopy(s, d, nabCases[0], w, 100, d.S); c.From != 0 {
		t.Errorf("history 100: from %d, want 0", c.From)
	}
}

func TestDelaySamples(t *testing.T) {
	t0 := time.Date(2014, 2, 14, 18, 22, 0, 0, time.UTC)
	for _, tc := range []struct {
		after time.Duration
		step  time.Duration
		want  int
	}{
		{5 * time.Minute, 5 * time.Minute, 1}, // the first look: sample t, the first changed one
		{15 * time.Minute, 5 * time.Minute, 3},
		{2 * time.Hour, 5 * time.Minute, 24},
		{3 * time.Hour, time.Hour, 3},
	} {
		if got := delaySamples(t0, t0.Add(tc.after), tc.step); got != tc.want {
			t.Errorf("delaySamples(+%v, step %v) = %d, want %d", tc.after, tc.step, got, tc.want)
		}
	}
}

func TestDeployments(t *testing.T) {
	s := &series{Name: "g/s", Start: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), Step: time.Minute,
		Values: make([]float64, 30), Irregular: make([]bool, 29)}
	for i := range s.Values {
		s.Values[i] = float64(i % 3)
	}
	// deploys at 4 (lookback 0..3), 12 (8..11), 20 (16..19)
	for i := 8; i < 12; i++ {
		s.Values[i] = 1 // flat lookback
	}
	s.Irregular[22] = true // inside deploy 20's window
	p := params{L: 4, W: 4}
	keep, skipped := deployments("nab", s, p)
	if len(keep) != 2 || keep[0].T != 4 || keep[1].T != 20 || !keep[1].Irregular || keep[0].Irregular {
		t.Errorf("deployments kept %+v, want t=4 and t=20 (irregular)", keep)
	}
	if len(skipped) != 1 || skipped[0].Deploy != 12 || skipped[0].Verdict != verdictSkipped || skipped[0].S != 0 {
		t.Errorf("deployments skipped %+v, want t=12 with s = 0", skipped)
	}
	// lookback 0 1 2 0: median 0.5, deviations .5 .5 1.5 .5, MAD 0.5
	if got, want := keep[0].S, 0.5*1.4826; math.Abs(got-want) > 1e-12 {
		t.Errorf("s of deploy 4 = %v, want %v", got, want)
	}
	p.SkipIrregular = true
	keep, skipped = deployments("nab", s, p)
	if len(keep) != 1 || len(skipped) != 2 || skipped[1].Deploy != 20 {
		t.Errorf("with SkipIrregular: kept %+v, skipped %+v; want t=4 kept, t=12 and t=20 skipped", keep, skipped)
	}
}

func TestReadNAB(t *testing.T) {
	s, info, err := readNAB("testdata", "testdata/irregular.csv")
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "irregular" || s.Step != 5*time.Minute || info.Duplicates != 1 || info.Irregular != 2 {
		t.Errorf("read %q step %v, %d duplicates, %d irregular; want irregular, 5m, 1, 2", s.Name, s.Step, info.Duplicates, info.Irregular)
	}
	// the later of two rows at 00:10 is kept
	if want := []float64{1, 2, 4, 5, 6, 7, 8}; !slices.Equal(s.Values, want) {
		t.Errorf("values %v, want %v", s.Values, want)
	}
	if want := []bool{false, false, true, false, true, false}; !slices.Equal(s.Irregular, want) {
		t.Errorf("irregular %v, want %v", s.Irregular, want)
	}
	// on the regular clock: sample 4 (00:25 originally) is at 00:20
	if got, want := s.time(4), time.Date(2024, 1, 1, 0, 20, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("time(4) = %v, want %v", got, want)
	}
	if !s.irregularSpan(0, 3) || s.irregularSpan(0, 2) || s.irregularSpan(5, 6) {
		t.Error("irregularSpan: wrong spans")
	}
}

func TestGaussSeriesDeterministic(t *testing.T) {
	a, b, c := gaussSeries(1, 3, 500), gaussSeries(1, 3, 500), gaussSeries(1, 4, 500)
	if !slices.Equal(a.Values, b.Values) {
		t.Error("the same seed and index gave different series")
	}
	if slices.Equal(a.Values, c.Values) {
		t.Error("two indexes gave the same series")
	}
	m := mean(a.Values)
	v := 0.0
	for _, x := range a.Values {
		v += (x - m) * (x - m)
	}
	v /= float64(len(a.Values) - 1)
	if math.Abs(m) > 0.2 || math.Abs(v-1) > 0.2 {
		t.Errorf("mean %v, variance %v: not N(0, 1)", m, v)
	}
}
