package zookeeper_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/immune-project/immune/internal/zk"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/deploy/zookeeper"
	"github.com/immune-project/immune/internal/zkconn"
	"github.com/immune-project/immune/internal/zktest"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func dial(t *testing.T, addr string, timeout time.Duration) *zkconn.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := zkconn.Dial(ctx, zkconn.Config{Servers: []string{addr}, SessionTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func layoutAt(root string) deploy.Layout {
	return deploy.Layout{Services: root + "/services", Deploys: root + "/deploys", Owners: root + "/owners"}
}

// syncBuffer is a log sink safe for the watcher's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// harness runs a watcher and records what it delivers.
type harness struct {
	t      *testing.T
	layout deploy.Layout
	reg    *prometheus.Registry
	logs   *syncBuffer
	mu     sync.Mutex
	events []deploy.Event
}

func watch(t *testing.T, conn *zkconn.Conn, layout deploy.Layout, services ...string) *harness {
	t.Helper()
	h := &harness{t: t, layout: layout, reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
	w, err := zookeeper.New(conn, zookeeper.Options{
		Layout: layout, Services: services, Registerer: h.reg,
		Logger:        slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:           func() time.Time { return t0 },
		RetryInterval: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan deploy.Event)
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, out) }()
	go func() {
		for ev := range out {
			h.mu.Lock()
			h.events = append(h.events, ev)
			h.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
		close(out)
	})
	return h
}

// key names an event for comparisons.
func key(ev deploy.Event) string {
	switch ev.Kind {
	case deploy.EventGroup:
		return fmt.Sprintf("group %s/%d", ev.Deploy.ID, ev.Group.Group)
	case deploy.EventSelfTest:
		return fmt.Sprintf("selftest %s/%s passed=%v", ev.Deploy.ID, ev.SelfTest.Instance, ev.SelfTest.Passed)
	case deploy.EventStarted, deploy.EventState:
		return fmt.Sprintf("%s %s %s", ev.Kind, ev.Deploy.ID, ev.State)
	default:
		return fmt.Sprintf("%s %s", ev.Kind, ev.Deploy.ID)
	}
}

func (h *harness) keys() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	ks := make([]string, len(h.events))
	for i, ev := range h.events {
		ks[i] = key(ev)
	}
	return ks
}

// wait waits until every wanted event arrived, then checks that none
// came twice and that each deploy started before its other events.
func (h *harness) wait(want ...string) {
	h.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		have := map[string]int{}
		for _, k := range h.keys() {
			have[k]++
		}
		var missing []string
		for _, k := range want {
			if have[k] == 0 {
				missing = append(missing, k)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("after 30 s, missing %d events: %q\ngot: %q\nlog:\n%s", len(missing), missing, h.keys(), h.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.check()
}

// check: no event twice; started first for each deploy; Source and At set.
func (h *harness) check() {
	h.t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	seen := map[string]bool{}
	started := map[string]bool{}
	for _, ev := range h.events {
		k := key(ev)
		if seen[k] {
			h.t.Errorf("delivered twice: %s", k)
		}
		seen[k] = true
		if ev.Source != zookeeper.SourceName || !ev.At.Equal(t0) {
			h.t.Errorf("%s: source %q at %v", k, ev.Source, ev.At)
		}
		switch ev.Kind {
		case deploy.EventStarted:
			started[ev.Deploy.ID] = true
		case deploy.EventRemoved:
			delete(started, ev.Deploy.ID)
		default:
			if !started[ev.Deploy.ID] {
				h.t.Errorf("%s before the deploy started", k)
			}
		}
	}
}

// still checks that nothing more than n events came within d.
func (h *harness) still(n int, d time.Duration) {
	h.t.Helper()
	time.Sleep(d)
	if ks := h.keys(); len(ks) != n {
		h.t.Errorf("got %d events, want %d: %q", len(ks), n, ks)
	}
}

// writer writes the deployment manager's and instances' znodes.
type writer struct {
	t      *testing.T
	c      *zkconn.Conn
	layout deploy.Layout
}

// put writes v at p, retrying while the connection is down (a server
// restart).
func (w writer) put(p string, v any) {
	w.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := w.tryPut(p, v)
		if err == nil {
			return
		}
		if !errors.Is(err, zk.ErrNoServer) && !errors.Is(err, zk.ErrConnectionClosed) && !errors.Is(err, zk.ErrSessionMoved) || time.Now().After(deadline) {
			state, id, gen := w.c.Session()
			w.t.Fatalf("%v (writer's session: state %v, id %x, generation %d, library state %v)", err, state, id, gen, w.c.State())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (w writer) tryPut(p string, v any) error {
	var data []byte
	switch v := v.(type) {
	case nil:
	case []byte:
		data = v
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		data = b
	}
	if err := w.c.EnsurePath(path.Dir(p)); err != nil {
		return err
	}
	// A retried Create that went through before the connection broke
	// finds the znode: set it.
	_, err := w.c.Create(p, data, 0, zk.WorldACL(zk.PermAll))
	if errors.Is(err, zk.ErrNodeExists) {
		_, err = w.c.Set(p, data, -1)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}

func dialB(b *testing.B, addr string) *zkconn.Conn {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := zkconn.Dial(ctx, zkconn.Config{Servers: []string{addr}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	return c
}

func mustB(b *testing.B, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}

func record(svc, id, state string) deploy.DeployRecord {
	return deploy.DeployRecord{ID: id, Service: svc, Version: "v2", PreviousVersion: "v1", StartedAt: t0, Groups: []int{1, 2, 4}, State: state}
}

func (w writer) deploy(svc, id, state string) {
	w.t.Helper()
	w.put(w.layout.Deploy(svc, id), record(svc, id, state))
}

func (w writer) group(svc, id string, n int) {
	w.t.Helper()
	w.put(w.layout.Group(svc, id, n), deploy.GroupRecord{Group: n, Instances: []string{fmt.Sprintf("%s-%d", svc, n)}, StartedAt: t0})
}

func (w writer) selftest(svc, id, inst string, passed bool) {
	w.t.Helper()
	w.put(path.Join(w.layout.SelfTests(svc, id), inst), deploy.SelfTestRecord{Instance: inst, Version: "v2", Passed: passed, At: t0})
}

func (w writer) delete(p string) {
	w.t.Helper()
	children, _, err := w.c.Children(p)
	if err != nil {
		w.t.Fatal(err)
	}
	for _, c := range children {
		w.delete(path.Join(p, c))
	}
	if err := w.c.Delete(p, -1); err != nil {
		w.t.Fatalf("delete %s: %v", p, err)
	}
}

func TestWatcherLifecycle(t *testing.T) {
	addr := zktest.Shared(t)
	layout := layoutAt(zktest.Root(t))
	wc := writer{t, dial(t, addr, 0), layout}
	h := watch(t, dial(t, addr, 0), layout)

	wc.deploy("checkout", "d1", deploy.StateRunning)
	h.wait("started d1 running")
	wc.group("checkout", "d1", 0)
	wc.selftest("checkout", "d1", "i-1", true)
	h.wait("group d1/0", "selftest d1/i-1 passed=true")
	wc.group("checkout", "d1", 1)
	wc.selftest("checkout", "d1", "i-2", false)
	// A self test result that changes is delivered again; the same one
	// written again is not.
	wc.selftest("checkout", "d1", "i-1", true)
	wc.selftest("checkout", "d1", "i-1", false)
	h.wait("group d1/1", "selftest d1/i-2 passed=false", "selftest d1/i-1 passed=false")

	// Znodes created before their data: nothing until the data comes,
	// and the deploy's groups only after it started.
	wc.put(layout.Deploy("payments", "d2"), nil)
	wc.put(layout.Group("payments", "d2", 0), nil)
	wc.put(layout.Group("payments", "d2", 1), nil)
	time.Sleep(300 * time.Millisecond)
	if ks := h.keys(); strings.Contains(strings.Join(ks, ","), "d2") {
		t.Fatalf("events for d2 before its data: %q", ks)
	}
	wc.group("payments", "d2", 0)
	time.Sleep(200 * time.Millisecond)
	wc.deploy("payments", "d2", deploy.StateRunning)
	h.wait("started d2 running", "group d2/0")
	wc.group("payments", "d2", 1)
	h.wait("group d2/1")

	// State changes and removal.
	wc.deploy("checkout", "d1", deploy.StateDone)
	h.wait("state d1 done")
	wc.delete(layout.Deploy("payments", "d2"))
	h.wait("removed d2")
	n := len(h.keys())
	h.still(n, 300*time.Millisecond)

	if got := testutil.ToFloat64(h.mustCounter(t, "group")); got != 4 {
		t.Errorf("immune_deploy_events_total{kind=group} = %v, want 4", got)
	}
}

func (h *harness) mustCounter(t *testing.T, kind string) prometheus.Collector {
	t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "immune_deploy_events_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["kind"] == kind && labels["source"] == "zookeeper" {
				return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "x"}, func() float64 { return m.GetCounter().GetValue() })
			}
		}
	}
	t.Fatalf("no immune_deploy_events_total{source=zookeeper,kind=%s}", kind)
	return nil
}

func TestWatcherMalformed(t *testing.T) {
	addr := zktest.Shared(t)
	layout := layoutAt(zktest.Root(t))
	wc := writer{t, dial(t, addr, 0), layout}
	h := watch(t, dial(t, addr, 0), layout)

	bad := layout.Deploy("checkout", "bad")
	wc.put(bad, []byte(`{"id":"bad","service":`))
	wc.put(layout.Deploy("checkout", "noversion"), []byte(`{"id":"noversion","service":"checkout","started_at":"2026-11-25T12:00:00Z"}`))
	wc.put(layout.Deploy("checkout", "otherid"), record("checkout", "d9", deploy.StateRunning))
	wc.deploy("checkout", "good", deploy.StateRunning)
	wc.put(layout.Group("checkout", "good", 0), []byte(`[1,2]`))
	wc.put(path.Join(layout.Groups("checkout", "good"), "first"), []byte(`{}`))
	h.wait("started good running")
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := testutil.ToFloat64(h.errCounter(t))
		if got == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("immune_deploy_source_errors_total{reason=malformed} = %v, want 5; log:\n%s", got, h.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	logs := h.logs.String()
	for _, p := range []string{bad, layout.Deploy("checkout", "noversion") + ": version is empty",
		layout.Deploy("checkout", "otherid"), layout.Group("checkout", "good", 0), layout.Groups("checkout", "good") + "/first"} {
		if !strings.Contains(logs, p) {
			t.Errorf("the log does not name %s:\n%s", p, logs)
		}
	}
	// Fixed, they are delivered.
	wc.deploy("checkout", "bad", deploy.StateRunning)
	wc.group("checkout", "good", 0)
	h.wait("started bad running", "group good/0")
}

func (h *harness) errCounter(t *testing.T) prometheus.Collector {
	t.Helper()
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "x"}, func() float64 {
		mfs, err := h.reg.Gather()
		if err != nil {
			t.Error(err)
			return 0
		}
		for _, mf := range mfs {
			if mf.GetName() == "immune_deploy_source_errors_total" {
				for _, m := range mf.GetMetric() {
					for _, l := range m.GetLabel() {
						if l.GetName() == "reason" && l.GetValue() == "malformed" {
							return m.GetCounter().GetValue()
						}
					}
				}
			}
		}
		return 0
	})
}

// TestWatcherOldDeploys: deploys already there at start are delivered
// with their state; a finished one without its groups.
func TestWatcherOldDeploys(t *testing.T) {
	addr := zktest.Shared(t)
	layout := layoutAt(zktest.Root(t))
	wc := writer{t, dial(t, addr, 0), layout}
	wc.deploy("checkout", "old", deploy.StateDone)
	wc.group("checkout", "old", 0)
	wc.deploy("checkout", "rev", deploy.StateReverted)
	wc.deploy("search", "live", deploy.StateRunning)
	wc.group("search", "live", 0)
	wc.selftest("search", "live", "s-1", true)
	h := watch(t, dial(t, addr, 0), layout)
	h.wait("started old done", "started rev reverted", "started live running", "group live/0", "selftest live/s-1 passed=true")
	// Finished deploys are read without a watch; their removal is seen
	// all the same, and so is a running one's end.
	wc.delete(layout.Deploy("checkout", "old"))
	wc.deploy("search", "live", deploy.StateDone)
	h.wait("removed old", "state live done")
	wc.group("search", "live", 1)
	wc.delete(layout.Deploy("search", "live"))
	h.wait("removed live")
	h.still(8, 300*time.Millisecond)
}

// TestWatcherServices: with a list of services, others are ignored and
// a listed service's directory may appear later.
func TestWatcherServices(t *testing.T) {
	addr := zktest.Shared(t)
	layout := layoutAt(zktest.Root(t))
	wc := writer{t, dial(t, addr, 0), layout}
	wc.deploy("ignored", "x1", deploy.StateRunning)
	h := watch(t, dial(t, addr, 0), layout, "checkout", "search")
	wc.deploy("search", "s1", deploy.StateRunning)
	wc.deploy("checkout", "c1", deploy.StateRunning)
	wc.deploy("ignored", "x2", deploy.StateRunning)
	h.wait("started s1 running", "started c1 running")
	h.still(2, 300*time.Millisecond)
}

// TestWatcherMany: many deploys, groups and self tests written at once
// by several writers arrive exactly once each.
func TestWatcherMany(t *testing.T) {
	addr := zktest.Shared(t)
	layout := layoutAt(zktest.Root(t))
	h := watch(t, dial(t, addr, 0), layout)
	const writers, perWriter = 4, 10
	var want []string
	var wg sync.WaitGroup
	for wi := range writers {
		wc := writer{t, dial(t, addr, 0), layout}
		svc := fmt.Sprintf("svc%d", wi%2)
		for j := range perWriter {
			id := fmt.Sprintf("w%d-%d", wi, j)
			want = append(want, "started "+id+" running", "group "+id+"/0", "group "+id+"/1", "group "+id+"/2",
				"selftest "+id+"/a passed=true", "selftest "+id+"/b passed=false")
		}
		wg.Go(func() {
			for j := range perWriter {
				id := fmt.Sprintf("w%d-%d", wi, j)
				wc.deploy(svc, id, deploy.StateRunning)
				for n := range 3 {
					wc.group(svc, id, n)
				}
				wc.selftest(svc, id, "a", true)
				wc.selftest(svc, id, "b", false)
			}
		})
	}
	wg.Wait()
	h.wait(want...)
	h.still(len(want), 200*time.Millisecond)
}

// TestWatcherServerRestart: the server stops and starts again mid-stream;
// what was written before, and after, arrives once.
func TestWatcherServerRestart(t *testing.T) {
	srv := zktest.Start(t)
	layout := layoutAt("/immune-test")
	h := watch(t, dial(t, srv.Addr(), 4*time.Second), layout)
	wc := writer{t, dial(t, srv.Addr(), 4*time.Second), layout}
	wc.deploy("checkout", "d1", deploy.StateRunning)
	wc.group("checkout", "d1", 0)
	h.wait("started d1 running", "group d1/0")
	// No pause between the two: while the port is free another test's
	// server can take it (zktest picks ports at random), and our clients
	// would then talk to a stranger that refuses their sessions.
	srv.Stop()
	srv.Restart()
	wc.group("checkout", "d1", 1)
	wc.deploy("checkout", "d2", deploy.StateRunning)
	wc.group("checkout", "d2", 0)
	wc.selftest("checkout", "d1", "i-1", true)
	h.wait("started d1 running", "group d1/0", "group d1/1", "started d2 running", "group d2/0", "selftest d1/i-1 passed=true")
	h.still(6, 300*time.Millisecond)
}

// TestWatcherSessionExpiry: the watcher's session expires behind a cut
// network while deploys, groups and self tests are written and one
// deploy is deleted; after the cut it delivers everything it missed,
// once, and nothing twice.
func TestWatcherSessionExpiry(t *testing.T) {
	addr := zktest.Shared(t)
	layout := layoutAt(zktest.Root(t))
	proxy := zktest.NewProxy(t, addr)
	conn := dial(t, proxy.Addr(), 2*time.Second)
	wc := writer{t, dial(t, addr, 0), layout}
	wc.deploy("checkout", "d0", deploy.StateRunning)
	wc.deploy("checkout", "d1", deploy.StateRunning)
	wc.group("checkout", "d1", 0)
	h := watch(t, conn, layout)
	h.wait("started d0 running", "started d1 running", "group d1/0")

	// An ephemeral znode of the watcher's session tells when it expired.
	eph := zktest.Root(t) + "-eph"
	if _, err := conn.Create(eph, nil, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	_, _, gen := conn.Session()
	proxy.Cut()
	wc.group("checkout", "d1", 1)
	wc.selftest("checkout", "d1", "i-1", false)
	wc.deploy("checkout", "d2", deploy.StateRunning)
	wc.group("checkout", "d2", 0)
	wc.deploy("search", "s1", deploy.StateRunning)
	wc.delete(layout.Deploy("checkout", "d0"))
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok, _, err := wc.c.Exists(eph)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the watcher's session did not expire")
		}
		time.Sleep(100 * time.Millisecond)
	}
	proxy.Restore()
	h.wait("started d0 running", "started d1 running", "group d1/0",
		"group d1/1", "selftest d1/i-1 passed=false", "started d2 running", "group d2/0", "started s1 running", "removed d0")
	if _, _, g := conn.Session(); g <= gen {
		t.Errorf("session generation %d, want past %d: the session did not expire", g, gen)
	}
	// Watches are armed again in the new session.
	wc.group("checkout", "d2", 1)
	h.wait("group d2/1")
	h.still(10, 300*time.Millisecond)
}
