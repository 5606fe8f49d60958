// Package sourcetest is the acceptance suite of collector.Source: every
// implementation runs Run against itself holding Data, and passes.
//
//	func TestSource(t *testing.T) {
//		sourcetest.Run(t, func(t *testing.T, data []collector.Series) collector.Source {
//			… a Source holding data …
//		})
//	}
//
// The data sit in 2024 and use metric names of their own (sourcetest_*),
// so a shared server can hold them next to other tests' data. The queries
// avoid the edges where Prometheus 2 and 3 differ (range selectors became
// left-open in 3.0): a remote Prometheus 2.x passes as the embedded engine
// does.
package sourcetest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/immune-project/immune/collector"
)

// Start is the time of the first sample of Data.
var Start = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// minute is the i-th minute after Start.
func minute(i int) time.Time { return Start.Add(time.Duration(i) * time.Minute) }

// Data is the data set of the suite:
//
//	sourcetest_requests{job="suite",instance="a"}  i       at minute i, i in [0, 120)
//	sourcetest_requests{job="suite",instance="b"}  10·i    at minute i
//	sourcetest_gaps{job="suite"}                   i       at minutes [0, 30) and [60, 90)
//	sourcetest_special{job="suite",kind="…"}       NaN, +Inf, -Inf at minutes [0, 120)
//	sourcetest_ms{job="suite"}                     i       at minute i plus 250 ms
func Data() []collector.Series {
	series := func(labels collector.Labels, f func(i int) (time.Time, float64, bool)) collector.Series {
		s := collector.Series{Labels: labels}
		for i := range 120 {
			if t, v, ok := f(i); ok {
				s.Samples = append(s.Samples, collector.Sample{T: t, V: v})
			}
		}
		return s
	}
	lbl := func(name string, kv ...string) collector.Labels {
		l := collector.Labels{collector.MetricName: name, "job": "suite"}
		for i := 0; i+1 < len(kv); i += 2 {
			l[kv[i]] = kv[i+1]
		}
		return l
	}
	return []collector.Series{
		series(lbl("sourcetest_requests", "instance", "a"), func(i int) (time.Time, float64, bool) { return minute(i), float64(i), true }),
		series(lbl("sourcetest_requests", "instance", "b"), func(i int) (time.Time, float64, bool) { return minute(i), 10 * float64(i), true }),
		series(lbl("sourcetest_gaps"), func(i int) (time.Time, float64, bool) {
			return minute(i), float64(i), i < 30 || (i >= 60 && i < 90)
		}),
		series(lbl("sourcetest_special", "kind", "nan"), func(i int) (time.Time, float64, bool) { return minute(i), math.NaN(), true }),
		series(lbl("sourcetest_special", "kind", "inf"), func(i int) (time.Time, float64, bool) { return minute(i), math.Inf(1), true }),
		series(lbl("sourcetest_special", "kind", "neginf"), func(i int) (time.Time, float64, bool) { return minute(i), math.Inf(-1), true }),
		series(lbl("sourcetest_ms"), func(i int) (time.Time, float64, bool) {
			return minute(i).Add(250 * time.Millisecond), float64(i), true
		}),
	}
}

