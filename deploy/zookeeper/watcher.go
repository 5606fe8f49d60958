// Package zookeeper is the ZooKeeper deploy source: it watches the
// deployment manager's /deploys/<service>/<deploy-id> znodes and their
// groups/ and selftest/ children (docs/zookeeper.md) and delivers them
// as deploy.Events.
//
// ZooKeeper watches are one-shot: each fired watch is set again by
// reading the znode anew. When a session expires every watch is gone;
// the watcher then lists the whole tree again (a resync) and delivers
// what it missed. It also resyncs after any reconnection, which costs
// one read per followed znode (the finished deploys it knows are not
// read again) and catches anything the library's own re-registration of
// watches could miss. What was delivered is remembered, so a resync
// delivers nothing twice.
package zookeeper

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"reflect"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/immune-project/immune/internal/zk"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/internal/zkconn"
)

// SourceName is the Event.Source of this package's events.
const SourceName = "zookeeper"

// Log attribute keys.
const (
	logPath  = "path"
	logErr   = "err"
	logCount = "deploys"
)

// Options configure a Watcher.
type Options struct {
	// Layout holds the roots; zero means deploy.DefaultLayout.
	Layout deploy.Layout
	// Services, when not empty, limits the watch to these services;
	// otherwise every service under Layout.Deploys is watched.
	Services []string
	// Logger receives malformed znodes (with their path), ZooKeeper
	// errors and resyncs; discard when nil.
	Logger *slog.Logger
	// Registerer receives the deploy.Metrics counters; none when nil.
	Registerer prometheus.Registerer
	// Now is the clock of Event.At; time.Now when nil.
	Now func() time.Time
	// RetryInterval is the wait before retrying after a ZooKeeper error
	// (default 1s).
	RetryInterval time.Duration
}

// Watcher is the ZooKeeper deploy source.
type Watcher struct {
	conn     *zkconn.Conn
	layout   deploy.Layout
	services []string
	log      *slog.Logger
	metrics  *deploy.Metrics
	now      func() time.Time
	retry    time.Duration

	// Run's state, touched by Run's goroutine only.
	ctx      context.Context
	out      chan<- deploy.Event
	triggers chan trigger
	wg       sync.WaitGroup
	seq      uint64
	armed    map[watchKey]armed
	deploys  map[string]*deployState // by znode path
	svcs     map[string]bool         // services seen under the root
	bad      map[string]string       // znode path -> malformed data reported
}

var _ deploy.Source = (*Watcher)(nil)

type watchKind int

const (
	watchData watchKind = iota
	watchChildren
	watchExists
)

type watchKey struct {
	path string
	kind watchKind
}

type armed struct {
	seq     uint64
	handler func() error
}

type trigger struct {
	key watchKey
	seq uint64
	ev  zk.Event
}

type deployState struct {
	service, id string
	started     bool
	rec         deploy.DeployRecord
	groups      map[int]bool
	selftests   map[string]deploy.SelfTestRecord
}

// New returns a watcher reading through conn, which it does not close.
func New(conn *zkconn.Conn, opts Options) (*Watcher, error) {
	if conn == nil {
		return nil, errors.New("zookeeper deploy watcher: no connection")
	}
	layout := opts.Layout
	if layout == (deploy.Layout{}) {
		layout = deploy.DefaultLayout
	}
	if err := layout.Validate(); err != nil {
		return nil, err
	}
	for _, s := range opts.Services {
		if !deploy.ValidName(s) {
			return nil, fmt.Errorf("zookeeper deploy watcher: service %q is not a valid znode name", s)
		}
	}
	w := &Watcher{
		conn: conn, layout: layout, services: append([]string(nil), opts.Services...),
		log: opts.Logger, metrics: deploy.NewMetrics(opts.Registerer), now: opts.Now, retry: opts.RetryInterval,
	}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	if w.now == nil {
		w.now = time.Now
	}
	if w.retry <= 0 {
		w.retry = time.Second
	}
	return w, nil
}

