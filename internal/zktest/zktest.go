// Package zktest holds what the integration tests against a real
// ZooKeeper share: a server of Debian's package started for the test by
// scripts/zookeeper.sh (loopback, a free port, a temporary directory),
// stopped and restarted at will, and a TCP proxy that cuts the network
// between a client and the server, to make a session expire.
//
// Tests that need ZooKeeper are skipped under -short, and when no server
// can be started (no java or no zookeeper.jar), unless
// IMMUNE_REQUIRE_SERVERS=1 (as make test sets it): then they fail.
package zktest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Server is a ZooKeeper server started for one test.
type Server struct {
	t    testing.TB
	dir  string
	addr string
	mu   sync.Mutex
	pid  string
}

// Start starts a ZooKeeper server of its own for the test, stopped at
// the end of it. Starting takes one to four seconds; tests that need no
// restart can share one with Shared.
func Start(t testing.TB) *Server {
	t.Helper()
	skipUnlessServers(t)
	s := &Server{t: t, dir: t.TempDir()}
	s.start("")
	t.Cleanup(func() {
		if t.Failed() {
			s.logTail(40)
		}
		s.stop()
	})
	return s
}

// logTail puts the last n lines of the server's log in the test's log.
func (s *Server) logTail(n int) {
	b, err := os.ReadFile(filepath.Join(s.dir, "zookeeper.log"))
	if err != nil {
		s.t.Logf("zookeeper log: %v", err)
		return
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	s.t.Logf("the last %d lines of the zookeeper log (%s):\n%s", len(lines), s.dir, strings.Join(lines, "\n"))
}

var (
	sharedOnce sync.Once
	shared     *Server
	sharedErr  error
)

// Shared returns the address of a ZooKeeper shared by the tests of the
// package: IMMUNE_TEST_ZOOKEEPER_ADDR when set (scripts/zookeeper.sh run
// -- …), else a server started at the first call and stopped by the
// package's TestMain calling StopShared. Tests sharing it must use znode
// roots of their own (see Root).
func Shared(t testing.TB) string {
	t.Helper()
	skipUnlessServers(t)
	if a := os.Getenv("IMMUNE_TEST_ZOOKEEPER_ADDR"); a != "" {
		return a
	}
	sharedOnce.Do(func() {
		dir, err := os.MkdirTemp("", "immune-zktest-")
		if err != nil {
			sharedErr = err
			return
		}
		s := &Server{dir: dir}
		sharedErr = s.run("")
		shared = s
	})
	if sharedErr != nil {
		t.Fatalf("start a shared zookeeper: %v", sharedErr)
	}
	return shared.addr
}

// StopShared stops the server Shared started, if any. Call it from
// TestMain after m.Run.
func StopShared() {
	if shared != nil {
		shared.stop()
		_ = os.RemoveAll(shared.dir)
	}
}

// Root returns a znode root unique to the test, like /t/TestName-123456,
// so that tests sharing a server do not see each other's znodes.
func Root(t testing.TB) string {
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	return fmt.Sprintf("/t/%s-%d", name, time.Now().UnixNano()%1e9)
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.addr }

// Stop stops the server (TERM, then KILL); its data stays for Restart.
func (s *Server) Stop() {
	s.t.Helper()
	s.stop()
}

// Restart starts the stopped server again on the same port and data.
func (s *Server) Restart() {
	s.t.Helper()
	_, port, _ := net.SplitHostPort(s.addr)
	s.start(port)
}

// Kill stops the server with SIGKILL, as a crash would.
func (s *Server) Kill() {
	s.t.Helper()
	s.mu.Lock()
	pid := s.pid
	s.pid = ""
	s.mu.Unlock()
	if pid != "" {
		_ = exec.Command("kill", "-KILL", pid).Run()
		time.Sleep(200 * time.Millisecond)
	}
}

func (s *Server) start(port string) {
	s.t.Helper()
	if err := s.run(port); err != nil {
		s.t.Fatal(err)
	}
}

func (s *Server) run(port string) error {
	script, err := scriptPath()
	if err != nil {
		return err
	}
	args := []string{"start", "--dir", s.dir}
	if port != "" {
		args = append(args, "--port", port)
	}
	cmd := exec.Command(script, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("scripts/zookeeper.sh start: %v: %s", err, stderr.String())
	}
	env := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "=")
		if ok {
			env[k] = strings.Trim(v, "'")
		}
	}
	s.mu.Lock()
	s.addr, s.pid = env["IMMUNE_TEST_ZOOKEEPER_ADDR"], env["IMMUNE_TEST_ZOOKEEPER_PID"]
	s.mu.Unlock()
	if s.addr == "" || s.pid == "" {
		return fmt.Errorf("scripts/zookeeper.sh start printed no address or pid: %q", out)
	}
	return nil
}

