package sim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/immune-project/immune/deploy"
)

// Announcer makes an instance a ServerSet member of its service, or not.
// ZKAnnouncer is the ZooKeeper one; a Fleet without an Announcer is a
// static list of targets. An error means the change is not applied yet:
// the announcer keeps retrying it, and the fleet goes on (reporting an
// EventError), as real instances do through a ZooKeeper outage.
type Announcer interface {
	Announce(ctx context.Context, service, instance string, m deploy.Member) error
	Unannounce(ctx context.Context, service, instance string) error
}

// FleetOptions configure a Fleet.
type FleetOptions struct {
	Service string
	// Size is the number of instances, default 4.
	Size int
	// Version is what every instance runs at the start, default "v1".
	Version    string
	Behaviours Behaviours // DefaultBehaviours when nil
	Traffic    Traffic
	// Seed makes the traffic reproducible; instance i uses stream i.
	Seed uint64
	// Announcer announces instances (ZooKeeper); nil: none.
	Announcer Announcer
	// Clock is the simulated time of the traffic; NewClock(nil, 1) when nil.
	Clock *Clock
	// Now stamps events and self tests; the clock's wall time when nil.
	// A demo whose immune runs in simulated time passes Clock.Now.
	Now func() time.Time
	// OnEvent receives the fleet's timeline events (called synchronously;
	// keep it short). Nil: none.
	OnEvent func(Event)
	Logger  *slog.Logger
}

// Target is one instance as a scraper sees it.
type Target struct {
	Instance  string
	Addr      string // host:port of its /metrics
	Version   string
	Announced bool // a ServerSet member taking traffic
}

// Fleet is the instances of one service.
type Fleet struct {
	opts  FleetOptions
	clock *Clock
	log   *slog.Logger
	order []string
	insts map[string]*member

	mu      sync.Mutex
	started bool
	closed  bool
	wg      sync.WaitGroup
}

// member is an instance of the fleet; it is announced exactly when it
// takes traffic (Instance.Up's inTraffic).
type member struct {
	inst  *Instance
	shard int
	lock  sync.Mutex // one deploy of the instance at a time
	mu    sync.Mutex
	addr  string
	srv   *http.Server
}

// announced reports whether the member is a ServerSet member (takes
// traffic).
func (m *member) announced() bool {
	_, in := m.inst.Up()
	return in
}

// NewFleet creates the instances, running opts.Version; Start serves and
// announces them.
func NewFleet(opts FleetOptions) (*Fleet, error) {
	if !deploy.ValidName(opts.Service) {
		return nil, fmt.Errorf("fleet: service %q is not a valid name", opts.Service)
	}
	if opts.Size < 0 {
		return nil, fmt.Errorf("fleet: size %d is negative", opts.Size)
	}
	if opts.Size == 0 {
		opts.Size = 4
	}
	if opts.Version == "" {
		opts.Version = "v1"
	}
	if opts.Behaviours == nil {
		opts.Behaviours = DefaultBehaviours()
	}
	f := &Fleet{opts: opts, clock: opts.Clock, log: opts.Logger, insts: map[string]*member{}}
	if f.clock == nil {
		f.clock = NewClock(nil, 1)
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	if f.opts.Now == nil {
		f.opts.Now = f.clock.Wall
	}
	now := f.clock.Now()
	for i := range opts.Size {
		name := opts.Service + "-" + strconv.Itoa(i)
		f.order = append(f.order, name)
		f.insts[name] = &member{shard: i, inst: NewInstance(InstanceOptions{
			Service: opts.Service, Name: name, Version: opts.Version, Behaviours: opts.Behaviours,
			Traffic: opts.Traffic, Seed: opts.Seed, Stream: uint64(i),
		}, now)}
	}
	return f, nil
}

// Service is the fleet's service.
func (f *Fleet) Service() string { return f.opts.Service }

// Instances are the names of the instances, in order.
func (f *Fleet) Instances() []string { return append([]string(nil), f.order...) }

// Instance returns an instance by name.
func (f *Fleet) Instance(name string) (*Instance, bool) {
	m, ok := f.insts[name]
	if !ok {
		return nil, false
	}
	return m.inst, true
}

// Start serves every instance's /metrics on a loopback port of its own
// and announces them. It returns when all are announced.
func (f *Fleet) Start(ctx context.Context) error {
	f.mu.Lock()
	if f.started || f.closed {
		f.mu.Unlock()
		return errors.New("fleet: already started or closed")
	}
	f.started = true
	f.mu.Unlock()
	for _, name := range f.order {
		m := f.insts[name]
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			f.Close()
			return fmt.Errorf("fleet: listen for %s: %w", name, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", m.inst)
		mux.HandleFunc("GET /-/healthy", func(w http.ResponseWriter, _ *http.Request) {
			if up, _ := m.inst.Up(); !up {
				http.Error(w, "restarting", http.StatusServiceUnavailable)
				return
			}
			_, _ = w.Write([]byte("ok\n"))
		})
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		m.mu.Lock()
		m.addr, m.srv = ln.Addr().String(), srv
		m.mu.Unlock()
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			_ = srv.Serve(ln)
		}()
	}
	for _, name := range f.order {
		if err := f.announce(ctx, f.insts[name], NoRef); err != nil {
			return err
		}
	}
	return nil
}

// Close un-announces the instances (best effort, for a second) and stops
// their servers.
func (f *Fleet) Close() {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.closed = true
	f.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for _, name := range f.order {
		m := f.insts[name]
		m.mu.Lock()
		srv := m.srv
		m.mu.Unlock()
		if m.announced() && f.opts.Announcer != nil {
			if err := f.opts.Announcer.Unannounce(ctx, f.opts.Service, name); err != nil {
				f.log.Warn("fleet: un-announce at close", "instance", name, "err", err)
			}
		}
		if srv != nil {
			_ = srv.Shutdown(ctx)
			_ = srv.Close()
		}
	}
	f.wg.Wait()
}

// Targets lists every instance with its /metrics address (empty before
// Start), its version and whether it is announced. Without ZooKeeper,
// the announced ones are the static scrape targets of the fleet.
func (f *Fleet) Targets() []Target {
	out := make([]Target, 0, len(f.order))
	for _, name := range f.order {
		m := f.insts[name]
		m.mu.Lock()
		t := Target{Instance: name, Addr: m.addr}
		m.mu.Unlock()
		t.Version, t.Announced = m.inst.Version(), m.announced()
		out = append(out, t)
	}
	return out
}

// Tick advances every instance's traffic to now (simulated time).
func (f *Fleet) Tick(now time.Time) {
	for _, name := range f.order {
		f.insts[name].inst.Tick(now)
	}
}

// Run ticks the fleet at the clock's simulated time on every value of
// ticks (a time.Ticker's channel, or a test's) until ctx ends or ticks is
// closed.
func (f *Fleet) Run(ctx context.Context, ticks <-chan time.Time) {
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-ticks:
			if !ok {
				return
			}
			f.Tick(f.clock.Now())
		}
	}
}

