package zookeeper_test

import (
	"encoding/binary"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/internal/zktest"
)

// readCounter is a TCP proxy in front of a ZooKeeper server that counts
// the client's reads (getData, getChildren2, exists) by operation and
// path, decoding the client's request frames as they pass.
type readCounter struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	reads  map[string]int // "get /p", "list /p", "exists /p"
	conns  map[net.Conn]bool
	wg     sync.WaitGroup
}

func newReadCounter(t *testing.T, target string) *readCounter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rc := &readCounter{ln: ln, target: target, reads: map[string]int{}, conns: map[net.Conn]bool{}}
	rc.wg.Add(1)
	go rc.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		rc.mu.Lock()
		for c := range rc.conns {
			_ = c.Close()
		}
		rc.mu.Unlock()
		rc.wg.Wait()
	})
	return rc
}

func (rc *readCounter) addr() string { return rc.ln.Addr().String() }

// take returns the reads counted since the last take and starts anew.
func (rc *readCounter) take() map[string]int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	r := rc.reads
	rc.reads = map[string]int{}
	return r
}

func (rc *readCounter) accept() {
	defer rc.wg.Done()
	for {
		c, err := rc.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.DialTimeout("tcp", rc.target, 2*time.Second)
		if err != nil {
			_ = c.Close()
			continue
		}
		rc.mu.Lock()
		rc.conns[c], rc.conns[up] = true, true
		rc.mu.Unlock()
		rc.wg.Add(2)
		go rc.pipe(up, c, false) // client to server, decoded
		go rc.pipe(c, up, true)
	}
}

func (rc *readCounter) pipe(dst, src net.Conn, fromServer bool) {
	defer rc.wg.Done()
	defer func() {
		_ = dst.Close()
		_ = src.Close()
		rc.mu.Lock()
		delete(rc.conns, dst)
		delete(rc.conns, src)
		rc.mu.Unlock()
	}()
	if fromServer {
		_, _ = io.Copy(dst, src)
		return
	}
	// Client to server: 4-byte length, then the frame. The first frame
	// is the connect request; the others start with xid and opcode, and
	// a read's body with its path.
	ops := map[int32]string{3: "exists", 4: "get", 12: "list"}
	for first := true; ; first = false {
		var n [4]byte
		if _, err := io.ReadFull(src, n[:]); err != nil {
			return
		}
		frame := make([]byte, binary.BigEndian.Uint32(n[:]))
		if _, err := io.ReadFull(src, frame); err != nil {
			return
		}
		if op, ok := ops[int32(binary.BigEndian.Uint32(frame[4:8]))]; ok && !first && len(frame) >= 12 {
			l := int(binary.BigEndian.Uint32(frame[8:12]))
			if 12+l <= len(frame) {
				rc.mu.Lock()
				rc.reads[op+" "+string(frame[12:12+l])]++
				rc.mu.Unlock()
			}
		}
		if _, err := dst.Write(append(n[:], frame...)); err != nil {
			return
		}
	}
}

// TestWatcherReconnectReads: the resync after a reconnection reads each
// followed znode once, a running deploy included, and the finished
// deploys it knows not at all.
func TestWatcherReconnectReads(t *testing.T) {
	addr := zktest.Shared(t)
	layout := layoutAt(zktest.Root(t))
	wc := writer{t, dial(t, addr, 0), layout}
	wc.deploy("checkout", "old", deploy.StateDone)
	wc.group("checkout", "old", 0)
	wc.deploy("checkout", "live", deploy.StateRunning)
	wc.group("checkout", "live", 0)
	wc.selftest("checkout", "live", "c-1", true)
	rc := newReadCounter(t, addr)
	proxy := zktest.NewProxy(t, rc.addr())
	conn := dial(t, proxy.Addr(), 6*time.Second)
	h := watch(t, conn, layout)
	h.wait("started old done", "started live running", "group live/0", "selftest live/c-1 passed=true")
	if reads := rc.take(); reads["get "+layout.Deploy("checkout", "old")] != 1 {
		t.Errorf("start: the finished deploy read %d times, want 1: %v", reads["get "+layout.Deploy("checkout", "old")], reads)
	}

	// A reconnection in the same session: a resync.
	_, _, gen := conn.Session()
	proxy.Cut()
	time.Sleep(time.Second)
	proxy.Restore()
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(h.logs.String(), "zookeeper deploy watcher: synced") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no resync after the reconnection:\n%s", h.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, _, g := conn.Session(); g != gen {
		t.Fatalf("session generation %d, want %d: the session expired", g, gen)
	}
	reads := rc.take()
	for k, n := range reads {
		if n != 1 {
			t.Errorf("%s: %d reads in the resync, want 1", k, n)
		}
	}
	for _, k := range []string{
		"list " + layout.Deploys, "list " + layout.ServiceDeploys("checkout"),
		"get " + layout.Deploy("checkout", "live"), "list " + layout.Deploy("checkout", "live"),
		"list " + layout.Groups("checkout", "live"), "list " + layout.SelfTests("checkout", "live"),
	} {
		if reads[k] != 1 {
			t.Errorf("%s: %d reads in the resync, want 1", k, reads[k])
		}
	}
	if n := reads["get "+layout.Deploy("checkout", "old")]; n != 0 {
		t.Errorf("the finished deploy read %d times in the resync, want 0", n)
	}
	h.still(4, 100*time.Millisecond)
}
