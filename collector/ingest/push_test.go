package ingest_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/immune-project/immune/collector/ingest"
)

func text() http.Header { return http.Header{"Content-Type": {"text/plain; version=0.0.4"}} }

func jsonHeader() http.Header { return http.Header{"Content-Type": {"application/json"}} }

// want checks the stored samples: series → values in time order.
func (e *env) want(t *testing.T, sel string, want map[string][]float64) {
	t.Helper()
	got := e.values(t, sel)
	if len(got) != len(want) {
		t.Errorf("%s: got %d series %v, want %d: %v", sel, len(got), got, len(want), want)
	}
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("%s: no series %s (have %v)", sel, k, got)
			continue
		}
		if len(g) != len(w) {
			t.Errorf("%s: got %v, want %v", k, g, w)
			continue
		}
		for i := range w {
			if g[i].V != w[i] {
				t.Errorf("%s: got %v, want %v", k, g, w)
				break
			}
		}
	}
}

func TestPushText(t *testing.T) {
	e := setup(t, ingest.Options{})
	body := `# HELP batch_rows_total Rows done.
# TYPE batch_rows_total counter
batch_rows_total{job="nightly",table="users"} 1200
batch_rows_total{job="nightly",table="orders"} 300 ` + itoa(ms(now.Add(-time.Minute))) + `
# TYPE batch_duration_seconds summary
batch_duration_seconds{job="nightly",quantile="0.5"} 2
batch_duration_seconds{job="nightly",quantile="0.99"} 9
batch_duration_seconds_sum{job="nightly"} 40
batch_duration_seconds_count{job="nightly"} 10
# TYPE batch_size histogram
batch_size_bucket{job="nightly",le="1"} 1
batch_size_bucket{job="nightly",le="10"} 3
batch_size_sum{job="nightly"} 15
batch_size_count{job="nightly"} 4
last_run_ok 1
`
	code, resp, _ := e.post(t, "/api/v1/push", text(), []byte(body))
	if code != http.StatusNoContent {
		t.Fatalf("HTTP %d: %s", code, resp)
	}
	e.want(t, `{job="nightly"}`, map[string][]float64{
		`batch_rows_total{job="nightly", table="users"}`:         {1200},
		`batch_rows_total{job="nightly", table="orders"}`:        {300},
		`batch_duration_seconds{job="nightly", quantile="0.5"}`:  {2},
		`batch_duration_seconds{job="nightly", quantile="0.99"}`: {9},
		`batch_duration_seconds_sum{job="nightly"}`:              {40},
		`batch_duration_seconds_count{job="nightly"}`:            {10},
		`batch_size_bucket{job="nightly", le="1.0"}`:             {1},
		`batch_size_bucket{job="nightly", le="10.0"}`:            {3},
		`batch_size_bucket{job="nightly", le="+Inf"}`:            {4},
		`batch_size_sum{job="nightly"}`:                          {15},
		`batch_size_count{job="nightly"}`:                        {4},
	})
	// Without a timestamp, a sample is at the receiver's clock; with
	// one, at its own.
	for sel, at := range map[string]time.Time{`batch_rows_total{table="users"}`: now, `batch_rows_total{table="orders"}`: now.Add(-time.Minute)} {
		v, _, err := e.store.Query(t.Context(), "timestamp("+sel+")", now)
		if err != nil {
			t.Fatal(err)
		}
		if len(v) != 1 || v[0].Sample.V != float64(at.Unix()) {
			t.Errorf("%s: timestamp %v, want %v", sel, v, at.Unix())
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestPushOpenMetricsAndProtobuf(t *testing.T) {
	e := setup(t, ingest.Options{})
	om := "# TYPE jobs counter\njobs_total{kind=\"a\"} 3\n# EOF\n"
	code, resp, _ := e.post(t, "/api/v1/push", http.Header{"Content-Type": {"application/openmetrics-text; version=1.0.0; charset=utf-8"}}, []byte(om))
	if code != 204 {
		t.Fatalf("OpenMetrics: HTTP %d: %s", code, resp)
	}
	// The delimited protobuf a Pushgateway client sends.
	reg := prometheus.NewRegistry()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "queue_depth", Help: "x"}, []string{"queue"})
	g.WithLabelValues("mail").Set(17)
	reg.MustRegister(g)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeProtoDelim))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	code, resp, _ = e.post(t, "/api/v1/push", http.Header{"Content-Type": {string(expfmt.NewFormat(expfmt.TypeProtoDelim))}}, buf.Bytes())
	if code != 204 {
		t.Fatalf("protobuf: HTTP %d: %s", code, resp)
	}
	e.want(t, `{__name__=~"jobs_total|queue_depth"}`, map[string][]float64{
		`jobs_total{kind="a"}`:      {3},
		`queue_depth{queue="mail"}`: {17},
	})
}

