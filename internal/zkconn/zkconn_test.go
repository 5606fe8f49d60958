package zkconn_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/immune-project/immune/internal/zk"
	"go.uber.org/goleak"

	"github.com/immune-project/immune/internal/zkconn"
	"github.com/immune-project/immune/internal/zktest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	zktest.StopShared()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			println("goleak:", err.Error())
			code = 1
		}
	}
	os.Exit(code)
}

func dial(t *testing.T, cfg zkconn.Config) *zkconn.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := zkconn.Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestDialErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  zkconn.Config
		want string
	}{
		{"no servers", zkconn.Config{}, "no servers"},
		{"bad address", zkconn.Config{Servers: []string{"localhost"}}, `"localhost": want host:port`},
		{"missing credentials", zkconn.Config{Servers: []string{"127.0.0.1:1"}, CredentialsFile: "/nonexistent/creds"}, "zookeeper credentials"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := zkconn.Dial(context.Background(), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Dial: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestReadCredentialsNeverLeaks(t *testing.T) {
	dir := t.TempDir()
	for _, content := range []string{"s3cr3t-no-colon", ":s3cr3t", "user:", "user:s3cr3t\nmore:s3cr3t"} {
		f := filepath.Join(dir, "creds")
		if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, _, err := zkconn.ReadCredentials(f)
		if err == nil {
			t.Fatalf("ReadCredentials(%q): no error", content)
		}
		if strings.Contains(err.Error(), "s3cr3t") {
			t.Fatalf("the error shows the secret: %v", err)
		}
	}
}

func TestDialTimesOutWithoutServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err := zkconn.Dial(ctx, zkconn.Config{Servers: []string{"127.0.0.1:1"}})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial to a closed port: %v, want a deadline error", err)
	}
}

// TestDigestACL: a znode created with credentials cannot be written by a
// client without them.
func TestDigestACL(t *testing.T) {
	addr := zktest.Shared(t)
	root := zktest.Root(t)
	f := filepath.Join(t.TempDir(), "creds")
	if err := os.WriteFile(f, []byte("immune:hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	other := dial(t, zkconn.Config{Servers: []string{addr}})
	// The test's root stays open to all, for the other tests.
	if err := other.EnsurePath(root); err != nil {
		t.Fatal(err)
	}
	owner := dial(t, zkconn.Config{Servers: []string{addr}, CredentialsFile: f})
	if err := owner.EnsurePath(root + "/a/b"); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Set(root+"/a/b", []byte("x"), -1); !errors.Is(err, zk.ErrNoAuth) {
		t.Fatalf("write without credentials: %v, want %v", err, zk.ErrNoAuth)
	}
	if _, _, err := other.Get(root + "/a/b"); err != nil {
		t.Fatalf("read without credentials: %v, want it allowed", err)
	}
	if _, err := owner.Set(root+"/a/b", []byte("x"), -1); err != nil {
		t.Fatalf("write with credentials: %v", err)
	}
}

// TestSessionExpiry: a network cut longer than the session timeout
// expires the session; the connection gets a new one, with a new
// generation, and the old ephemeral znode is gone.
func TestSessionExpiry(t *testing.T) {
	addr := zktest.Shared(t)
	root := zktest.Root(t)
	proxy := zktest.NewProxy(t, addr)
	c := dial(t, zkconn.Config{Servers: []string{proxy.Addr()}, SessionTimeout: 2 * time.Second})
	if err := c.EnsurePath(root); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(root+"/eph", nil, zk.FlagEphemeral, c.ACL()); err != nil {
		t.Fatal(err)
	}
	_, id1, gen1 := c.Session()
	proxy.Cut()
	watcher := dial(t, zkconn.Config{Servers: []string{addr}})
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok, _, err := watcher.Exists(root + "/eph")
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the ephemeral znode outlived the session timeout by 18 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	proxy.Restore()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		_, id2, gen2 := c.Session()
		if c.HasSession() && gen2 > gen1 {
			if id2 == id1 {
				t.Fatalf("new generation %d with the old session id %x", gen2, id1)
			}
			break
		}
		select {
		case <-c.Changed():
		case <-ctx.Done():
			s, _, g := c.Session()
			t.Fatalf("no new session after the cut: state %v generation %d", s, g)
		}
	}
}

// TestSilentServerRetried: a server that accepts connections and never
// answers the connect request is given up after the session timeout (the
// patched handshake deadline in internal/zk) and tried again, instead of
// holding the client for ten times two thirds of it.
func TestSilentServerRetried(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int32
	var conns []net.Conn
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	defer func() {
		ln.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	// A 2 s session: the handshake is abandoned after 1 s (a third of
	// the session timeout, at least a second) and retried after the
	// library's 1 s pause, so 9 s see at least two attempts (upstream's
	// deadline, 10 × 2/3 × 2 s = 13 s, allows one).
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Second)
	defer cancel()
	_, err = zkconn.Dial(ctx, zkconn.Config{Servers: []string{ln.Addr().String()}, SessionTimeout: 2 * time.Second})
	if err == nil {
		t.Fatal("Dial to a silent server succeeded")
	}
	if n := accepted.Load(); n < 2 {
		t.Fatalf("%d connection attempts to a silent server in 9 s, want at least 2 (the handshake is not bounded by the session timeout)", n)
	}
}

// TestReconnectPastSilentConnection: after a disconnection the client's
// first reconnect lands on a connection that is accepted and never
// answered (what ZooKeeper 3.8 does to connections that arrive in the
// instant after it binds its port at a restart). The client must give
// that attempt up and reach the server again within the session timeout,
// keeping its session (and so its ephemeral znodes: immune's ownership).
// With a handshake deadline of the whole session timeout, the session
// expired (a CI failure of rollback/zookeeper's TestServerRestart).
func TestReconnectPastSilentConnection(t *testing.T) {
	addr := zktest.Shared(t)
	proxy := zktest.NewProxy(t, addr)
	c := dial(t, zkconn.Config{Servers: []string{proxy.Addr()}, SessionTimeout: 12 * time.Second})
	_, id1, _ := c.Session()
	proxy.Hang()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for proxy.Held() == 0 {
		select {
		case <-ctx.Done():
			t.Fatal("the client did not try to reconnect after its connection closed")
		case <-time.After(10 * time.Millisecond):
		}
	}
	proxy.Restore()
	for {
		state, id2, _ := c.Session()
		if state == zk.StateExpired {
			t.Fatalf("the session expired behind a connection that never answered (held %d)", proxy.Held())
		}
		if c.HasSession() {
			if id2 != id1 {
				t.Fatalf("reconnected with a new session %x, want the old one %x kept", id2, id1)
			}
			return
		}
		select {
		case <-c.Changed():
		case <-ctx.Done():
			t.Fatalf("no session 30 s after the proxy let connections through: state %v", state)
		}
	}
}
