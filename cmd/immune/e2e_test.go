package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/immune-project/immune/analysis"
	"github.com/immune-project/immune/collector/promtest"
	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/internal/config"
	"github.com/immune-project/immune/internal/zk"
	"github.com/immune-project/immune/internal/zkconn"
	"github.com/immune-project/immune/internal/zktest"
	"github.com/immune-project/immune/rollback/audit"
	"github.com/immune-project/immune/sim"
)

// The end-to-end test of issue 8: real ZooKeeper and Prometheus (Debian's
// packages), the simulated fleet announcing itself in ZooKeeper,
// Prometheus discovering it through serverset_sd_configs and scraping it,
// immune reading the KPIs from that Prometheus and the deploys from
// ZooKeeper, writing the revert to ZooKeeper and the annotations to a
// Grafana test server.

const e2eRules = `service: checkout
analysis:
  baseline: concurrent
  window: 30s
  step: 3s
  alpha: 0.001
selectors:
  canary: '{service="checkout", version="$version"}'
  baseline: '{service="checkout", version="$previous_version"}'
kpis:
  - name: conversion
    events: sum(increase(checkout_completed_total[3s]))
    trials: sum(increase(checkout_started_total[3s]))
    bad: decrease
    critical: true
  - name: error_rate
    events: sum(increase(http_requests_total{code=~"5.."}[3s]))
    trials: sum(increase(http_requests_total[3s]))
    bad: increase
`

type e2e struct {
	t        *testing.T
	zk       *zktest.Server
	promURL  string
	promStop func()
	grafana  *fakeGrafana
	dir      string
	conn     *zkconn.Conn
	fleet    *sim.Fleet
	mgr      *sim.Manager
	imm      *server
	base     string // immune's URL
	// restartMu is held while immune restarts, so that deploy waits
	// for the new process.
	restartMu sync.Mutex
	stop      func()
}

