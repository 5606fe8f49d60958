package ingest_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"

	"github.com/immune-project/immune/collector/embedded"
	"github.com/immune-project/immune/collector/ingest"
)

// The benchmarks go through the handlers (decoding, checks, the store's
// transaction), without the network: run with -cpu 1 for a per-core
// figure.
//
//	go test -run XXX -bench . -benchtime 200x -cpu 1 ./collector/ingest/

const (
	benchSeries    = 10_000 // active series
	benchPerBody   = 2_000  // samples per request (Prometheus's max_samples_per_send)
	benchBlocks    = benchSeries / benchPerBody
	benchLabelSets = 6 // labels per series, the name included
)

func benchHandler(b *testing.B, now func() time.Time) http.Handler {
	return benchHandlerCache(b, now, 0)
}

func benchHandlerCache(b *testing.B, now func() time.Time, cache int) http.Handler {
	st, err := embedded.Open(embedded.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	r, err := ingest.New(st, ingest.Options{Now: now, Limits: ingest.Limits{MaxAhead: -1}, SeriesCacheSize: cache})
	if err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	r.Register(mux)
	return mux
}

func serve(b *testing.B, h http.Handler, header http.Header, body []byte) {
	req := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(body))
	if ct := header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/x-protobuf") {
		req = httptest.NewRequest(http.MethodPost, "/api/v1/push", bytes.NewReader(body))
	}
	req.Header = header
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusNoContent {
		b.Fatalf("HTTP %d: %s", w.Code, w.Body)
	}
}

// Remote write 1.0 as Prometheus sends it: one time series entry per
// sample, 2 000 samples a request, 10 000 series scraped every 15 s; with
// the series cache (after the first 10 000 samples, every series is in
// it) and without.
func BenchmarkRemoteWriteV1(b *testing.B) {
	b.Run("cache", func(b *testing.B) { benchRemoteWriteV1(b, 0) })
	b.Run("nocache", func(b *testing.B) { benchRemoteWriteV1(b, -1) })
}

func benchRemoteWriteV1(b *testing.B, cache int) {
	h := benchHandlerCache(b, time.Now, cache)
	t0 := time.Now().Add(-24 * time.Hour).UnixMilli()
	var req prompb.WriteRequest
	for i := range benchPerBody {
		req.Timeseries = append(req.Timeseries, prompb.TimeSeries{
			Labels: ts("__name__", "http_requests_total", "service", "checkout", "instance", fmt.Sprintf("10.0.%d.%d:8080", i/250, i%250),
				"method", "GET", "code", "200", "block", ""),
			Samples: []prompb.Sample{{}},
		})
	}
	body := func(i int) []byte {
		block := i % benchBlocks
		for j := range req.Timeseries {
			req.Timeseries[j].Labels[5].Value = fmt.Sprint(block)
			req.Timeseries[j].Samples[0] = prompb.Sample{Timestamp: t0 + int64(i/benchBlocks)*15_000, Value: float64(i + j)}
		}
		data, err := req.Marshal()
		if err != nil {
			b.Fatal(err)
		}
		return snappy.Encode(nil, data)
	}
	header := v1Header()
	bodies := make([][]byte, b.N)
	var size int
	for i := range bodies {
		bodies[i] = body(i)
		size += len(bodies[i])
	}
	cpu := cpuTime()
	b.ResetTimer()
	for i := range b.N {
		serve(b, h, header, bodies[i])
	}
	report(b, cpu)
	b.ReportMetric(float64(size)/float64(b.N*benchPerBody), "bytes/sample")
}

// cpuTime is the CPU time of the process so far (all goroutines: the
// handler, the garbage collector, the store's compactor).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// report gives samples per second of wall time and per second of CPU
// time: on a loaded machine, the second is the per-core figure.
func report(b *testing.B, cpuStart time.Duration) {
	n := float64(b.N * benchPerBody)
	b.ReportMetric(n/b.Elapsed().Seconds(), "samples/s")
	if cpu := cpuTime() - cpuStart; cpu > 0 {
		b.ReportMetric(n/cpu.Seconds(), "samples/cpu-s")
	}
}

// Push of 2 000 samples in the text format, without timestamps (the
// receiver's clock advances 15 s a request).
func BenchmarkPushText(b *testing.B) {
	var tick atomic.Int64
	t0 := time.Now().Add(-24 * time.Hour)
	h := benchHandler(b, func() time.Time { return t0.Add(time.Duration(tick.Load()) * 15 * time.Second) })
	var buf bytes.Buffer
	buf.WriteString("# TYPE jobs_done_total counter\n")
	for i := range benchPerBody {
		fmt.Fprintf(&buf, "jobs_done_total{pipeline=\"billing\",step=\"s%d\",shard=\"%d\"} %d\n", i, i%16, i*3)
	}
	body := buf.Bytes()
	header := text()
	cpu := cpuTime()
	b.ResetTimer()
	for range b.N {
		tick.Add(1)
		serve(b, h, header, body)
	}
	report(b, cpu)
}