// An OpenMetrics push is parsed as a scrape parses it: timestamps in
// seconds, exemplars and _created series left out, and a thousand series
// in a few megabytes (expfmt's OpenMetrics decoder took over 300 MB).
func TestPushOpenMetricsParser(t *testing.T) {
	e := setup(t, ingest.Options{})
	var sb strings.Builder
	sb.WriteString("# TYPE om_jobs counter\n")
	sb.WriteString("om_jobs_total{kind=\"old\"} 5 " + strconv.FormatFloat(float64(ms(now.Add(-time.Minute)))/1000, 'f', 3, 64) + " # {trace=\"x\"} 1\n")
	sb.WriteString("om_jobs_created{kind=\"old\"} 1700000000\n")
	sb.WriteString("# TYPE om_wide gauge\n")
	for i := range 1000 {
		sb.WriteString("om_wide{i=\"" + strconv.Itoa(i) + "\"} " + strconv.Itoa(i) + "\n")
	}
	sb.WriteString("# EOF\n")
	h := http.Header{"Content-Type": {"application/openmetrics-text; version=1.0.0"}}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	code, resp, _ := e.post(t, "/api/v1/push", h, []byte(sb.String()))
	runtime.ReadMemStats(&after)
	if code != http.StatusNoContent {
		t.Fatalf("HTTP %d: %s", code, resp)
	}
	if mb := (after.TotalAlloc - before.TotalAlloc) >> 20; mb > 64 {
		t.Errorf("a 1000-series OpenMetrics push allocated %d MB", mb)
	}
	e.want(t, `{__name__=~"om_jobs.*"}`, map[string][]float64{`om_jobs_total{kind="old"}`: {5}})
	v, _, err := e.store.Query(t.Context(), `timestamp(om_jobs_total)`, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(v) != 1 || v[0].Sample.V != float64(now.Add(-time.Minute).Unix()) {
		t.Errorf("timestamp %v, want %v (OpenMetrics timestamps are seconds)", v, now.Add(-time.Minute).Unix())
	}
	if got := len(e.values(t, "om_wide")); got != 1000 {
		t.Errorf("%d om_wide series, want 1000", got)
	}
	// OpenMetrics ends with # EOF.
	if code, resp, _ := e.post(t, "/api/v1/push", h, []byte("om_cut 1\n")); code != http.StatusBadRequest {
		t.Errorf("without # EOF: HTTP %d: %s, want 400", code, resp)
	}
}

// curl --data-binary sends application/x-www-form-urlencoded: the text
// format, as a Pushgateway takes it.
func TestPushCurlDefault(t *testing.T) {
	e := setup(t, ingest.Options{})
	h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	if code, resp, _ := e.post(t, "/api/v1/push", h, []byte("curled{a=\"b\"} 5\n")); code != 204 {
		t.Fatalf("HTTP %d: %s", code, resp)
	}
	e.want(t, "curled", map[string][]float64{`curled{a="b"}`: {5}})
}

func TestPushGzip(t *testing.T) {
	e := setup(t, ingest.Options{})
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write([]byte("zipped 5\n"))
	zw.Close()
	h := text()
	h.Set("Content-Encoding", "gzip")
	if code, resp, _ := e.post(t, "/api/v1/push", h, buf.Bytes()); code != 204 {
		t.Fatalf("HTTP %d: %s", code, resp)
	}
	e.want(t, "zipped", map[string][]float64{"zipped{}": {5}})
}

func TestPushJSON(t *testing.T) {
	e := setup(t, ingest.Options{})
	body := `[
  {"name": "orders_total", "labels": {"shop": "eu"}, "value": 10},
  {"name": "orders_total", "labels": {"shop": "eu"}, "value": 12, "timestamp": ` + itoa(ms(now.Add(-time.Minute))) + `},
  {"name": "orders_total", "labels": {"shop": "us"}, "value": "7.5", "timestamp": "` + now.Add(-2*time.Minute).Format(time.RFC3339) + `"},
  {"labels": {"__name__": "ratio", "shop": "us"}, "value": "NaN"},
  {"name": "ratio", "labels": {"shop": "eu"}, "value": "+Inf"}
]`
	code, resp, _ := e.post(t, "/api/v1/push", jsonHeader(), []byte(body))
	if code != 204 {
		t.Fatalf("HTTP %d: %s", code, resp)
	}
	// Samples came out of time order: they are sorted per series.
	e.want(t, "orders_total", map[string][]float64{
		`orders_total{shop="eu"}`: {12, 10},
		`orders_total{shop="us"}`: {7.5},
	})
	v, _, err := e.store.Query(t.Context(), `ratio`, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(v) != 2 {
		t.Fatalf("ratio: %v", v)
	}
}

// A body that does not parse, or breaks a rule anywhere, gets 400 with
// the reason and its line, and nothing of it is stored.
func TestPushRefused(t *testing.T) {
	tests := []struct {
		name, ctype, body, msg, reason string
		code                           int
	}{
		{"text syntax", "text/plain", "good 1\nbad{ 2\n", "line 2", "parse_error", 400},
		{"text value", "text/plain", "good 1\nbad x\n", "text format parsing error in line 2", "parse_error", 400},
		{"text two types", "text/plain", "# TYPE a counter\n# TYPE a gauge\na 1\n", "line 2", "parse_error", 400},
		{"text duplicate", "text/plain", "dup 1 1000\ndup 2 1000\n", "two values for one series at one timestamp", "duplicate_timestamp", 400},
		{"text too long", "text/plain", "good 1\nbad{l=\"" + strings.Repeat("v", 30) + "\"} 2\n", "label value too long", "label_value_too_long", 400},
		{"text future", "text/plain", "good 1\nlater 1 " + itoa(ms(now.Add(time.Hour))) + "\n", "too far in the future", "out_of_bounds", 400},
		{"json syntax", "application/json", "[\n{\"name\": \"a\", \"value\": 1},\n{\"name\": \"b\" \"value\": 2}\n]", "line 3", "parse_error", 400},
		{"json not array", "application/json", `{"name": "a", "value": 1}`, "want a JSON array", "parse_error", 400},
		{"json no value", "application/json", "[\n{\"name\": \"a\", \"value\": 1},\n{\"name\": \"b\"}]", "sample 2 (line 3): cannot parse body: no value", "parse_error", 400},
		{"json bad value", "application/json", `[{"name": "a", "value": "lots"}]`, `value "lots" is not a number`, "parse_error", 400},
		{"json bad time", "application/json", `[{"name": "a", "value": 1, "timestamp": "yesterday"}]`, "not RFC 3339", "parse_error", 400},
		{"json fractional ms", "application/json", `[{"name": "a", "value": 1, "timestamp": 1.5}]`, "whole number of milliseconds", "parse_error", 400},
		{"json unknown field", "application/json", "[\n{\"name\": \"a\", \"value\": 1, \"help\": \"x\"}]", "unknown field", "parse_error", 400},
		{"json no name", "application/json", "[\n{\"labels\": {\"a\": \"b\"}, \"value\": 1}]", "sample 1 (line 2): invalid labels: no name", "invalid_labels", 400},
		{"json names differ", "application/json", `[{"name": "a", "labels": {"__name__": "b"}, "value": 1}]`, "differ", "invalid_labels", 400},
		{"json bad label", "application/json", `[{"name": "a", "labels": {"": "b"}, "value": 1}]`, "invalid labels", "invalid_labels", 400},
		{"json trailing", "application/json", `[{"name": "a", "value": 1}] [`, "data after the array", "parse_error", 400},
		{"json truncated", "application/json", `[{"name": "a", "value": 1}`, "unexpected end", "parse_error", 400},
		{"json duplicate", "application/json", `[{"name": "a", "value": 1, "timestamp": 5}, {"name": "a", "value": 2, "timestamp": 5}]`, "two values", "duplicate_timestamp", 400},
		{"media type", "application/xml", "<a/>", "unsupported media type", "unsupported_media_type", 415},
		{"text version", "text/plain; version=9", "a 1", "version", "unsupported_media_type", 415},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t, ingest.Options{Limits: ingest.Limits{MaxLabelValueLength: 20}})
			code, resp, _ := e.post(t, "/api/v1/push", http.Header{"Content-Type": {tc.ctype}}, []byte(tc.body))
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
			mfs, _ := e.reg.Gather()
			found := false
			for _, mf := range mfs {
				if mf.GetName() != "immune_ingest_requests_total" {
					continue
				}
				for _, m := range mf.GetMetric() {
					for _, l := range m.GetLabel() {
						if l.GetName() == "code" && l.GetValue() == itoa(int64(tc.code)) {
							found = true
						}
					}
				}
			}
			if !found {
				t.Errorf("no request counted with code %d", tc.code)
			}
		})
	}
}