func (s *Server) stop() {
	s.mu.Lock()
	pid := s.pid
	s.pid = ""
	s.mu.Unlock()
	if pid == "" {
		return
	}
	script, err := scriptPath()
	if err != nil {
		_ = exec.Command("kill", "-KILL", pid).Run()
		return
	}
	_ = exec.Command(script, "stop", pid).Run()
}

func skipUnlessServers(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test against a real ZooKeeper: skipped under -short")
	}
	if os.Getenv("IMMUNE_TEST_ZOOKEEPER_ADDR") != "" {
		return
	}
	if err := available(); err != nil {
		msg := "no ZooKeeper to start: " + err.Error() + " (scripts/install-deps.sh installs Debian's zookeeper)"
		if os.Getenv("IMMUNE_REQUIRE_SERVERS") == "1" {
			t.Fatal(msg + " (IMMUNE_REQUIRE_SERVERS=1: a missing server is a failure)")
		}
		t.Skip(msg)
	}
}

func available() error {
	if _, err := exec.LookPath(envOr("JAVA", "java")); err != nil {
		return errors.New("no java on PATH")
	}
	cp := envOr("ZOOKEEPER_CLASSPATH", "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar")
	jar := cp[strings.LastIndex(cp, ":")+1:]
	if _, err := os.Stat(jar); err != nil {
		return fmt.Errorf("no %s", jar)
	}
	_, err := scriptPath()
	return err
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// scriptPath finds scripts/zookeeper.sh in the module root above the
// working directory (go test runs in the package's directory).
func scriptPath() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(dir, "scripts", "zookeeper.sh")
			if _, err := os.Stat(p); err != nil {
				return "", fmt.Errorf("no %s", p)
			}
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory: cannot find scripts/zookeeper.sh")
		}
		dir = parent
	}
}

// Proxy is a TCP proxy in front of a server. Cut drops every connection
// and refuses new ones until Restore: to the client it is a network
// partition, and a session whose timeout passes meanwhile expires on the
// server.
type Proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	hang   bool
	silent []net.Conn // held by Hang
	conns  map[net.Conn]bool
	wg     sync.WaitGroup
}

// NewProxy starts a proxy to target on a loopback port, closed at the
// end of the test.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's host:port, for the client to dial.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Cut closes every proxied connection and refuses new ones.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		_ = c.Close()
	}
}

// Hang closes every proxied connection and then accepts new ones
// without ever forwarding them, as ZooKeeper 3.8 does with connections
// that arrive in the instant after it binds its port at start. Held
// connections stay open and silent until the proxy closes; Restore lets
// new ones through again.
func (p *Proxy) Hang() {
	p.Cut()
	p.mu.Lock()
	p.cut, p.hang = false, true
	p.mu.Unlock()
}

// Held is how many connections Hang has held so far.
func (p *Proxy) Held() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.silent)
}

// Restore lets connections through again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.cut, p.hang = false, false
	p.mu.Unlock()
}

// Close stops the proxy and closes its connections.
func (p *Proxy) Close() {
	_ = p.ln.Close()
	p.Cut()
	p.wg.Wait()
	p.mu.Lock()
	for _, c := range p.silent {
		_ = c.Close()
	}
	p.silent = nil
	p.mu.Unlock()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		if p.hang {
			p.silent = append(p.silent, c)
			p.mu.Unlock()
			continue
		}
		p.mu.Unlock()
		up, err := net.DialTimeout("tcp", p.target, 2*time.Second)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			_ = c.Close()
			_ = up.Close()
			continue
		}
		p.conns[c], p.conns[up] = true, true
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

func (p *Proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
	_ = src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}
