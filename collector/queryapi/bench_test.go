package queryapi_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/immune-project/immune/collector"
	"github.com/immune-project/immune/collector/embedded"
	"github.com/immune-project/immune/collector/queryapi"
)

// A Grafana panel's range query: 100 series of 1 000 points each, answered
// in Prometheus's JSON (through the handler, without the network).
//
//	go test -run XXX -bench . -benchtime 50x -cpu 1 ./collector/queryapi/
func BenchmarkQueryRange(b *testing.B) {
	st, err := embedded.Open(embedded.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	var data []collector.Series
	for s := range 100 {
		sr := collector.Series{Labels: collector.Labels{collector.MetricName: "http_requests_total", "instance": fmt.Sprintf("10.0.0.%d:8080", s), "service": "checkout"}}
		for i := range 1000 {
			sr.Samples = append(sr.Samples, collector.Sample{T: t0.Add(time.Duration(i-999) * 15 * time.Second), V: float64(i*s) + 0.25})
		}
		data = append(data, sr)
	}
	if err := st.Write(context.Background(), data); err != nil {
		b.Fatal(err)
	}
	a, err := queryapi.New(st, queryapi.Options{})
	if err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	a.Register(mux)
	q := url.Values{"query": {"http_requests_total"}, "start": {t0.Add(-999 * 15 * time.Second).Format(time.RFC3339)},
		"end": {t0.Format(time.RFC3339)}, "step": {"15"}}.Encode()
	var size int64
	b.ResetTimer()
	for range b.N {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/api/v1/query_range?"+q, nil))
		if w.Code != 200 {
			b.Fatalf("HTTP %d: %s", w.Code, w.Body)
		}
		size, _ = io.Copy(io.Discard, w.Body)
	}
	b.ReportMetric(float64(b.N*100*1000)/b.Elapsed().Seconds(), "points/s")
	b.ReportMetric(float64(size), "bytes/response")
}
