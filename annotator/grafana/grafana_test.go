package grafana_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/immune-project/immune/annotator"
	"github.com/immune-project/immune/annotator/grafana"
	"github.com/immune-project/immune/deploy"
)

const token = "glsa_s3cr3tT0ken_0123456789abcdef"

var (
	deployTime = time.Date(2026, 11, 25, 2, 50, 0, 0, time.UTC)
	verdictAt  = deployTime.Add(25 * time.Minute)
	endAt      = deployTime.Add(30 * time.Minute)
	ck42       = deploy.Deploy{ID: "ck-42", Service: "checkout", Version: "v2.4.0", PreviousVersion: "v2.3.9",
		Author: "ana", Commit: "9f1c2e", Time: deployTime}
)

func tokenFile(t *testing.T, tok string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func newAnnotator(t *testing.T, f *fakeGrafana, cfg grafana.Config, opts grafana.Options) *grafana.Annotator {
	t.Helper()
	cfg.URL = f.srv.URL
	if cfg.TokenFile == "" {
		cfg.TokenFile = tokenFile(t, token)
	}
	a, err := grafana.New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func ev(kind annotator.Kind, at time.Time, verdict string, kpis ...string) annotator.Event {
	return annotator.Event{Kind: kind, At: at, Deploy: ck42, Verdict: verdict, FailingKPIs: kpis,
		Text: "conversion fell from 3.10% to 2.41% (effect −0.69 pp, 95% CI −0.92 to −0.45), p=0.0004 < 0.005."}
}

func mustAnnotate(t *testing.T, a annotator.Annotator, e annotator.Event) {
	t.Helper()
	if err := a.Annotate(t.Context(), e); err != nil {
		t.Fatalf("Annotate(%s): %v", e.Kind, err)
	}
}

func TestRegionCreatedThenExtended(t *testing.T) {
	f := newFakeGrafana(t, token)
	a := newAnnotator(t, f, grafana.Config{ReportBaseURL: "https://immune.example"}, grafana.Options{})

	mustAnnotate(t, a, ev(annotator.KindDeploy, deployTime, ""))
	got := f.all()
	if len(got) != 1 {
		t.Fatalf("after deploy: %v, want one region", got)
	}
	r := got[0]
	if r.Time != deployTime.UnixMilli() || r.TimeEnd != deployTime.UnixMilli() || r.DashboardID != 0 {
		t.Errorf("region at deploy = %v, want an organisation annotation at %d", r, deployTime.UnixMilli())
	}
	wantTags := []string{"immune", "immune:region", "deploy:ck-42", "service:checkout", "version:v2.4.0"}
	if !slices.Equal(r.Tags, wantTags) {
		t.Errorf("region tags at deploy = %v, want %v", r.Tags, wantTags)
	}

	mustAnnotate(t, a, ev(annotator.KindVerdict, verdictAt, "fail", "conversion", "latency_p99"))
	mustAnnotate(t, a, ev(annotator.KindRevert, verdictAt.Add(time.Second), "fail", "conversion", "latency_p99"))
	mustAnnotate(t, a, ev(annotator.KindEnd, endAt, "fail", "conversion", "latency_p99"))

	got = f.all()
	if len(got) != 3 {
		t.Fatalf("annotations = %v, want region, verdict, revert", got)
	}
	region, verdict, revert := got[0], got[1], got[2]
	if region.ID != r.ID || region.Time != deployTime.UnixMilli() || region.TimeEnd != endAt.UnixMilli() {
		t.Errorf("region after end = %v, want #%d from %d to %d", region, r.ID, deployTime.UnixMilli(), endAt.UnixMilli())
	}
	for _, tc := range []struct {
		name string
		a    fakeAnnotation
		want []string
		at   int64
	}{
		{"region", region, []string{"immune", "immune:region", "deploy:ck-42", "service:checkout", "version:v2.4.0", "verdict:fail", "kpi:conversion", "kpi:latency_p99"}, deployTime.UnixMilli()},
		{"verdict", verdict, []string{"immune", "immune:verdict", "deploy:ck-42", "service:checkout", "version:v2.4.0", "verdict:fail", "kpi:conversion", "kpi:latency_p99"}, verdictAt.UnixMilli()},
		{"revert", revert, []string{"immune", "immune:revert", "deploy:ck-42", "service:checkout", "version:v2.4.0", "verdict:fail", "kpi:conversion", "kpi:latency_p99"}, verdictAt.Add(time.Second).UnixMilli()},
	} {
		if !slices.Equal(tc.a.Tags, tc.want) {
			t.Errorf("%s tags = %v, want %v", tc.name, tc.a.Tags, tc.want)
		}
		if tc.a.Time != tc.at {
			t.Errorf("%s time = %d, want %d", tc.name, tc.a.Time, tc.at)
		}
		for _, want := range []string{"conversion fell from 3.10% to 2.41%", "p=0.0004 &lt; 0.005", `<a href="https://immune.example/deploys/ck-42">report</a>`} {
			if !strings.Contains(tc.a.Text, want) {
				t.Errorf("%s text = %q, want it to contain %q", tc.name, tc.a.Text, want)
			}
		}
	}
	if verdict.TimeEnd != verdict.Time {
		t.Errorf("verdict is not a point: %v", verdict)
	}
}

func TestIdempotentAndRestart(t *testing.T) {
	f := newFakeGrafana(t, token)
	a := newAnnotator(t, f, grafana.Config{}, grafana.Options{})
	mustAnnotate(t, a, ev(annotator.KindDeploy, deployTime, ""))
	mustAnnotate(t, a, ev(annotator.KindDeploy, deployTime, ""))
	mustAnnotate(t, a, ev(annotator.KindVerdict, verdictAt, "pass"))

	// A new process: nothing in memory; the region is found in Grafana.
	b := newAnnotator(t, f, grafana.Config{}, grafana.Options{})
	mustAnnotate(t, b, ev(annotator.KindVerdict, verdictAt, "pass"))
	mustAnnotate(t, b, ev(annotator.KindEnd, endAt, "pass"))
	got := f.all()
	if len(got) != 2 {
		t.Fatalf("annotations = %v, want one region and one verdict", got)
	}
	if got[0].TimeEnd != endAt.UnixMilli() || !slices.Contains(got[0].Tags, "verdict:pass") {
		t.Errorf("region = %v, want extended to %d with verdict:pass", got[0], endAt.UnixMilli())
	}
	if f.count("PATCH") != 1 {
		t.Errorf("PATCH requests = %d, want 1", f.count("PATCH"))
	}
}

func TestEndWithoutRegionOrDeletedRegion(t *testing.T) {
	f := newFakeGrafana(t, token)
	a := newAnnotator(t, f, grafana.Config{}, grafana.Options{})
	// The deploy event was lost: the end writes the whole region.
	mustAnnotate(t, a, ev(annotator.KindEnd, endAt, "inconclusive"))
	got := f.all()
	if len(got) != 1 || got[0].Time != deployTime.UnixMilli() || got[0].TimeEnd != endAt.UnixMilli() {
		t.Fatalf("annotations = %v, want one region from deploy to end", got)
	}

	// A region deleted by someone after the deploy event: written again.
	d2 := ck42
	d2.ID = "ck-43"
	e := ev(annotator.KindDeploy, deployTime, "")
	e.Deploy = d2
	mustAnnotate(t, a, e)
	f.mu.Lock()
	for id, an := range f.annotations {
		if slices.Contains(an.Tags, "deploy:ck-43") {
			delete(f.annotations, id)
		}
	}
	f.mu.Unlock()
	e.Kind, e.At, e.Verdict = annotator.KindEnd, endAt, "pass"
	mustAnnotate(t, a, e)
	n := 0
	for _, an := range f.all() {
		if slices.Contains(an.Tags, "deploy:ck-43") {
			n++
			if an.TimeEnd != endAt.UnixMilli() {
				t.Errorf("rewritten region = %v, want to end at %d", an, endAt.UnixMilli())
			}
		}
	}
	if n != 1 {
		t.Errorf("regions of ck-43 = %d, want 1", n)
	}
}

func TestDashboards(t *testing.T) {
	f := newFakeGrafana(t, token)
	f.dashboards["checkout-main"] = 41
	f.dashboards["payments"] = 57
	a := newAnnotator(t, f, grafana.Config{Dashboards: []grafana.Dashboard{
		{UID: "checkout-main", PanelIDs: []int{2, 5}}, {UID: "payments"},
	}}, grafana.Options{})
	if err := a.Check(t.Context()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	mustAnnotate(t, a, ev(annotator.KindDeploy, deployTime, ""))
	mustAnnotate(t, a, ev(annotator.KindEnd, endAt, "pass"))
	var where []string
	for _, an := range f.all() {
		where = append(where, fmt.Sprintf("%d/%d", an.DashboardID, an.PanelID))
		if an.TimeEnd != endAt.UnixMilli() {
			t.Errorf("region %v not extended", an)
		}
	}
	if want := []string{"41/2", "41/5", "57/0"}; !slices.Equal(where, want) {
		t.Errorf("regions on dashboard/panel %v, want %v", where, want)
	}
	f.mu.Lock()
	resolved := 0
	for _, r := range f.requests {
		if strings.HasPrefix(r, "GET /api/dashboards/uid/") {
			resolved++
		}
	}
	f.mu.Unlock()
	if resolved != 2 {
		t.Errorf("dashboard lookups = %d, want 2 (resolved once)", resolved)
	}
}

func TestUnknownDashboard(t *testing.T) {
	f := newFakeGrafana(t, token)
	a := newAnnotator(t, f, grafana.Config{Dashboards: []grafana.Dashboard{{UID: "nope"}}}, grafana.Options{})
	for _, err := range []error{a.Check(t.Context()), a.Annotate(t.Context(), ev(annotator.KindDeploy, deployTime, ""))} {
		if !errors.Is(err, annotator.ErrRejected) || !strings.Contains(err.Error(), "dashboard uid nope: not found") {
			t.Errorf("err = %v, want ErrRejected naming the uid", err)
		}
	}
	if len(f.all()) != 0 {
		t.Errorf("annotations written: %v", f.all())
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		setup    func(f *fakeGrafana, cfg *grafana.Config)
		sentinel error
		want     string
	}{
		{"wrong token 401", func(f *fakeGrafana, cfg *grafana.Config) {
			cfg.TokenFile = tokenFile(t, "glsa_wrongwrongwrong")
		}, annotator.ErrUnauthorized, "HTTP 401: invalid API key"},
		{"401 body echoing the token", func(f *fakeGrafana, cfg *grafana.Config) {
			f.echoAuth = true
			f.token = "another"
		}, annotator.ErrUnauthorized, "HTTP 401: invalid API key: Bearer <redacted>"},
		{"403 missing permission", func(f *fakeGrafana, cfg *grafana.Config) {
			f.forbidden = true
		}, annotator.ErrUnauthorized, "HTTP 403: You'll need additional permissions"},
		{"400", func(f *fakeGrafana, cfg *grafana.Config) {
			f.fail("POST", http.StatusBadRequest, "bad request data")
		}, annotator.ErrRejected, "POST /api/annotations: HTTP 400: bad request data"},
		{"500", func(f *fakeGrafana, cfg *grafana.Config) {
			f.fail("POST", http.StatusInternalServerError, "Failed to save annotation")
		}, annotator.ErrUnavailable, "HTTP 500: Failed to save annotation"},
		{"500 on search", func(f *fakeGrafana, cfg *grafana.Config) {
			f.fail("GET", http.StatusInternalServerError, "Failed to find annotations")
		}, annotator.ErrUnavailable, "find annotations of deploy ck-42: GET /api/annotations: HTTP 500"},
		{"missing token file", func(f *fakeGrafana, cfg *grafana.Config) {
			cfg.TokenFile = filepath.Join(t.TempDir(), "absent")
		}, annotator.ErrUnauthorized, "no such file or directory"},
		{"empty token file", func(f *fakeGrafana, cfg *grafana.Config) {
			cfg.TokenFile = tokenFile(t, " \n")
		}, annotator.ErrUnauthorized, "token file is empty"},
		{"server gone", func(f *fakeGrafana, cfg *grafana.Config) {
			f.srv.Close()
		}, annotator.ErrUnavailable, "connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeGrafana(t, token)
			var logs bytes.Buffer
			cfg := grafana.Config{}
			tc.setup(f, &cfg)
			a := newAnnotator(t, f, cfg, grafana.Options{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
			// Async logs the error as the analysis would see it.
			as := annotator.NewAsync(a, annotator.AsyncOptions{MaxAttempts: 1, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			err := a.Annotate(t.Context(), ev(annotator.KindDeploy, deployTime, ""))
			if !errors.Is(err, tc.sentinel) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %v containing %q", err, tc.sentinel, tc.want)
			}
			if err := as.Annotate(t.Context(), ev(annotator.KindVerdict, verdictAt, "fail")); err != nil {
				t.Fatal(err)
			}
			if err := as.Close(t.Context()); err != nil {
				t.Fatal(err)
			}
			for _, s := range []string{err.Error(), logs.String()} {
				if strings.Contains(s, token) || strings.Contains(s, "s3cr3t") {
					t.Errorf("the token leaked: %s", s)
				}
			}
		})
	}
}

func TestRetriesThroughAsync(t *testing.T) {
	for _, tc := range []struct {
		name       string
		faults     []int
		wantPosts  int
		wantResult string
		wantRegion bool
	}{
		{"500 retried then success", []int{500, 500}, 3, "ok", true},
		{"502 and 429 retried", []int{502, 429}, 3, "ok", true},
		{"400 not retried", []int{400}, 1, "failed", false},
		{"403 not retried", []int{403}, 1, "failed", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeGrafana(t, token)
			for _, c := range tc.faults {
				f.fail("POST", c, http.StatusText(c))
			}
			reg := prometheus.NewPedanticRegistry()
			a := newAnnotator(t, f, grafana.Config{}, grafana.Options{Registerer: reg})
			as := annotator.NewAsync(a, annotator.AsyncOptions{Name: "grafana", MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Registerer: reg})
			if err := as.Annotate(t.Context(), ev(annotator.KindDeploy, deployTime, "")); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			if err := as.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if got := f.count("POST"); got != tc.wantPosts {
				t.Errorf("POST requests = %d, want %d", got, tc.wantPosts)
			}
			if got := len(f.all()) == 1; got != tc.wantRegion {
				t.Errorf("region written = %v, want %v", got, tc.wantRegion)
			}
			if got := testutil.ToFloat64(mustGet(t, reg, tc.wantResult)); got != 1 {
				t.Errorf("immune_annotations_total{result=%q} = %v, want 1", tc.wantResult, got)
			}
			n, err := testutil.GatherAndCount(reg, "immune_annotator_grafana_requests_total")
			if err != nil || n == 0 {
				t.Errorf("immune_annotator_grafana_requests_total: %d series, %v", n, err)
			}
		})
	}
}

// mustGet is immune_annotations_total{result} as a collector for ToFloat64.
func mustGet(t *testing.T, reg *prometheus.Registry, result string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "x", Help: "x"})
	for _, mf := range mfs {
		if mf.GetName() != "immune_annotations_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					g.Set(m.GetCounter().GetValue())
					return g
				}
			}
		}
	}
	t.Fatalf("no immune_annotations_total{result=%q}", result)
	return nil
}

