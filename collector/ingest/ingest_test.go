package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"

	"github.com/immune-project/immune/collector"
	"github.com/immune-project/immune/collector/embedded"
	"github.com/immune-project/immune/collector/ingest"
)

// now is the receiver's clock in the tests.
var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type env struct {
	store *embedded.Store
	url   string
	reg   *prometheus.Registry
}

func setup(t testing.TB, opts ingest.Options) *env {
	t.Helper()
	st, err := embedded.Open(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Error(err)
		}
	})
	reg := prometheus.NewRegistry()
	if opts.Now == nil {
		opts.Now = func() time.Time { return now }
	}
	opts.Registerer = reg
	r, err := ingest.New(st, opts)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	r.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &env{store: st, url: srv.URL, reg: reg}
}

// post sends body and returns the status and the response body.
func (e *env) post(t testing.TB, path string, header http.Header, body []byte) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func v1Header() http.Header {
	return http.Header{
		"Content-Type":                      {"application/x-protobuf"},
		"Content-Encoding":                  {"snappy"},
		"X-Prometheus-Remote-Write-Version": {"0.1.0"},
	}
}

func v1Body(t testing.TB, req *prompb.WriteRequest) []byte {
	t.Helper()
	data, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return snappy.Encode(nil, data)
}

func ts(kv ...string) []prompb.Label {
	var l []prompb.Label
	for i := 0; i+1 < len(kv); i += 2 {
		l = append(l, prompb.Label{Name: kv[i], Value: kv[i+1]})
	}
	return l
}

func ms(t time.Time) int64 { return t.UnixMilli() }

// values returns the stored samples of the series selected by sel, as
// "labels value@time" lines.
func (e *env) values(t testing.TB, sel string) map[string][]collector.Sample {
	t.Helper()
	m, _, err := e.store.QueryRange(context.Background(), sel, now.Add(-2*time.Hour), now.Add(time.Hour), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]collector.Sample{}
	for _, s := range m {
		// A range query repeats a sample at every step within the
		// lookback: keep the distinct ones.
		var distinct []collector.Sample
		for _, p := range s.Samples {
			if n := len(distinct); n == 0 || distinct[n-1].V != p.V {
				distinct = append(distinct, p)
			}
		}
		out[s.Labels.String()] = distinct
	}
	return out
}

// count is how many series the store holds.
func (e *env) count(t testing.TB) int {
	t.Helper()
	var n int
	m, _, err := e.store.QueryRange(context.Background(), `{__name__=~".+"}`, now.Add(-24*time.Hour), now.Add(time.Hour), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	n = len(m)
	return n
}

func TestRemoteWriteV1(t *testing.T) {
	e := setup(t, ingest.Options{})
	req := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		{Labels: ts("__name__", "http_requests_total", "job", "api", "instance", "a:80"), Samples: []prompb.Sample{
			{Value: 1, Timestamp: ms(now.Add(-2 * time.Minute))}, {Value: 3, Timestamp: ms(now.Add(-time.Minute))}}},
		// As Prometheus sends it: one entry per sample, labels unsorted,
		// an empty label (dropped).
		{Labels: ts("job", "api", "__name__", "up", "empty", ""), Samples: []prompb.Sample{{Value: 1, Timestamp: ms(now.Add(-time.Minute))}}},
		{Labels: ts("job", "api", "__name__", "up"), Samples: []prompb.Sample{{Value: 0, Timestamp: ms(now)}}},
	}}
	code, body, h := e.post(t, "/api/v1/write", v1Header(), v1Body(t, req))
	if code != http.StatusNoContent {
		t.Fatalf("HTTP %d: %s", code, body)
	}
	if h.Get("X-Prometheus-Remote-Write-Samples-Written") != "" {
		t.Error("a 1.0 answer has 2.0 headers")
	}
	got := e.values(t, `{job="api"}`)
	want := map[string][]float64{
		`http_requests_total{instance="a:80", job="api"}`: {1, 3},
		`up{job="api"}`: {1, 0},
	}
	if len(got) != len(want) {
		t.Fatalf("got series %v, want %v", got, want)
	}
	for k, w := range want {
		g := got[k]
		if len(g) != len(w) {
			t.Fatalf("%s: got %v, want %v", k, g, w)
		}
		for i := range w {
			if g[i].V != w[i] {
				t.Errorf("%s: got %v, want %v", k, g, w)
			}
		}
	}
	if err := testutil.GatherAndCompare(e.reg, strings.NewReader(`
# HELP immune_ingested_samples_total Samples stored from remote write and push, by protocol.
# TYPE immune_ingested_samples_total counter
immune_ingested_samples_total{protocol="push_json"} 0
immune_ingested_samples_total{protocol="push_openmetrics"} 0
immune_ingested_samples_total{protocol="push_protobuf"} 0
immune_ingested_samples_total{protocol="push_text"} 0
immune_ingested_samples_total{protocol="remote_write_1"} 4
immune_ingested_samples_total{protocol="remote_write_2"} 0
# HELP immune_ingest_requests_total Write requests (remote write and push) by protocol and HTTP status code.
# TYPE immune_ingest_requests_total counter
immune_ingest_requests_total{code="204",protocol="remote_write_1"} 1
`), "immune_ingested_samples_total", "immune_ingest_requests_total"); err != nil {
		t.Error(err)
	}
}