func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end against real ZooKeeper and Prometheus: skipped under -short")
	}
	e := &e2e{t: t, dir: t.TempDir()}
	e.zk = zktest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The fleet, announced in ZooKeeper.
	conn, err := zkconn.Dial(ctx, zkconn.Config{Servers: []string{e.zk.Addr()}, SessionTimeout: 4 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	e.conn = conn
	ann := sim.NewZKAnnouncer(conn, deploy.DefaultLayout, nil)
	defer ann.Close()
	fleet, err := sim.NewFleet(sim.FleetOptions{Service: "checkout", Size: 4, Version: "v1", Seed: 7, Announcer: ann,
		Traffic: sim.Traffic{RequestRate: 200, CheckoutRate: 100}})
	if err != nil {
		t.Fatal(err)
	}
	defer fleet.Close()
	if err := fleet.Start(ctx); err != nil {
		t.Fatal(err)
	}
	e.fleet = fleet
	var fw sync.WaitGroup
	fw.Add(1)
	go func() {
		defer fw.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		fleet.Run(ctx, tick.C)
	}()
	defer fw.Wait()
	defer cancel()

	// Prometheus discovers the members through serverset_sd_configs.
	e.promURL, e.promStop = promtest.StartStoppable(t, fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: checkout
    scrape_interval: 1s
    scrape_timeout: 1s
    serverset_sd_configs:
      - servers: ['%s']
        paths: ['/services/checkout/members']
        timeout: 10s
    relabel_configs:
      - target_label: service
        replacement: checkout
`, e.zk.Addr()))

	e.grafana = newFakeGrafana(t, "e2e-token")
	e.start(ctx)

	mgr, err := sim.NewManager(sim.ManagerOptions{Transport: sim.NewZKTransport(conn, deploy.DefaultLayout), Fleet: fleet,
		GateTimeout: 40 * time.Second, OnGateTimeout: sim.GateTimeoutStop, SkipFinalGate: true,
		OnEvent: func(ev sim.Event) { t.Log("manager:", ev.String()) }})
	if err != nil {
		t.Fatal(err)
	}
	e.mgr = mgr
	e.waitScraped(ctx)

	// A harmless deploy: every group proceeds, the verdict is pass.
	good := e.deploy(ctx, "e2e-good", "v2", "v1", deploy.StateDone)
	if good.Verdict != "pass" || good.Revert != nil {
		t.Fatalf("harmless deploy: verdict %q, revert %+v: %s", good.Verdict, good.Revert, good.Reason)
	}
	e.noRevertZnode("e2e-good")
	e.grafana.want(t, "deploy:e2e-good", "verdict:pass")

	// A bad deploy: caught, the revert written to ZooKeeper once, the
	// deployment manager reverts.
	bad := e.deploy(ctx, "e2e-bad", "v2-bad", "v2", deploy.StateReverted)
	if bad.Verdict != "fail" || bad.Revert == nil || !bad.Revert.Reverted || bad.Revert.Trigger != "zookeeper" {
		t.Fatalf("bad deploy: verdict %q, revert %+v: %s", bad.Verdict, bad.Revert, bad.Reason)
	}
	rr := e.revertZnode("e2e-bad")
	if rr.DeployID != "e2e-bad" || rr.Instance != "immune-e2e" || !strings.Contains(rr.Reason, "conversion") {
		t.Fatalf("revert znode: %+v", rr)
	}
	e.grafana.want(t, "deploy:e2e-bad", "verdict:fail", "kpi:conversion")

	// The same annotations in immune's own store, and the report page.
	waitFor(t, func() bool {
		body := e.get("/api/v1/annotations?tags=deploy:e2e-bad&tags=verdict:fail&tags=kpi:conversion")
		return strings.Contains(body, `"deploy:e2e-bad"`)
	}, "the built-in store's annotation of e2e-bad")
	page := e.get("/deploys/e2e-bad")
	for _, want := range []string{"fail", "critical KPI conversion", "<svg"} {
		if !strings.Contains(page, want) {
			t.Errorf("the report page of e2e-bad lacks %q", want)
		}
	}

	// A restart of immune forgets nothing and reverts nothing again.
	e.restart(ctx)
	e.imm.handle(deploy.Event{Kind: deploy.EventStarted, Deploy: bad.Deploy, State: deploy.StateRunning})
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	if err := e.imm.sup.Wait(wctx, "e2e-bad"); err != nil {
		t.Fatal(err)
	}
	wcancel()
	again, _ := e.imm.sup.Lookup("e2e-bad")
	if again.Verdict != "fail" || again.Revert == nil || !again.Revert.Reverted {
		t.Fatalf("after a restart: verdict %q revert %+v", again.Verdict, again.Revert)
	}
	recs, err := audit.ReadFile(filepath.Join(e.dir, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	reverts := 0
	for _, r := range recs {
		if r.DeployID == "e2e-bad" && r.Kind == audit.KindRevert && r.Result == audit.ResultReverted {
			reverts++
		}
	}
	if reverts != 1 {
		t.Fatalf("%d reverts of e2e-bad in the audit log, want 1", reverts)
	}
	if _, st, err := conn.Get(deploy.DefaultLayout.Revert("checkout", "e2e-bad")); err != nil || st.Version != 0 {
		t.Fatalf("revert znode after the restart: version %v, %v", st, err)
	}

	// immune restarted mid-analysis: the new process takes the deploy up
	// again from ZooKeeper and the store, and reaches the verdict.
	go func() {
		time.Sleep(5 * time.Second)
		t.Log("restarting immune")
		e.restartMu.Lock()
		e.restart(ctx)
		e.restartMu.Unlock()
	}()
	rd := e.deploy(ctx, "e2e-restart", "v3", "v2", deploy.StateDone)
	if rd.Verdict != "pass" || rd.Revert != nil {
		t.Fatalf("immune restarted mid-analysis: verdict %q revert %+v: %s", rd.Verdict, rd.Revert, rd.Reason)
	}

	// ZooKeeper stopped and restarted mid-analysis of a harmless deploy:
	// the analysis goes on, the verdict is pass, nothing is reverted.
	go func() {
		time.Sleep(8 * time.Second)
		t.Log("stopping ZooKeeper")
		e.zk.Stop()
		time.Sleep(2 * time.Second)
		t.Log("restarting ZooKeeper")
		e.zk.Restart()
	}()
	zkd := e.deploy(ctx, "e2e-zk", "v4", "v3", "")
	if zkd.Verdict != "pass" || zkd.Revert != nil {
		t.Fatalf("ZooKeeper restarted mid-analysis: verdict %q revert %+v: %s", zkd.Verdict, zkd.Revert, zkd.Reason)
	}
	e.noRevertZnode("e2e-zk")

	// Prometheus gone mid-analysis: looks are skipped, never judged; the
	// verdict is inconclusive and nothing is reverted.
	e.stopPrometheus()
	pd := e.deploy(ctx, "e2e-noprom", "v2-bad", "v4", "")
	if pd.Verdict != "inconclusive" || pd.Revert != nil {
		t.Fatalf("Prometheus down: verdict %q revert %+v: %s", pd.Verdict, pd.Revert, pd.Reason)
	}
	e.noRevertZnode("e2e-noprom")
}

// start starts immune in-process on the test's data directory.
func (e *e2e) start(ctx context.Context) {
	t := e.t
	rules := filepath.Join(e.dir, "checkout.yaml")
	if err := os.WriteFile(rules, []byte(e2eRules), 0o644); err != nil {
		t.Fatal(err)
	}
	token := filepath.Join(e.dir, "grafana-token")
	if err := os.WriteFile(token, []byte("e2e-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(filepath.Join(e.dir, "immune.yaml"), []byte(fmt.Sprintf(`
listen: 127.0.0.1:0
instance: immune-e2e
data_dir: %s
rules: [checkout.yaml]
metrics:
  source: prometheus
  prometheus: {url: %q, timeout: 5s}
zookeeper:
  servers: [%q]
  session_timeout: 4s
rollback:
  trigger: zookeeper
grafana:
  url: %q
  token_file: grafana-token
analysis:
  delay: 2s
  gate_looks: 2
`, e.dir, e.promURL, e.zk.Addr(), e.grafana.URL)))
	if err != nil {
		t.Fatal(err)
	}
	imm, err := newServer(ctx, cfg, serverOptions{Log: slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- imm.Run(rctx, ln, nil) }()
	e.imm = imm
	e.base = "http://" + ln.Addr().String()
	e.stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("immune run: %v", err)
		}
		imm.Close()
	}
	t.Cleanup(func() {
		if e.stop != nil {
			e.stop()
			e.stop = nil
		}
	})
}

func (e *e2e) restart(ctx context.Context) {
	e.stop()
	e.stop = nil
	e.start(ctx)
}

// waitScraped waits until Prometheus has scraped the fleet.
func (e *e2e) waitScraped(ctx context.Context) {
	t := e.t
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		v, _, err := e.imm.src.Query(ctx, `count(up{job="checkout"} == 1)`, time.Now())
		if err == nil && len(v) == 1 && v[0].Sample.V == 4 {
			time.Sleep(5 * time.Second) // a few samples for rate()
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatal("Prometheus did not discover and scrape the 4 instances within 60 s")
}

// deploy rolls a version out and waits for immune's verdict.
func (e *e2e) deploy(ctx context.Context, id, version, prev, wantState string) analysis.Record {
	t := e.t
	res, err := e.mgr.Deploy(ctx, sim.Request{ID: id, Version: version, PreviousVersion: prev, Groups: []int{1, 2, 1}})
	if err != nil && wantState != "" {
		t.Fatalf("deploy %s: %v", id, err)
	}
	if wantState != "" && res.Record.State != wantState {
		t.Fatalf("deploy %s ended %q (%s), want %q", id, res.Record.State, res.Reason, wantState)
	}
	wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	var r analysis.Record
	for {
		e.restartMu.Lock()
		rec, ok := e.imm.sup.Lookup(id)
		e.restartMu.Unlock()
		if ok && rec.State == analysis.StateDecided {
			r = rec
			break
		}
		select {
		case <-wctx.Done():
			t.Fatalf("no verdict for deploy %s within 90 s (record %+v)", id, rec)
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Logf("%s: %s: %s", id, r.Verdict, strings.Join(r.Explanation, " | "))
	return r
}

func (e *e2e) revertZnode(id string) deploy.RevertRecord {
	data, st, err := e.conn.Get(deploy.DefaultLayout.Revert("checkout", id))
	if err != nil {
		e.t.Fatalf("revert znode of %s: %v", id, err)
	}
	if st.Version != 0 {
		e.t.Fatalf("revert znode of %s written %d times", id, st.Version+1)
	}
	var rr deploy.RevertRecord
	if err := json.Unmarshal(data, &rr); err != nil {
		e.t.Fatal(err)
	}
	return rr
}

func (e *e2e) noRevertZnode(id string) {
	ok, _, err := e.conn.Exists(deploy.DefaultLayout.Revert("checkout", id))
	if err != nil && err != zk.ErrNoNode {
		e.t.Fatal(err)
	}
	if ok {
		e.t.Fatalf("deploy %s has a revert znode", id)
	}
}

func (e *e2e) stopPrometheus() {
	e.promStop()
	if _, err := http.Get(e.promURL + "/-/ready"); err == nil {
		e.t.Fatal("Prometheus still answers after its stop")
	}
}

// get returns the body of a GET on immune, failing the test on an error
// or a status other than 200.
func (e *e2e) get(path string) string {
	e.t.Helper()
	resp, err := http.Get(e.base + path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	if _, err := io.Copy(&b, resp.Body); err != nil {
		e.t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		e.t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b.String())
	}
	return b.String()
}

// testLog writes immune's log lines into the test's log.
type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// fakeGrafana follows Grafana's annotation HTTP API (POST, PATCH and GET
// /api/annotations) with bearer auth.
type fakeGrafana struct {
	*httptest.Server
	token string
	mu    sync.Mutex
	next  int
	anns  map[int]map[string]any
}

func newFakeGrafana(t *testing.T, token string) *fakeGrafana {
	g := &fakeGrafana{token: token, anns: map[int]map[string]any{}}
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, code int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(v)
	}
	auth := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer "+g.token {
				reply(w, 401, map[string]string{"message": "Unauthorized"})
				return
			}
			h(w, r)
		}
	}
	mux.HandleFunc("POST /api/annotations", auth(func(w http.ResponseWriter, r *http.Request) {
		var a map[string]any
		if err := json.NewDecoder(r.Body).Decode(&a); err != nil {
			reply(w, 400, map[string]string{"message": "bad request data"})
			return
		}
		g.mu.Lock()
		g.next++
		id := g.next
		a["id"] = id
		g.anns[id] = a
		g.mu.Unlock()
		reply(w, 200, map[string]any{"message": "Annotation added", "id": id})
	}))
	mux.HandleFunc("PATCH /api/annotations/{id}", auth(func(w http.ResponseWriter, r *http.Request) {
		id, _ := strconv.Atoi(r.PathValue("id"))
		var p map[string]any
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
			reply(w, 400, map[string]string{"message": "bad request data"})
			return
		}
		g.mu.Lock()
		a, ok := g.anns[id]
		if ok {
			for k, v := range p {
				a[k] = v
			}
		}
		g.mu.Unlock()
		if !ok {
			reply(w, 404, map[string]string{"message": "Annotation not found"})
			return
		}
		reply(w, 200, map[string]string{"message": "Annotation patched"})
	}))
	mux.HandleFunc("GET /api/annotations", auth(func(w http.ResponseWriter, r *http.Request) {
		want := r.URL.Query()["tags"]
		g.mu.Lock()
		var out []map[string]any
		for _, a := range g.anns {
			if hasTags(a, want) {
				out = append(out, a)
			}
		}
		g.mu.Unlock()
		if out == nil {
			out = []map[string]any{}
		}
		reply(w, 200, out)
	}))
	g.Server = httptest.NewServer(mux)
	t.Cleanup(g.Close)
	return g
}

func hasTags(a map[string]any, want []string) bool {
	raw, _ := a["tags"].([]any)
	var tags []string
	for _, x := range raw {
		if s, ok := x.(string); ok {
			tags = append(tags, s)
		}
	}
	for _, w := range want {
		if !slices.Contains(tags, w) {
			return false
		}
	}
	return true
}

// want waits for an annotation carrying all the tags.
func (g *fakeGrafana) want(t *testing.T, tags ...string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		g.mu.Lock()
		for _, a := range g.anns {
			if hasTags(a, tags) {
				g.mu.Unlock()
				return
			}
		}
		g.mu.Unlock()
		time.Sleep(200 * time.Millisecond)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	var all []any
	for _, a := range g.anns {
		all = append(all, a["tags"])
	}
	t.Fatalf("no Grafana annotation with tags %v; have %v", tags, all)
}
