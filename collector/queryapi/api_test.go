package queryapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"

	"github.com/immune-project/immune/collector"
	"github.com/immune-project/immune/collector/embedded"
	"github.com/immune-project/immune/collector/queryapi"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// data is ten minutes of three series, a sample every 15 s.
func data(prefix string) []collector.Series {
	var out []collector.Series
	for _, l := range []collector.Labels{
		{collector.MetricName: prefix + "requests_total", "service": "checkout", "version": "v1"},
		{collector.MetricName: prefix + "requests_total", "service": "checkout", "version": "v2"},
		{collector.MetricName: prefix + "latency_seconds", "service": "search", "le": "0.5"},
	} {
		s := collector.Series{Labels: l}
		k := map[string]float64{"v1": 1, "v2": 2, "": 3}[l["version"]]
		for i := range 41 {
			v := float64(i) * k
			s.Samples = append(s.Samples, collector.Sample{T: t0.Add(time.Duration(i-40) * 15 * time.Second), V: v})
		}
		out = append(out, s)
	}
	return out
}

type env struct {
	store *embedded.Store
	url   string
	reg   *prometheus.Registry
	api   v1.API
}

func setup(t testing.TB, opts queryapi.Options) *env {
	t.Helper()
	st, err := embedded.Open(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Write(context.Background(), data("")); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	if opts.Now == nil {
		opts.Now = func() time.Time { return t0 }
	}
	a, err := queryapi.New(st, opts)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	a.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	client, err := api.NewClient(api.Config{Address: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	return &env{store: st, url: srv.URL, reg: reg, api: v1.NewAPI(client)}
}

func TestClient(t *testing.T) {
	e := setup(t, queryapi.Options{Revision: "immune-test"})
	ctx := context.Background()

	// Instant query at the API's clock (no time given: the client sends
	// none when ts is zero).
	v, warnings, _, err := e.api.Query(ctx, `requests_total{service="checkout"}`, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	vec, ok := v.(model.Vector)
	if !ok || len(vec) != 2 {
		t.Fatalf("got %v (%T), want 2 samples", v, v)
	}
	slices.SortFunc(vec, func(a, b *model.Sample) int { return strings.Compare(a.Metric.String(), b.Metric.String()) })
	if vec[0].Value != 40 || !vec[1].Timestamp.Time().Equal(t0) || vec[1].Metric["version"] != "v2" {
		t.Errorf("got %v", vec)
	}
	if len(warnings) != 0 {
		t.Errorf("warnings %v", warnings)
	}

	// Range query.
	v, _, _, err = e.api.QueryRange(ctx, `sum by (version) (rate(requests_total[1m]))`, v1.Range{Start: t0.Add(-5 * time.Minute), End: t0, Step: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	m, ok := v.(model.Matrix)
	if !ok || len(m) != 2 || len(m[0].Values) != 6 {
		t.Fatalf("got %v", v)
	}

	// Scalar and string results.
	v, _, _, err = e.api.Query(ctx, `1 + 1`, t0)
	if err != nil || v.Type() != model.ValScalar || v.(*model.Scalar).Value != 2 {
		t.Errorf("scalar: %v %v", v, err)
	}
	// (client_golang does not decode string results.)
	if code, m := get(t, e.url+`/api/v1/query?query="immune"&time=1.5`, nil); code != 200 ||
		m["data"].(map[string]any)["resultType"] != "string" || m["data"].(map[string]any)["result"].([]any)[1] != "immune" || m["data"].(map[string]any)["result"].([]any)[0] != 1.5 {
		t.Errorf("string: HTTP %d %v", code, m)
	}
	// A range selector gives a matrix from an instant query.
	v, _, _, err = e.api.Query(ctx, `latency_seconds[1m]`, t0)
	if err != nil || v.Type() != model.ValMatrix || len(v.(model.Matrix)[0].Values) != 4 {
		t.Errorf("matrix: %v %v", v, err)
	}

	series, _, _, err := e.api.Series(ctx, []string{`requests_total`, `{service="search"}`}, t0.Add(-time.Hour), t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(series) != 3 {
		t.Errorf("series %v", series)
	}
	names, _, _, err := e.api.LabelNames(ctx, nil, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if want := (model.LabelNames{"__name__", "le", "service", "version"}); !slices.Equal(names, want) {
		t.Errorf("label names %v, want %v", names, want)
	}
	names, _, _, err = e.api.LabelNames(ctx, []string{`latency_seconds`}, time.Time{}, time.Time{})
	if err != nil || !slices.Equal(names, model.LabelNames{"__name__", "le", "service"}) {
		t.Errorf("label names of latency_seconds %v %v", names, err)
	}
	values, _, _, err := e.api.LabelValues(ctx, "__name__", nil, time.Time{}, time.Time{})
	if err != nil || !slices.Equal(values, model.LabelValues{"latency_seconds", "requests_total"}) {
		t.Errorf("metric names %v %v", values, err)
	}
	values, _, _, err = e.api.LabelValues(ctx, "version", []string{`{service="checkout"}`, `{service="search"}`}, time.Time{}, time.Time{})
	if err != nil || !slices.Equal(values, model.LabelValues{"v1", "v2"}) {
		t.Errorf("versions %v %v", values, err)
	}
	// Outside the data's time range: nothing, as an empty list.
	values, _, _, err = e.api.LabelValues(ctx, "version", nil, t0.Add(time.Hour), t0.Add(2*time.Hour))
	if err != nil || len(values) != 0 {
		t.Errorf("versions later %v %v", values, err)
	}
	bi, err := e.api.Buildinfo(ctx)
	if err != nil || bi.Version != queryapi.PrometheusVersion || bi.Revision != "immune-test" {
		t.Errorf("buildinfo %+v %v", bi, err)
	}
}

// get answers the raw status and JSON of a GET.
func get(t testing.TB, u string, header http.Header) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
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
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v: %s", u, err, b)
	}
	return resp.StatusCode, m
}

func TestErrors(t *testing.T) {
	e := setup(t, queryapi.Options{})
	tests := []struct {
		name, path string
		code       int
		typ, msg   string
	}{
		{"syntax", "/api/v1/query?query=sum(", 400, "bad_data", `invalid parameter "query"`},
		{"time", "/api/v1/query?query=1&time=yesterday", 400, "bad_data", `invalid parameter "time"`},
		{"timeout", "/api/v1/query?query=1&timeout=soon", 400, "bad_data", `invalid parameter "timeout"`},
		{"limit", "/api/v1/query?query=1&limit=-1", 400, "bad_data", "limit must be non-negative"},
		{"end before start", "/api/v1/query_range?query=1&start=100&end=50&step=1", 400, "bad_data", "end timestamp must not be before start time"},
		{"step", "/api/v1/query_range?query=1&start=0&end=50&step=0", 400, "bad_data", "zero or negative query resolution step"},
		{"resolution", "/api/v1/query_range?query=1&start=0&end=100000&step=1", 400, "bad_data", "exceeded maximum resolution of 11,000 points"},
		{"many to many", "/api/v1/query?query=requests_total+%2B+on(service)+requests_total&time=" + ts(t0), 422, "execution", "many-to-many matching not allowed"},
		{"no match", "/api/v1/series", 400, "bad_data", "no match[] parameter provided"},
		{"empty matcher", "/api/v1/series?match[]=" + url.QueryEscape(`{a=""}`), 400, "bad_data", "at least one non-empty matcher"},
		{"bad matcher", "/api/v1/labels?match[]=" + url.QueryEscape(`{a=`), 400, "bad_data", `invalid parameter "match[]"`},
		{"label name", "/api/v1/label/" + url.PathEscape("a\xff") + "/values", 400, "bad_data", "invalid label name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, m := get(t, e.url+tc.path, nil)
			if code != tc.code || m["status"] != "error" || m["errorType"] != tc.typ || !strings.Contains(m["error"].(string), tc.msg) {
				t.Errorf("HTTP %d %v, want %d %s %q", code, m, tc.code, tc.typ, tc.msg)
			}
		})
	}
	// A closed store is unavailable (503), not a bad query.
	e.store.Close()
	code, m := get(t, e.url+"/api/v1/query?query=1", nil)
	if code != 503 || m["errorType"] != "unavailable" {
		t.Errorf("closed store: HTTP %d %v", code, m)
	}
	if err := testutil.GatherAndCompare(e.reg, strings.NewReader(`
# HELP immune_query_api_requests_total Requests to the Prometheus-compatible query API, by endpoint and HTTP status code.
# TYPE immune_query_api_requests_total counter
immune_query_api_requests_total{code="400",endpoint="label_values"} 1
immune_query_api_requests_total{code="400",endpoint="labels"} 1
immune_query_api_requests_total{code="400",endpoint="query"} 4
immune_query_api_requests_total{code="400",endpoint="query_range"} 3
immune_query_api_requests_total{code="400",endpoint="series"} 2
immune_query_api_requests_total{code="422",endpoint="query"} 1
immune_query_api_requests_total{code="503",endpoint="query"} 1
`), "immune_query_api_requests_total"); err != nil {
		t.Error(err)
	}
}

func ts(t time.Time) string { return url.QueryEscape(t.Format(time.RFC3339)) }

func TestPostForm(t *testing.T) {
	e := setup(t, queryapi.Options{})
	form := url.Values{"query": {"requests_total"}, "time": {ts(t0)}}
	form.Set("time", t0.Format(time.RFC3339))
	resp, err := http.PostForm(e.url+"/api/v1/query", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string
		Data   struct {
			ResultType string
			Result     []json.RawMessage
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || body.Status != "success" || body.Data.ResultType != "vector" || len(body.Data.Result) != 2 {
		t.Errorf("HTTP %d %+v", resp.StatusCode, body)
	}
}

// The limit parameter truncates, with a warning.
func TestLimit(t *testing.T) {
	e := setup(t, queryapi.Options{})
	code, m := get(t, e.url+"/api/v1/query?limit=1&query=requests_total&time="+ts(t0), nil)
	if code != 200 || len(m["data"].(map[string]any)["result"].([]any)) != 1 || !strings.Contains(m["warnings"].([]any)[0].(string), "truncated") {
		t.Errorf("HTTP %d %v", code, m)
	}
	code, m = get(t, e.url+"/api/v1/label/__name__/values?limit=1", nil)
	if code != 200 || len(m["data"].([]any)) != 1 || m["warnings"] == nil {
		t.Errorf("HTTP %d %v", code, m)
	}
}

type bearerTransport string

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+string(b))
	return http.DefaultTransport.RoundTrip(r)
}

func TestAuth(t *testing.T) {
	const secret = "query-s3cret-token"
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	e := setup(t, queryapi.Options{TokenFile: path, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	_, _, _, err := e.api.Query(context.Background(), "1", t0)
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("without the token: %v", err)
	}
	code, m := get(t, e.url+"/api/v1/labels", http.Header{"Authorization": {"Bearer wrong"}})
	if code != 401 || m["errorType"] != "unauthorized" {
		t.Errorf("wrong token: HTTP %d %v", code, m)
	}
	client, err := api.NewClient(api.Config{Address: e.url, RoundTripper: bearerTransport(secret)})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := v1.NewAPI(client).Query(context.Background(), "1", t0); err != nil {
		t.Errorf("with the token: %v", err)
	}
	if strings.Contains(logs.String(), secret) {
		t.Errorf("the token leaks into the log: %s", logs.String())
	}
}

// PrometheusVersion is the release of the Prometheus module go.mod pins.
func TestPrometheusVersion(t *testing.T) {
	mod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(mod), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "github.com/prometheus/prometheus" {
			continue
		}
		// v0.316.0 is Prometheus 3.16.0.
		var minor, patch int
		if _, err := fmt.Sscanf(f[1], "v0.3%d.%d", &minor, &patch); err != nil {
			t.Fatalf("module version %s: %v", f[1], err)
		}
		if want := fmt.Sprintf("3.%d.%d", minor, patch); queryapi.PrometheusVersion != want {
			t.Errorf("PrometheusVersion %s, go.mod has %s (%s)", queryapi.PrometheusVersion, f[1], want)
		}
		return
	}
	t.Error("go.mod does not require github.com/prometheus/prometheus")
}