func TestTokenRotation(t *testing.T) {
	f := newFakeGrafana(t, token)
	file := tokenFile(t, token)
	a := newAnnotator(t, f, grafana.Config{TokenFile: file}, grafana.Options{})
	mustAnnotate(t, a, ev(annotator.KindDeploy, deployTime, ""))
	f.mu.Lock()
	f.token = "glsa_rotated_token_value"
	f.mu.Unlock()
	if err := os.WriteFile(file, []byte("glsa_rotated_token_value"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustAnnotate(t, a, ev(annotator.KindEnd, endAt, "pass"))
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  grafana.Config
		want string
	}{
		{"ok", grafana.Config{URL: "https://g.example/grafana", TokenFile: "/t", Dashboards: []grafana.Dashboard{{UID: "a-b_C", PanelIDs: []int{1}}}}, ""},
		{"no url", grafana.Config{TokenFile: "/t"}, `grafana url ""`},
		{"ftp", grafana.Config{URL: "ftp://g", TokenFile: "/t"}, "want http(s)"},
		{"credentials in url", grafana.Config{URL: "https://admin:pw@g", TokenFile: "/t"}, "no credentials in the url"},
		{"no token", grafana.Config{URL: "https://g"}, "token_file: missing"},
		{"bad uid", grafana.Config{URL: "https://g", TokenFile: "/t", Dashboards: []grafana.Dashboard{{UID: "../admin"}}}, "dashboards[0].uid"},
		{"bad panel", grafana.Config{URL: "https://g", TokenFile: "/t", Dashboards: []grafana.Dashboard{{UID: "x", PanelIDs: []int{0}}}}, "dashboards[0].panel_ids[0]"},
		{"relative report url", grafana.Config{URL: "https://g", TokenFile: "/t", ReportBaseURL: "/immune"}, "report_base_url"},
		{"negative timeout", grafana.Config{URL: "https://g", TokenFile: "/t", Timeout: -time.Second}, "timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == "" {
				if err != nil {
					t.Errorf("Validate = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate = %v, want %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "pw@") {
				t.Errorf("password in error: %v", err)
			}
		})
	}
}
