package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/internal/zkconn"
)

var _ Announcer = (*ZKAnnouncer)(nil)

// ZKAnnouncer announces instances as ServerSet members in ZooKeeper:
// ephemeral sequential znodes /services/<service>/members/member_<seq>
// holding deploy.Member JSON. When the session expires (its ephemeral
// znodes are gone), it announces every member again in the new session.
type ZKAnnouncer struct {
	conn   *zkconn.Conn
	layout deploy.Layout
	log    *slog.Logger

	mu      sync.Mutex
	members map[string]*announced // service/instance
	done    chan struct{}
	wg      sync.WaitGroup
}

type announced struct {
	service string
	data    []byte
	path    string // "" when it must be created (again)
	gen     uint64 // session generation it was created in
}

// NewZKAnnouncer announces through conn under layout's services root
// (deploy.DefaultLayout when its Services is empty). Close stops it.
func NewZKAnnouncer(conn *zkconn.Conn, layout deploy.Layout, logger *slog.Logger) *ZKAnnouncer {
	if layout.Services == "" {
		layout = deploy.DefaultLayout
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	a := &ZKAnnouncer{conn: conn, layout: layout, log: logger, members: map[string]*announced{}, done: make(chan struct{})}
	a.wg.Add(1)
	go a.loop()
	return a
}

// Announce creates the member znode of instance (replacing its previous
// one, if any).
func (a *ZKAnnouncer) Announce(ctx context.Context, service, instance string, m deploy.Member) error {
	if !deploy.ValidName(service) || !deploy.ValidName(instance) {
		return fmt.Errorf("announce: service %q or instance %q is not a valid name", service, instance)
	}
	data, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("announce %s: %w", instance, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("announce %s: %w", instance, err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	key := service + "/" + instance
	if old := a.members[key]; old != nil && old.path != "" {
		if err := a.conn.Delete(old.path, -1); err != nil && !errors.Is(err, zk.ErrNoNode) {
			return fmt.Errorf("announce %s: remove %s: %w", instance, old.path, err)
		}
	}
	m2 := &announced{service: service, data: data}
	a.members[key] = m2
	return a.create(m2)
}

// Unannounce deletes the member znode of instance.
func (a *ZKAnnouncer) Unannounce(ctx context.Context, service, instance string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("un-announce %s: %w", instance, err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	key := service + "/" + instance
	m := a.members[key]
	if m == nil {
		return nil
	}
	if m.path != "" {
		if err := a.conn.Delete(m.path, -1); err != nil && !errors.Is(err, zk.ErrNoNode) {
			return fmt.Errorf("un-announce %s: delete %s: %w", instance, m.path, err)
		}
	}
	delete(a.members, key)
	return nil
}

// Path returns the member znode of an announced instance ("" if none).
func (a *ZKAnnouncer) Path(service, instance string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if m := a.members[service+"/"+instance]; m != nil {
		return m.path
	}
	return ""
}

// Close stops watching the session. The member znodes stay until they
// are un-announced or the session ends.
func (a *ZKAnnouncer) Close() {
	select {
	case <-a.done:
		return
	default:
	}
	close(a.done)
	a.wg.Wait()
}

// create creates m's znode in the current session; a.mu is held.
func (a *ZKAnnouncer) create(m *announced) error {
	dir := a.layout.Members(m.service)
	if err := a.conn.EnsurePath(dir); err != nil {
		return err
	}
	_, _, gen := a.conn.Session()
	p, err := a.conn.Create(path.Join(dir, deploy.MemberPrefix), m.data, zk.FlagEphemeral|zk.FlagSequence, a.conn.ACL())
	if err != nil {
		return fmt.Errorf("zookeeper create %s: %w", path.Join(dir, deploy.MemberPrefix), err)
	}
	m.path, m.gen = p, gen
	return nil
}

// loop announces the members again after a session expiry, retrying
// every second while ZooKeeper refuses.
func (a *ZKAnnouncer) loop() {
	defer a.wg.Done()
	var retry <-chan time.Time
	for {
		changed := a.conn.Changed()
		if a.conn.HasSession() {
			if err := a.reannounce(); err != nil {
				a.log.Warn("announce again after session expiry", "err", err)
				retry = time.After(time.Second)
			} else {
				retry = nil
			}
		}
		select {
		case <-a.done:
			return
		case <-changed:
		case <-retry:
		}
	}
}

func (a *ZKAnnouncer) reannounce() error {
	_, _, gen := a.conn.Session()
	a.mu.Lock()
	defer a.mu.Unlock()
	var errs []error
	for key, m := range a.members {
		if m.path != "" && m.gen == gen {
			continue
		}
		old := m.path
		if err := a.create(m); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
			continue
		}
		a.log.Info("announced again in a new session", "member", key, "old", old, "znode", m.path)
	}
	return errors.Join(errs...)
}
