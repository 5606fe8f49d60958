package scrape

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/immune-project/immune/internal/zk"

	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/internal/zkconn"
	"github.com/immune-project/immune/internal/zktest"
)

// fakeInstance is an instance of a service: it serves its metrics over
// HTTP and announces itself in ZooKeeper, as the services immune watches
// do.
type fakeInstance struct {
	t       *testing.T
	name    string
	conn    *zkconn.Conn
	layout  deploy.Layout
	srv     *httptest.Server
	mu      sync.Mutex
	version string
	count   int
	znode   string
}

func newFakeInstance(t *testing.T, name, version string, conn *zkconn.Conn, layout deploy.Layout) *fakeInstance {
	in := &fakeInstance{t: t, name: name, conn: conn, layout: layout, version: version}
	in.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in.mu.Lock()
		in.count += 10
		body := fmt.Sprintf("# TYPE checkout_completed_total counter\ncheckout_completed_total %d\n"+
			"# TYPE build_info gauge\nbuild_info{version=%q} 1\n", in.count, in.version)
		in.mu.Unlock()
		w.Header().Set("Content-Type", textType)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(in.srv.Close)
	return in
}

func (in *fakeInstance) announce() {
	in.t.Helper()
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(in.srv.URL, "http://"))
	p, _ := strconv.Atoi(port)
	in.mu.Lock()
	version := in.version
	in.mu.Unlock()
	data, err := json.Marshal(deploy.Member{
		ServiceEndpoint: deploy.Endpoint{Host: host, Port: p},
		Status:          deploy.StatusAlive,
		Shard:           1,
		Metadata:        deploy.MemberMetadata{Version: version, Instance: in.name},
	})
	if err != nil {
		in.t.Fatal(err)
	}
	dir := in.layout.Members("checkout")
	if err := in.conn.EnsurePath(dir); err != nil {
		in.t.Fatal(err)
	}
	in.znode, err = in.conn.Create(path.Join(dir, deploy.MemberPrefix), data, zk.FlagEphemeral|zk.FlagSequence, in.conn.ACL())
	if err != nil {
		in.t.Fatal(err)
	}
}

// deploy un-announces the instance, "restarts" it on version and
// announces it again.
func (in *fakeInstance) deploy(version string) {
	in.t.Helper()
	if err := in.conn.Delete(in.znode, -1); err != nil {
		in.t.Fatal(err)
	}
	in.mu.Lock()
	in.version, in.count = version, 0
	in.mu.Unlock()
	in.announce()
}

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

// TestServerSetEndToEnd: instances announced in a real ZooKeeper are
// scraped through the discovery, their series labelled with the version
// they announce; across a deploy (un-announce, re-announce with the new
// version) the new samples carry the new version, and the old version's
// series of that instance end. An instance that loses its session drops
// out.
func TestServerSetEndToEnd(t *testing.T) {
	addr := zktest.Shared(t)
	root := zktest.Root(t)
	layout := deploy.Layout{Services: root + "/services", Deploys: root + "/deploys", Owners: root + "/owners"}
	proxy := zktest.NewProxy(t, addr)
	one := newFakeInstance(t, "checkout-1", "v1", dialZK(t, addr, 0), layout)
	two := newFakeInstance(t, "checkout-2", "v1", dialZK(t, proxy.Addr(), 2*time.Second), layout)
	one.announce()
	two.announce()

	store := openStore(t)
	mgr, err := NewManager(Embedded{store}, Options{Interval: 250 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ServerSetConfig{Services: []string{"checkout"}, Labels: map[string]string{"env": "test"}}
	disc, err := deploy.NewServerSetDiscovery(dialZK(t, addr, 0), cfg.Services, deploy.ServerSetOptions{Layout: layout})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_ = disc.Run(ctx, func(service string, members []deploy.Announcement) {
			mgr.SetTargets(ServerSetSource(service), ServerSetTargets(cfg, members))
		})
	}()
	go func() {
		defer wg.Done()
		_ = mgr.Run(ctx)
	}()
	defer func() {
		cancel()
		wg.Wait()
	}()

	query := func(q string) []string { return series(t, store, q, time.Now()) }
	eventually(t, "both instances scraped with v1", func() bool {
		return len(query(`checkout_completed_total{service="checkout",version="v1"}`)) == 2
	})
	eventuallyLines(t, "build_info", func() []string { return query(`build_info{instance="checkout-1"}`) },
		`build_info{env="test", exported_version="v1", instance="checkout-1", service="checkout", shard="1", version="v1"} 1`)

	one.deploy("v2")
	eventually(t, "checkout-1 scraped with v2", func() bool {
		return len(query(`rate(checkout_completed_total{service="checkout",version="v2"}[1m])`)) == 1
	})
	eventually(t, "checkout-1's v1 series ended", func() bool {
		return len(query(`checkout_completed_total{instance="checkout-1",version="v1"}`)) == 0
	})
	eventuallyLines(t, "build_info of v2", func() []string { return query(`build_info{service="checkout",version="v2"}`) },
		`build_info{env="test", exported_version="v2", instance="checkout-1", service="checkout", shard="1", version="v2"} 1`)
	eventuallyLines(t, "v1 now", func() []string { return query(`count by (instance) (checkout_completed_total{version="v1"})`) },
		`{instance="checkout-2"} 1`)

	proxy.Cut() // checkout-2's session expires: its member vanishes
	eventually(t, "checkout-2 dropped", func() bool {
		ts := mgr.Targets()
		return len(ts) == 1 && ts[0].Target.Labels[LabelInstance] == "checkout-1" &&
			len(query(`up{instance="checkout-2"}`)) == 0
	})
}