// DeployInstance deploys version to one instance, as a real instance
// does on deploy: un-announce, stop taking traffic, restart on the new
// version, self test, and, when the test passes, announce again. A
// failed self test leaves the instance running, out of the ServerSet.
// ref names the deploy in the events.
func (f *Fleet) DeployInstance(ctx context.Context, name, version string, ref Ref) (deploy.SelfTestRecord, error) {
	m, ok := f.insts[name]
	if !ok {
		return deploy.SelfTestRecord{}, fmt.Errorf("fleet %s: instance %q: %w", f.opts.Service, name, ErrUnknownInstance)
	}
	f.mu.Lock()
	closed := f.closed
	f.mu.Unlock()
	if closed {
		return deploy.SelfTestRecord{}, ErrClosed
	}
	m.lock.Lock()
	defer m.lock.Unlock()
	if err := f.unannounce(ctx, m, ref); err != nil {
		return deploy.SelfTestRecord{}, err
	}
	m.inst.Stop()
	m.inst.Start(f.clock.Now(), version)
	f.emit(Event{Kind: EventRestarted, Instance: name, Version: version}, ref)
	rec := m.inst.SelfTest(f.opts.Now().UTC())
	if !rec.Passed {
		f.emit(Event{Kind: EventSelfTestFailed, Instance: name, Version: version, Detail: rec.Detail}, ref)
		return rec, nil
	}
	f.emit(Event{Kind: EventSelfTestPassed, Instance: name, Version: version, Detail: rec.Detail}, ref)
	return rec, f.announce(ctx, m, ref)
}

func (f *Fleet) announce(ctx context.Context, m *member, ref Ref) error {
	name := m.inst.Name()
	f.mu.Lock()
	closed := f.closed
	f.mu.Unlock()
	if closed {
		return fmt.Errorf("announce %s: %w", name, ErrClosed)
	}
	if f.opts.Announcer != nil {
		m.mu.Lock()
		addr := m.addr
		m.mu.Unlock()
		host, portStr, err := net.SplitHostPort(addr)
		if err != nil {
			return fmt.Errorf("announce %s: not serving: %w", name, ErrClosed)
		}
		port, _ := strconv.Atoi(portStr)
		ep := deploy.Endpoint{Host: host, Port: port}
		mem := deploy.Member{
			ServiceEndpoint:     ep,
			AdditionalEndpoints: map[string]deploy.Endpoint{"http": ep},
			Status:              deploy.StatusAlive,
			Shard:               m.shard,
			Metadata:            deploy.MemberMetadata{Version: m.inst.Version()},
		}
		if err := f.opts.Announcer.Announce(ctx, f.opts.Service, name, mem); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("announce %s: %w", name, err)
			}
			// The announcer retries; the instance goes on, as a real one
			// does through a ZooKeeper outage.
			f.emit(Event{Kind: EventError, Instance: name, Detail: err.Error()}, ref)
		}
	}
	m.inst.SetTraffic(true)
	f.emit(Event{Kind: EventAnnounced, Instance: name, Version: m.inst.Version()}, ref)
	return nil
}

func (f *Fleet) unannounce(ctx context.Context, m *member, ref Ref) error {
	name := m.inst.Name()
	was := m.announced()
	m.inst.SetTraffic(false)
	if f.opts.Announcer != nil {
		if err := f.opts.Announcer.Unannounce(ctx, f.opts.Service, name); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("un-announce %s: %w", name, err)
			}
			f.emit(Event{Kind: EventError, Instance: name, Detail: err.Error()}, ref)
		}
	}
	if was {
		f.emit(Event{Kind: EventUnannounced, Instance: name, Version: m.inst.Version()}, ref)
	}
	return nil
}

func (f *Fleet) emit(e Event, ref Ref) {
	e.At, e.Service, e.DeployID, e.Group = f.opts.Now(), f.opts.Service, ref.DeployID, ref.Group
	f.log.Info("fleet", "event", string(e.Kind), "instance", e.Instance, "version", e.Version, "deploy", e.DeployID)
	if f.opts.OnEvent != nil {
		f.opts.OnEvent(e)
	}
}