// Run watches until ctx ends and returns ctx.Err(). Events go to out in
// the order described at deploy.Event; Run blocks while out is full.
func (w *Watcher) Run(ctx context.Context, out chan<- deploy.Event) error {
	ctx, cancel := context.WithCancel(ctx)
	defer w.wg.Wait()
	defer cancel()
	w.ctx, w.out = ctx, out
	w.triggers = make(chan trigger, 64)
	w.armed = map[watchKey]armed{}
	w.deploys = map[string]*deployState{}
	w.svcs = map[string]bool{}
	w.bad = map[string]string{}

	_, _, gen := w.conn.Session()
	needResync, hadSession := true, false
	var retry <-chan time.Time
	for {
		changed := w.conn.Changed()
		state, _, g := w.conn.Session()
		has := state == zk.StateHasSession
		if has && !hadSession {
			needResync = true // any reconnection: list everything again
		}
		hadSession = has
		if needResync && has && retry == nil {
			if g != gen {
				// A new session: the old one's watches are all gone.
				w.armed = map[watchKey]armed{}
				gen = g
			}
			if err := w.sync(func() error { return w.syncRoot(true) }); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				w.log.Warn("zookeeper deploy watcher: resync failed, will retry", logErr, err)
				retry = time.After(w.retry)
			} else {
				needResync = false
				w.log.Info("zookeeper deploy watcher: synced", logCount, len(w.deploys))
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		case <-retry:
			retry = nil
		case t := <-w.triggers:
			a, ok := w.armed[t.key]
			if !ok || a.seq != t.seq {
				continue // a watch of an old session, or already replaced
			}
			delete(w.armed, t.key)
			if t.ev.Type == zk.EventNotWatching {
				needResync = true
				continue
			}
			if err := w.sync(a.handler); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				w.log.Warn("zookeeper deploy watcher: will resync", logPath, t.key.path, logErr, err)
				needResync = true
				if retry == nil {
					retry = time.After(w.retry)
				}
			}
		}
	}
}

// sync runs a handler and counts its ZooKeeper error.
func (w *Watcher) sync(h func() error) error {
	err := h()
	if err != nil && w.ctx.Err() == nil {
		w.metrics.Error(SourceName, "zookeeper")
	}
	return err
}

// arm forwards the one event of a watch channel to Run's loop.
func (w *Watcher) arm(k watchKey, ch <-chan zk.Event, h func() error) {
	w.seq++
	seq := w.seq
	w.armed[k] = armed{seq: seq, handler: h}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		select {
		case ev, ok := <-ch:
			if !ok {
				ev = zk.Event{Type: zk.EventNotWatching}
			}
			select {
			case w.triggers <- trigger{key: k, seq: seq, ev: ev}:
			case <-w.ctx.Done():
			}
		case <-w.ctx.Done():
		}
	}()
}

// get reads p's data, setting a data watch unless one is armed. A
// missing znode is exists == false, without a watch.
func (w *Watcher) get(p string, h func() error) (data []byte, exists bool, err error) {
	k := watchKey{p, watchData}
	if _, ok := w.armed[k]; ok {
		data, _, err = w.conn.Get(p)
	} else {
		var ch <-chan zk.Event
		data, _, ch, err = w.conn.GetW(p)
		if err == nil {
			w.arm(k, ch, h)
		}
	}
	if errors.Is(err, zk.ErrNoNode) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read %s: %w", p, err)
	}
	return data, true, nil
}

