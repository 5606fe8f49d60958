package embedded_test

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"

	"github.com/immune-project/immune/collector"
	"github.com/immune-project/immune/collector/embedded"
	"github.com/immune-project/immune/collector/sourcetest"
)

func open(t testing.TB, opts embedded.Options) *embedded.Store {
	t.Helper()
	s, err := embedded.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func TestSource(t *testing.T) {
	sourcetest.Run(t, func(t *testing.T, data []collector.Series) collector.Source {
		s := open(t, embedded.Options{})
		if err := s.Write(context.Background(), data); err != nil {
			t.Fatal(err)
		}
		return s
	})
}

var t0 = time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)

func gauge(name string, from time.Time, n int, step time.Duration, f func(i int) float64, kv ...string) collector.Series {
	l := collector.Labels{collector.MetricName: name}
	for i := 0; i+1 < len(kv); i += 2 {
		l[kv[i]] = kv[i+1]
	}
	s := collector.Series{Labels: l}
	for i := range n {
		s.Samples = append(s.Samples, collector.Sample{T: from.Add(time.Duration(i) * step), V: f(i)})
	}
	return s
}

func TestTempDirRemovedOnClose(t *testing.T) {
	s, err := embedded.Open(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := s.Dir()
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("temp dir: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Close, stat %s: %v, want not exist", dir, err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	ctx := context.Background()
	if _, _, err := s.Query(ctx, "up", t0); !errors.Is(err, collector.ErrClosed) {
		t.Errorf("Query after Close: %v, want ErrClosed", err)
	}
	if _, _, err := s.QueryRange(ctx, "up", t0, t0, time.Minute); !errors.Is(err, collector.ErrClosed) {
		t.Errorf("QueryRange after Close: %v, want ErrClosed", err)
	}
	if err := s.Write(ctx, nil); !errors.Is(err, collector.ErrClosed) {
		t.Errorf("Write after Close: %v, want ErrClosed", err)
	}
	if _, err := s.Appender(ctx).Append(0, labels.FromStrings("__name__", "x"), 1, 1); !errors.Is(err, collector.ErrClosed) {
		t.Errorf("Append after Close: %v, want ErrClosed", err)
	}
}

// With a directory, committed samples survive a restart (the WAL).
func TestDurableAcrossRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tsdb")
	ctx := context.Background()
	s, err := embedded.Open(embedded.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	app := s.Appender(ctx)
	ls := labels.FromStrings("__name__", "checkout_latency_seconds", "service", "checkout")
	var ref embedded.SeriesRef
	for i := range 100 {
		if ref, err = app.Append(ref, ls, t0.Add(time.Duration(i)*time.Minute).UnixMilli(), float64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	// Appended but not committed: lost, as it should be.
	if _, err := app.Append(ref, ls, t0.Add(200*time.Minute).UnixMilli(), 200); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("configured dir gone after Close: %v", err)
	}

	s = open(t, embedded.Options{Dir: dir})
	m, _, err := s.QueryRange(ctx, `checkout_latency_seconds`, t0, t0.Add(99*time.Minute), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 1 || len(m[0].Samples) != 100 || m[0].Samples[99].V != 99 {
		t.Fatalf("after restart: got %v", m)
	}
	v, _, err := s.Query(ctx, `checkout_latency_seconds`, t0.Add(200*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(v) != 0 {
		t.Errorf("uncommitted sample survived: %v", v)
	}
}

// A commit is in the WAL file when Commit returns: a copy of the
// directory taken while the store is still open (as a crash leaves it)
// opens with the samples.
func TestDurableWithoutClose(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tsdb")
	ctx := context.Background()
	s := open(t, embedded.Options{Dir: dir})
	if err := s.Write(ctx, []collector.Series{gauge("m", t0, 60, time.Minute, func(i int) float64 { return float64(i) })}); err != nil {
		t.Fatal(err)
	}
	crashed := filepath.Join(t.TempDir(), "crashed")
	if err := os.CopyFS(crashed, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(crashed, "lock"))
	c := open(t, embedded.Options{Dir: crashed})
	v, _, err := c.Query(ctx, `count_over_time(m[2h])`, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(v) != 1 || v[0].Sample.V != 60 {
		t.Errorf("after a crash: got %v, want 60 samples", v)
	}
}

// A directory takes one store at a time.
func TestDirLocked(t *testing.T) {
	dir := t.TempDir()
	open(t, embedded.Options{Dir: dir})
	if s, err := embedded.Open(embedded.Options{Dir: dir}); err == nil {
		s.Close()
		t.Fatal("a second store opened the same directory")
	} else if !strings.Contains(err.Error(), "embedded: open tsdb "+dir) {
		t.Errorf("got %v", err)
	}
}

func TestAppenderCommitsInBatches(t *testing.T) {
	s := open(t, embedded.Options{AppendBatch: 10})
	ctx := context.Background()
	app := s.Appender(ctx)
	ls := labels.FromStrings("__name__", "x")
	for i := range 25 {
		if _, err := app.Append(0, ls, t0.Add(time.Duration(i)*time.Second).UnixMilli(), float64(i)); err != nil {
			t.Fatal(err)
		}
	}
	// 20 committed by the batches, 5 pending: Rollback drops those.
	if err := app.Rollback(); err != nil {
		t.Fatal(err)
	}
	v, _, err := s.Query(ctx, `count_over_time(x[1h])`, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(v) != 1 || v[0].Sample.V != 20 {
		t.Errorf("count after rollback: got %v, want 20", v)
	}
}

func TestAppenderRejectsOutOfOrderWithoutWindow(t *testing.T) {
	s := open(t, embedded.Options{OutOfOrderWindow: -1, BlockDuration: 2 * time.Hour})
	ctx := context.Background()
	app := s.Appender(ctx)
	ls := labels.FromStrings("__name__", "x")
	if _, err := app.Append(0, ls, t0.UnixMilli(), 1); err != nil {
		t.Fatal(err)
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	_, err := app.Append(0, ls, t0.Add(-time.Minute).UnixMilli(), 1)
	if !errors.Is(err, storage.ErrOutOfOrderSample) {
		t.Errorf("got %v, want out of order", err)
	}
	_, err = app.Append(0, labels.FromStrings("__name__", "y"), t0.Add(-24*time.Hour).UnixMilli(), 1)
	if !errors.Is(err, storage.ErrOutOfBounds) {
		t.Errorf("got %v, want out of bounds", err)
	}
	if err := app.Rollback(); err != nil {
		t.Fatal(err)
	}
}

// History loads in any order: older files after newer ones, the same
// series in two halves, newest half first.
func TestWriteAnyOrder(t *testing.T) {
	t.Run("ephemeral", func(t *testing.T) { testWriteAnyOrder(t, embedded.Options{}) })
	// With a WAL, 2h blocks and compaction: the out-of-order path.
	t.Run("dir", func(t *testing.T) { testWriteAnyOrder(t, embedded.Options{Dir: t.TempDir()}) })
}

func testWriteAnyOrder(t *testing.T, opts embedded.Options) {
	s := open(t, opts)
	ctx := context.Background()
	late := gauge("m", t0.Add(365*24*time.Hour), 100, time.Minute, func(i int) float64 { return float64(i) }, "file", "late")
	early := gauge("m", t0, 100, time.Minute, func(i int) float64 { return float64(i) }, "file", "early")
	secondHalf := gauge("m", t0.Add(50*time.Minute), 50, time.Minute, func(i int) float64 { return float64(50 + i) }, "file", "split")
	firstHalf := gauge("m", t0, 50, time.Minute, func(i int) float64 { return float64(i) }, "file", "split")
	for _, batch := range [][]collector.Series{{late}, {early}, {secondHalf}, {firstHalf}} {
		if err := s.Write(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	for _, file := range []string{"early", "split"} {
		m, _, err := s.QueryRange(ctx, `m{file="`+file+`"}`, t0, t0.Add(99*time.Minute), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		want := gauge("m", t0, 100, time.Minute, func(i int) float64 { return float64(i) }, "file", file)
		if d := sourcetest.DiffMatrix(m, collector.Matrix{want}, 0); d != "" {
			t.Errorf("%s: %s", file, d)
		}
	}
}

// Write stores all or nothing.
func TestWriteAtomic(t *testing.T) {
	s := open(t, embedded.Options{})
	ctx := context.Background()
	good := gauge("m", t0, 10, time.Minute, func(i int) float64 { return float64(i) }, "k", "good")
	bad := gauge("m", t0, 10, time.Minute, func(i int) float64 { return float64(i) }, "k", "bad")
	bad.Samples = append(bad.Samples, collector.Sample{T: t0, V: 42}) // same time, other value
	err := s.Write(ctx, []collector.Series{good, bad})
	if !errors.Is(err, storage.ErrDuplicateSampleForTimestamp) {
		t.Fatalf("got %v, want a duplicate sample error", err)
	}
	v, _, err := s.Query(ctx, `m`, t0.Add(5*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(v) != 0 {
		t.Errorf("a failed Write left %v", v)
	}

	for _, tc := range []struct {
		name string
		l    collector.Labels
		want string
	}{
		{"no name", collector.Labels{"a": "b"}, "no metric name"},
		{"bad label", collector.Labels{"__name__": "m", "a\xff": "b"}, "invalid label name"},
	} {
		err := s.Write(ctx, []collector.Series{{Labels: tc.l, Samples: []collector.Sample{{T: t0, V: 1}}}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestWriteCanceled(t *testing.T) {
	s := open(t, embedded.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.Write(ctx, []collector.Series{gauge("m", t0, 10, time.Minute, func(i int) float64 { return 1 })})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
}

func TestMaxSamples(t *testing.T) {
	s := open(t, embedded.Options{MaxSamples: 100})
	ctx := context.Background()
	if err := s.Write(ctx, []collector.Series{gauge("m", t0, 1000, time.Second, func(i int) float64 { return 1 })}); err != nil {
		t.Fatal(err)
	}
	_, _, err := s.Query(ctx, `sum_over_time(m[1h])`, t0.Add(time.Hour))
	if !errors.Is(err, collector.ErrTooManySamples) {
		t.Errorf("got %v, want ErrTooManySamples", err)
	}
}

func TestQueryTimeout(t *testing.T) {
	s := open(t, embedded.Options{QueryTimeout: time.Nanosecond})
	ctx := context.Background()
	if err := s.Write(ctx, []collector.Series{gauge("m", t0, 1000, time.Second, func(i int) float64 { return 1 })}); err != nil {
		t.Fatal(err)
	}
	_, _, err := s.QueryRange(ctx, `sum_over_time(m[1h])`, t0, t0.Add(time.Hour), time.Second)
	if !errors.Is(err, collector.ErrTimeout) {
		t.Errorf("got %v, want ErrTimeout", err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("%v: the engine's timeout is not the caller's deadline", err)
	}
}

func TestWarnings(t *testing.T) {
	s := open(t, embedded.Options{})
	ctx := context.Background()
	if err := s.Write(ctx, []collector.Series{gauge("requests", t0, 100, time.Minute, func(i int) float64 { return float64(i) })}); err != nil {
		t.Fatal(err)
	}
	// rate() of a metric not named like a counter: an info.
	_, warnings, err := s.Query(ctx, `rate(requests[10m])`, t0.Add(30*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) == 0 || !strings.Contains(strings.Join(warnings, "\n"), "counter") {
		t.Errorf("got warnings %q, want one about counters", warnings)
	}
}

func TestBadQueryMessage(t *testing.T) {
	s := open(t, embedded.Options{})
	_, _, err := s.Query(context.Background(), `sum(rate(x[5m])`, t0)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{`embedded: query "sum(rate(x[5m])"`, "bad query", "parse error"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestConcurrentQueriesAndClose(t *testing.T) {
	s, err := embedded.Open(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Write(ctx, []collector.Series{gauge("m", t0, 1000, time.Second, func(i int) float64 { return math.Sin(float64(i)) })}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 50 {
				_, _, err := s.QueryRange(ctx, `avg_over_time(m[1m])`, t0, t0.Add(time.Hour), time.Minute)
				if err != nil && !errors.Is(err, collector.ErrClosed) {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		app := s.Appender(ctx)
		for i := range 2000 {
			_, err := app.Append(0, labels.FromStrings("__name__", "n"), t0.Add(time.Duration(i)*time.Second).UnixMilli(), 1)
			if err != nil {
				if !errors.Is(err, collector.ErrClosed) {
					t.Error(err)
				}
				return
			}
		}
		if err := app.Commit(); err != nil && !errors.Is(err, collector.ErrClosed) {
			t.Error(err)
		}
	})
	time.Sleep(10 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Error(err)
	}
	wg.Wait()
}

// The metrics go to the Registerer until Close; the store can open again
// on it; a second open store on it is an error, not a panic.
func TestRegisterer(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	dir := t.TempDir()
	for range 2 {
		s, err := embedded.Open(embedded.Options{Dir: dir, Registerer: reg})
		if err != nil {
			t.Fatal(err)
		}
		n, err := testutil.GatherAndCount(reg, "prometheus_tsdb_head_series", "prometheus_engine_queries")
		if err != nil || n != 2 {
			t.Errorf("gathered %d, %v; want the head's and the engine's metrics", n, err)
		}
		other, err := embedded.Open(embedded.Options{Registerer: reg})
		if err == nil {
			other.Close()
			t.Error("two open stores on one Registerer")
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if n, _ := testutil.GatherAndCount(reg); n != 0 {
			t.Errorf("%d metrics left after Close", n)
		}
	}
}
