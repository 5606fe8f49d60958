package web_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/immune-project/immune/web"
)

func serve(t *testing.T, s web.Store, opts web.Options) *httptest.Server {
	t.Helper()
	p, err := web.New(s, opts)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	p.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("%s: Content-Type %q", url, ct)
	}
	return resp.StatusCode, string(b)
}

func TestPages(t *testing.T) {
	srv := serve(t, sampleStore(), web.Options{})
	for _, tc := range []struct {
		name    string
		path    string
		code    int
		want    []string
		notWant []string
		svgs    int
	}{
		{
			name: "list at root", path: "/", code: 200,
			want: []string{
				"<h1>Deploys</h1>", `href="/deploys/checkout-20261125-0250"`, "checkout", "v2.3.9 → v2.4.0", "ana.lima",
				"fail · reverted", "2026-11-25 02:50:00", "<td class=\"mono\">25m</td>", "1h02m", "enforced",
				`<span class="mode-shadow">shadow</span>`, "running", "inconclusive", `http-equiv="refresh" content="30"`,
			},
		},
		{
			name: "list, newest first", path: "/deploys", code: 200,
			want: []string{"search-12\">running</a>"},
		},
		{
			name: "report of a failed deploy", path: "/deploys/checkout-20261125-0250", code: 200,
			want: []string{
				`<div class="headline">FAIL: reverted at 03:15 UTC</div>`,
				"conversion fell from 3.1% to 2.41% (effect −0.69 points, 95% CI −0.92 to −0.45), p=0.0004 &lt; 0.005.",
				"<li>latency_p99 and error_ratio show no significant change.</li>",
				"9f1c2e7", "verdict after</dt><dd class=\"mono\">25m</dd>",
				`<td class="num">3.1%</td>`, `<td class="num">2.41%</td>`, `<td class="num">−0.69 [−0.92, −0.45]</td>`,
				`<td class="num">0.0004</td>`, `<td class="num">0.005</td>`, `<td class="num">212ms</td>`,
				`<td class="num">&#43;6 [−3, &#43;15]</td>`, `<td class="num">0.21</td>`,
				`href="https://grafana.example/d/checkout-main/checkout?from=1795661400000&amp;to=1795665000000"`,
				`rel="noopener noreferrer"`, "Checkout overview ↗",
				`class="marker marker-deploy"`, `class="marker marker-decision"`, `class="marker marker-revert"`,
				"deploy 02:50", "decision 03:15", "revert 03:15",
				`class="series canary"`, `class="series baseline"`, ">canary</text>", ">baseline</text>", "time (UTC)",
				"rate(checkout_completed_total[5m])", "revert requested at /deploys/checkout/",
			},
			notWant: []string{"http-equiv=\"refresh\"", "p=0.0004 < 0.005"},
			svgs:    3,
		},
		{
			name: "report of a running deploy refreshes", path: "/deploys/search-12", code: 200,
			want: []string{"RUNNING: no verdict yet", `http-equiv="refresh"`, "No KPI result yet."},
		},
		{
			name: "report of a shadow deploy", path: "/deploys/ledger-3", code: 200,
			want: []string{"INCONCLUSIVE", "shadow: judged, never reverted", "Too little traffic to judge"},
		},
		{
			name: "unknown id", path: "/deploys/nope%3Cb%3E", code: 404,
			want:    []string{"No such deploy", "immune has no deploy &#34;nope&lt;b&gt;&#34;"},
			notWant: []string{"nope<b>"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := get(t, srv.URL+tc.path)
			if code != tc.code {
				t.Errorf("status %d, want %d", code, tc.code)
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("page lacks %q", w)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(body, w) {
					t.Errorf("page has %q", w)
				}
			}
			if tc.svgs > 0 {
				if n := strings.Count(body, "<svg "); n != tc.svgs {
					t.Errorf("%d charts, want %d", n, tc.svgs)
				}
			}
			if t.Failed() {
				t.Logf("page:\n%s", body)
			}
		})
	}
}

func TestListOrderAndNoDeploys(t *testing.T) {
	srv := serve(t, sampleStore(), web.Options{Refresh: -1})
	_, body := get(t, srv.URL+"/deploys")
	order := []string{"search-12", "checkout-20261125-0250", "payments-881", "ledger-3"}
	last := -1
	for _, id := range order {
		i := strings.Index(body, "/deploys/"+id)
		if i < last {
			t.Errorf("%s out of order", id)
		}
		last = i
	}
	if strings.Contains(body, "http-equiv") {
		t.Error("refresh with Refresh < 0")
	}
	empty := serve(t, &fakeStore{}, web.Options{})
	if _, body := get(t, empty.URL+"/"); !strings.Contains(body, "No deploy analysed yet.") {
		t.Errorf("empty list: %s", body)
	}
}