// children lists p's children, setting a child watch unless one is
// armed. A missing p has none; when waitCreate is set, an exists watch
// calls h when it appears.
func (w *Watcher) children(p string, waitCreate bool, h func() error) (names []string, err error) {
	for range 2 {
		k := watchKey{p, watchChildren}
		if _, ok := w.armed[k]; ok {
			names, _, err = w.conn.Children(p)
		} else {
			var ch <-chan zk.Event
			names, _, ch, err = w.conn.ChildrenW(p)
			if err == nil {
				w.arm(k, ch, h)
			}
		}
		if err == nil {
			sort.Strings(names)
			return names, nil
		}
		if !errors.Is(err, zk.ErrNoNode) {
			return nil, fmt.Errorf("list %s: %w", p, err)
		}
		if !waitCreate {
			return nil, nil
		}
		ek := watchKey{p, watchExists}
		if _, ok := w.armed[ek]; ok {
			return nil, nil
		}
		ok, _, ch, err := w.conn.ExistsW(p)
		if err != nil {
			return nil, fmt.Errorf("watch %s: %w", p, err)
		}
		w.arm(ek, ch, h)
		if !ok {
			return nil, nil
		}
		// Created between the two calls: list it.
	}
	return nil, nil
}

func (w *Watcher) emit(ev deploy.Event) error {
	ev.Source = SourceName
	ev.At = w.now()
	select {
	case w.out <- ev:
		w.metrics.Event(SourceName, ev.Kind)
		return nil
	case <-w.ctx.Done():
		return w.ctx.Err()
	}
}

// malformed reports bad data at p once per content.
func (w *Watcher) malformed(p string, data []byte, err error) {
	if prev, ok := w.bad[p]; ok && prev == string(data) {
		return
	}
	w.bad[p] = string(data)
	w.metrics.Error(SourceName, "malformed")
	w.log.Warn("zookeeper deploy watcher: malformed znode", logPath, p, logErr, err)
}