// Push of 2 000 JSON samples.
func BenchmarkPushJSON(b *testing.B) {
	var tick atomic.Int64
	t0 := time.Now().Add(-24 * time.Hour)
	h := benchHandler(b, func() time.Time { return t0.Add(time.Duration(tick.Load()) * 15 * time.Second) })
	var buf bytes.Buffer
	buf.WriteByte('[')
	for i := range benchPerBody {
		if i > 0 {
			buf.WriteByte(',')
		}
		fmt.Fprintf(&buf, `{"name":"jobs_done_total","labels":{"pipeline":"billing","step":"s%d","shard":"%d"},"value":%d}`, i, i%16, i*3)
	}
	buf.WriteByte(']')
	body := buf.Bytes()
	header := jsonHeader()
	cpu := cpuTime()
	b.ResetTimer()
	for range b.N {
		tick.Add(1)
		serve(b, h, header, body)
	}
	report(b, cpu)
}

// Remote write 2.0: the same samples, one entry per series, label strings
// once in the symbol table.
func BenchmarkRemoteWriteV2(b *testing.B) {
	h := benchHandler(b, time.Now)
	t0 := time.Now().Add(-24 * time.Hour).UnixMilli()
	header := http.Header{"Content-Type": {"application/x-protobuf;proto=io.prometheus.write.v2.Request"}, "Content-Encoding": {"snappy"}}
	body := func(i int) []byte {
		block := i % benchBlocks
		req := writev2.Request{Symbols: []string{"", "__name__", "http_requests_total", "service", "checkout", "method", "GET", "code", "200", "block", fmt.Sprint(block), "instance"}}
		for j := range benchPerBody {
			req.Symbols = append(req.Symbols, fmt.Sprintf("10.0.%d.%d:8080", j/250, j%250))
			req.Timeseries = append(req.Timeseries, writev2.TimeSeries{
				LabelsRefs: []uint32{1, 2, 3, 4, 11, uint32(len(req.Symbols) - 1), 5, 6, 7, 8, 9, 10},
				Samples:    []writev2.Sample{{Timestamp: t0 + int64(i/benchBlocks)*15_000, Value: float64(i + j)}},
			})
		}
		data, err := req.Marshal()
		if err != nil {
			b.Fatal(err)
		}
		return snappy.Encode(nil, data)
	}
	bodies := make([][]byte, b.N)
	for i := range bodies {
		bodies[i] = body(i)
	}
	cpu := cpuTime()
	b.ResetTimer()
	for i := range b.N {
		serve(b, h, header, bodies[i])
	}
	report(b, cpu)
}

// Remote write 1.0 over HTTP on loopback, as a sender does it: the
// client's side (sending, reading the answer) is in the CPU time too.
func BenchmarkRemoteWriteV1HTTP(b *testing.B) {
	srv := httptest.NewServer(benchHandler(b, time.Now))
	b.Cleanup(srv.Close)
	t0 := time.Now().Add(-24 * time.Hour).UnixMilli()
	var req prompb.WriteRequest
	for j := range benchPerBody {
		req.Timeseries = append(req.Timeseries, prompb.TimeSeries{
			Labels:  ts("__name__", "http_requests_total", "block", "", "code", "200", "instance", fmt.Sprintf("10.0.%d.%d:8080", j/250, j%250), "method", "GET", "service", "checkout"),
			Samples: []prompb.Sample{{}},
		})
	}
	bodies := make([][]byte, b.N)
	for i := range bodies {
		for j := range req.Timeseries {
			req.Timeseries[j].Labels[1].Value = fmt.Sprint(i % benchBlocks)
			req.Timeseries[j].Samples[0] = prompb.Sample{Timestamp: t0 + int64(i/benchBlocks)*15_000, Value: float64(i + j)}
		}
		data, err := req.Marshal()
		if err != nil {
			b.Fatal(err)
		}
		bodies[i] = snappy.Encode(nil, data)
	}
	client := srv.Client()
	cpu := cpuTime()
	b.ResetTimer()
	for i := range b.N {
		hreq, err := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/write", bytes.NewReader(bodies[i]))
		if err != nil {
			b.Fatal(err)
		}
		hreq.Header = v1Header()
		resp, err := client.Do(hreq)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			b.Fatalf("HTTP %d", resp.StatusCode)
		}
	}
	report(b, cpu)
}