func TestRemoteWriteV2(t *testing.T) {
	e := setup(t, ingest.Options{})
	req := &writev2.Request{
		Symbols: []string{"", "__name__", "queue_length", "job", "worker", "shard", "1"},
		Timeseries: []writev2.TimeSeries{
			{LabelsRefs: []uint32{1, 2, 3, 4, 5, 6}, Samples: []writev2.Sample{
				{Value: 7, Timestamp: ms(now.Add(-time.Minute))}, {Value: 9, Timestamp: ms(now)}}},
		},
	}
	data, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{"Content-Type": {"application/x-protobuf;proto=io.prometheus.write.v2.Request"}, "Content-Encoding": {"snappy"}}
	code, body, rh := e.post(t, "/api/v1/write", h, snappy.Encode(nil, data))
	if code != http.StatusNoContent {
		t.Fatalf("HTTP %d: %s", code, body)
	}
	if got := rh.Get("X-Prometheus-Remote-Write-Samples-Written"); got != "2" {
		t.Errorf("samples written header %q, want 2", got)
	}
	got := e.values(t, `queue_length`)
	if s := got[`queue_length{job="worker", shard="1"}`]; len(s) != 2 || s[0].V != 7 || s[1].V != 9 {
		t.Errorf("got %v", got)
	}

	// A reference past the symbols: 400, and the header says nothing
	// was written.
	req.Timeseries[0].LabelsRefs = []uint32{1, 2, 3, 40}
	data, _ = req.Marshal()
	code, body, rh = e.post(t, "/api/v1/write", h, snappy.Encode(nil, data))
	if code != http.StatusBadRequest || rh.Get("X-Prometheus-Remote-Write-Samples-Written") != "0" {
		t.Errorf("HTTP %d (written %s): %s", code, rh.Get("X-Prometheus-Remote-Write-Samples-Written"), body)
	}
}