func (w *Watcher) syncRoot(full bool) error {
	if len(w.services) > 0 {
		for _, s := range w.services {
			if err := w.syncService(s, full); err != nil {
				return err
			}
		}
		return nil
	}
	names, err := w.children(w.layout.Deploys, true, func() error { return w.syncRoot(false) })
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, s := range names {
		seen[s] = true
		if w.svcs[s] && !full {
			continue
		}
		w.svcs[s] = true
		if err := w.syncService(s, full); err != nil {
			return err
		}
	}
	for s := range w.svcs {
		if !seen[s] {
			delete(w.svcs, s)
			if err := w.removeService(s, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

func (w *Watcher) syncService(s string, full bool) error {
	dir := w.layout.ServiceDeploys(s)
	names, err := w.children(dir, len(w.services) > 0, func() error { return w.syncService(s, false) })
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, id := range names {
		seen[id] = true
		p := w.layout.Deploy(s, id)
		d, ok := w.deploys[p]
		if ok && (!full || d.started && deploy.Finished(d.rec.State)) {
			// Known, and followed by its watches; or over, and not
			// followed: its removal shows in this listing.
			continue
		}
		if !ok {
			w.deploys[p] = &deployState{service: s, id: id, groups: map[int]bool{}, selftests: map[string]deploy.SelfTestRecord{}}
		}
		if err := w.syncDeploy(p, full); err != nil {
			return err
		}
	}
	return w.removeService(s, seen)
}

// removeService forgets the deploys of s not in keep, delivering
// EventRemoved for those that had started.
func (w *Watcher) removeService(s string, keep map[string]bool) error {
	var gone []string
	for p, d := range w.deploys {
		if d.service == s && !keep[d.id] {
			gone = append(gone, p)
		}
	}
	sort.Strings(gone)
	for _, p := range gone {
		if err := w.remove(p); err != nil {
			return err
		}
	}
	return nil
}

func (w *Watcher) remove(p string) error {
	d, ok := w.deploys[p]
	if !ok {
		return nil
	}
	delete(w.deploys, p)
	if d.started {
		return w.emit(deploy.Event{Kind: deploy.EventRemoved, Deploy: d.rec.Deploy(), State: d.rec.State})
	}
	return nil
}

func (w *Watcher) syncDeploy(p string, full bool) error {
	d, ok := w.deploys[p]
	if !ok {
		return nil
	}
	// A deploy not seen yet, or over, is read without a watch first
	// and, unless it is over, again with one: the thousands of finished
	// deploys a tree keeps cost no watch. A finished deploy's removal is
	// seen in its service's children; a change of state after it
	// finished is not followed. A running deploy is read once, with its
	// watch.
	peek := !d.started || deploy.Finished(d.rec.State)
	for {
		var data []byte
		var exists bool
		var err error
		if peek {
			data, _, err = w.conn.Get(p)
			exists = err == nil
			if errors.Is(err, zk.ErrNoNode) {
				err = nil
			} else if err != nil {
				err = fmt.Errorf("read %s: %w", p, err)
			}
		} else {
			data, exists, err = w.get(p, func() error { return w.syncDeploy(p, false) })
		}
		if err != nil {
			return err
		}
		if !exists {
			return w.remove(p)
		}
		rec, derr := decodeDeploy(p, d.service, d.id, data)
		if peek && (len(data) == 0 || derr != nil || !deploy.Finished(rec.State)) {
			peek = false // not over: read it again with a watch
			continue
		}
		if len(data) == 0 {
			return nil // created before its data: the data watch calls again
		}
		if derr != nil {
			w.malformed(p, data, derr)
			return nil
		}
		delete(w.bad, p)
		switch {
		case !d.started:
			d.started, d.rec = true, rec
			if err := w.emit(deploy.Event{Kind: deploy.EventStarted, Deploy: rec.Deploy(), State: rec.State}); err != nil {
				return err
			}
			full = true
		case rec.State != d.rec.State:
			d.rec = rec
			if err := w.emit(deploy.Event{Kind: deploy.EventState, Deploy: rec.Deploy(), State: rec.State}); err != nil {
				return err
			}
		default:
			d.rec = rec
		}
		if deploy.Finished(rec.State) {
			return nil // over: its groups and self tests no longer matter
		}
		return w.syncDeployChildren(p, full)
	}
}

// decodeDeploy reads the deploy record at znode p, /…/service/id.
func decodeDeploy(p, service, id string, data []byte) (deploy.DeployRecord, error) {
	var rec deploy.DeployRecord
	if err := deploy.Unmarshal(p, data, &rec); err != nil {
		return rec, fmt.Errorf("%w: %w", deploy.ErrMalformed, err)
	}
	if rec.ID == "" {
		rec.ID = id
	}
	if rec.Service == "" {
		rec.Service = service
	}
	if rec.ID != id || rec.Service != service {
		return rec, fmt.Errorf("%w: znode %s: id %q and service %q differ from the path", deploy.ErrMalformed, p, rec.ID, rec.Service)
	}
	if err := rec.Check(p); err != nil {
		return rec, fmt.Errorf("%w: %w", deploy.ErrMalformed, err)
	}
	return rec, nil
}

// decodeGroup reads the group record at znode p, …/groups/n.
func decodeGroup(p string, n int, data []byte) (deploy.GroupRecord, error) {
	var rec deploy.GroupRecord
	if err := deploy.Unmarshal(p, data, &rec); err != nil {
		return rec, fmt.Errorf("%w: %w", deploy.ErrMalformed, err)
	}
	if rec.Group != n {
		return rec, fmt.Errorf("%w: znode %s: group is %d, the znode's name %d", deploy.ErrMalformed, p, rec.Group, n)
	}
	return rec, nil
}

// decodeSelfTest reads the self test record at znode p, …/selftest/inst.
func decodeSelfTest(p, inst string, data []byte) (deploy.SelfTestRecord, error) {
	var rec deploy.SelfTestRecord
	if err := deploy.Unmarshal(p, data, &rec); err != nil {
		return rec, fmt.Errorf("%w: %w", deploy.ErrMalformed, err)
	}
	if rec.Instance == "" {
		rec.Instance = inst
	}
	if rec.Instance != inst {
		return rec, fmt.Errorf("%w: znode %s: instance %q differs from the znode's name", deploy.ErrMalformed, p, rec.Instance)
	}
	return rec, nil
}

func (w *Watcher) syncDeployChildren(p string, full bool) error {
	d, ok := w.deploys[p]
	if !ok || !d.started || deploy.Finished(d.rec.State) {
		return nil
	}
	names, err := w.children(p, false, func() error { return w.syncDeployChildren(p, false) })
	if err != nil {
		return err
	}
	for _, n := range names {
		switch n {
		case "groups":
			err = w.syncGroups(p)
		case "selftest":
			err = w.syncSelfTests(p, full)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (w *Watcher) syncGroups(p string) error {
	d, ok := w.deploys[p]
	if !ok || !d.started || deploy.Finished(d.rec.State) {
		return nil
	}
	dir := w.layout.Groups(d.service, d.id)
	names, err := w.children(dir, false, func() error { return w.syncGroups(p) })
	if err != nil {
		return err
	}
	for _, name := range names {
		gp := path.Join(dir, name)
		n, err := strconv.Atoi(name)
		if err != nil || n < 0 || strconv.Itoa(n) != name {
			w.malformed(gp, nil, fmt.Errorf("%w: znode %s: a group's name must be its number 0, 1, 2, …", deploy.ErrMalformed, gp))
			continue
		}
		if d.groups[n] {
			continue
		}
		if err := w.syncGroup(p, n); err != nil {
			return err
		}
	}
	return nil
}

func (w *Watcher) syncGroup(p string, n int) error {
	d, ok := w.deploys[p]
	if !ok || !d.started || d.groups[n] {
		return nil
	}
	gp := w.layout.Group(d.service, d.id, n)
	data, exists, err := w.get(gp, func() error { return w.syncGroup(p, n) })
	if err != nil || !exists || len(data) == 0 {
		return err
	}
	rec, err := decodeGroup(gp, n, data)
	if err != nil {
		w.malformed(gp, data, err)
		return nil
	}
	delete(w.bad, gp)
	d.groups[n] = true
	return w.emit(deploy.Event{Kind: deploy.EventGroup, Deploy: d.rec.Deploy(), State: d.rec.State, Group: &rec})
}

func (w *Watcher) syncSelfTests(p string, full bool) error {
	d, ok := w.deploys[p]
	if !ok || !d.started || deploy.Finished(d.rec.State) {
		return nil
	}
	dir := w.layout.SelfTests(d.service, d.id)
	names, err := w.children(dir, false, func() error { return w.syncSelfTests(p, false) })
	if err != nil {
		return err
	}
	for _, inst := range names {
		if _, known := d.selftests[inst]; known && !full {
			continue
		}
		if err := w.syncSelfTest(p, inst); err != nil {
			return err
		}
	}
	return nil
}

func (w *Watcher) syncSelfTest(p, inst string) error {
	d, ok := w.deploys[p]
	if !ok || !d.started || deploy.Finished(d.rec.State) {
		return nil
	}
	sp := path.Join(w.layout.SelfTests(d.service, d.id), inst)
	data, exists, err := w.get(sp, func() error { return w.syncSelfTest(p, inst) })
	if err != nil || !exists || len(data) == 0 {
		return err
	}
	rec, err := decodeSelfTest(sp, inst, data)
	if err != nil {
		w.malformed(sp, data, err)
		return nil
	}
	delete(w.bad, sp)
	if prev, ok := d.selftests[inst]; ok && reflect.DeepEqual(prev, rec) {
		return nil // delivered already (a resync, or a write of the same result)
	}
	d.selftests[inst] = rec
	return w.emit(deploy.Event{Kind: deploy.EventSelfTest, Deploy: d.rec.Deploy(), State: d.rec.State, SelfTest: &rec})
}