func TestStoreError(t *testing.T) {
	srv := serve(t, &fakeStore{err: errStoreDown}, web.Options{})
	for _, path := range []string{"/deploys", "/deploys/x"} {
		code, body := get(t, srv.URL+path)
		if code != http.StatusInternalServerError || !strings.Contains(body, "zookeeper: connection lost") {
			t.Errorf("%s: %d %s", path, code, body)
		}
	}
}

func TestEscaping(t *testing.T) {
	evil := `<script>alert("x")</script>`
	s := &fakeStore{reports: []web.Report{{
		DeploySummary: web.DeploySummary{ID: "a/b?c", Service: evil, Version: evil, Author: evil, Start: deployAt, Verdict: web.VerdictFail, Decided: decideAt},
		Reason:        evil,
		GrafanaLinks:  []web.Link{{Title: evil, URL: `javascript:alert(1)`}},
		KPIs: []web.KPIReport{{Name: evil, Verdict: "fail", Sentence: evil, Query: evil, Unit: evil,
			Canary: series(deployAt, 5, 1, 0.1, 0), Baseline: series(deployAt.Add(-5*time.Minute), 5, 1, 0.1, 0)}},
	}}}
	srv := serve(t, s, web.Options{Base: "/immune/"})
	_, list := get(t, srv.URL+"/immune/deploys")
	if !strings.Contains(list, `href="/immune/deploys/a%2fb%3fc"`) && !strings.Contains(list, `href="/immune/deploys/a%2Fb%3Fc"`) {
		t.Errorf("link to an id with / and ? not escaped:\n%s", list)
	}
	code, body := get(t, srv.URL+"/immune/deploys/a%2Fb%3Fc")
	if code != 200 {
		t.Fatalf("report: %d", code)
	}
	for _, page := range []string{list, body} {
		if strings.Contains(page, "<script>") {
			t.Errorf("unescaped script in page:\n%s", page)
		}
	}
	if strings.Contains(body, `href="javascript:`) {
		t.Error("javascript: URL kept in a link")
	}
	if !strings.Contains(body, "&lt;script&gt;") {
		t.Error("escaped text missing")
	}
}

func BenchmarkReportPage(b *testing.B) {
	p, err := web.New(sampleStore(), web.Options{})
	if err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	p.Register(mux)
	req := httptest.NewRequest("GET", "/deploys/checkout-20261125-0250", nil)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatal(w.Code)
		}
	}
}

func TestPValueAndThresholdTellApart(t *testing.T) {
	// Four fixed decimals printed both as 0.0005, a fail that read as p = threshold.
	s := &fakeStore{reports: []web.Report{{
		DeploySummary: web.DeploySummary{ID: "close", Service: "checkout", Version: "v2", Start: deployAt, Verdict: web.VerdictFail, Decided: decideAt},
		KPIs:          []web.KPIReport{{Name: "conversion", Verdict: web.VerdictFail, P: 0.00049, Threshold: 0.0005}},
	}}}
	srv := serve(t, s, web.Options{})
	_, body := get(t, srv.URL+"/deploys/close")
	for _, w := range []string{`<td class="num">0.00049</td>`, `<td class="num">0.0005</td>`} {
		if !strings.Contains(body, w) {
			t.Errorf("page lacks %q", w)
		}
	}
}

func TestSkippedDeploy(t *testing.T) {
	s := &fakeStore{reports: []web.Report{{
		DeploySummary: web.DeploySummary{ID: "docs-7", Service: "docs", Version: "v7", Start: deployAt, Verdict: web.VerdictSkipped},
		Reason:        "no rule file for service docs",
	}}}
	srv := serve(t, s, web.Options{})
	_, list := get(t, srv.URL+"/deploys")
	_, report := get(t, srv.URL+"/deploys/docs-7")
	for _, tc := range []struct {
		page, body string
		want       []string
		notWant    []string
	}{
		{"list", list, []string{`<tr class="row-skipped">`, `class="badge badge-skipped"`, `<td class="mono">—</td>`}, []string{">running<", "not analysed"}},
		{"report", report, []string{`<div class="headline">SKIPPED: not analysed</div>`, `class="verdict verdict-skipped"`,
			"no rule file for service docs", "verdict after</dt><dd class=\"mono\">—</dd>"}, []string{">running<", "http-equiv"}},
	} {
		for _, w := range tc.want {
			if !strings.Contains(tc.body, w) {
				t.Errorf("%s lacks %q", tc.page, w)
			}
		}
		for _, w := range tc.notWant {
			if strings.Contains(tc.body, w) {
				t.Errorf("%s has %q", tc.page, w)
			}
		}
	}
}
