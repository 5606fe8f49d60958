package sim_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/immune-project/immune/internal/zk"

	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/internal/zkconn"
	"github.com/immune-project/immune/internal/zktest"
	"github.com/immune-project/immune/sim"
)

// recorder collects timeline events.
type recorder struct {
	mu     sync.Mutex
	events []sim.Event
}

func (r *recorder) add(e sim.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) kinds(filter func(sim.Event) bool) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		if filter == nil || filter(e) {
			out = append(out, string(e.Kind))
		}
	}
	return out
}

func newFleet(t *testing.T, opts sim.FleetOptions) *sim.Fleet {
	t.Helper()
	f, err := sim.NewFleet(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return f
}

// TestStaticFleet: without ZooKeeper, the fleet is a list of targets
// serving /metrics on loopback ports; a deploy whose self test fails
// leaves the instance out of the list.
func TestStaticFleet(t *testing.T) {
	rec := &recorder{}
	clock := sim.NewClock(nil, 600)
	f := newFleet(t, sim.FleetOptions{Service: "checkout", Size: 3, Seed: 1, Clock: clock, OnEvent: rec.add})
	targets := f.Targets()
	if len(targets) != 3 {
		t.Fatalf("%d targets", len(targets))
	}
	for i, tg := range targets {
		if tg.Instance != fmt.Sprintf("checkout-%d", i) || !strings.HasPrefix(tg.Addr, "127.0.0.1:") || !tg.Announced || tg.Version != "v1" {
			t.Fatalf("target %d: %+v", i, tg)
		}
	}
	// Traffic driven by a ticker of the test's own.
	ticks := make(chan time.Time)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.Run(ctx, ticks) }()
	for range 3 {
		time.Sleep(20 * time.Millisecond)
		ticks <- time.Time{}
	}
	cancel()
	<-done
	n := value(t, scrape(t, "http://"+targets[0].Addr), "http_requests_total", nil)
	if n == 0 {
		t.Fatal("no requests after 3 ticks of a fleet at speed 600")
	}

	st, err := f.DeployInstance(context.Background(), "checkout-1", "v2-broken", sim.Ref{DeployID: "d1", Group: 0})
	if err != nil {
		t.Fatal(err)
	}
	if st.Passed || st.Instance != "checkout-1" || st.Version != "v2-broken" {
		t.Fatalf("self test %+v, want a failure of checkout-1 on v2-broken", st)
	}
	tg := f.Targets()[1]
	if tg.Announced || tg.Version != "v2-broken" {
		t.Fatalf("after a failed self test: %+v, want running v2-broken, not announced", tg)
	}
	if _, traffic := mustInstance(t, f, "checkout-1").Up(); traffic {
		t.Fatal("an instance that failed its self test takes traffic")
	}
	got := strings.Join(rec.kinds(func(e sim.Event) bool { return e.DeployID == "d1" }), " ")
	if got != "unannounced restarted selftest-failed" {
		t.Fatalf("events %q", got)
	}
	if _, err := f.DeployInstance(context.Background(), "nope", "v2", sim.NoRef); !errors.Is(err, sim.ErrUnknownInstance) {
		t.Fatalf("unknown instance: %v", err)
	}
	if _, err := f.DeployInstance(context.Background(), "checkout-1", "v2", sim.NoRef); err != nil {
		t.Fatal(err)
	}
	if tg := f.Targets()[1]; !tg.Announced || tg.Version != "v2" {
		t.Fatalf("after a good deploy: %+v", tg)
	}
}

func TestNewFleetErrors(t *testing.T) {
	for _, o := range []sim.FleetOptions{{Service: ""}, {Service: "a/b"}, {Service: "x", Size: -1}} {
		if _, err := sim.NewFleet(o); err == nil {
			t.Errorf("NewFleet(%+v): no error", o)
		}
	}
}

