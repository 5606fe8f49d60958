package ingest_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"

	"github.com/immune-project/immune/collector/embedded"
	"github.com/immune-project/immune/collector/ingest"
	"github.com/immune-project/immune/collector/promtest"
	"github.com/immune-project/immune/collector/queryapi"
)

type bearerTransport string

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+string(b))
	return http.DefaultTransport.RoundTrip(r)
}

// A real Prometheus scrapes a target and itself, and remote-writes what
// it scrapes to immune (with the bearer token); the samples are then in
// immune's store, the same as in Prometheus, and read back through
// immune's query API.
func TestRemoteWriteFromPrometheus(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test against a real Prometheus: skipped under -short")
	}
	var scrapes atomic.Int64
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := scrapes.Add(1)
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintf(w, "# TYPE it_orders_total counter\nit_orders_total{shop=\"eu\"} %d\nit_orders_total{shop=\"us\"} %d\n", 10*n, 3*n)
	}))
	t.Cleanup(target.Close)

	st, err := embedded.Open(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	reg := prometheus.NewRegistry()
	tokenFile := writeToken(t, secret)
	recv, err := ingest.New(st, ingest.Options{TokenFile: tokenFile, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	qapi, err := queryapi.New(st, queryapi.Options{TokenFile: tokenFile})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	recv.Register(mux)
	qapi.Register(mux)
	immune := httptest.NewServer(mux)
	t.Cleanup(immune.Close)

	prom := promtest.Start(t, `
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: shop
    static_configs:
      - targets: ['`+strings.TrimPrefix(target.URL, "http://")+`']
  - job_name: prometheus
    static_configs:
      - targets: ['127.0.0.1:@PORT@']
remote_write:
  - url: '`+immune.URL+`/api/v1/write'
    authorization:
      credentials_file: '`+tokenFile+`'
    queue_config:
      batch_send_deadline: 1s
      min_backoff: 100ms
`)
	client, err := api.NewClient(api.Config{Address: immune.URL, RoundTripper: bearerTransport(secret)})
	if err != nil {
		t.Fatal(err)
	}
	ours := v1.NewAPI(client)
	promClient, err := api.NewClient(api.Config{Address: prom})
	if err != nil {
		t.Fatal(err)
	}
	theirs := v1.NewAPI(promClient)

	// Wait for a few scrapes to arrive through remote write.
	ctx := context.Background()
	deadline := time.Now().Add(60 * time.Second)
	var vec model.Vector
	for {
		v, _, _, err := ours.Query(ctx, `count_over_time(it_orders_total{job="shop",shop="eu"}[5m])`, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		vec = v.(model.Vector)
		if len(vec) == 1 && vec[0].Value >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60 s, immune has %v of the target's samples", vec)
		}
		time.Sleep(500 * time.Millisecond)
	}
	// Prometheus's own metrics came too (its self-scrape), and up.
	for _, q := range []string{`up{job="prometheus"}`, `up{job="shop"}`, `prometheus_build_info`} {
		v, _, _, err := ours.Query(ctx, q, time.Now())
		if err != nil || len(v.(model.Vector)) == 0 {
			t.Errorf("%s: %v %v", q, v, err)
		}
	}

	// A stored sample of immune's is the sample Prometheus has at that
	// time: same labels, same value.
	v, _, _, err := ours.Query(ctx, `timestamp(it_orders_total{shop="us"})`, time.Now())
	if err != nil || len(v.(model.Vector)) != 1 {
		t.Fatalf("timestamp: %v %v", v, err)
	}
	at := time.UnixMilli(int64(float64(v.(model.Vector)[0].Value) * 1000))
	mine, _, _, err := ours.Query(ctx, `it_orders_total{shop="us"}`, at)
	if err != nil {
		t.Fatal(err)
	}
	their, _, _, err := theirs.Query(ctx, `it_orders_total{shop="us"}`, at)
	if err != nil {
		t.Fatal(err)
	}
	if len(mine.(model.Vector)) != 1 || mine.String() != their.String() {
		t.Errorf("at %v immune has\n%v\nPrometheus has\n%v", at, mine, their)
	}
	if got := testutil.ToFloat64(counter(t, reg, "immune_ingested_samples_total", map[string]string{"protocol": "remote_write_1"})); got < 10 {
		t.Errorf("ingested %v samples", got)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "immune_rejected_samples_total" && len(mf.GetMetric()) > 0 {
			t.Errorf("rejected samples: %v", mf)
		}
	}
}