// Run runs the suite. newSource returns a Source holding data (Data());
// Run calls it once and the Source's cleanup is newSource's business
// (t.Cleanup).
func Run(t *testing.T, newSource func(t *testing.T, data []collector.Series) collector.Source) {
	t.Helper()
	src := newSource(t, Data())
	ctx := context.Background()
	suite := []struct {
		name string
		run  func(t *testing.T, src collector.Source)
	}{
		{"RangeSelector", func(t *testing.T, src collector.Source) {
			got := mustRange(t, src, `sourcetest_requests`, minute(10), minute(20), time.Minute)
			want := collector.Matrix{
				{Labels: collector.Labels{"__name__": "sourcetest_requests", "job": "suite", "instance": "a"}, Samples: ramp(10, 20, time.Minute, 1)},
				{Labels: collector.Labels{"__name__": "sourcetest_requests", "job": "suite", "instance": "b"}, Samples: ramp(10, 20, time.Minute, 10)},
			}
			if d := DiffMatrix(got, want, 0); d != "" {
				t.Error(d)
			}
		}},
		{"Aggregation", func(t *testing.T, src collector.Source) {
			got := mustRange(t, src, `sum by (job) (sourcetest_requests)`, minute(0), minute(119), 7*time.Minute)
			want := collector.Matrix{{Labels: collector.Labels{"job": "suite"}, Samples: ramp(0, 119, 7*time.Minute, 11)}}
			if d := DiffMatrix(got, want, 0); d != "" {
				t.Error(d)
			}
		}},
		{"OverTime", func(t *testing.T, src collector.Source) {
			// [10m30s] at whole minutes holds the 11 samples t-10m … t,
			// whether the range is closed (Prometheus 2) or left-open (3).
			got := mustRange(t, src, `avg_over_time(sourcetest_requests{instance="a"}[10m30s])`, minute(20), minute(30), 5*time.Minute)
			want := collector.Matrix{{Labels: collector.Labels{"job": "suite", "instance": "a"}, Samples: []collector.Sample{
				{T: minute(20), V: 15}, {T: minute(25), V: 20}, {T: minute(30), V: 25},
			}}}
			if d := DiffMatrix(got, want, 1e-12); d != "" {
				t.Error(d)
			}
		}},
		{"Gaps", func(t *testing.T, src collector.Source) {
			// Lookback 5m: the sample at 29m answers at 29m and 33m, none
			// from 37m to 57m.
			got := mustRange(t, src, `sourcetest_gaps`, minute(25), minute(65), 4*time.Minute)
			want := collector.Matrix{{Labels: collector.Labels{"__name__": "sourcetest_gaps", "job": "suite"}, Samples: []collector.Sample{
				{T: minute(25), V: 25}, {T: minute(29), V: 29}, {T: minute(33), V: 29},
				{T: minute(61), V: 61}, {T: minute(65), V: 65},
			}}}
			if d := DiffMatrix(got, want, 0); d != "" {
				t.Error(d)
			}
		}},
		{"ScalarRange", func(t *testing.T, src collector.Source) {
			got := mustRange(t, src, `1 + 1`, minute(0), minute(2), time.Minute)
			want := collector.Matrix{{Labels: collector.Labels{}, Samples: []collector.Sample{{T: minute(0), V: 2}, {T: minute(1), V: 2}, {T: minute(2), V: 2}}}}
			if d := DiffMatrix(got, want, 0); d != "" {
				t.Error(d)
			}
		}},
		{"EmptyRange", func(t *testing.T, src collector.Source) {
			if got := mustRange(t, src, `sourcetest_nonexistent`, minute(0), minute(10), time.Minute); len(got) != 0 {
				t.Errorf("got %d series, want none", len(got))
			}
		}},
		{"Instant", func(t *testing.T, src collector.Source) {
			ts := minute(30).Add(30 * time.Second)
			got := mustInstant(t, src, `sourcetest_requests{instance="a"}`, ts)
			want := collector.Vector{{Labels: collector.Labels{"__name__": "sourcetest_requests", "job": "suite", "instance": "a"}, Sample: collector.Sample{T: ts, V: 30}}}
			if d := DiffVector(got, want, 0); d != "" {
				t.Error(d)
			}
		}},
		{"InstantMilliseconds", func(t *testing.T, src collector.Source) {
			ts := minute(40).Add(250 * time.Millisecond)
			got := mustInstant(t, src, `sourcetest_ms`, ts)
			want := collector.Vector{{Labels: collector.Labels{"__name__": "sourcetest_ms", "job": "suite"}, Sample: collector.Sample{T: ts, V: 40}}}
			if d := DiffVector(got, want, 0); d != "" {
				t.Error(d)
			}
			got = mustInstant(t, src, `sourcetest_ms`, ts.Add(-time.Millisecond))
			want[0].Sample = collector.Sample{T: ts.Add(-time.Millisecond), V: 39}
			if d := DiffVector(got, want, 0); d != "" {
				t.Error(d)
			}
		}},
		{"InstantScalar", func(t *testing.T, src collector.Source) {
			ts := minute(5)
			got := mustInstant(t, src, `2 * 3`, ts)
			want := collector.Vector{{Labels: collector.Labels{}, Sample: collector.Sample{T: ts, V: 6}}}
			if d := DiffVector(got, want, 0); d != "" {
				t.Error(d)
			}
		}},
		{"InstantOrder", func(t *testing.T, src collector.Source) {
			got := mustInstant(t, src, `sort_desc(sourcetest_requests)`, minute(50))
			if len(got) != 2 || got[0].Sample.V != 500 || got[1].Sample.V != 50 {
				t.Errorf("sort_desc: got %v, want 500 then 50", got)
			}
		}},
		{"InstantEmpty", func(t *testing.T, src collector.Source) {
			if got := mustInstant(t, src, `sourcetest_nonexistent`, minute(10)); len(got) != 0 {
				t.Errorf("got %v, want nothing", got)
			}
		}},
		{"SpecialValues", func(t *testing.T, src collector.Source) {
			got := mustInstant(t, src, `sort_desc(sourcetest_special)`, minute(60))
			vals := map[string]float64{}
			for _, e := range got {
				vals[e.Labels["kind"]] = e.Sample.V
			}
			if len(got) != 3 || !math.IsNaN(vals["nan"]) || !math.IsInf(vals["inf"], 1) || !math.IsInf(vals["neginf"], -1) {
				t.Errorf("got %v, want NaN, +Inf, -Inf", got)
			}
		}},
		{"BadQuery", func(t *testing.T, src collector.Source) {
			_, _, err := src.QueryRange(ctx, `sum(sourcetest_requests`, minute(0), minute(10), time.Minute)
			wantErr(t, err, collector.ErrBadQuery)
			_, _, err = src.Query(ctx, `sum(sourcetest_requests`, minute(0))
			wantErr(t, err, collector.ErrBadQuery)
			_, _, err = src.Query(ctx, `nosuchfunction(sourcetest_requests)`, minute(0))
			wantErr(t, err, collector.ErrBadQuery)
		}},
		{"RangeVectorResult", func(t *testing.T, src collector.Source) {
			_, _, err := src.Query(ctx, `sourcetest_requests[5m]`, minute(10))
			wantErr(t, err, collector.ErrBadQuery)
			_, _, err = src.QueryRange(ctx, `sourcetest_requests[5m]`, minute(0), minute(10), time.Minute)
			wantErr(t, err, collector.ErrBadQuery)
			_, _, err = src.Query(ctx, `"a string"`, minute(10))
			wantErr(t, err, collector.ErrBadQuery)
		}},
		{"ExecutionError", func(t *testing.T, src collector.Source) {
			// Two series end up with the same labels: Prometheus's API
			// answers 422.
			_, _, err := src.QueryRange(ctx, `label_replace(sourcetest_requests, "instance", "x", "", "")`, minute(0), minute(10), time.Minute)
			wantErr(t, err, collector.ErrBadQuery)
		}},
		{"BadRange", func(t *testing.T, src collector.Source) {
			_, _, err := src.QueryRange(ctx, `sourcetest_requests`, minute(10), minute(0), time.Minute)
			wantErr(t, err, collector.ErrBadQuery)
			_, _, err = src.QueryRange(ctx, `sourcetest_requests`, minute(0), minute(10), 0)
			wantErr(t, err, collector.ErrBadQuery)
			_, _, err = src.QueryRange(ctx, `sourcetest_requests`, minute(0), minute(0).Add(24*time.Hour), time.Second)
			wantErr(t, err, collector.ErrBadQuery)
		}},
		{"Canceled", func(t *testing.T, src collector.Source) {
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			_, _, err := src.QueryRange(cctx, `sourcetest_requests`, minute(0), minute(10), time.Minute)
			wantErr(t, err, context.Canceled)
			_, _, err = src.Query(cctx, `sourcetest_requests`, minute(0))
			wantErr(t, err, context.Canceled)
		}},
		{"DeadlinePassed", func(t *testing.T, src collector.Source) {
			dctx, cancel := context.WithDeadline(ctx, time.Unix(0, 0))
			defer cancel()
			_, _, err := src.Query(dctx, `sourcetest_requests`, minute(0))
			wantErr(t, err, context.DeadlineExceeded)
			wantErr(t, err, collector.ErrTimeout)
		}},
	}
	for _, tc := range suite {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, src) })
	}
}

