package grafana_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/immune-project/immune/annotator"
	"github.com/immune-project/immune/annotator/grafana"
	"github.com/immune-project/immune/annotator/store"
)

// TestGrafanaAndStore is the wiring immune run uses: each backend behind
// its own Async, both behind Multi. A failed deploy's events show up as a
// region with verdict and KPI tags in Grafana and in the built-in store,
// although Grafana failed the first write.
func TestGrafanaAndStore(t *testing.T) {
	f := newFakeGrafana(t, token)
	f.fail("POST", 503, "Service Unavailable")
	reg := prometheus.NewPedanticRegistry()
	g := newAnnotator(t, f, grafana.Config{ReportBaseURL: "https://immune.example"}, grafana.Options{Registerer: reg})
	s, err := store.Open(filepath.Join(t.TempDir(), "annotations.jsonl"), store.Options{ReportBaseURL: "https://immune.example"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ga := annotator.NewAsync(g, annotator.AsyncOptions{Name: "grafana", MinBackoff: time.Millisecond, Registerer: reg})
	sa := annotator.NewAsync(s, annotator.AsyncOptions{Name: "store", Registerer: reg})
	both := annotator.Multi{ga, sa}
	for _, e := range []annotator.Event{
		ev(annotator.KindDeploy, deployTime, ""),
		ev(annotator.KindVerdict, verdictAt, "fail", "conversion"),
		ev(annotator.KindRevert, verdictAt.Add(time.Second), "fail", "conversion"),
		ev(annotator.KindEnd, endAt, "fail", "conversion"),
	} {
		if err := both.Annotate(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for _, a := range []*annotator.Async{ga, sa} {
		if err := a.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"immune", "immune:region", "deploy:ck-42", "service:checkout", "version:v2.4.0", "verdict:fail", "kpi:conversion"}
	regions := s.Find(t.Context(), store.Query{Tags: []string{"immune:region", "deploy:ck-42"}})
	if len(regions) != 1 || !slices.Equal(regions[0].Tags, want) || regions[0].TimeEnd != endAt.UnixMilli() {
		t.Errorf("store regions = %+v, want one with %v to %d", regions, want, endAt.UnixMilli())
	}
	var found int
	for _, a := range f.all() {
		if slices.Contains(a.Tags, "immune:region") {
			found++
			if !slices.Equal(a.Tags, want) || a.TimeEnd != endAt.UnixMilli() {
				t.Errorf("grafana region = %v, want %v to %d", a, want, endAt.UnixMilli())
			}
		}
	}
	if found != 1 || len(f.all()) != 3 || len(s.Find(t.Context(), store.Query{})) != 3 {
		t.Errorf("grafana has %v, store %d annotations; want a region and two points in each", f.all(), len(s.Find(t.Context(), store.Query{})))
	}
}
