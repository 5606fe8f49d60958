package zookeeper_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/immune-project/immune/internal/zk"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/internal/zkconn"
	"github.com/immune-project/immune/internal/zktest"
	"github.com/immune-project/immune/rollback"
	"github.com/immune-project/immune/rollback/audit"
	"github.com/immune-project/immune/rollback/rollbacktest"
	rzk "github.com/immune-project/immune/rollback/zookeeper"
)

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func dial(t *testing.T, cfg zkconn.Config) *zkconn.Conn {
	t.Helper()
	if cfg.Logger == nil {
		// The client's own log (reconnects, handshakes) at debug level, shown
		// when a test fails.
		cfg.Logger = slog.New(slog.NewTextHandler(newTWriter(t), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	c, err := zkconn.Dial(testCtx(t, 20*time.Second), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// tWriter sends log lines to t.Log until the test's cleanups are done
// (the client's goroutines may still log after that).
type tWriter struct {
	t    *testing.T
	mu   sync.Mutex
	done bool
}

func newTWriter(t *testing.T) *tWriter {
	w := &tWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return w
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

func layout(root string) deploy.Layout {
	return deploy.Layout{Services: root + "/services", Deploys: root + "/deploys", Owners: root + "/immune/owners"}
}

// instance is one immune instance: its connection, ownership, trigger
// and audit log.
type instance struct {
	name    string
	conn    *zkconn.Conn
	owners  *rzk.Owners
	trigger *rzk.Trigger
	log     *audit.Log
	once    *rollback.OnceTrigger
	reg     *prometheus.Registry
}

func newInstance(t *testing.T, name, root string, cfg zkconn.Config, lostAfter time.Duration) *instance {
	t.Helper()
	conn := dial(t, cfg)
	reg := prometheus.NewPedanticRegistry()
	m := rollback.NewMetrics(reg)
	o, err := rzk.NewOwners(conn, rzk.Options{Layout: layout(root), FenceRoot: root + "/immune/fences",
		Instance: name, LostAfter: lostAfter, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = o.Close(context.Background()) })
	log, err := audit.Open(filepath.Join(t.TempDir(), name+".jsonl"), audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	tr := rzk.NewTrigger(o)
	return &instance{name: name, conn: conn, owners: o, trigger: tr, log: log, reg: reg,
		once: rollback.Once(tr, log, rollback.OnceOptions{Name: rzk.Name, Metrics: m})}
}

// decide is the end of an analysis: the decision on file, then the revert.
func (in *instance) decide(ctx context.Context, t *testing.T, d deploy.Deploy) (rollback.Result, error) {
	req := rollbacktest.Request(d)
	req.Instance = in.name
	if err := in.log.Append(ctx, audit.Record{Time: req.At, Kind: audit.KindDecision, DeployID: d.ID,
		Service: d.Service, Version: d.Version, Verdict: "fail", Reason: req.Reason, Evidence: req.Evidence, Instance: in.name}); err != nil {
		t.Fatal(err)
	}
	return in.once.Revert(ctx, req)
}

// manager is the deployment manager's side: it creates the deploy znode
// and reads the revert znode.
type manager struct {
	conn *zkconn.Conn
	l    deploy.Layout
}

func newManager(t *testing.T, addr, root string) *manager {
	return &manager{conn: dial(t, zkconn.Config{Servers: []string{addr}}), l: layout(root)}
}

func (m *manager) announce(t *testing.T, d deploy.Deploy) {
	t.Helper()
	if err := m.conn.EnsurePath(m.l.Deploy(d.Service, d.ID)); err != nil {
		t.Fatal(err)
	}
}

// reverts is the number of revert requests written for d (0 or 1: a
// znode exists once) and the record; a version other than 0 would show
// it written twice.
func (m *manager) reverts(t *testing.T, d deploy.Deploy) (int, deploy.RevertRecord) {
	t.Helper()
	data, stat, err := m.conn.Get(m.l.Revert(d.Service, d.ID))
	if errors.Is(err, zk.ErrNoNode) {
		return 0, deploy.RevertRecord{}
	}
	if err != nil {
		t.Fatal(err)
	}
	if stat.Version != 0 {
		t.Errorf("revert znode at version %d: written more than once", stat.Version)
	}
	var r deploy.RevertRecord
	if err := deploy.Unmarshal(m.l.Revert(d.Service, d.ID), data, &r); err != nil {
		t.Fatal(err)
	}
	return 1, r
}

// results reads the audit log back from its file: the kinds and
// results of a deploy's records, in order.
func results(log *audit.Log, id string) string {
	recs, err := audit.ReadFile(log.Path())
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, r := range recs {
		if r.DeployID != id {
			continue
		}
		if r.Kind == audit.KindRevert {
			out = append(out, r.Result)
		} else {
			out = append(out, r.Kind)
		}
	}
	return strings.Join(out, " ")
}

func TestSuite(t *testing.T) {
	addr := zktest.Shared(t)
	rollbacktest.Run(t, func(t *testing.T) rollbacktest.Harness {
		root := zktest.Root(t)
		m := newManager(t, addr, root)
		in := newInstance(t, "immune-a", root, zkconn.Config{Servers: []string{addr}}, 0)
		var (
			mu       sync.Mutex
			prepared []deploy.Deploy
		)
		setACL := func(t *testing.T, acl []zk.ACL) {
			mu.Lock()
			defer mu.Unlock()
			for _, d := range prepared {
				if _, err := m.conn.SetACL(m.l.Deploy(d.Service, d.ID), acl, -1); err != nil {
					t.Fatal(err)
				}
			}
		}
		return rollbacktest.Harness{
			Trigger: in.trigger,
			Name:    rzk.Name,
			Prepare: func(t *testing.T, d deploy.Deploy) {
				m.announce(t, d)
				if _, err := in.owners.Acquire(testCtx(t, 10*time.Second), d.ID); err != nil {
					t.Fatal(err)
				}
				mu.Lock()
				prepared = append(prepared, d)
				mu.Unlock()
			},
			Reverts: func(t *testing.T, id string) int {
				n, _ := m.reverts(t, deploy.Deploy{ID: id, Service: "checkout"})
				return n
			},
			Break: func(t *testing.T) func() {
				setACL(t, zk.WorldACL(zk.PermRead|zk.PermAdmin))
				return func() { setACL(t, zk.WorldACL(zk.PermAll)) }
			},
			Restart: func(t *testing.T) rollback.Trigger {
				return newInstance(t, "immune-a", root, zkconn.Config{Servers: []string{addr}}, 0).trigger
			},
		}
	})
}

// TestOnceSuite: the ZooKeeper trigger behind Once, as immune run wires it.
func TestOnceSuite(t *testing.T) {
	addr := zktest.Shared(t)
	rollbacktest.Run(t, func(t *testing.T) rollbacktest.Harness {
		root := zktest.Root(t)
		m := newManager(t, addr, root)
		in := newInstance(t, "immune-a", root, zkconn.Config{Servers: []string{addr}}, 0)
		return rollbacktest.Harness{
			Trigger: in.once,
			Name:    rzk.Name,
			Prepare: func(t *testing.T, d deploy.Deploy) {
				m.announce(t, d)
				if _, err := in.owners.Acquire(testCtx(t, 10*time.Second), d.ID); err != nil {
					t.Fatal(err)
				}
			},
			Reverts: func(t *testing.T, id string) int {
				n, _ := m.reverts(t, deploy.Deploy{ID: id, Service: "checkout"})
				return n
			},
		}
	})
}

// TestHappyPath: an instance owns the deploy, analyses, decides, and the
// revert request is written once, with the decision and the revert on
// file.
func TestHappyPath(t *testing.T) {
	addr := zktest.Shared(t)
	root := zktest.Root(t)
	ctx := testCtx(t, 30*time.Second)
	m := newManager(t, addr, root)
	a := newInstance(t, "immune-a", root, zkconn.Config{Servers: []string{addr}}, 0)
	d := rollbacktest.Deploy(t, 1)
	m.announce(t, d)
	lease, err := a.owners.Acquire(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the analysis
	res, err := a.decide(ctx, t, d)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Reverted || res.Already || res.ZKVersion != 0 || res.Attempts != 1 {
		t.Errorf("result %+v", res)
	}
	n, rec := m.reverts(t, d)
	if n != 1 || rec.DeployID != d.ID || rec.Service != d.Service || rec.Version != d.Version || rec.Instance != "immune-a" || rec.Reason == "" || rec.At.IsZero() {
		t.Errorf("revert znode: %d %+v", n, rec)
	}
	if got := results(a.log, d.ID); got != "decision reverted" {
		t.Errorf("audit log: %q, want %q", got, "decision reverted")
	}
	if r, ok := a.log.Reverted(d.ID); !ok || r.ZKVersion == nil || *r.ZKVersion != 0 {
		t.Errorf("audit Reverted: %+v %v", r, ok)
	}
	// The gate: the verdict znode, created then replaced, fenced too.
	for i, dec := range []string{deploy.GateProceed, deploy.GateRevert} {
		v, err := a.trigger.WriteVerdict(ctx, d, deploy.VerdictRecord{Verdict: "fail", Group: i, Decision: dec, At: d.Time})
		if err != nil || v != int32(i) {
			t.Fatalf("WriteVerdict %s: version %d, %v; want %d", dec, v, err, i)
		}
	}
	data, _, err := m.conn.Get(layout(root).Verdict(d.Service, d.ID))
	if err != nil {
		t.Fatal(err)
	}
	var vr deploy.VerdictRecord
	if err := json.Unmarshal(data, &vr); err != nil || vr.Decision != deploy.GateRevert || vr.DeployID != d.ID || vr.Instance != "immune-a" {
		t.Errorf("verdict znode: %+v %v", vr, err)
	}
	want := `
# HELP immune_rollbacks_total Revert decisions handed to a trigger, by trigger and result (reverted, already, shadow, failed).
# TYPE immune_rollbacks_total counter
immune_rollbacks_total{result="reverted",trigger="zookeeper"} 1
# HELP immune_trigger_attempts_total Tries of a trigger (HTTP requests, ZooKeeper transactions, command runs), by trigger and result.
# TYPE immune_trigger_attempts_total counter
immune_trigger_attempts_total{result="ok",trigger="zookeeper"} 1
`
	if err := testutil.GatherAndCompare(a.reg, strings.NewReader(want), "immune_rollbacks_total", "immune_trigger_attempts_total"); err != nil {
		t.Error(err)
	}
	if err := lease.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.trigger.WriteVerdict(ctx, d, deploy.VerdictRecord{Decision: deploy.GateProceed}); !errors.Is(err, rollback.ErrNotOwner) {
		t.Errorf("WriteVerdict after Release: %v, want ErrNotOwner", err)
	}
	if ok, _, _ := m.conn.Exists(layout(root).Owner(d.ID)); ok {
		t.Error("the owner znode outlived Release")
	}
}

// TestServerRestart: the ZooKeeper server stops mid-analysis; the
// decision is taken while it is down; the revert is written once when it
// is back, over the same session.
func TestServerRestart(t *testing.T) {
	srv := zktest.Start(t)
	root := zktest.Root(t)
	ctx := testCtx(t, 60*time.Second)
	m := newManager(t, srv.Addr(), root)
	a := newInstance(t, "immune-a", root, zkconn.Config{Servers: []string{srv.Addr()}, SessionTimeout: 20 * time.Second}, 40*time.Second)
	d := rollbacktest.Deploy(t, 1)
	m.announce(t, d)
	lease, err := a.owners.Acquire(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	type out struct {
		res rollback.Result
		err error
	}
	done := make(chan out, 1)
	go func() {
		res, err := a.decide(ctx, t, d)
		done <- out{res, err}
	}()
	time.Sleep(time.Second) // the revert is being tried against no server
	select {
	case o := <-done:
		t.Fatalf("Revert returned while the server is down: %+v %v", o.res, o.err)
	default:
	}
	srv.Restart()
	o := <-done
	if o.err != nil {
		t.Fatal(o.err)
	}
	if !o.res.Reverted || o.res.Already {
		t.Errorf("result %+v", o.res)
	}
	select {
	case <-lease.Lost():
		t.Error("the lease was lost over a server restart shorter than the session timeout")
	default:
	}
	if n, rec := m.reverts(t, d); n != 1 || rec.Instance != "immune-a" {
		t.Errorf("reverts %d %+v, want 1", n, rec)
	}
	if got := results(a.log, d.ID); got != "decision reverted" {
		t.Errorf("audit log: %q", got)
	}
}

// TestSessionExpiry: the owner's session expires mid-analysis (network
// cut past the session timeout). Its revert must fail the fence and never
// be written; another instance takes over and reverts once.
func TestSessionExpiry(t *testing.T) {
	addr := zktest.Shared(t)
	root := zktest.Root(t)
	ctx := testCtx(t, 60*time.Second)
	m := newManager(t, addr, root)
	proxy := zktest.NewProxy(t, addr)
	// LostAfter far beyond the cut: the old owner does not give up on
	// its own; only the fence stops it.
	a := newInstance(t, "immune-a", root, zkconn.Config{Servers: []string{proxy.Addr()}, SessionTimeout: 2 * time.Second}, time.Hour)
	b := newInstance(t, "immune-b", root, zkconn.Config{Servers: []string{addr}}, 0)
	d := rollbacktest.Deploy(t, 1)
	m.announce(t, d)
	leaseA, err := a.owners.Acquire(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	fenceA := leaseA.(*rzk.Lease).Fence()
	if _, err := b.owners.Acquire(ctx, d.ID); !errors.Is(err, rollback.ErrOwned) || !strings.Contains(err.Error(), "immune-a") {
		t.Fatalf("B acquires a deploy A owns: %v, want ErrOwned naming immune-a", err)
	}
	took := make(chan rollback.Lease, 1)
	go func() {
		l, err := b.owners.Wait(ctx, d.ID)
		if err != nil {
			t.Error(err)
		}
		took <- l
	}()
	proxy.Cut()
	var leaseB rollback.Lease
	select {
	case leaseB = <-took:
	case <-ctx.Done():
		t.Fatal("B did not take over after A's session expired")
	}
	if leaseB == nil {
		t.FailNow()
	}
	proxy.Restore()
	// A decides with the lease it believes it holds.
	resA, errA := a.decide(ctx, t, d)
	if !errors.Is(errA, rollback.ErrNotOwner) || resA.Reverted {
		t.Fatalf("A's revert after its session expired: %+v %v, want ErrNotOwner", resA, errA)
	}
	if n, _ := m.reverts(t, d); n != 0 {
		t.Fatal("A's revert was written")
	}
	select {
	case <-leaseA.Lost():
	case <-ctx.Done():
		t.Fatal("A's lease not lost after its session expired")
	}
	// The fence itself: a transaction through A's connection (a new
	// session now), checking A's fence, fails; checking the owner
	// znode's version would have passed, as B's znode has version 0 too.
	if err := a.conn.WaitSession(ctx); err != nil {
		t.Fatal(err)
	}
	revertPath := layout(root).Revert(d.Service, d.ID)
	_, err = leaseA.(*rzk.Lease).Multi(ctx, &zk.CreateRequest{Path: revertPath, Acl: zk.WorldACL(zk.PermAll)})
	if !errors.Is(err, zk.ErrNoNode) {
		t.Fatalf("a stale fenced write through the lease: %v, want %v", err, zk.ErrNoNode)
	}
	_, err = a.conn.Multi(&zk.CheckVersionRequest{Path: fenceA, Version: 0}, &zk.CreateRequest{Path: revertPath, Acl: zk.WorldACL(zk.PermAll)})
	if !errors.Is(err, zk.ErrNoNode) {
		t.Fatalf("a stale fenced write: %v, want %v", err, zk.ErrNoNode)
	}
	if _, err := a.conn.Multi(&zk.CheckVersionRequest{Path: layout(root).Owner(d.ID), Version: 0}); err != nil {
		t.Fatalf("the owner znode (B's now) at version 0, as A's was: %v", err)
	}
	// B resumes from what was recorded (nothing reverted yet) and reverts.
	resB, err := b.decide(ctx, t, d)
	if err != nil || !resB.Reverted || resB.Already {
		t.Fatalf("B's revert: %+v %v", resB, err)
	}
	if n, rec := m.reverts(t, d); n != 1 || rec.Instance != "immune-b" {
		t.Errorf("reverts %d by %q, want 1 by immune-b", n, rec.Instance)
	}
	if got := results(a.log, d.ID); got != "decision failed" {
		t.Errorf("A's audit log: %q, want %q", got, "decision failed")
	}
	if recs := a.log.Reverts(d.ID); len(recs) != 1 || !strings.Contains(recs[0].Error, "not the owner") {
		t.Errorf("A's revert record: %+v", recs)
	}
	if got := results(b.log, d.ID); got != "decision reverted" {
		t.Errorf("B's audit log: %q, want %q", got, "decision reverted")
	}
	// A cannot take the deploy back while B holds it.
	if _, err := a.owners.Acquire(ctx, d.ID); !errors.Is(err, rollback.ErrOwned) {
		t.Errorf("A re-acquires: %v, want ErrOwned", err)
	}
}

// TestRace: two instances race for one deploy: exactly one owns it and
// reverts; the other takes over when it is released and finds the revert
// done.
func TestRace(t *testing.T) {
	addr := zktest.Shared(t)
	root := zktest.Root(t)
	ctx := testCtx(t, 30*time.Second)
	m := newManager(t, addr, root)
	ins := []*instance{
		newInstance(t, "immune-a", root, zkconn.Config{Servers: []string{addr}}, 0),
		newInstance(t, "immune-b", root, zkconn.Config{Servers: []string{addr}}, 0),
	}
	d := rollbacktest.Deploy(t, 1)
	m.announce(t, d)
	var (
		wg     sync.WaitGroup
		leases = make([]rollback.Lease, 2)
		errs   = make([]error, 2)
	)
	start := make(chan struct{})
	for i, in := range ins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			leases[i], errs[i] = in.owners.Acquire(ctx, d.ID)
		}()
	}
	close(start)
	wg.Wait()
	owner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if owner >= 0 {
				t.Fatal("both instances own the deploy")
			}
			owner = i
		case !errors.Is(err, rollback.ErrOwned):
			t.Fatalf("instance %d: %v", i, err)
		}
	}
	if owner < 0 {
		t.Fatal("nobody owns the deploy")
	}
	other := ins[1-owner]
	// The other one reverts without owning: refused, nothing written.
	if _, err := other.trigger.Revert(ctx, rollbacktest.Request(d)); !errors.Is(err, rollback.ErrNotOwner) {
		t.Fatalf("revert by the non-owner: %v, want ErrNotOwner", err)
	}
	took := make(chan rollback.Lease, 1)
	go func() {
		l, err := other.owners.Wait(ctx, d.ID)
		if err != nil {
			t.Error(err)
		}
		took <- l
	}()
	if _, err := ins[owner].decide(ctx, t, d); err != nil {
		t.Fatal(err)
	}
	if err := leases[owner].Release(ctx); err != nil {
		t.Fatal(err)
	}
	l := <-took
	if l == nil {
		t.FailNow()
	}
	defer l.Release(ctx)
	res, err := other.decide(ctx, t, d)
	if err != nil || !res.Already {
		t.Fatalf("the new owner's revert: %+v %v, want Already", res, err)
	}
	if n, rec := m.reverts(t, d); n != 1 || rec.Instance != ins[owner].name {
		t.Errorf("reverts %d by %q", n, rec.Instance)
	}
	if got := results(ins[owner].log, d.ID); got != "decision reverted" {
		t.Errorf("owner's audit: %q", got)
	}
	if got := results(other.log, d.ID); got != "decision already" {
		t.Errorf("other's audit: %q", got)
	}
}

// TestDuplicateDecision: the same decision twice (a retried look, a
// restart) reverts once; the audit log shows both calls.
func TestDuplicateDecision(t *testing.T) {
	addr := zktest.Shared(t)
	root := zktest.Root(t)
	ctx := testCtx(t, 30*time.Second)
	m := newManager(t, addr, root)
	a := newInstance(t, "immune-a", root, zkconn.Config{Servers: []string{addr}}, 0)
	d := rollbacktest.Deploy(t, 1)
	m.announce(t, d)
	if _, err := a.owners.Acquire(ctx, d.ID); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := a.decide(ctx, t, d); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := m.reverts(t, d); n != 1 {
		t.Errorf("%d reverts", n)
	}
	if got := results(a.log, d.ID); got != "decision reverted decision already" {
		t.Errorf("audit: %q", got)
	}
}

// TestCredentialsNeverLeak: with digest credentials, the znodes immune
// creates carry a digest ACL, and neither the logs nor the errors show
// the password.
func TestCredentialsNeverLeak(t *testing.T) {
	addr := zktest.Shared(t)
	root := zktest.Root(t)
	ctx := testCtx(t, 30*time.Second)
	const secret = "s3cr3t-Pa55word"
	creds := filepath.Join(t.TempDir(), "creds")
	if err := os.WriteFile(creds, []byte("immune:"+secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	lg := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m := newManager(t, addr, root)
	conn := dial(t, zkconn.Config{Servers: []string{addr}, CredentialsFile: creds, Logger: lg})
	o, err := rzk.NewOwners(conn, rzk.Options{Layout: layout(root), FenceRoot: root + "/immune/fences", Instance: "immune-a", Logger: lg})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close(ctx)
	log, err := audit.Open(filepath.Join(t.TempDir(), "a.jsonl"), audit.Options{Logger: lg})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	tr := rollback.Once(rzk.NewTrigger(o), log, rollback.OnceOptions{Name: rzk.Name, Logger: lg})
	var errs []error
	d := rollbacktest.Deploy(t, 1)
	_, err = tr.Revert(ctx, rollbacktest.Request(d)) // not owner
	errs = append(errs, err)
	m.announce(t, d)
	if _, err := o.Acquire(ctx, d.ID); err != nil {
		t.Fatal(err)
	}
	_, err = o.Acquire(ctx, d.ID) // owned
	errs = append(errs, err)
	if _, err := tr.Revert(ctx, rollbacktest.Request(d)); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{layout(root).Revert(d.Service, d.ID), layout(root).Owner(d.ID)} {
		acl, _, err := m.conn.GetACL(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(acl) == 0 || acl[0].Scheme != "digest" || acl[0].Perms != zk.PermAll {
			t.Errorf("%s: ACL %+v, want digest first", p, acl)
		}
		if _, err := m.conn.Set(p, []byte("x"), -1); !errors.Is(err, zk.ErrNoAuth) {
			t.Errorf("%s written without credentials: %v", p, err)
		}
	}
	// A wrong password fails without showing it.
	bad := filepath.Join(t.TempDir(), "bad")
	if err := os.WriteFile(bad, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = zkconn.Dial(ctx, zkconn.Config{Servers: []string{addr}, CredentialsFile: bad, Logger: lg})
	errs = append(errs, err)
	raw, err := os.ReadFile(log.Path())
	if err != nil {
		t.Fatal(err)
	}
	for i, err := range errs {
		if err == nil {
			t.Errorf("error %d: nil", i)
		} else if strings.Contains(err.Error(), secret) {
			t.Errorf("error %d shows the password: %v", i, err)
		}
	}
	if strings.Contains(logs.String(), secret) || strings.Contains(string(raw), secret) {
		t.Errorf("the password is in the logs or the audit log:\n%s", logs.String())
	}
	if logs.Len() == 0 {
		t.Error("nothing logged: the check proves nothing")
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  rzk.Config
		want string
	}{
		{rzk.Config{}, ""},
		{rzk.Config{FenceRoot: "/immune/fences"}, ""},
		{rzk.Config{FenceRoot: "immune"}, "fence_root"},
		{rzk.Config{FenceRoot: "/a/../b"}, "fence_root"},
		{rzk.Config{LostAfter: -time.Second}, "lost_after"},
	} {
		err := tc.cfg.Validate()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
	if _, err := rzk.NewOwners(nil, rzk.Options{Instance: "a/b"}); err == nil {
		t.Error("NewOwners accepted an instance name with a slash")
	}
	_ = fmt.Sprint()
}

// TestOwnerZnodeDeleted: an owner znode deleted by hand ends the lease
// (Lost), and the old owner drops its fence, so none of its writes pass.
func TestOwnerZnodeDeleted(t *testing.T) {
	addr := zktest.Shared(t)
	root := zktest.Root(t)
	ctx := testCtx(t, 30*time.Second)
	m := newManager(t, addr, root)
	a := newInstance(t, "immune-a", root, zkconn.Config{Servers: []string{addr}}, 0)
	d := rollbacktest.Deploy(t, 1)
	m.announce(t, d)
	l, err := a.owners.Acquire(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	fence := l.(*rzk.Lease).Fence()
	if err := m.conn.Delete(layout(root).Owner(d.ID), -1); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Lost():
	case <-ctx.Done():
		t.Fatal("the lease outlived its owner znode")
	}
	for {
		ok, _, err := m.conn.Exists(fence)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the fence outlived the lease")
		case <-time.After(20 * time.Millisecond):
		}
	}
	if _, err := a.trigger.Revert(ctx, rollbacktest.Request(d)); !errors.Is(err, rollback.ErrNotOwner) {
		t.Fatalf("revert after the lease ended: %v, want ErrNotOwner", err)
	}
	if n, _ := m.reverts(t, d); n != 0 {
		t.Fatal("written")
	}
}

// TestRetakeAfterLostOverRestart: a lease given up as lost during a server
// outage longer than lost_after, while the session itself survives (the
// server came back within the session timeout), leaves the owner znode to
// the same session; Wait must take the deploy again rather than wait for
// that znode, which only its own session could remove.
func TestRetakeAfterLostOverRestart(t *testing.T) {
	srv := zktest.Start(t)
	root := zktest.Root(t)
	ctx := testCtx(t, 120*time.Second) // a ZooKeeper restart under a loaded CI machine
	m := newManager(t, srv.Addr(), root)
	a := newInstance(t, "immune-a", root, zkconn.Config{Servers: []string{srv.Addr()}, SessionTimeout: 20 * time.Second}, time.Second)
	d := rollbacktest.Deploy(t, 1)
	m.announce(t, d)
	lease, err := a.owners.Acquire(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	select {
	case <-lease.Lost():
	case <-ctx.Done():
		t.Fatal("the lease was not given up after lost_after without a session")
	}
	srv.Restart()
	again, err := a.owners.Wait(ctx, d.ID)
	if err != nil {
		t.Fatalf("Wait after the outage: %v", err)
	}
	res, err := a.decide(ctx, t, d)
	if err != nil || !res.Reverted {
		t.Fatalf("revert with the lease taken again: %+v %v", res, err)
	}
	if n, _ := m.reverts(t, d); n != 1 {
		t.Fatalf("%d reverts, want 1", n)
	}
	_ = again
}

// TestCloseConcurrent: Close called at the same time from two goroutines
// closes once (no server needed: nothing is owned).
func TestCloseConcurrent(t *testing.T) {
	for range 200 {
		o, err := rzk.NewOwners(nil, rzk.Options{Instance: "immune-a"})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				if err := o.Close(context.Background()); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
}

// TestRevertReads: a revert reads the revert znode once before its
// transaction; one written meanwhile (the transaction finds it) is
// Already, counted once.
func TestRevertReads(t *testing.T) {
	addr := zktest.Shared(t)
	root := zktest.Root(t)
	ctx := testCtx(t, 30*time.Second)
	m := newManager(t, addr, root)
	a := newInstance(t, "immune-a", root, zkconn.Config{Servers: []string{addr}}, 0)
	var (
		mu     sync.Mutex
		ops    []string
		before func()
	)
	rzk.SetTrace(a.trigger, func(op string) {
		mu.Lock()
		ops = append(ops, op)
		f := before
		mu.Unlock()
		if op == "multi" && f != nil {
			f()
		}
	})
	trace := func() string {
		mu.Lock()
		defer mu.Unlock()
		s := strings.Join(ops, " ")
		ops = nil
		return s
	}
	d1, d2 := rollbacktest.Deploy(t, 1), rollbacktest.Deploy(t, 2)
	for _, d := range []deploy.Deploy{d1, d2} {
		m.announce(t, d)
		if _, err := a.owners.Acquire(ctx, d.ID); err != nil {
			t.Fatal(err)
		}
	}
	res, err := a.trigger.Revert(ctx, rollbacktest.Request(d1))
	if err != nil || !res.Reverted || res.Already {
		t.Fatalf("%+v %v", res, err)
	}
	if got := trace(); got != "exists multi" {
		t.Errorf("calls %q, want one read then the transaction", got)
	}
	// The deployment manager (or anyone) writes d2's revert znode between
	// the read and the transaction.
	mu.Lock()
	before = func() {
		if _, err := m.conn.Create(m.l.Revert(d2.Service, d2.ID), []byte("{}"), 0, zk.WorldACL(zk.PermAll)); err != nil {
			t.Error(err)
		}
	}
	mu.Unlock()
	res, err = a.trigger.Revert(ctx, rollbacktest.Request(d2))
	if err != nil || !res.Reverted || !res.Already || res.ZKVersion != 0 {
		t.Fatalf("%+v %v", res, err)
	}
	if got := trace(); got != "exists multi exists" {
		t.Errorf("calls %q, want a read, the transaction, a read of the version", got)
	}
	want := `
# HELP immune_trigger_attempts_total Tries of a trigger (HTTP requests, ZooKeeper transactions, command runs), by trigger and result.
# TYPE immune_trigger_attempts_total counter
immune_trigger_attempts_total{result="already",trigger="zookeeper"} 1
immune_trigger_attempts_total{result="ok",trigger="zookeeper"} 1
`
	if err := testutil.GatherAndCompare(a.reg, strings.NewReader(want), "immune_trigger_attempts_total"); err != nil {
		t.Error(err)
	}
}