func ramp(from, to int, step time.Duration, scale float64) []collector.Sample {
	var s []collector.Sample
	for t := minute(from); !t.After(minute(to)); t = t.Add(step) {
		s = append(s, collector.Sample{T: t, V: scale * t.Sub(Start).Minutes()})
	}
	return s
}

func mustRange(t *testing.T, src collector.Source, q string, start, end time.Time, step time.Duration) collector.Matrix {
	t.Helper()
	m, _, err := src.QueryRange(context.Background(), q, start, end, step)
	if err != nil {
		t.Fatalf("QueryRange(%q): %v", q, err)
	}
	return m
}

func mustInstant(t *testing.T, src collector.Source, q string, ts time.Time) collector.Vector {
	t.Helper()
	v, _, err := src.Query(context.Background(), q, ts)
	if err != nil {
		t.Fatalf("Query(%q): %v", q, err)
	}
	return v
}

func wantErr(t *testing.T, err, want error) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("got no error, want %v", want)
	case !errors.Is(err, want):
		t.Errorf("got error %q, want one that is %v", err, want)
	case strings.TrimSpace(err.Error()) == "":
		t.Error("error with an empty message")
	}
}

// DiffMatrix describes how got differs from want, or returns "" when they
// hold the same series (by labels, in order) with the same samples: equal
// times, values equal within tol (see EqualWithin).
func DiffMatrix(got, want collector.Matrix, tol float64) string {
	var b strings.Builder
	if len(got) != len(want) {
		fmt.Fprintf(&b, "got %d series, want %d\n", len(got), len(want))
	}
	for i := 0; i < len(got) && i < len(want); i++ {
		g, w := got[i], want[i]
		if !g.Labels.Equal(w.Labels) {
			fmt.Fprintf(&b, "series %d: got %s, want %s\n", i, g.Labels, w.Labels)
			continue
		}
		if len(g.Samples) != len(w.Samples) {
			fmt.Fprintf(&b, "%s: got %d samples, want %d\n", g.Labels, len(g.Samples), len(w.Samples))
		}
		bad := 0
		for j := 0; j < len(g.Samples) && j < len(w.Samples); j++ {
			if d := diffSample(g.Samples[j], w.Samples[j], tol); d != "" {
				if bad++; bad <= 5 {
					fmt.Fprintf(&b, "%s sample %d: %s\n", g.Labels, j, d)
				}
			}
		}
		if bad > 5 {
			fmt.Fprintf(&b, "%s: %d samples differ\n", g.Labels, bad)
		}
	}
	return b.String()
}