func mustInstance(t *testing.T, f *sim.Fleet, name string) *sim.Instance {
	t.Helper()
	in, ok := f.Instance(name)
	if !ok {
		t.Fatalf("no instance %s", name)
	}
	return in
}

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

func layout(root string) deploy.Layout {
	return deploy.Layout{Services: root + "/services", Deploys: root + "/deploys", Owners: root + "/owners"}
}

// members reads the ServerSet of a service: member znode -> Member.
func members(t *testing.T, c *zkconn.Conn, l deploy.Layout, service string) map[string]deploy.Member {
	t.Helper()
	names, _, err := c.Children(l.Members(service))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]deploy.Member{}
	for _, n := range names {
		if !strings.HasPrefix(n, deploy.MemberPrefix) {
			t.Fatalf("member znode %q without the prefix %s", n, deploy.MemberPrefix)
		}
		b, _, err := c.Get(l.Members(service) + "/" + n)
		if errors.Is(err, zk.ErrNoNode) {
			continue // gone between the listing and the read (an expiring session)
		}
		if err != nil {
			t.Fatal(err)
		}
		var m deploy.Member
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		out[n] = m
	}
	return out
}

// byAddr maps host:port -> version of a ServerSet.
func byAddr(ms map[string]deploy.Member) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		out[fmt.Sprintf("%s:%d", m.ServiceEndpoint.Host, m.ServiceEndpoint.Port)] = m.Metadata.Version
	}
	return out
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestZKAnnounce: the fleet announces every instance as a ServerSet
// member; a deploy un-announces and re-announces with the new version;
// Close un-announces.
func TestZKAnnounce(t *testing.T) {
	addr := zktest.Shared(t)
	l := layout(zktest.Root(t))
	c := dial(t, addr, 0)
	ann := sim.NewZKAnnouncer(c, l, nil)
	defer ann.Close()
	f, err := sim.NewFleet(sim.FleetOptions{Service: "checkout", Size: 3, Announcer: ann})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx := context.Background()
	if err := f.Start(ctx); err != nil {
		t.Fatal(err)
	}
	ms := members(t, c, l, "checkout")
	want := map[string]string{}
	for _, tg := range f.Targets() {
		want[tg.Addr] = "v1"
	}
	if got := byAddr(ms); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("members %v, want %v", got, want)
	}
	var shards []int
	for _, m := range ms {
		if m.Status != deploy.StatusAlive || m.AdditionalEndpoints["http"] != m.ServiceEndpoint {
			t.Fatalf("member %+v", m)
		}
		shards = append(shards, m.Shard)
	}
	sort.Ints(shards)
	if fmt.Sprint(shards) != "[0 1 2]" {
		t.Fatalf("shards %v", shards)
	}
	// The member's znode is ephemeral.
	_, stat, err := c.Get(ann.Path("checkout", "checkout-0"))
	if err != nil || stat.EphemeralOwner == 0 {
		t.Fatalf("member znode: %v, ephemeral owner %x", err, stat.EphemeralOwner)
	}

	// Deploy one instance: its member goes, and comes back on v2.
	oldPath := ann.Path("checkout", "checkout-2")
	if _, err := f.DeployInstance(ctx, "checkout-2", "v2", sim.NoRef); err != nil {
		t.Fatal(err)
	}
	want[f.Targets()[2].Addr] = "v2"
	if got := byAddr(members(t, c, l, "checkout")); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after the deploy: members %v, want %v", got, want)
	}
	if p := ann.Path("checkout", "checkout-2"); p == oldPath || p == "" {
		t.Fatalf("re-announced at %q, before at %q", p, oldPath)
	}
	if ok, _, _ := c.Exists(oldPath); ok {
		t.Fatalf("the old member %s is still there", oldPath)
	}
	// A failed self test leaves it out.
	if _, err := f.DeployInstance(ctx, "checkout-2", "v2-broken", sim.NoRef); err != nil {
		t.Fatal(err)
	}
	if n := len(members(t, c, l, "checkout")); n != 2 {
		t.Fatalf("%d members after a failed self test, want 2", n)
	}
	f.Close()
	if n := len(members(t, c, l, "checkout")); n != 0 {
		t.Fatalf("%d members after Close", n)
	}
}

