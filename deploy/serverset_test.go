package deploy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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
	"github.com/immune-project/immune/internal/zkconn"
	"github.com/immune-project/immune/internal/zktest"
)

func dialZK(t *testing.T, addr string, timeout time.Duration) *zkconn.Conn {
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

func testLayout(root string) deploy.Layout {
	return deploy.Layout{Services: root + "/services", Deploys: root + "/deploys", Owners: root + "/owners"}
}

// instance announces members the way an instance of a service does.
type instance struct {
	t      *testing.T
	conn   *zkconn.Conn
	layout deploy.Layout
}

func (in instance) announce(service, host string, port int, version string) string {
	in.t.Helper()
	return in.announceRaw(service, mustJSON(in.t, deploy.Member{
		ServiceEndpoint: deploy.Endpoint{Host: host, Port: port},
		Status:          deploy.StatusAlive,
		Metadata:        deploy.MemberMetadata{Version: version},
	}))
}

func (in instance) announceRaw(service string, data []byte) string {
	in.t.Helper()
	dir := in.layout.Members(service)
	if err := in.conn.EnsurePath(dir); err != nil {
		in.t.Fatal(err)
	}
	p, err := in.conn.Create(path.Join(dir, deploy.MemberPrefix), data, zk.FlagEphemeral|zk.FlagSequence, in.conn.ACL())
	if err != nil {
		in.t.Fatal(err)
	}
	return p
}

func (in instance) unannounce(p string) {
	in.t.Helper()
	if err := in.conn.Delete(p, -1); err != nil {
		in.t.Fatal(err)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// recorder keeps the member sets the discovery delivers.
type recorder struct {
	mu      sync.Mutex
	calls   int
	last    map[string][]deploy.Announcement
	changed chan struct{}
}

func newRecorder() *recorder {
	return &recorder{last: map[string][]deploy.Announcement{}, changed: make(chan struct{}, 1)}
}

func (r *recorder) update(service string, members []deploy.Announcement) {
	r.mu.Lock()
	r.calls++
	r.last[service] = members
	r.mu.Unlock()
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// summary is a service's members as "host:port@version" in znode order.
func (r *recorder) summary(service string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ms, ok := r.last[service]
	var parts []string
	for _, m := range ms {
		parts = append(parts, m.Address()+"@"+m.Member.Metadata.Version)
	}
	return strings.Join(parts, ","), ok
}

// waitFor waits until the service's members read want.
func (r *recorder) waitFor(t *testing.T, service, want string) {
	t.Helper()
	deadline := time.NewTimer(25 * time.Second)
	defer deadline.Stop()
	for {
		if got, ok := r.summary(service); ok && got == want {
			return
		}
		select {
		case <-r.changed:
		case <-deadline.C:
			got, _ := r.summary(service)
			t.Fatalf("service %s: members %q, want %q", service, got, want)
		}
	}
}

// startDiscovery runs a discovery until the end of the test.
func startDiscovery(t *testing.T, conn *zkconn.Conn, layout deploy.Layout, reg prometheus.Registerer, log *slog.Logger, services ...string) *recorder {
	t.Helper()
	d, err := deploy.NewServerSetDiscovery(conn, services, deploy.ServerSetOptions{
		Layout: layout, Registerer: reg, Logger: log, RetryDelay: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, rec.update) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return rec
}

// TestServerSetDiscovery: members announcing, changing, un-announcing and
// re-announcing with a new version (a deploy), bad members ignored and
// counted, all reflected in the delivered sets.
func TestServerSetDiscovery(t *testing.T) {
	addr := zktest.Shared(t)
	layout := testLayout(zktest.Root(t))
	in := instance{t, dialZK(t, addr, 0), layout}
	// One member is there before the discovery starts.
	a := in.announce("checkout", "10.0.0.1", 8080, "v1")
	reg := prometheus.NewPedanticRegistry()
	logs := &syncWriter{w: &bytes.Buffer{}}
	log := slog.New(slog.NewTextHandler(logs, nil))
	rec := startDiscovery(t, dialZK(t, addr, 0), layout, reg, log, "checkout", "payments")

	rec.waitFor(t, "checkout", "10.0.0.1:8080@v1")
	rec.waitFor(t, "payments", "") // no members directory yet: an empty set

	b := in.announce("checkout", "10.0.0.2", 8080, "v1")
	rec.waitFor(t, "checkout", "10.0.0.1:8080@v1,10.0.0.2:8080@v1")
	p := in.announce("payments", "10.0.1.1", 9000, "p7")
	rec.waitFor(t, "payments", "10.0.1.1:9000@p7")

	// Ignored: bad JSON, no port, not ALIVE.
	in.announceRaw("checkout", []byte(`{"serviceEndpoint":`))
	in.announceRaw("checkout", mustJSON(t, deploy.Member{ServiceEndpoint: deploy.Endpoint{Host: "10.0.0.9"}, Status: deploy.StatusAlive}))
	starting := in.announceRaw("checkout", mustJSON(t, deploy.Member{ServiceEndpoint: deploy.Endpoint{Host: "10.0.0.3", Port: 8080}, Status: "STARTING"}))
	c := in.announce("checkout", "10.0.0.4", 8080, "v1") // after them: they have been read
	rec.waitFor(t, "checkout", "10.0.0.1:8080@v1,10.0.0.2:8080@v1,10.0.0.4:8080@v1")

	// A member's data changes: STARTING becomes ALIVE.
	if _, err := in.conn.Set(starting, mustJSON(t, deploy.Member{
		ServiceEndpoint: deploy.Endpoint{Host: "10.0.0.3", Port: 8080}, Status: deploy.StatusAlive,
		Metadata: deploy.MemberMetadata{Version: "v1", Instance: "checkout-3"},
	}), -1); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "checkout", "10.0.0.1:8080@v1,10.0.0.2:8080@v1,10.0.0.3:8080@v1,10.0.0.4:8080@v1")

	// A deploy of instance a: un-announce, restart, re-announce with v2.
	in.unannounce(a)
	rec.waitFor(t, "checkout", "10.0.0.2:8080@v1,10.0.0.3:8080@v1,10.0.0.4:8080@v1")
	in.announce("checkout", "10.0.0.1", 8080, "v2")
	rec.waitFor(t, "checkout", "10.0.0.2:8080@v1,10.0.0.3:8080@v1,10.0.0.4:8080@v1,10.0.0.1:8080@v2")

	in.unannounce(b)
	in.unannounce(c)
	in.unannounce(p)
	rec.waitFor(t, "checkout", "10.0.0.3:8080@v1,10.0.0.1:8080@v2")
	rec.waitFor(t, "payments", "")

	rec.mu.Lock()
	for _, m := range rec.last["checkout"] {
		want := m.Address()
		if m.Address() == "10.0.0.3:8080" {
			want = "checkout-3"
		}
		if m.Instance() != want || m.Service != "checkout" || !strings.HasPrefix(path.Base(m.Znode), deploy.MemberPrefix) {
			t.Errorf("member %+v: instance %q, want %q", m, m.Instance(), want)
		}
	}
	rec.mu.Unlock()

	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP immune_serverset_members Alive members of a service announced in ZooKeeper, as last delivered.
# TYPE immune_serverset_members gauge
immune_serverset_members{service="checkout"} 2
immune_serverset_members{service="payments"} 0
# HELP immune_serverset_members_ignored_total Member reads ignored, by reason: bad_json, bad_endpoint, not_alive.
# TYPE immune_serverset_members_ignored_total counter
immune_serverset_members_ignored_total{reason="bad_endpoint",service="checkout"} 1
immune_serverset_members_ignored_total{reason="bad_json",service="checkout"} 1
immune_serverset_members_ignored_total{reason="not_alive",service="checkout"} 1
`), "immune_serverset_members", "immune_serverset_members_ignored_total"); err != nil {
		t.Error(err)
	}
	for _, want := range []string{"bad_json", "serviceEndpoint.port 0 is not a port", "member not alive"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log lacks %q:\n%s", want, logs.String())
		}
	}
}

// TestServerSetInstanceSessionLost: an instance whose session expires
// (its ephemeral member vanishes) drops out of the set; announcing again
// with a new session brings it back.
func TestServerSetInstanceSessionLost(t *testing.T) {
	addr := zktest.Shared(t)
	layout := testLayout(zktest.Root(t))
	proxy := zktest.NewProxy(t, addr)
	flaky := instance{t, dialZK(t, proxy.Addr(), 2*time.Second), layout}
	steady := instance{t, dialZK(t, addr, 0), layout}
	flaky.announce("checkout", "10.0.0.1", 8080, "v1")
	steady.announce("checkout", "10.0.0.2", 8080, "v1")
	rec := startDiscovery(t, dialZK(t, addr, 0), layout, nil, nil, "checkout")
	rec.waitFor(t, "checkout", "10.0.0.1:8080@v1,10.0.0.2:8080@v1")

	proxy.Cut()
	rec.waitFor(t, "checkout", "10.0.0.2:8080@v1")
	proxy.Restore()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := flaky.conn.WaitSession(ctx); err != nil {
		t.Fatal(err)
	}
	flaky.announce("checkout", "10.0.0.1", 8080, "v1")
	rec.waitFor(t, "checkout", "10.0.0.2:8080@v1,10.0.0.1:8080@v1")
}

// TestServerSetDiscoverySessionExpiry: the discovery's own session
// expires while members change; with the new session it lists them
// again and delivers the set as it is now.
func TestServerSetDiscoverySessionExpiry(t *testing.T) {
	addr := zktest.Shared(t)
	layout := testLayout(zktest.Root(t))
	proxy := zktest.NewProxy(t, addr)
	in := instance{t, dialZK(t, addr, 0), layout}
	a := in.announce("checkout", "10.0.0.1", 8080, "v1")
	reg := prometheus.NewPedanticRegistry()
	dconn := dialZK(t, proxy.Addr(), 2*time.Second)
	_, _, gen := dconn.Session()
	rec := startDiscovery(t, dconn, layout, reg, nil, "checkout")
	rec.waitFor(t, "checkout", "10.0.0.1:8080@v1")

	// An ephemeral znode of the discovery's session shows when the
	// server has expired it.
	marker := layout.Services + "/session-marker"
	if _, err := dconn.Create(marker, nil, zk.FlagEphemeral, dconn.ACL()); err != nil {
		t.Fatal(err)
	}
	proxy.Cut()
	// Changes the discovery cannot see while cut off.
	in.unannounce(a)
	in.announce("checkout", "10.0.0.1", 8080, "v2")
	in.announce("checkout", "10.0.0.5", 8080, "v2")
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok, _, err := in.conn.Exists(marker)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the discovery's session outlived its 2 s timeout by 18 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	proxy.Restore()
	rec.waitFor(t, "checkout", "10.0.0.1:8080@v2,10.0.0.5:8080@v2")
	if _, _, g := dconn.Session(); g == gen {
		t.Fatalf("session generation still %d: the session did not expire", g)
	}
	if n := testutil.ToFloat64(mustVec(t, reg, "immune_serverset_resyncs_total")); n < 1 {
		t.Errorf("immune_serverset_resyncs_total %v, want at least 1", n)
	}
}

// TestServerSetDuplicateEndpoint: an instance that announces again before
// its old member is gone counts once, with its newest announcement.
func TestServerSetDuplicateEndpoint(t *testing.T) {
	addr := zktest.Shared(t)
	layout := testLayout(zktest.Root(t))
	in := instance{t, dialZK(t, addr, 0), layout}
	old := in.announce("checkout", "10.0.0.1", 8080, "v1")
	in.announce("checkout", "10.0.0.1", 8080, "v2")
	rec := startDiscovery(t, dialZK(t, addr, 0), layout, nil, nil, "checkout")
	rec.waitFor(t, "checkout", "10.0.0.1:8080@v2")
	in.unannounce(old)
	in.announce("checkout", "10.0.0.2", 8080, "v2")
	rec.waitFor(t, "checkout", "10.0.0.1:8080@v2,10.0.0.2:8080@v2")
}

func mustVec(t *testing.T, g prometheus.Gatherer, name string) prometheus.Collector {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: "sum"})
			for _, m := range mf.GetMetric() {
				c.Add(m.GetCounter().GetValue())
			}
			return c
		}
	}
	t.Fatalf("no metric %s", name)
	return nil
}

func TestNewServerSetDiscoveryErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		services []string
		layout   deploy.Layout
		want     string
	}{
		{"no services", nil, deploy.Layout{}, "no services"},
		{"bad name", []string{"checkout", "a/b"}, deploy.Layout{}, `services[1]: "a/b" is not a valid service name`},
		{"twice", []string{"checkout", "checkout"}, deploy.Layout{}, `services[1]: "checkout" is listed twice`},
		{"bad layout", []string{"checkout"}, deploy.Layout{Services: "services", Deploys: "/d", Owners: "/o"}, "zookeeper root services"},
		{"no connection", []string{"checkout"}, deploy.Layout{}, "no zookeeper connection"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := deploy.NewServerSetDiscovery(nil, tc.services, deploy.ServerSetOptions{Layout: tc.layout})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := deploy.NewServerSetDiscovery(nil, nil, deploy.ServerSetOptions{}); !errors.Is(err, deploy.ErrNoServices) {
		t.Errorf("no services: %v, want ErrNoServices", err)
	}
}

func TestParseMember(t *testing.T) {
	const p = "/services/s/members/member_0000000001"
	for _, tc := range []struct {
		name, data, reason, err string
		addr, instance, version string
	}{
		{"alive", `{"serviceEndpoint":{"host":"10.0.0.1","port":8080},"additionalEndpoints":{"admin":{"host":"10.0.0.1","port":9990}},"status":"ALIVE","shard":2,"metadata":{"version":"v7"}}`,
			"", "", "10.0.0.1:8080", "10.0.0.1:8080", "v7"},
		{"named", `{"serviceEndpoint":{"host":"::1","port":80},"status":"ALIVE","metadata":{"version":"v7","instance":"web-1"}}`,
			"", "", "[::1]:80", "web-1", "v7"},
		{"no version", `{"serviceEndpoint":{"host":"h","port":1},"status":"ALIVE"}`, "", "", "h:1", "h:1", ""},
		{"dead", `{"serviceEndpoint":{"host":"h","port":1},"status":"DEAD"}`, deploy.IgnoredNotAlive, "", "", "", ""},
		{"bad json", `{"serviceEndpoint":{"host":"h","port":"1"}}`, deploy.IgnoredBadJSON, "znode " + p, "", "", ""},
		{"empty", ``, deploy.IgnoredBadJSON, "znode " + p, "", "", ""},
		{"no host", `{"serviceEndpoint":{"port":1},"status":"ALIVE"}`, deploy.IgnoredBadEndpoint, `serviceEndpoint.host ""`, "", "", ""},
		{"port too big", `{"serviceEndpoint":{"host":"h","port":70000},"status":"ALIVE"}`, deploy.IgnoredBadEndpoint, "port 70000 is not a port", "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, reason, err := deploy.ParseMember(p, []byte(tc.data))
			if reason != tc.reason {
				t.Fatalf("reason %q, want %q (err %v)", reason, tc.reason, err)
			}
			if (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want %q", err, tc.err)
			}
			if reason != "" {
				return
			}
			a := deploy.Announcement{Service: "s", Znode: p, Member: m}
			if a.Address() != tc.addr || a.Instance() != tc.instance || m.Metadata.Version != tc.version {
				t.Errorf("address %q instance %q version %q, want %q %q %q", a.Address(), a.Instance(), m.Metadata.Version, tc.addr, tc.instance, tc.version)
			}
		})
	}
}

func FuzzParseMember(f *testing.F) {
	for _, s := range []string{
		`{"serviceEndpoint":{"host":"10.0.0.1","port":8080},"status":"ALIVE","shard":2,"metadata":{"version":"v7"}}`,
		`{"serviceEndpoint":{"host":"h","port":-1}}`, `[]`, `null`, `{"metadata":{"instance":7}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, reason, err := deploy.ParseMember("/m", data)
		switch reason {
		case "":
			if err != nil || m.Status != deploy.StatusAlive || m.ServiceEndpoint.Host == "" || m.ServiceEndpoint.Port < 1 || m.ServiceEndpoint.Port > 65535 {
				t.Fatalf("accepted %q: %+v, %v", data, m, err)
			}
		case deploy.IgnoredNotAlive:
		case deploy.IgnoredBadJSON, deploy.IgnoredBadEndpoint:
			if err == nil || !strings.Contains(err.Error(), "/m") {
				t.Fatalf("reason %s without an error naming the znode: %v", reason, err)
			}
		default:
			t.Fatalf("reason %q", reason)
		}
	})
}

// syncWriter makes a buffer safe for the logger's concurrent writes.
type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.String()
}