// DiffVector is DiffMatrix for instant vectors, element by element.
func DiffVector(got, want collector.Vector, tol float64) string {
	var b strings.Builder
	if len(got) != len(want) {
		fmt.Fprintf(&b, "got %d elements, want %d\n", len(got), len(want))
	}
	for i := 0; i < len(got) && i < len(want); i++ {
		g, w := got[i], want[i]
		if !g.Labels.Equal(w.Labels) {
			fmt.Fprintf(&b, "element %d: got %s, want %s\n", i, g.Labels, w.Labels)
			continue
		}
		if d := diffSample(g.Sample, w.Sample, tol); d != "" {
			fmt.Fprintf(&b, "%s: %s\n", g.Labels, d)
		}
	}
	return b.String()
}

func diffSample(g, w collector.Sample, tol float64) string {
	if !g.T.Equal(w.T) {
		return fmt.Sprintf("got time %s, want %s", g.T.Format(time.RFC3339Nano), w.T.Format(time.RFC3339Nano))
	}
	if !EqualWithin(g.V, w.V, tol) {
		return fmt.Sprintf("at %s got %v, want %v", g.T.Format(time.RFC3339Nano), g.V, w.V)
	}
	return ""
}

// EqualWithin reports whether a and b differ by at most tol, relative to
// the larger magnitude, or absolutely below 1: |a-b| ≤ tol·max(1, |a|, |b|).
// NaN equals NaN and an infinity equals itself.
func EqualWithin(a, b, tol float64) bool {
	switch {
	case math.IsNaN(a) || math.IsNaN(b):
		return math.IsNaN(a) && math.IsNaN(b)
	case a == b:
		return true
	case math.IsInf(a, 0) || math.IsInf(b, 0):
		return false
	}
	return math.Abs(a-b) <= tol*max(1, math.Abs(a), math.Abs(b))
}
