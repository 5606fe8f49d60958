// Package zkconn is immune's one way to connect to ZooKeeper, shared by
// the deploy watcher, the announcement discovery, the ownership locks and
// the revert trigger: servers, session timeout, digest credentials read
// from a file (never logged, never in an error), ACLs for the znodes
// immune creates, a TLS dial option, and the session's state.
//
// go-zookeeper/zk drops session events when its channel is full and,
// after an expiry, reconnects with a new session whose ephemeral znodes
// are gone. Conn drains the channel itself and publishes every change of
// state through Changed, so that users re-create ephemerals and resync
// their view after an expiry (Session's generation changes).
package zkconn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/immune-project/immune/internal/zk"
)

// Config says how to reach ZooKeeper.
type Config struct {
	// Servers are host:port addresses.
	Servers []string
	// SessionTimeout is the session timeout asked of the server
	// (default 10s); the server clamps it to its own bounds.
	SessionTimeout time.Duration
	// CredentialsFile holds "user:password" for digest authentication.
	// When set, every znode immune creates gets a digest ACL giving this
	// user all permissions and everyone else read. The content is never
	// logged nor put in an error.
	CredentialsFile string
	// TLS, when not nil, dials the servers with TLS (ZooKeeper's secure
	// client port).
	TLS *tls.Config
	// Logger receives connection state changes; discard when nil.
	Logger *slog.Logger
}

// ErrNoServers is returned by Dial for a Config without servers.
var ErrNoServers = errors.New("zookeeper: no servers configured")

// Conn is a ZooKeeper connection with its session state.
type Conn struct {
	*zk.Conn
	acl     []zk.ACL
	auth    []byte
	log     *slog.Logger
	mu      sync.Mutex
	state   zk.State
	gen     uint64 // incremented on each new session
	expired bool   // the session expired; the next one is new
	change  chan struct{}
	done    chan struct{}
	wg      sync.WaitGroup
}

// Dial connects and waits, until ctx ends, for a session.
func Dial(ctx context.Context, cfg Config) (*Conn, error) {
	if len(cfg.Servers) == 0 {
		return nil, ErrNoServers
	}
	for _, s := range cfg.Servers {
		if _, _, err := net.SplitHostPort(s); err != nil {
			return nil, fmt.Errorf("zookeeper server %q: want host:port", s)
		}
	}
	timeout := cfg.SessionTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	c := &Conn{
		acl:    zk.WorldACL(zk.PermAll),
		log:    cfg.Logger,
		change: make(chan struct{}),
		done:   make(chan struct{}),
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if cfg.CredentialsFile != "" {
		user, pass, err := ReadCredentials(cfg.CredentialsFile)
		if err != nil {
			return nil, err
		}
		c.auth = []byte(user + ":" + pass)
		c.acl = append(zk.DigestACL(zk.PermAll, user, pass), zk.WorldACL(zk.PermRead)...)
	}
	dial := func(network, address string, t time.Duration) (net.Conn, error) {
		d := &net.Dialer{Timeout: t}
		if cfg.TLS != nil {
			return tls.DialWithDialer(d, network, address, cfg.TLS)
		}
		return d.Dial(network, address)
	}
	conn, events, err := zk.Connect(cfg.Servers, timeout,
		zk.WithLogger(quietLogger{c.log}),
		zk.WithEventCallback(c.onEvent),
		zk.WithDialer(dial))
	if err != nil {
		return nil, fmt.Errorf("zookeeper connect: %w", err)
	}
	c.Conn = conn
	// The callback sees every event; the channel must still be drained
	// or the library drops events and logs about it.
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for {
			select {
			case _, ok := <-events:
				if !ok {
					return
				}
			case <-c.done:
				return
			}
		}
	}()
	if c.auth != nil {
		// AddAuth is re-sent by the library after every reconnect.
		if err := conn.AddAuth("digest", c.auth); err != nil {
			c.Close()
			return nil, fmt.Errorf("zookeeper digest authentication: %w", err)
		}
	}
	if err := c.WaitSession(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("zookeeper %s: %w", strings.Join(cfg.Servers, ","), err)
	}
	return c, nil
}

// ReadCredentials reads "user:password" from a file (one line; spaces
// around it ignored). The error names the file, never its content.
func ReadCredentials(file string) (user, password string, err error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", "", fmt.Errorf("zookeeper credentials: %w", err)
	}
	u, p, ok := strings.Cut(strings.TrimSpace(string(b)), ":")
	if !ok || u == "" || p == "" || strings.ContainsAny(u+p, "\n\r") {
		return "", "", fmt.Errorf("zookeeper credentials %s: want one line user:password", file)
	}
	return u, p, nil
}

// ACL is the ACL for znodes immune creates.
func (c *Conn) ACL() []zk.ACL { return c.acl }

// Session returns the current state, the session id and the session's
// generation, which changes whenever a new session replaces an expired
// one (ephemeral znodes of the old one are gone; watches must be set
// again and views resynced).
func (c *Conn) Session() (state zk.State, id int64, generation uint64) {
	c.mu.Lock()
	state, generation = c.state, c.gen
	c.mu.Unlock()
	if c.Conn != nil && state == zk.StateHasSession {
		id = c.Conn.SessionID()
	}
	return state, id, generation
}

// Changed returns a channel closed at the next change of session state.
func (c *Conn) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.change
}

// HasSession reports whether the connection has a live session now.
func (c *Conn) HasSession() bool {
	s, _, _ := c.Session()
	return s == zk.StateHasSession
}

// WaitSession waits for a live session or for ctx to end.
func (c *Conn) WaitSession(ctx context.Context) error {
	for {
		ch := c.Changed()
		if c.HasSession() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			s, _, _ := c.Session()
			return fmt.Errorf("no session (state %s): %w", s, ctx.Err())
		}
	}
}

// Close closes the session (its ephemeral znodes go at once).
func (c *Conn) Close() {
	select {
	case <-c.done:
		return
	default:
	}
	close(c.done)
	if c.Conn != nil {
		c.Conn.Close()
	}
	c.wg.Wait()
}

func (c *Conn) onEvent(ev zk.Event) {
	if ev.Type != zk.EventSession {
		return
	}
	c.mu.Lock()
	prev := c.state
	c.state = ev.State
	switch ev.State {
	case zk.StateExpired:
		c.expired = true
	case zk.StateHasSession:
		if c.gen == 0 || c.expired {
			c.gen++
			c.expired = false
		}
	}
	close(c.change)
	c.change = make(chan struct{})
	c.mu.Unlock()
	if prev != ev.State {
		c.log.Info("zookeeper session", "state", ev.State.String(), "server", ev.Server)
	}
}

// EnsurePath creates p and its missing parents as persistent znodes with
// the connection's ACL; existing znodes are left as they are.
func (c *Conn) EnsurePath(p string) error {
	if p == "" || p == "/" {
		return nil
	}
	parts := strings.Split(strings.Trim(p, "/"), "/")
	cur := ""
	for _, part := range parts {
		cur += "/" + part
		_, err := c.Create(cur, nil, 0, c.acl)
		if err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return fmt.Errorf("zookeeper create %s: %w", cur, err)
		}
	}
	return nil
}

// quietLogger sends the library's printf logging to slog at debug level.
type quietLogger struct{ l *slog.Logger }

func (q quietLogger) Printf(format string, args ...any) {
	q.l.Debug("zookeeper: " + fmt.Sprintf(format, args...))
}
