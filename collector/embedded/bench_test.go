package embedded_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/immune-project/immune/collector"
	"github.com/immune-project/immune/collector/embedded"
)

// BenchmarkAppend appends samples to 1000 series, a round of one sample
// per series at a time (as a scrape or a remote write does), with series
// refs, committing every 10,000 samples.
//
//	go test -run '^$' -bench Append -cpu 1 ./collector/embedded/
func BenchmarkAppend(b *testing.B) {
	for _, tc := range []struct {
		name string
		dir  bool
	}{{"ephemeral", false}, {"wal", true}} {
		b.Run(tc.name, func(b *testing.B) {
			opts := embedded.Options{}
			if tc.dir {
				opts.Dir = b.TempDir()
			}
			s := open(b, opts)
			const nSeries = 1000
			ls := make([]labels.Labels, nSeries)
			for i := range ls {
				ls[i] = labels.FromStrings("__name__", "http_requests_total", "instance", fmt.Sprintf("10.0.%d.%d:8080", i/256, i%256), "job", "checkout")
			}
			refs := make([]embedded.SeriesRef, nSeries)
			app := s.Appender(context.Background())
			start := t0.UnixMilli()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				j := i % nSeries
				t := start + int64(i/nSeries)*15_000
				ref, err := app.Append(refs[j], ls[j], t, float64(i))
				if err != nil {
					b.Fatal(err)
				}
				refs[j] = ref
			}
			if err := app.Commit(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "samples/s")
		})
	}
}

// BenchmarkWrite stores whole series in one transaction, as the loaders do.
func BenchmarkWrite(b *testing.B) {
	s := open(b, embedded.Options{})
	const n = 4032 // a NAB file: two weeks at 5 minutes
	ctx := context.Background()
	series := gauge("value", t0, n, 5*time.Minute, func(j int) float64 { return float64(j) })
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		series.Labels = collector.Labels{"__name__": "value", "series": fmt.Sprint(i)}
		if err := s.Write(ctx, []collector.Series{series}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "samples/s")
}

// BenchmarkQuery evaluates a KPI-like range query over two weeks of
// 5-minute data and an instant query.
func BenchmarkQuery(b *testing.B) {
	s := open(b, embedded.Options{})
	ctx := context.Background()
	if err := s.Write(ctx, []collector.Series{gauge("value", t0, 4032, 5*time.Minute, func(j int) float64 { return float64(j % 288) })}); err != nil {
		b.Fatal(err)
	}
	b.Run("range-6h-step-5m", func(b *testing.B) {
		from := t0.Add(7 * 24 * time.Hour)
		for range b.N {
			if _, _, err := s.QueryRange(ctx, `avg_over_time(value[31m])`, from, from.Add(6*time.Hour), 5*time.Minute); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("instant", func(b *testing.B) {
		at := t0.Add(7 * 24 * time.Hour)
		for range b.N {
			if _, _, err := s.Query(ctx, `avg_over_time(value[31m])`, at); err != nil {
				b.Fatal(err)
			}
		}
	})
}
