package remote_test

// Integration tests against a real Prometheus (Debian's 2.42), started by
//
//	scripts/prometheus.sh run -- go test ./collector/remote/
//
// Skipped under -short; without IMMUNE_TEST_PROMETHEUS_URL they skip,
// unless IMMUNE_REQUIRE_SERVERS=1, which makes them fail.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/immune-project/immune/collector"
	"github.com/immune-project/immune/collector/embedded"
	"github.com/immune-project/immune/collector/load"
	"github.com/immune-project/immune/collector/promtest"
	"github.com/immune-project/immune/collector/remote"
	"github.com/immune-project/immune/collector/sourcetest"
)

// nabDir is the NAB data of the shared benchmark (bench/README.md).
const nabDir = "../../../shared/bench/nab/data"

// The acceptance suite against Prometheus itself.
func TestPrometheusSource(t *testing.T) {
	url := promtest.URL(t)
	sourcetest.Run(t, func(t *testing.T, data []collector.Series) collector.Source {
		if err := promtest.RemoteWrite(context.Background(), url, data); err != nil {
			t.Fatal(err)
		}
		return newSource(t, remote.Options{URL: url})
	})
}

// The NAB series loaded into the embedded store and, by remote write, into
// Prometheus: the same queries give the same numbers through both sources.
func TestPrometheusMatchesEmbedded(t *testing.T) {
	url := promtest.URL(t)
	ctx := context.Background()
	var files []string
	err := filepath.WalkDir(nabDir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".csv") {
			files = append(files, path)
		}
		return err
	})
	if err != nil || len(files) == 0 {
		t.Fatalf("NAB data at %s: %d files, %v", nabDir, len(files), err)
	}

	// A label of this run's own, so that the series of other tests (or
	// of earlier runs on a long-lived server) cannot mix in.
	run := randomID(t)
	store, err := embedded.Open(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	type nabSeries struct {
		name        string
		first, last time.Time
	}
	var all []collector.Series
	var nab []nabSeries
	for _, f := range files {
		rel, _ := filepath.Rel(nabDir, f)
		name := strings.TrimSuffix(filepath.ToSlash(rel), ".csv")
		r, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		series, st, err := load.CSV(f, r, load.Options{Labels: map[string]string{"immune_test": run, "series": name}})
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, series...)
		nab = append(nab, nabSeries{name, st.First, st.Last})
	}
	if err := store.Write(ctx, all); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := promtest.RemoteWrite(ctx, url, all); err != nil {
		t.Fatal(err)
	}
	t.Logf("remote write of %d series: %v", len(all), time.Since(start))
	prom := newSource(t, remote.Options{URL: url})

	// Evaluation times fall 30 s off the samples' (whole minutes, or one
	// second past), and ranges are not whole minutes: no sample sits on
	// the edge of a window, where Prometheus 2 (closed) and 3 (left-open)
	// differ.
	compared := 0
	for _, s := range nab {
		sel := fmt.Sprintf(`value{immune_test=%q,series=%q}`, run, s.name)
		from := s.first.Add(30 * time.Second)
		step := 5 * time.Minute
		for s.last.Sub(from)/step > 10000 {
			step += 5 * time.Minute
		}
		for _, q := range []string{
			sel,
			`avg_over_time(` + sel + `[31m])`,
			`max_over_time(` + sel + `[1h1m]) - min_over_time(` + sel + `[1h1m])`,
			`quantile_over_time(0.9, ` + sel + `[2h1m])`,
			`stddev_over_time(` + sel + `[1h1m])`,
			`count_over_time(` + sel + `[1h1m])`,
		} {
			compared += compareRange(t, store, prom, q, from, s.last, step)
		}
	}
	agg := fmt.Sprintf(`sum by (immune_test) (avg_over_time(value{immune_test=%q}[31m]))`, run)
	compared += compareRange(t, store, prom, agg,
		time.Date(2014, 2, 14, 0, 0, 30, 0, time.UTC), time.Date(2014, 4, 24, 0, 0, 30, 0, time.UTC), time.Hour)
	for _, at := range []time.Time{
		time.Date(2014, 2, 20, 12, 0, 30, 0, time.UTC),
		time.Date(2014, 4, 5, 6, 7, 30, 0, time.UTC),
		time.Date(2015, 9, 10, 0, 0, 30, 0, time.UTC),
	} {
		compared += compareInstant(t, store, prom, fmt.Sprintf(`avg_over_time(value{immune_test=%q}[31m])`, run), at)
	}
	t.Logf("%d samples compared", compared)
}

// tol allows for the engines' summation (Prometheus 3 compensates
// rounding errors in avg_over_time and stddev_over_time; 2.42 does not).
const tol = 1e-9

func compareRange(t *testing.T, a, b collector.Source, q string, start, end time.Time, step time.Duration) int {
	t.Helper()
	ctx := context.Background()
	want, _, err := a.QueryRange(ctx, q, start, end, step)
	if err != nil {
		t.Fatalf("embedded: %v", err)
	}
	got, _, err := b.QueryRange(ctx, q, start, end, step)
	if err != nil {
		t.Fatalf("prometheus: %v", err)
	}
	n := 0
	for _, s := range want {
		n += len(s.Samples)
	}
	if n == 0 {
		t.Errorf("%s: no samples", q)
	}
	if d := sourcetest.DiffMatrix(got, want, tol); d != "" {
		t.Errorf("%s: prometheus differs from embedded:\n%s", q, d)
	}
	return n
}

func compareInstant(t *testing.T, a, b collector.Source, q string, at time.Time) int {
	t.Helper()
	ctx := context.Background()
	want, _, err := a.Query(ctx, q, at)
	if err != nil {
		t.Fatalf("embedded: %v", err)
	}
	got, _, err := b.Query(ctx, q, at)
	if err != nil {
		t.Fatalf("prometheus: %v", err)
	}
	byLabels := func(x, y collector.Element) int { return x.Labels.Compare(y.Labels) }
	slices.SortFunc(want, byLabels)
	slices.SortFunc(got, byLabels)
	if len(want) == 0 {
		t.Errorf("%s at %s: no samples", q, at)
	}
	if d := sourcetest.DiffVector(got, want, tol); d != "" {
		t.Errorf("%s at %s: prometheus differs from embedded:\n%s", q, at, d)
	}
	return len(want)
}

func randomID(t *testing.T) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "collector-remote-" + hex.EncodeToString(b)
}
