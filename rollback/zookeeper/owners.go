// Package zookeeper is the revert path through ZooKeeper and the
// ownership of analyses across immune instances.
//
// Ownership: the owner of a deploy's analysis holds two ephemeral znodes
// of its session, created in one transaction: /immune/owners/<deploy-id>
// (deploy.OwnerRecord, plus the fence's path) and a fence,
// /immune/fences/<deploy-id>.<session>.<random>, whose name is never used
// twice. Every write immune makes for the deploy (the revert request, the
// gate verdict) is one transaction that first checks the fence: once the
// session that created it has expired, the fence is gone for good, so an
// instance that lost its session can never write, even when its client
// library sends a queued request over a new session, and even when
// another instance (or itself, anew) owns the deploy by then. A version
// check of the owner znode alone would not do: a new owner's znode has
// the same version, 0.
package zookeeper

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/immune-project/immune/internal/zk"

	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/internal/zkconn"
	"github.com/immune-project/immune/rollback"
)

// DefaultFenceRoot is the default directory of the fence znodes.
const DefaultFenceRoot = "/immune/fences"

// Config is the configuration of the ZooKeeper revert path and
// ownership, for immune run's config file.
type Config struct {
	// FenceRoot is the directory of the fence znodes (default
	// /immune/fences).
	FenceRoot string `yaml:"fence_root"`
	// LostAfter is how long a disconnection may last before the leases
	// are given up as lost (the server may have expired the session by
	// then); default: the session timeout.
	LostAfter time.Duration `yaml:"lost_after"`
}

// Validate reports a fence root that is not an absolute clean path.
func (c Config) Validate() error {
	if c.FenceRoot != "" && (!strings.HasPrefix(c.FenceRoot, "/") || path.Clean(c.FenceRoot) != c.FenceRoot || c.FenceRoot == "/") {
		return fmt.Errorf("zookeeper fence_root: %q is not an absolute path like %s", c.FenceRoot, DefaultFenceRoot)
	}
	if c.LostAfter < 0 {
		return fmt.Errorf("zookeeper lost_after: %v is negative", c.LostAfter)
	}
	return nil
}

// Options of NewOwners.
type Options struct {
	// Layout holds the protocol's roots; deploy.DefaultLayout when zero.
	Layout deploy.Layout
	// FenceRoot is the directory of the fences; DefaultFenceRoot when "".
	FenceRoot string
	// Instance names this immune instance (host name, pod name); required.
	Instance string
	// LostAfter: a lease is lost when the connection stays without a
	// session for this long (default 10s: set it to the session timeout).
	LostAfter time.Duration
	// Now is the clock of the records written; time.Now when nil.
	Now func() time.Time
	// Logger receives ownership changes; discard when nil.
	Logger *slog.Logger
	// Metrics count the trigger's attempts; nil records nothing.
	Metrics *rollback.Metrics
}

// Owners hands out the ownership of deploys' analyses to this instance
// through ZooKeeper.
type Owners struct {
	conn   *zkconn.Conn
	opts   Options
	log    *slog.Logger
	mu     sync.Mutex
	leases map[string]*Lease
	closed chan struct{}
	close  sync.Once
	wg     sync.WaitGroup
}

var _ rollback.Ownership = (*Owners)(nil)

