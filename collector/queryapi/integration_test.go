package queryapi_test

// Against a real Prometheus (Debian's 2.42), started by
//
//	scripts/prometheus.sh run -- go test ./collector/queryapi/
//
// Skipped under -short and without IMMUNE_TEST_PROMETHEUS_URL (unless
// IMMUNE_REQUIRE_SERVERS=1: then it fails).

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/immune-project/immune/collector/promtest"
	"github.com/immune-project/immune/collector/queryapi"
)

// The same data in Prometheus and in immune: every endpoint answers the
// same data, in the same JSON.
func TestSameAnswersAsPrometheus(t *testing.T) {
	prom := promtest.URL(t)
	b := make([]byte, 4)
	rand.Read(b)
	prefix := "qa_" + hex.EncodeToString(b) + "_"
	series := data(prefix)
	if err := promtest.RemoteWrite(context.Background(), prom, series); err != nil {
		t.Fatal(err)
	}
	e := setup(t, queryapi.Options{})
	if err := e.store.Write(context.Background(), series); err != nil {
		t.Fatal(err)
	}
	at := url.QueryEscape(t0.Format(time.RFC3339))
	start := url.QueryEscape(t0.Add(-10 * time.Minute).Format(time.RFC3339))
	sel := url.QueryEscape(`{__name__=~"` + prefix + `.*"}`)
	req := prefix + "requests_total"
	queries := []string{
		"/api/v1/query?time=" + at + "&query=" + url.QueryEscape(req),
		"/api/v1/query?time=" + at + "&query=" + url.QueryEscape("sum by (version) (rate("+req+"[2m]))"),
		// Not [1m]: a sample exactly at the range's start is in it for
		// Prometheus 2 (the test server), out of it for Prometheus 3
		// (the embedded engine: left-open ranges).
		"/api/v1/query?time=" + at + "&query=" + url.QueryEscape(req+"[50s]"),
		"/api/v1/query?time=" + at + "&query=" + url.QueryEscape("scalar(sum("+req+")) / 3"),
		"/api/v1/query?time=" + at + "&query=" + url.QueryEscape(`histogram_quantile(0.9, `+prefix+`latency_seconds)`),
		"/api/v1/query?time=" + at + "&query=" + url.QueryEscape(`"text"`),
		"/api/v1/query_range?start=" + start + "&end=" + at + "&step=37&query=" + url.QueryEscape("increase("+req+"[1m])"),
		"/api/v1/query_range?start=" + start + "&end=" + at + "&step=60&query=" + url.QueryEscape("1.5"),
		"/api/v1/query_range?start=" + start + "&end=" + at + "&step=15&query=" + url.QueryEscape(req+` > 1e21 or `+req+` * 1e-9`),
		"/api/v1/series?match[]=" + sel + "&start=" + start + "&end=" + at,
		"/api/v1/series?match[]=" + url.QueryEscape(req) + "&match[]=" + url.QueryEscape(`{__name__=~"`+prefix+`.*", service="search"}`),
		"/api/v1/labels?match[]=" + sel,
		"/api/v1/label/__name__/values?match[]=" + sel,
		"/api/v1/label/version/values?match[]=" + sel,
		"/api/v1/query?time=" + at + "&query=" + url.QueryEscape("sum("),
		"/api/v1/query_range?start=" + at + "&end=" + start + "&step=15&query=1",
		"/api/v1/query?time=" + at + "&query=" + url.QueryEscape(req+" + on(service) "+req),
	}
	for _, q := range queries {
		pc, pm := get(t, prom+q, nil)
		ic, im := get(t, e.url+q, nil)
		if pc != ic {
			t.Errorf("%s: HTTP %d from Prometheus, %d from immune (%v / %v)", q, pc, ic, pm, im)
			continue
		}
		if pm["status"] != im["status"] || pm["errorType"] != im["errorType"] {
			t.Errorf("%s: Prometheus %v, immune %v", q, pm, im)
			continue
		}
		if pm["status"] == "success" {
			if pd, id := normalize(pm["data"]), normalize(im["data"]); !reflect.DeepEqual(pd, id) {
				pj, _ := json.Marshal(pd)
				ij, _ := json.Marshal(id)
				t.Errorf("%s:\nPrometheus %s\nimmune     %s", q, pj, ij)
			}
		}
	}
}

// normalize sorts the lists whose order the API leaves open (the series
// of a result, the label sets of /series), so that answers compare.
func normalize(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, x := range v {
			out[k] = normalize(x)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = normalize(x)
		}
		if len(out) > 0 {
			if _, ok := out[0].(map[string]any); ok {
				sort.SliceStable(out, func(i, j int) bool {
					a, _ := json.Marshal(out[i])
					b, _ := json.Marshal(out[j])
					return string(a) < string(b)
				})
			}
		}
		return out
	}
	return v
}