// Every refused request stores nothing, answers 4xx (never retried) with
// the reason, and counts its samples under that reason.
func TestRemoteWriteRefused(t *testing.T) {
	good := func() *prompb.WriteRequest {
		return &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
			{Labels: ts("__name__", "ok", "i", "1"), Samples: []prompb.Sample{{Value: 1, Timestamp: ms(now)}}},
			{Labels: ts("__name__", "ok", "i", "2"), Samples: []prompb.Sample{{Value: 2, Timestamp: ms(now)}}},
		}}
	}
	with := func(f func(r *prompb.WriteRequest)) *prompb.WriteRequest { r := good(); f(r); return r }
	limits := ingest.Limits{MaxSamplesPerRequest: 3, MaxSeriesPerRequest: 3, MaxLabelsPerSeries: 3, MaxLabelNameLength: 10, MaxLabelValueLength: 20, MaxBodyBytes: 1000}
	tests := []struct {
		name    string
		header  func(h http.Header)
		body    func(t testing.TB) []byte
		code    int
		reason  string
		samples int
		msg     string
	}{
		{name: "bad snappy", body: func(testing.TB) []byte { return []byte("not snappy at all") },
			code: 400, reason: "parse_error", msg: "snappy"},
		{name: "bad protobuf", body: func(testing.TB) []byte { return snappy.Encode(nil, []byte{0xff, 0xff, 0xff}) },
			code: 400, reason: "parse_error", msg: "protobuf"},
		{name: "content type", header: func(h http.Header) { h.Set("Content-Type", "application/json") },
			code: 415, reason: "unsupported_media_type", msg: "application/x-protobuf"},
		{name: "proto message", header: func(h http.Header) { h.Set("Content-Type", "application/x-protobuf;proto=foo.Bar") },
			code: 415, reason: "unsupported_media_type", msg: "foo.Bar"},
		{name: "encoding", header: func(h http.Header) { h.Set("Content-Encoding", "gzip") },
			code: 415, reason: "unsupported_media_type", msg: "gzip"},
		{name: "body size", body: func(t testing.TB) []byte {
			return v1Body(t, with(func(r *prompb.WriteRequest) { r.Timeseries[0].Labels[1].Value = strings.Repeat("x", 2000) }))
		}, code: 413, reason: "body_too_large", msg: "body too large"},
		{name: "too many samples", body: func(t testing.TB) []byte {
			return v1Body(t, with(func(r *prompb.WriteRequest) {
				r.Timeseries[0].Samples = append(r.Timeseries[0].Samples, prompb.Sample{Value: 1, Timestamp: ms(now) - 1000}, prompb.Sample{Value: 1, Timestamp: ms(now) - 2000})
			}))
		}, code: 400, reason: "too_many_samples", samples: 4, msg: "too many samples in request: 4, at most 3"},
		{name: "too many series", body: func(t testing.TB) []byte {
			return v1Body(t, with(func(r *prompb.WriteRequest) {
				r.Timeseries = append(r.Timeseries, prompb.TimeSeries{Labels: ts("__name__", "x")}, prompb.TimeSeries{Labels: ts("__name__", "y")})
			}))
		}, code: 400, reason: "too_many_series", samples: 2, msg: "too many series in request: 4, at most 3"},
		{name: "too many labels", body: func(t testing.TB) []byte {
			return v1Body(t, with(func(r *prompb.WriteRequest) {
				r.Timeseries[1].Labels = ts("__name__", "ok", "a", "1", "b", "2", "c", "3")
			}))
		}, code: 400, reason: "too_many_labels", samples: 2, msg: `series 1: ok{a="1", b="2", c="3"}: too many labels: 4, at most 3`},
		{name: "label name length", body: func(t testing.TB) []byte {
			return v1Body(t, with(func(r *prompb.WriteRequest) { r.Timeseries[1].Labels[1].Name = "a_very_long_name" }))
		}, code: 400, reason: "label_name_too_long", samples: 2, msg: "label name too long: 16 bytes, at most 10"},
		{name: "label value length", body: func(t testing.TB) []byte {
			return v1Body(t, with(func(r *prompb.WriteRequest) { r.Timeseries[0].Labels[1].Value = strings.Repeat("v", 21) }))
		}, code: 400, reason: "label_value_too_long", samples: 2, msg: "label i has 21 bytes, at most 20"},
		{name: "no metric name", body: func(t testing.TB) []byte {
			return v1Body(t, with(func(r *prompb.WriteRequest) { r.Timeseries[1].Labels = ts("i", "3") }))
		}, code: 400, reason: "invalid_labels", samples: 2, msg: "no metric name"},
		{name: "label twice", body: func(t testing.TB) []byte {
			return v1Body(t, with(func(r *prompb.WriteRequest) { r.Timeseries[1].Labels = ts("__name__", "ok", "i", "3", "i", "4") }))
		}, code: 400, reason: "invalid_labels", samples: 2, msg: "label i twice"},
		{name: "invalid UTF-8", body: func(t testing.TB) []byte {
			return v1Body(t, with(func(r *prompb.WriteRequest) { r.Timeseries[1].Labels[1].Value = "\xff" }))
		}, code: 400, reason: "invalid_labels", samples: 2, msg: "not valid UTF-8"},
		{name: "future", body: func(t testing.TB) []byte {
			return v1Body(t, with(func(r *prompb.WriteRequest) { r.Timeseries[1].Samples[0].Timestamp = ms(now.Add(11 * time.Minute)) }))
		}, code: 400, reason: "out_of_bounds", samples: 2, msg: "timestamp too far in the future"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t, ingest.Options{Limits: limits})
			h := v1Header()
			if tc.header != nil {
				tc.header(h)
			}
			body := v1Body(t, good())
			if tc.body != nil {
				body = tc.body(t)
			}
			code, resp, _ := e.post(t, "/api/v1/write", h, body)
			if code != tc.code {
				t.Fatalf("HTTP %d, want %d: %s", code, tc.code, resp)
			}
			var eb struct{ Status, Error string }
			if err := json.Unmarshal([]byte(resp), &eb); err != nil || eb.Status != "error" {
				t.Fatalf("body %q: want a JSON error (%v)", resp, err)
			}
			if !strings.Contains(eb.Error, tc.msg) {
				t.Errorf("error %q does not say %q", eb.Error, tc.msg)
			}
			if n := e.count(t); n != 0 {
				t.Errorf("%d series stored, want none", n)
			}
			proto := "remote_write_1"
			if tc.code == 415 && tc.header != nil && !strings.Contains(tc.name, "encoding") {
				proto = "remote_write"
			}
			if got := testutil.ToFloat64(counter(t, e.reg, "immune_rejected_samples_total", map[string]string{"protocol": proto, "reason": tc.reason})); got != float64(tc.samples) {
				t.Errorf("rejected samples %v, want %d", got, tc.samples)
			}
		})
	}
}

