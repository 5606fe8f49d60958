package scrape

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
)

// exposition is a target's body with n series: families of 100 series
// with three labels, with HELP and TYPE, like an instrumented service.
func exposition(n int, om bool) []byte {
	var b bytes.Buffer
	for i := 0; i < n; i++ {
		if i%100 == 0 {
			fmt.Fprintf(&b, "# HELP app_requests_%d Requests handled.\n# TYPE app_requests_%d counter\n", i/100, i/100)
		}
		name := fmt.Sprintf("app_requests_%d_total", i/100)
		fmt.Fprintf(&b, "%s{method=\"GET\",code=\"%d\",handler=\"/api/v1/items/%d\"} %d\n", name, 200+i%5, i%100, 1000+i)
	}
	if om {
		b.WriteString("# EOF\n")
	}
	return b.Bytes()
}

// cpuTime is the process's user and system CPU time so far: samples per
// CPU second is the per-core rate even on a machine shared with other
// work, where wall time would count the waits for a core.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportRates reports samples per wall second and per CPU second.
func reportRates(b *testing.B, samples int, cpu0 time.Duration) {
	b.ReportMetric(float64(samples)/b.Elapsed().Seconds(), "samples/s")
	b.ReportMetric(float64(samples)/(cpuTime(b)-cpu0).Seconds(), "samples/cpu-s")
}

// BenchmarkScrapeAppend: one scrape of a 10 000-series target, parsed
// and appended to the embedded store (the body already read: no HTTP),
// in the steady state where every series is known.
func BenchmarkScrapeAppend(b *testing.B) {
	for _, tc := range []struct {
		name string
		ct   string
		om   bool
	}{{"text", textType, false}, {"openmetrics", omType, true}} {
		b.Run(tc.name, func(b *testing.B) {
			const n = 10_000
			body := exposition(n, tc.om)
			store := openStore(b)
			s := newScraper(Target{Address: "10.0.0.1:8080", Labels: map[string]string{"service": "checkout", "instance": "checkout-1", "version": "v1"}},
				Embedded{store}, newSettings(Options{}))
			ctx := context.Background()
			at := t0
			scrape := func() {
				s.iter++
				s.pending = s.pending[:0]
				s.buf.Reset()
				s.buf.Write(body)
				rep := Report{}
				var err error
				if rep.Samples, err = s.parse(tc.ct); err != nil {
					b.Fatal(err)
				}
				if err := s.append(ctx, at, &rep); err != nil || rep.Appended != n {
					b.Fatalf("appended %d: %v", rep.Appended, err)
				}
				at = at.Add(15 * time.Second)
			}
			scrape() // the series are created once
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			b.ResetTimer()
			cpu0 := cpuTime(b)
			for range b.N {
				scrape()
			}
			reportRates(b, n*b.N, cpu0)
		})
	}
}

// BenchmarkScrapeHTTP: the same through HTTP on loopback, with the report
// series: what a scrape loop does.
func BenchmarkScrapeHTTP(b *testing.B) {
	const n = 10_000
	e := newExposer(b, textType, string(exposition(n, false)))
	store := openStore(b)
	s := newTestScraper(b, Embedded{store}, e, Options{}, map[string]string{"service": "checkout", "instance": "checkout-1", "version": "v1"})
	ctx := context.Background()
	at := t0
	s.scrape(ctx, at)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime(b)
	for range b.N {
		at = at.Add(15 * time.Second)
		if rep := s.scrape(ctx, at); rep.Err != nil || rep.Appended != n {
			b.Fatalf("%+v", rep)
		}
	}
	reportRates(b, n*b.N, cpu0) // the target's HTTP server runs in this process too
}

// BenchmarkParse compares the parsers, parse only: textparse (what
// Prometheus scrapes with; no allocation per sample but the label set)
// and expfmt (one protobuf MetricFamily per family, allocations per
// sample and label). expfmt's OpenMetrics decoder is so slow that it gets
// a 1 000-series body instead of 10 000.
func BenchmarkParse(b *testing.B) {
	for _, tc := range []struct {
		name    string
		ct      string
		om      bool
		expfmtN int
	}{{"text", textType, false, 10_000}, {"openmetrics", omType, true, 1_000}} {
		const n = 10_000
		body := exposition(n, tc.om)
		b.Run("textparse/"+tc.name, func(b *testing.B) {
			st := labels.NewSymbolTable()
			var ls labels.Labels
			b.ReportAllocs()
			cpu0 := cpuTime(b)
			for range b.N {
				p, err := textparse.New(body, tc.ct, st, textparse.ParserOptions{OpenMetricsSkipSTSeries: true})
				if err != nil {
					b.Fatal(err)
				}
				got := 0
				for {
					et, err := p.Next()
					if errors.Is(err, io.EOF) {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
					if et == textparse.EntrySeries {
						p.Series()
						p.Labels(&ls)
						got++
					}
				}
				if got != n {
					b.Fatalf("%d samples", got)
				}
			}
			reportRates(b, n*b.N, cpu0)
		})
		b.Run("expfmt/"+tc.name, func(b *testing.B) {
			n := tc.expfmtN
			body := exposition(n, tc.om)
			b.ReportAllocs()
			cpu0 := cpuTime(b)
			for range b.N {
				dec := expfmt.NewDecoder(bytes.NewReader(body), expfmt.Format(tc.ct))
				got := 0
				for {
					var mf dto.MetricFamily
					err := dec.Decode(&mf)
					if errors.Is(err, io.EOF) {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
					got += len(mf.GetMetric())
				}
				if got != n {
					b.Fatalf("%d samples", got)
				}
			}
			reportRates(b, n*b.N, cpu0)
		})
	}
}

// BenchmarkSeriesMemory: heap per active series after scraping a target
// of 100 000 series twice into a fresh embedded store: the store's head
// (labels, postings, chunks) plus the scraper's cache.
func BenchmarkSeriesMemory(b *testing.B) {
	const n = 100_000
	body := exposition(n, false)
	ctx := context.Background()
	var perSeries, storeOnly float64
	for range b.N {
		runtime.GC()
		var before, mid, after runtime.MemStats
		runtime.ReadMemStats(&before)
		store := openStore(b)
		s := newScraper(Target{Address: "10.0.0.1:8080", Labels: map[string]string{"service": "checkout", "instance": "checkout-1", "version": "v1"}},
			Embedded{store}, newSettings(Options{SeriesLimit: -1}))
		for i := range 2 {
			s.iter++
			s.pending = s.pending[:0]
			s.buf.Reset()
			s.buf.Write(body)
			rep := Report{}
			if _, err := s.parse(textType); err != nil {
				b.Fatal(err)
			}
			if err := s.append(ctx, t0.Add(time.Duration(i)*15*time.Second), &rep); err != nil || rep.Appended != n {
				b.Fatal(rep, err)
			}
		}
		s.buf = bytes.Buffer{}
		s.pending = nil
		runtime.GC()
		runtime.ReadMemStats(&after)
		perSeries = float64(after.HeapAlloc-before.HeapAlloc) / n
		clear(s.cache)
		s.cache = nil
		runtime.GC()
		runtime.ReadMemStats(&mid)
		storeOnly = float64(mid.HeapAlloc-before.HeapAlloc) / n
		runtime.KeepAlive(s)
		if err := store.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(perSeries, "bytes/series")
	b.ReportMetric(storeOnly, "store-bytes/series")
}
