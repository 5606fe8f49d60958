package web_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/immune-project/immune/web"
)

// chromium finds Debian's chromium (or a chromium on PATH): "" if none.
func chromium() string {
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// artifacts is where screenshots go: $IMMUNE_ARTIFACTS, else a
// temporary directory of the test.
func artifacts(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("IMMUNE_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestBrowser opens the deploy list and the report of a failed deploy in
// headless Chromium, checks what an engineer sees, and keeps screenshots.
func TestBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: skipped under -short")
	}
	exe := chromium()
	if exe == "" {
		if os.Getenv("IMMUNE_REQUIRE_SERVERS") == "1" {
			t.Fatal("chromium not found and IMMUNE_REQUIRE_SERVERS=1 (install it with scripts/install-deps.sh)")
		}
		t.Skip("chromium not found")
	}
	srv := serve(t, sampleStore(), web.Options{Refresh: -1})
	dir := artifacts(t)

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU,
		chromedp.WindowSize(1280, 1000), chromedp.UserDataDir(t.TempDir()))
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	defer func() {
		if err := chromedp.Cancel(bctx); err != nil {
			t.Logf("close chromium: %v", err)
		}
		cancelBrowser()
	}()

	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", p)
	}
	visible := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}

	// The list.
	if err := chromedp.Do(bctx,
		chromedp.Navigate(srv.URL+"/deploys"),
		chromedp.WaitVisible(chromedp.CSS("table.deploys")),
	); err != nil {
		t.Fatalf("open the list: %v", err)
	}
	list := visible("table.deploys")
	for _, want := range []string{"checkout", "v2.3.9 → v2.4.0", "ana.lima", "FAIL · REVERTED", "PASS", "RUNNING", "INCONCLUSIVE",
		"25m", "1h02m", "enforced", "shadow", "payments", "search", "ledger"} {
		if !strings.Contains(list, want) {
			t.Errorf("list shows no %q:\n%s", want, list)
		}
	}
	shot("deploys.png")

	// Click through to the failed deploy's report.
	if err := chromedp.Do(bctx,
		chromedp.Click(chromedp.CSS(`a.badge-fail`)),
		chromedp.WaitVisible(chromedp.CSS("#verdict .headline")),
	); err != nil {
		t.Fatalf("open the report: %v", err)
	}
	loc, err := chromedp.Run(bctx, chromedp.Location())
	if err != nil || !strings.HasSuffix(loc, "/deploys/checkout-20261125-0250") {
		t.Errorf("report at %q (%v)", loc, err)
	}
	if got := visible("#verdict .headline"); got != "FAIL: reverted at 03:15 UTC" {
		t.Errorf("headline %q", got)
	}
	if got := visible("#verdict .reason"); !strings.Contains(got, "conversion fell from 3.1% to 2.41%") || !strings.Contains(got, "p=0.0004 < 0.005") {
		t.Errorf("reason %q", got)
	}
	numbers := visible("table.numbers")
	for _, want := range []string{"conversion", "latency_p99", "error_ratio", "3.1%", "2.41%", "−0.69 [−0.92, −0.45]", "0.0004", "0.005",
		"212ms", "218ms", "+6 [−3, +15]", "0.21", "0.64"} {
		if !strings.Contains(numbers, want) {
			t.Errorf("numbers table shows no %q:\n%s", want, numbers)
		}
	}
	// The charts are drawn: three SVGs with both series, each series a
	// visible line, and the three markers.
	counts, err := chromedp.Run(bctx, chromedp.Evaluate[map[string]float64](`(() => {
		const q = s => document.querySelectorAll(s);
		const charts = Array.from(q('svg.kpi-chart'));
		return {
			charts: charts.length,
			drawn: charts.filter(c => c.getBoundingClientRect().height > 100).length,
			canary: Array.from(q('svg.kpi-chart path.canary')).filter(p => p.getTotalLength() > 200).length,
			baseline: Array.from(q('svg.kpi-chart path.baseline')).filter(p => p.getTotalLength() > 200).length,
			markers: q('svg.kpi-chart g.marker').length,
		};
	})()`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"charts": 3, "drawn": 3, "canary": 3, "baseline": 3, "markers": 9}
	for k, v := range want {
		if counts[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, counts[k], v, counts)
		}
	}
	markers, err := chromedp.Run(bctx, chromedp.TextContent(chromedp.CSS("#kpi-1-conversion svg")))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"deploy 02:50", "decision 03:15", "revert 03:15", "canary", "baseline"} {
		if !strings.Contains(markers, want) {
			t.Errorf("conversion chart shows no %q: %q", want, markers)
		}
	}
	links, err := chromedp.Run(bctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('a.grafana')).map(a => a.href)`))
	if err != nil || len(links) != 2 || !strings.HasPrefix(links[0], "https://grafana.example/d/checkout-main/") {
		t.Errorf("Grafana links %v (%v)", links, err)
	}
	shot("report-failed.png")

	// An unknown deploy.
	if err := chromedp.Do(bctx, chromedp.Navigate(srv.URL+"/deploys/nope"), chromedp.WaitVisible(chromedp.CSS(".headline"))); err != nil {
		t.Fatal(err)
	}
	if got := visible(".headline"); got != "No such deploy" {
		t.Errorf("404 headline %q", got)
	}
}