// counter finds a counter of the registry by name and labels (0 when
// absent).
func counter(t testing.TB, g prometheus.Gatherer, name string, lbls map[string]string) prometheus.Collector {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(lbls) {
				continue
			}
			for _, l := range m.GetLabel() {
				if lbls[l.GetName()] != l.GetValue() {
					continue next
				}
			}
			return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "x", Help: "x"}, func() float64 { return m.GetCounter().GetValue() })
		}
	}
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "x", Help: "x"}, func() float64 { return 0 })
}

// A sample at a stored time with another value is refused with 400, and
// the whole request with it.
func TestRemoteWriteDuplicateRefused(t *testing.T) {
	e := setup(t, ingest.Options{})
	first := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		{Labels: ts("__name__", "m"), Samples: []prompb.Sample{{Value: 1, Timestamp: ms(now)}}}}}
	if code, body, _ := e.post(t, "/api/v1/write", v1Header(), v1Body(t, first)); code != 204 {
		t.Fatalf("HTTP %d: %s", code, body)
	}
	// Same sample again: accepted (a retry of a request that did arrive).
	if code, body, _ := e.post(t, "/api/v1/write", v1Header(), v1Body(t, first)); code != 204 {
		t.Fatalf("resend: HTTP %d: %s", code, body)
	}
	second := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		{Labels: ts("__name__", "other"), Samples: []prompb.Sample{{Value: 5, Timestamp: ms(now)}}},
		{Labels: ts("__name__", "m"), Samples: []prompb.Sample{{Value: 2, Timestamp: ms(now)}}}}}
	code, body, _ := e.post(t, "/api/v1/write", v1Header(), v1Body(t, second))
	if code != 400 || !strings.Contains(body, "duplicate sample") {
		t.Fatalf("HTTP %d: %s", code, body)
	}
	if n := e.count(t); n != 1 {
		t.Errorf("%d series stored, want 1 (the request is all or nothing)", n)
	}
	if got := testutil.ToFloat64(counter(t, e.reg, "immune_rejected_samples_total", map[string]string{"protocol": "remote_write_1", "reason": "duplicate_timestamp"})); got != 2 {
		t.Errorf("rejected %v, want 2", got)
	}
}