func TestPushLimits(t *testing.T) {
	e := setup(t, ingest.Options{Limits: ingest.Limits{MaxSeriesPerRequest: 2, MaxSamplesPerRequest: 3}})
	// Three samples of two series: within both limits.
	if code, resp, _ := e.post(t, "/api/v1/push", jsonHeader(), []byte(`[{"name":"a","value":1,"timestamp":1},{"name":"a","value":2,"timestamp":2},{"name":"b","value":1}]`)); code != 204 {
		t.Fatalf("HTTP %d: %s", code, resp)
	}
	code, resp, _ := e.post(t, "/api/v1/push", text(), []byte("a 1\nb 1\nc 1\n"))
	if code != 400 || !strings.Contains(resp, "too many series in request: 3, at most 2") {
		t.Errorf("HTTP %d: %s", code, resp)
	}
	code, resp, _ = e.post(t, "/api/v1/push", jsonHeader(), []byte(`[{"name":"a","value":1,"timestamp":1},{"name":"a","value":2,"timestamp":2},{"name":"a","value":3,"timestamp":3},{"name":"a","value":4,"timestamp":4}]`))
	if code != 400 || !strings.Contains(resp, "too many samples in request: 4, at most 3") {
		t.Errorf("HTTP %d: %s", code, resp)
	}
	if err := testutil.GatherAndCompare(e.reg, strings.NewReader(`
# HELP immune_rejected_samples_total Samples of refused write requests, by protocol and the reason the request was refused (a request is stored whole or not at all).
# TYPE immune_rejected_samples_total counter
immune_rejected_samples_total{protocol="push_json",reason="too_many_samples"} 4
immune_rejected_samples_total{protocol="push_text",reason="too_many_series"} 3
`), "immune_rejected_samples_total"); err != nil {
		t.Error(err)
	}
}