// NewOwners returns the ownership of this instance over conn. Close it
// before closing conn.
func NewOwners(conn *zkconn.Conn, opts Options) (*Owners, error) {
	if opts.Layout == (deploy.Layout{}) {
		opts.Layout = deploy.DefaultLayout
	}
	if err := opts.Layout.Validate(); err != nil {
		return nil, err
	}
	if opts.FenceRoot == "" {
		opts.FenceRoot = DefaultFenceRoot
	}
	if err := (Config{FenceRoot: opts.FenceRoot}).Validate(); err != nil {
		return nil, err
	}
	if !deploy.ValidName(opts.Instance) {
		return nil, fmt.Errorf("zookeeper ownership: instance name %q is not a valid name", opts.Instance)
	}
	if opts.LostAfter <= 0 {
		opts.LostAfter = 10 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	o := &Owners{conn: conn, opts: opts, log: opts.Logger, leases: map[string]*Lease{}, closed: make(chan struct{})}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// ownerData is the JSON of the owner znode: deploy.OwnerRecord and the
// path of the fence created with it.
type ownerData struct {
	deploy.OwnerRecord
	Fence string `json:"fence"`
}

// Acquire makes this instance the owner of the deploy's analysis, or
// returns ErrOwned (naming the owner) when another instance owns it, or
// this instance holds a lease on it already. It waits for a session
// until ctx ends (ErrUnavailable).
func (o *Owners) Acquire(ctx context.Context, deployID string) (rollback.Lease, error) {
	l, err := o.acquire(ctx, deployID)
	if err != nil {
		return nil, err
	}
	return l, nil
}

func (o *Owners) acquire(ctx context.Context, deployID string) (*Lease, error) {
	l, err := o.acquireOnce(ctx, deployID)
	if errors.Is(err, rollback.ErrOwned) && o.reclaim(ctx, deployID) {
		// The owner znode was this session's own, left by a lease given
		// up as lost while the session lived on (the server came back
		// in time): it is gone now, try again.
		return o.acquireOnce(ctx, deployID)
	}
	return l, err
}

// reclaim deletes the deploy's owner znode and its fence when they belong
// to this connection's current session but to no live lease of this
// instance, and reports whether it did.
func (o *Owners) reclaim(ctx context.Context, deployID string) bool {
	o.mu.Lock()
	if l, ok := o.leases[deployID]; ok && l.live() {
		o.mu.Unlock()
		return false
	}
	o.mu.Unlock()
	ownerPath := o.opts.Layout.Owner(deployID)
	var (
		data []byte
		st   *zk.Stat
	)
	if err := call(ctx, func() (err error) { data, st, err = o.conn.Get(ownerPath); return err }); err != nil {
		return false
	}
	_, sid, _ := o.conn.Session()
	if st == nil || sid == 0 || st.EphemeralOwner != sid {
		return false
	}
	var od ownerData
	_ = json.Unmarshal(data, &od)
	if od.Fence != "" {
		_ = call(ctx, func() error {
			err := o.conn.Delete(od.Fence, -1)
			if errors.Is(err, zk.ErrNoNode) {
				return nil
			}
			return err
		})
	}
	err := call(ctx, func() error { return o.conn.Delete(ownerPath, st.Version) })
	if err != nil && !errors.Is(err, zk.ErrNoNode) {
		return false
	}
	o.log.Info("ownership: stale owner znode of this session removed", "deploy", deployID, "instance", o.opts.Instance)
	return true
}

func (o *Owners) acquireOnce(ctx context.Context, deployID string) (*Lease, error) {
	if !deploy.ValidName(deployID) {
		return nil, fmt.Errorf("acquire deploy %q: %w: not a valid deploy id", deployID, rollback.ErrBadRequest)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("acquire deploy %s: %w", deployID, err)
	}
	select {
	case <-o.closed:
		return nil, fmt.Errorf("acquire deploy %s: %w: ownership closed", deployID, rollback.ErrUnavailable)
	default:
	}
	o.mu.Lock()
	if l, ok := o.leases[deployID]; ok && l.live() {
		o.mu.Unlock()
		return nil, fmt.Errorf("acquire deploy %s: %w (this instance, %s)", deployID, rollback.ErrOwned, o.opts.Instance)
	}
	o.mu.Unlock()
	if err := o.conn.WaitSession(ctx); err != nil {
		return nil, fmt.Errorf("acquire deploy %s: %w: %w", deployID, rollback.ErrUnavailable, err)
	}
	_, sid, gen := o.conn.Session()
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	ownerPath := o.opts.Layout.Owner(deployID)
	fence := path.Join(o.opts.FenceRoot, fmt.Sprintf("%s.%d.%s", deployID, uint64(sid), hex.EncodeToString(rnd[:])))
	data, err := json.Marshal(ownerData{deploy.OwnerRecord{Instance: o.opts.Instance, Since: o.opts.Now().UTC()}, fence})
	if err != nil {
		return nil, fmt.Errorf("acquire deploy %s: %w", deployID, err)
	}
	for _, dir := range []string{o.opts.Layout.Owners, o.opts.FenceRoot} {
		if err := call(ctx, func() error { return o.conn.EnsurePath(dir) }); err != nil {
			return nil, fmt.Errorf("acquire deploy %s: %w: %w", deployID, classify(err), err)
		}
	}
	var res []zk.MultiResponse
	err = call(ctx, func() (err error) {
		res, err = o.conn.Multi(
			&zk.CreateRequest{Path: ownerPath, Data: data, Acl: o.conn.ACL(), Flags: zk.FlagEphemeral},
			&zk.CreateRequest{Path: fence, Acl: o.conn.ACL(), Flags: zk.FlagEphemeral})
		return err
	})
	if err != nil {
		if opErr(res, 0) == zk.ErrNodeExists {
			return nil, fmt.Errorf("acquire deploy %s: %w%s", deployID, rollback.ErrOwned, o.ownerOf(ctx, ownerPath))
		}
		return nil, fmt.Errorf("acquire deploy %s: %w: %w", deployID, classify(err), err)
	}
	// The transaction went through the session current when it was
	// sent: if that is no longer the one seen before, a new session
	// began meanwhile and its lease is judged below by the fence.
	_, sid2, gen2 := o.conn.Session()
	var stat *zk.Stat
	_ = call(ctx, func() (err error) { _, stat, err = o.conn.Exists(fence); return err })
	if sid2 != sid || gen2 != gen || stat == nil || stat.EphemeralOwner != sid2 {
		l := &Lease{o: o, id: deployID, ownerPath: ownerPath, fence: fence}
		_ = l.deleteZnodes(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("acquire deploy %s: %w: the session changed while acquiring", deployID, rollback.ErrUnavailable)
	}
	l := &Lease{o: o, id: deployID, ownerPath: ownerPath, fence: fence, session: sid, gen: gen,
		lost: make(chan struct{}), released: make(chan struct{}), stop: make(chan struct{})}
	o.mu.Lock()
	o.leases[deployID] = l
	o.mu.Unlock()
	o.wg.Add(1)
	go l.watch()
	o.log.Info("ownership acquired", "deploy", deployID, "instance", o.opts.Instance, "fence", fence)
	return l, nil
}

// ownerOf names the current owner of a deploy, for an error.
func (o *Owners) ownerOf(ctx context.Context, ownerPath string) string {
	var data []byte
	if err := call(ctx, func() (err error) { data, _, err = o.conn.Get(ownerPath); return err }); err != nil {
		return ""
	}
	var od ownerData
	if json.Unmarshal(data, &od) != nil || od.Instance == "" {
		return ""
	}
	return fmt.Sprintf(" (%s since %s)", od.Instance, od.Since.UTC().Format(time.RFC3339))
}

// Wait makes this instance the owner as soon as it can: at once when
// nobody owns the deploy, or when the owner's znode disappears (released,
// or its session expired), until ctx ends.
func (o *Owners) Wait(ctx context.Context, deployID string) (rollback.Lease, error) {
	for {
		l, err := o.acquire(ctx, deployID)
		if err == nil {
			return l, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		switch {
		case errors.Is(err, rollback.ErrOwned):
			if err := o.waitGone(ctx, deployID); err != nil {
				return nil, err
			}
		case errors.Is(err, rollback.ErrUnavailable):
			select {
			case <-o.conn.Changed():
			case <-time.After(time.Second):
			case <-o.closed:
				return nil, err
			case <-ctx.Done():
				return nil, fmt.Errorf("wait for deploy %s: %w", deployID, ctx.Err())
			}
		default:
			return nil, err
		}
	}
}

// waitGone waits until the deploy's owner znode may be gone.
func (o *Owners) waitGone(ctx context.Context, deployID string) error {
	o.mu.Lock()
	mine := o.leases[deployID]
	o.mu.Unlock()
	var mineDone <-chan struct{}
	if mine != nil && mine.live() {
		mineDone = mine.stop
	}
	var (
		exists bool
		ch     <-chan zk.Event
	)
	err := call(ctx, func() (err error) {
		exists, _, ch, err = o.conn.ExistsW(o.opts.Layout.Owner(deployID))
		return err
	})
	if err != nil || !exists {
		return nil // try again at once (a failed call is retried by acquire)
	}
	select {
	case <-ch:
	case <-mineDone:
	case <-o.conn.Changed():
	case <-o.closed:
		return fmt.Errorf("wait for deploy %s: %w: ownership closed", deployID, rollback.ErrUnavailable)
	case <-ctx.Done():
		return fmt.Errorf("wait for deploy %s: %w", deployID, ctx.Err())
	}
	return nil
}

// Lease returns this instance's live lease on a deploy.
func (o *Owners) Lease(deployID string) (*Lease, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	l, ok := o.leases[deployID]
	if !ok || !l.live() {
		return nil, false
	}
	return l, true
}

// Close releases every lease (their znodes are deleted) and stops
// watching. Close it before the connection. Calls after the first return
// nil, once the first is done.
func (o *Owners) Close(ctx context.Context) error {
	var err error
	o.close.Do(func() { err = o.closeOnce(ctx) })
	return err
}

func (o *Owners) closeOnce(ctx context.Context) error {
	o.mu.Lock()
	leases := make([]*Lease, 0, len(o.leases))
	for _, l := range o.leases {
		leases = append(leases, l)
	}
	o.mu.Unlock()
	var errs []error
	for _, l := range leases {
		errs = append(errs, l.Release(ctx))
	}
	close(o.closed)
	o.wg.Wait()
	return errors.Join(errs...)
}

// Lease is this instance's ownership of one deploy's analysis.
type Lease struct {
	o         *Owners
	id        string
	ownerPath string
	fence     string
	session   int64
	gen       uint64

	mu       sync.Mutex
	lost     chan struct{}
	released chan struct{}
	stop     chan struct{} // closed when lost or released
	ended    bool
}

var _ rollback.Lease = (*Lease)(nil)

// DeployID is the deploy owned.
func (l *Lease) DeployID() string { return l.id }

// Fence is the path of the lease's fence znode: a transaction that
// checks it (zk.CheckVersionRequest{Path: fence, Version: 0}) fails once
// the lease's session has expired.
func (l *Lease) Fence() string { return l.fence }

// Lost is closed when the lease ended without Release: its session
// expired, the connection stayed without a session longer than
// LostAfter, or its owner znode was deleted.
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// FenceCheck is the first operation of a transaction fenced by the lease.
func (l *Lease) FenceCheck() *zk.CheckVersionRequest {
	return &zk.CheckVersionRequest{Path: l.fence, Version: 0}
}

// Multi runs ops (zk.CreateRequest, SetDataRequest, DeleteRequest,
// CheckVersionRequest) in one transaction after the fence check, until
// ctx ends: all of them or none, and none once the lease's session has
// expired (the first response's error is then zk.ErrNoNode). The
// responses include the fence check's, first.
func (l *Lease) Multi(ctx context.Context, ops ...any) ([]zk.MultiResponse, error) {
	all := append([]any{l.FenceCheck()}, ops...)
	var mr []zk.MultiResponse
	err := call(ctx, func() (err error) { mr, err = l.o.conn.Multi(all...); return err })
	return mr, err
}

func (l *Lease) live() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.ended
}

// end marks the lease ended, lost or released; it reports whether this
// call ended it.
func (l *Lease) end(lost bool, why string) bool {
	l.mu.Lock()
	if l.ended {
		l.mu.Unlock()
		return false
	}
	l.ended = true
	if lost {
		close(l.lost)
	} else {
		close(l.released)
	}
	close(l.stop)
	l.mu.Unlock()
	l.o.mu.Lock()
	if l.o.leases[l.id] == l {
		delete(l.o.leases, l.id)
	}
	l.o.mu.Unlock()
	if lost {
		l.o.log.Warn("ownership lost", "deploy", l.id, "instance", l.o.opts.Instance, "why", why)
	} else {
		l.o.log.Info("ownership released", "deploy", l.id, "instance", l.o.opts.Instance)
	}
	return true
}

// Release gives the deploy up: the owner and fence znodes are deleted in
// one transaction that fails, deleting nothing, when the lease was lost.
func (l *Lease) Release(ctx context.Context) error {
	if !l.end(false, "") {
		return nil
	}
	if err := l.deleteZnodes(ctx); err != nil {
		return fmt.Errorf("release deploy %s: %w", l.id, err)
	}
	return nil
}

func (l *Lease) deleteZnodes(ctx context.Context) error {
	var res []zk.MultiResponse
	err := call(ctx, func() (err error) {
		res, err = l.o.conn.Multi(
			&zk.DeleteRequest{Path: l.fence, Version: 0},
			&zk.DeleteRequest{Path: l.ownerPath, Version: 0})
		return err
	})
	if err != nil && opErr(res, 0) == zk.ErrNoNode {
		return nil // the session that held them is gone, and they with it
	}
	return err
}

// watch closes Lost when the session expires, stays away longer than
// LostAfter, or the owner znode is deleted or taken.
func (l *Lease) watch() {
	defer l.o.wg.Done()
	var (
		timer   *time.Timer
		timeout <-chan time.Time
		znode   <-chan zk.Event
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		changed := l.o.conn.Changed()
		state, sid, gen := l.o.conn.Session()
		switch {
		case state == zk.StateExpired || gen != l.gen || (state == zk.StateHasSession && sid != l.session):
			l.end(true, "session expired")
			return
		case state == zk.StateHasSession:
			if timer != nil {
				timer.Stop()
				timer, timeout = nil, nil
			}
			if znode == nil {
				var (
					data []byte
					ch   <-chan zk.Event
					err  error
				)
				data, _, ch, err = l.o.conn.GetW(l.ownerPath)
				switch {
				case errors.Is(err, zk.ErrNoNode):
					l.end(true, "owner znode deleted")
					l.dropFence()
					return
				case err == nil:
					var od ownerData
					if json.Unmarshal(data, &od) != nil || od.Fence != l.fence {
						l.end(true, "owner znode taken")
						l.dropFence()
						return
					}
					znode = ch
				}
			}
		default:
			if timer == nil {
				timer = time.NewTimer(l.o.opts.LostAfter)
				timeout = timer.C
			}
		}
		select {
		case <-changed:
		case ev := <-znode:
			znode = nil
			if ev.Type == zk.EventNotWatching {
				// The library dropped the watch (session expired): the
				// next pass sees the state.
				continue
			}
		case <-timeout:
			l.end(true, fmt.Sprintf("no session for %v", l.o.opts.LostAfter))
			return
		case <-l.stop:
			return
		case <-l.o.closed:
			return
		}
	}
}

// dropFence deletes the fence of a lease lost while its session lives,
// so that no write of this instance can pass it any more.
func (l *Lease) dropFence() {
	_ = l.o.conn.Delete(l.fence, 0)
}

// call runs a ZooKeeper call, which takes no context, until ctx ends.
// The call itself goes on in the background until the library answers
// (it always does: answer, connection error, or Close); its result is
// then dropped, and whatever it wrote is found by the next attempt.
func call(ctx context.Context, f func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// opErr is the error of the i-th operation of a transaction.
func opErr(res []zk.MultiResponse, i int) error {
	if i < len(res) {
		return res[i].Error
	}
	return nil
}

// classify maps a ZooKeeper error to the rollback sentinel.
func classify(err error) error {
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return rollback.ErrUnavailable
	case errors.Is(err, zk.ErrNoAuth), errors.Is(err, zk.ErrAuthFailed), errors.Is(err, zk.ErrNoNode),
		errors.Is(err, zk.ErrBadArguments), errors.Is(err, zk.ErrInvalidACL), errors.Is(err, zk.ErrNoChildrenForEphemerals):
		return rollback.ErrRejected
	}
	return rollback.ErrUnavailable
}

// retryable reports a connection error after which the same request may
// go through once a session is back.
func retryable(err error) bool {
	return errors.Is(err, zk.ErrConnectionClosed) || errors.Is(err, zk.ErrNoServer) ||
		errors.Is(err, zk.ErrSessionExpired) || errors.Is(err, zk.ErrSessionMoved) || errors.Is(err, zk.ErrClosing)
}