// A closed store answers 503: a retry (after a restart) can succeed.
func TestRemoteWriteStoreClosed(t *testing.T) {
	e := setup(t, ingest.Options{})
	if err := e.store.Close(); err != nil {
		t.Fatal(err)
	}
	req := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{Labels: ts("__name__", "m"), Samples: []prompb.Sample{{Value: 1, Timestamp: ms(now)}}}}}
	if code, body, _ := e.post(t, "/api/v1/write", v1Header(), v1Body(t, req)); code != 503 {
		t.Fatalf("HTTP %d: %s", code, body)
	}
}

func TestConcurrentWrites(t *testing.T) {
	e := setup(t, ingest.Options{})
	const writers, requests = 8, 20
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range requests {
				req := &prompb.WriteRequest{}
				for s := range 10 {
					req.Timeseries = append(req.Timeseries, prompb.TimeSeries{
						Labels:  ts("__name__", "c", "w", string(rune('a'+w)), "s", string(rune('a'+s))),
						Samples: []prompb.Sample{{Value: float64(i), Timestamp: ms(now.Add(time.Duration(i-requests) * time.Second))}},
					})
				}
				if code, body, _ := e.post(t, "/api/v1/write", v1Header(), v1Body(t, req)); code != 204 {
					t.Errorf("HTTP %d: %s", code, body)
				}
			}
		})
	}
	wg.Wait()
	v, _, err := e.store.Query(context.Background(), `count(count_over_time(c[1h]) == 20)`, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(v) != 1 || v[0].Sample.V != writers*10 {
		t.Errorf("got %v, want %d series of 20 samples", v, writers*10)
	}
}

func writeToken(t testing.TB, token string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Within one remote-write request, a second value of a series at one
// time is the store's business, as in Prometheus: the first is kept.
func TestRemoteWriteDuplicateWithinRequest(t *testing.T) {
	e := setup(t, ingest.Options{})
	req := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		{Labels: ts("__name__", "m"), Samples: []prompb.Sample{{Value: 1, Timestamp: ms(now)}}},
		{Labels: ts("__name__", "m"), Samples: []prompb.Sample{{Value: 2, Timestamp: ms(now)}}}}}
	if code, body, _ := e.post(t, "/api/v1/write", v1Header(), v1Body(t, req)); code != 204 {
		t.Fatalf("HTTP %d: %s", code, body)
	}
	v, _, err := e.store.Query(context.Background(), "m", now)
	if err != nil {
		t.Fatal(err)
	}
	if len(v) != 1 || v[0].Sample.V != 1 {
		t.Errorf("got %v, want the first value, 1", v)
	}
}

// client_golang's remote-write client (what Prometheus 3 and other
// senders build on) speaks 2.0 to the receiver and reads its statistics.
func TestRemoteWriteV2Client(t *testing.T) {
	e := setup(t, ingest.Options{})
	client, err := remoteapi.NewAPI(e.url, remoteapi.WithAPIPath("/api/v1/write"), remoteapi.WithAPINoRetryOnRateLimit())
	if err != nil {
		t.Fatal(err)
	}
	req := &writev2.Request{
		Symbols:    []string{"", "__name__", "jobs", "kind", "x"},
		Timeseries: []writev2.TimeSeries{{LabelsRefs: []uint32{1, 2, 3, 4}, Samples: []writev2.Sample{{Value: 3, Timestamp: ms(now)}}}},
	}
	stats, err := client.Write(context.Background(), remoteapi.WriteV2MessageType, req)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Samples != 1 {
		t.Errorf("stats %+v", stats)
	}
	e.want(t, "jobs", map[string][]float64{`jobs{kind="x"}`: {3}})
}
