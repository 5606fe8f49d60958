// Package promtest holds what the integration tests against a real
// Prometheus share: the server's address, started by
//
//	scripts/prometheus.sh run -- go test ./...
//
// and a remote-write client that loads series into it.
package promtest

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"

	"github.com/immune-project/immune/collector"
)

// URL returns the address of the test Prometheus. The test is skipped
// under -short, and when IMMUNE_TEST_PROMETHEUS_URL is unset, unless
// IMMUNE_REQUIRE_SERVERS=1 (as make test sets it): then it fails.
func URL(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test against a real Prometheus: skipped under -short")
	}
	u := os.Getenv("IMMUNE_TEST_PROMETHEUS_URL")
	if u == "" {
		msg := "IMMUNE_TEST_PROMETHEUS_URL is not set: run scripts/prometheus.sh run -- go test ./..."
		if os.Getenv("IMMUNE_REQUIRE_SERVERS") == "1" {
			t.Fatal(msg + " (IMMUNE_REQUIRE_SERVERS=1: a missing server is a failure)")
		}
		t.Skip(msg)
	}
	return u
}

// RemoteWrite sends the series to Prometheus's remote-write receiver
// (protocol 1.0: snappy-compressed protobuf), all series interleaved in
// time order, in requests of at most 5000 samples: a Prometheus without an
// out-of-order window refuses samples more than an hour older than the
// newest of any series.
func RemoteWrite(ctx context.Context, url string, series []collector.Series) error {
	type ref struct {
		s int
		collector.Sample
	}
	var samples []ref
	labels := make([][]prompb.Label, len(series))
	for i, s := range series {
		for k, v := range s.Labels {
			if v != "" {
				labels[i] = append(labels[i], prompb.Label{Name: k, Value: v})
			}
		}
		slices.SortFunc(labels[i], func(a, b prompb.Label) int { return strings.Compare(a.Name, b.Name) })
		for _, p := range s.Samples {
			samples = append(samples, ref{i, p})
		}
	}
	slices.SortStableFunc(samples, func(a, b ref) int { return cmp.Compare(a.T.UnixMilli(), b.T.UnixMilli()) })
	client := &http.Client{Timeout: time.Minute}
	defer client.CloseIdleConnections()
	const batch = 5000
	for len(samples) > 0 {
		n := min(batch, len(samples))
		var req prompb.WriteRequest
		index := map[int]int{}
		for _, p := range samples[:n] {
			j, ok := index[p.s]
			if !ok {
				j = len(req.Timeseries)
				index[p.s] = j
				req.Timeseries = append(req.Timeseries, prompb.TimeSeries{Labels: labels[p.s]})
			}
			req.Timeseries[j].Samples = append(req.Timeseries[j].Samples, prompb.Sample{Value: p.V, Timestamp: p.T.UnixMilli()})
		}
		samples = samples[n:]
		data, err := req.Marshal()
		if err != nil {
			return err
		}
		hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/api/v1/write", bytes.NewReader(snappy.Encode(nil, data)))
		if err != nil {
			return err
		}
		hreq.Header.Set("Content-Encoding", "snappy")
		hreq.Header.Set("Content-Type", "application/x-protobuf")
		hreq.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
		resp, err := client.Do(hreq)
		if err != nil {
			return fmt.Errorf("remote write: %w", err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("remote write: HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(body))
		}
	}
	return nil
}
