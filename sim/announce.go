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

	"github.com/immune-project/immune/internal/zk"

	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/internal/zkconn"
)

var _ Announcer = (*ZKAnnouncer)(nil)

// ZKAnnouncer announces instances as ServerSet members in ZooKeeper:
// ephemeral sequential znodes /services/<service>/members/member_<seq>
// holding deploy.Member JSON.
//
// It keeps what should be announced and makes ZooKeeper match, as a real
// instance does: when the session expires (its ephemeral znodes are
// gone) it announces every member again in the new session, and when
// ZooKeeper cannot be reached an Announce or Unannounce is applied as
// soon as it can be (the call reports the failure, and the retry goes
// on in the background every RetryInterval). After a failure it also
// removes the member znodes of its session that it does not know: a
// create whose answer was lost on the way. So use one ZKAnnouncer per
// connection.
type ZKAnnouncer struct {
	conn   *zkconn.Conn
	layout deploy.Layout
	log    *slog.Logger

	mu       sync.Mutex
	members  map[string]*announced // service/instance
	services map[string]bool       // every service announced
	dirty    bool                  // something failed since the last sweep
	kick     chan struct{}
	done     chan struct{}
	wg       sync.WaitGroup
}

// RetryInterval is how often the announcer retries what ZooKeeper
// refused.
const RetryInterval = time.Second

type announced struct {
	service string
	data    []byte
	want    bool   // announced (true) or to be removed
	path    string // the znode, "" when none
	gen     uint64 // session generation the znode was created in
	stale   bool   // path holds older data: replace it
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
	a := &ZKAnnouncer{conn: conn, layout: layout, log: logger, members: map[string]*announced{},
		services: map[string]bool{}, kick: make(chan struct{}, 1), done: make(chan struct{})}
	a.wg.Add(1)
	go a.loop()
	return a
}

// Announce makes instance a member with m (replacing its previous znode,
// if any). An error says ZooKeeper did not take it yet; it is retried.
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
	x := a.members[key]
	if x == nil {
		x = &announced{service: service}
		a.members[key] = x
	}
	a.services[service] = true
	x.data, x.want, x.stale = data, true, x.path != ""
	if err := a.apply(key, x); err != nil {
		a.retrySoon()
		return fmt.Errorf("announce %s: %w", instance, err)
	}
	return nil
}

// Unannounce removes instance's member znode. An error says ZooKeeper
// did not take it yet; it is retried.
func (a *ZKAnnouncer) Unannounce(ctx context.Context, service, instance string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("un-announce %s: %w", instance, err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	key := service + "/" + instance
	x := a.members[key]
	if x == nil {
		return nil
	}
	x.want = false
	if err := a.apply(key, x); err != nil {
		a.retrySoon()
		return fmt.Errorf("un-announce %s: %w", instance, err)
	}
	return nil
}

// Path returns the member znode of an announced instance ("" if none).
func (a *ZKAnnouncer) Path(service, instance string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if x := a.members[service+"/"+instance]; x != nil && x.want {
		return x.path
	}
	return ""
}

// Close stops the announcer. The member znodes stay until they are
// un-announced or the session ends.
func (a *ZKAnnouncer) Close() {
	select {
	case <-a.done:
		return
	default:
	}
	close(a.done)
	a.wg.Wait()
}

func (a *ZKAnnouncer) retrySoon() {
	a.dirty = true
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// apply makes ZooKeeper match x; a.mu is held.
func (a *ZKAnnouncer) apply(key string, x *announced) error {
	_, _, gen := a.conn.Session()
	if x.path != "" && x.gen != gen {
		// Created in an expired session: gone with it.
		x.path = ""
	}
	if x.path != "" && (!x.want || x.stale) {
		if err := a.conn.Delete(x.path, -1); err != nil && !errors.Is(err, zk.ErrNoNode) {
			return fmt.Errorf("zookeeper delete %s: %w", x.path, err)
		}
		x.path = ""
	}
	if !x.want {
		delete(a.members, key)
		return nil
	}
	if x.path != "" {
		return nil
	}
	dir := a.layout.Members(x.service)
	if err := a.conn.EnsurePath(dir); err != nil {
		return err
	}
	p, err := a.conn.Create(path.Join(dir, deploy.MemberPrefix), x.data, zk.FlagEphemeral|zk.FlagSequence, a.conn.ACL())
	if err != nil {
		return fmt.Errorf("zookeeper create %s: %w", path.Join(dir, deploy.MemberPrefix), err)
	}
	x.path, x.gen, x.stale = p, gen, false
	return nil
}

// loop re-applies every member after a session change, and retries
// what failed every RetryInterval.
func (a *ZKAnnouncer) loop() {
	defer a.wg.Done()
	var retry <-chan time.Time
	for {
		changed := a.conn.Changed()
		if a.conn.HasSession() {
			if err := a.reconcile(); err != nil {
				a.log.Warn("zookeeper announcements: will retry", "err", err)
				retry = time.After(RetryInterval)
			} else {
				retry = nil
			}
		}
		select {
		case <-a.done:
			return
		case <-changed:
		case <-retry:
		case <-a.kick:
			// Wait a little before retrying what just failed.
			if retry == nil {
				retry = time.After(RetryInterval)
			}
			select {
			case <-a.done:
				return
			case <-changed:
			case <-retry:
			}
		}
	}
}

func (a *ZKAnnouncer) reconcile() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var errs []error
	for key, x := range a.members {
		before := x.path
		if err := a.apply(key, x); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
			continue
		}
		if x.want && x.path != before {
			a.log.Info("announced", "member", key, "znode", x.path, "replaces", before)
		}
	}
	if len(errs) == 0 && a.dirty {
		if err := a.sweep(); err != nil {
			errs = append(errs, err)
		} else {
			a.dirty = false
		}
	}
	if len(errs) > 0 {
		a.dirty = true
	}
	return errors.Join(errs...)
}

// sweep deletes the member znodes owned by this session that no member
// holds: creates that succeeded after their answer was lost; a.mu is
// held.
func (a *ZKAnnouncer) sweep() error {
	_, session, _ := a.conn.Session()
	if session == 0 {
		return errors.New("sweep: no session")
	}
	known := map[string]bool{}
	for _, x := range a.members {
		if x.path != "" {
			known[x.path] = true
		}
	}
	for service := range a.services {
		dir := a.layout.Members(service)
		names, _, err := a.conn.Children(dir)
		if errors.Is(err, zk.ErrNoNode) {
			continue
		}
		if err != nil {
			return fmt.Errorf("zookeeper children %s: %w", dir, err)
		}
		for _, n := range names {
			p := path.Join(dir, n)
			if known[p] {
				continue
			}
			ok, st, err := a.conn.Exists(p)
			if err != nil {
				return fmt.Errorf("zookeeper exists %s: %w", p, err)
			}
			if !ok || st.EphemeralOwner != session {
				continue
			}
			if err := a.conn.Delete(p, -1); err != nil && !errors.Is(err, zk.ErrNoNode) {
				return fmt.Errorf("zookeeper delete %s: %w", p, err)
			}
			a.log.Info("removed a member whose create answer was lost", "znode", p)
		}
	}
	return nil
}