// TestZKSessionLoss: when the announcing session expires, the members go
// with it; when a new session comes, they are announced again.
func TestZKSessionLoss(t *testing.T) {
	addr := zktest.Shared(t)
	l := layout(zktest.Root(t))
	proxy := zktest.NewProxy(t, addr)
	c := dial(t, proxy.Addr(), 2*time.Second)
	watcher := dial(t, addr, 0)
	ann := sim.NewZKAnnouncer(c, l, nil)
	defer ann.Close()
	f, err := sim.NewFleet(sim.FleetOptions{Service: "pay", Size: 2, Announcer: ann})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := members(t, watcher, l, "pay")
	if len(before) != 2 {
		t.Fatalf("%d members", len(before))
	}
	proxy.Cut()
	eventually(t, "the members outlive the session", func() bool { return len(members(t, watcher, l, "pay")) == 0 })
	proxy.Restore()
	eventually(t, "the members are not announced again", func() bool { return len(members(t, watcher, l, "pay")) == 2 })
	after := members(t, watcher, l, "pay")
	for n := range after {
		if _, ok := before[n]; ok {
			t.Fatalf("member %s: the same znode as before the expiry", n)
		}
	}
	if fmt.Sprint(byAddr(after)) != fmt.Sprint(byAddr(before)) {
		t.Fatalf("after the expiry %v, before %v", byAddr(after), byAddr(before))
	}
	// And nothing more appears (no duplicate).
	time.Sleep(500 * time.Millisecond)
	if n := len(members(t, watcher, l, "pay")); n != 2 {
		t.Fatalf("%d members a moment later, want 2", n)
	}
}

// TestZKRestart: a deploy while ZooKeeper is down goes on; once the
// server is back, the ServerSet says what runs.
func TestZKRestart(t *testing.T) {
	srv := zktest.Start(t)
	l := layout(zktest.Root(t))
	c := dial(t, srv.Addr(), 0)
	ann := sim.NewZKAnnouncer(c, l, nil)
	defer ann.Close()
	rec := &recorder{}
	f := newFleet(t, sim.FleetOptions{Service: "cart", Size: 3, Announcer: ann, OnEvent: rec.add})
	if n := len(members(t, c, l, "cart")); n != 3 {
		t.Fatalf("%d members", n)
	}
	// A member of this session the announcer does not know, as a create
	// whose answer was lost leaves: swept after the outage.
	orphan, err := c.Create(l.Members("cart")+"/"+deploy.MemberPrefix, []byte(`{}`), zk.FlagEphemeral|zk.FlagSequence, c.ACL())
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := f.DeployInstance(ctx, "cart-1", "v2", sim.NoRef); err != nil {
		t.Fatalf("deploy while ZooKeeper is down: %v", err)
	}
	if got := rec.kinds(func(e sim.Event) bool { return e.Kind == sim.EventError }); len(got) == 0 {
		t.Fatal("no error event while ZooKeeper was down")
	}
	srv.Restart()
	want := map[string]string{}
	for _, tg := range f.Targets() {
		want[tg.Addr] = tg.Version
	}
	eventually(t, "the ServerSet does not say what runs", func() bool {
		if !c.HasSession() {
			return false
		}
		names, _, err := c.Children(l.Members("cart"))
		if err != nil || len(names) != 3 {
			return false
		}
		return fmt.Sprint(byAddr(members(t, c, l, "cart"))) == fmt.Sprint(want)
	})
	if ok, _, _ := c.Exists(orphan); ok {
		t.Fatalf("the orphan %s is still there", orphan)
	}
}
