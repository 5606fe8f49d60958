package sim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/immune-project/immune/deploy"
)

// Transport is how the manager speaks to immune: ZooKeeper (ZKTransport)
// or immune's HTTP deploy API (HTTPTransport).
type Transport interface {
	// Create announces a deploy (state running).
	Create(ctx context.Context, rec deploy.DeployRecord) error
	// StartGroup announces that rollout group g.Group starts.
	StartGroup(ctx context.Context, service, id string, g deploy.GroupRecord) error
	// SelfTest reports an instance's self test.
	SelfTest(ctx context.Context, service, id string, r deploy.SelfTestRecord) error
	// Status returns immune's current verdict and revert request for the
	// deploy, and a channel closed when they may have changed.
	Status(ctx context.Context, service, id string) (Status, <-chan struct{}, error)
}

// StateWriter is implemented by transports that record the deploy's
// state (promoting, done, reverting, reverted, abandoned) where immune
// reads it: both ZooKeeper (the deploy znode) and the HTTP API (POST
// /api/v1/deploys/{id}/state) do.
type StateWriter interface {
	SetState(ctx context.Context, rec deploy.DeployRecord) error
}

// Status is what immune said about a deploy so far.
type Status struct {
	Verdict *deploy.VerdictRecord
	Revert  *deploy.RevertRecord
}

// Gate returns immune's gate decision for group g (proceed or revert),
// and "" while there is none. A revert decided for any group is a revert.
func (s Status) Gate(g int) (decision, reason string) {
	v := s.Verdict
	if v == nil {
		return "", ""
	}
	if v.Decision == deploy.GateRevert {
		return deploy.GateRevert, v.Reason
	}
	if v.Group >= g && v.Decision == deploy.GateProceed {
		return deploy.GateProceed, v.Reason
	}
	for _, gv := range v.Groups {
		if gv.Decision == deploy.GateRevert {
			return deploy.GateRevert, v.Reason
		}
		if gv.Group == g && gv.Decision == deploy.GateProceed {
			return deploy.GateProceed, v.Reason
		}
	}
	return "", ""
}

// OnGateTimeout is what the manager does when immune decides nothing
// about a group within GateTimeout.
type OnGateTimeout int

const (
	// GateTimeoutProceed starts the next group (or finishes) anyway.
	GateTimeoutProceed OnGateTimeout = iota
	// GateTimeoutStop abandons the deploy where it is.
	GateTimeoutStop
)

// ManagerOptions configure a Manager.
type ManagerOptions struct {
	Transport Transport
	Fleet     *Fleet
	// Now is the wall clock of the records and events, time.Now when nil.
	Now func() time.Time
	// GateTimeout is the longest wait for immune's decision about a
	// group, default 5m.
	GateTimeout time.Duration
	// OnGateTimeout: proceed (default) or stop.
	OnGateTimeout OnGateTimeout
	// SkipFinalGate finishes as soon as the last group is out, without
	// waiting for immune's decision about it (state promoting meanwhile).
	SkipFinalGate bool
	// Attempts of each transport call, default 8; RetryBackoff the first
	// wait between two, default 200ms, doubling up to 5s (about 16 s in
	// all: a ZooKeeper restart or a short outage of immune passes).
	// Rejected requests are not retried.
	Attempts     int
	RetryBackoff time.Duration
	// OnEvent receives the timeline (called synchronously). Nil: none.
	OnEvent func(Event)
	Logger  *slog.Logger
	// Registerer receives the manager's metrics; nil: none.
	Registerer prometheus.Registerer
}

// maxBackoff bounds the wait between two attempts.
const maxBackoff = 5 * time.Second

// Manager is the reference deployment manager: it rolls a version out to
// a fleet in exponential groups, waits for immune's gate before each
// next group, and obeys immune's revert request at any time.
type Manager struct {
	opts    ManagerOptions
	log     *slog.Logger
	deploys *prometheus.CounterVec
	gate    *prometheus.HistogramVec
	mu      sync.Mutex
	busy    bool
}

// NewManager returns a manager; Transport and Fleet are required.
func NewManager(opts ManagerOptions) (*Manager, error) {
	if opts.Transport == nil || opts.Fleet == nil {
		return nil, errors.New("manager: a transport and a fleet are required")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.GateTimeout <= 0 {
		opts.GateTimeout = 5 * time.Minute
	}
	if opts.Attempts <= 0 {
		opts.Attempts = 8
	}
	if opts.RetryBackoff <= 0 {
		opts.RetryBackoff = 200 * time.Millisecond
	}
	m := &Manager{opts: opts, log: opts.Logger}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	m.deploys = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sim_manager_deploys_total",
		Help: "Deploys finished by the simulated deployment manager, by service and final state.",
	}, []string{"service", "state"})
	m.gate = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "sim_manager_gate_wait_seconds",
		Help:    "Time the simulated deployment manager waited for immune's gate decision on a group, by decision.",
		Buckets: []float64{0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600},
	}, []string{"service", "decision"})
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{m.deploys, m.gate} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("manager metrics: %w", err)
			}
		}
	}
	return m, nil
}

// Request is a deploy to roll out.
type Request struct {
	// ID of the deploy, default "<service>-<version>-<unix seconds>".
	ID      string
	Version string
	// PreviousVersion, default the version of the fleet's first instance.
	PreviousVersion string
	Commit, Author  string
	// Groups are the sizes of the rollout groups, default 1, 2, 4, … up
	// to the fleet's size (the last one smaller if need be).
	Groups []int
}

// Result is how a deploy ended.
type Result struct {
	Record deploy.DeployRecord // with the final State
	// Reason is immune's reason for a revert, or why the deploy stopped.
	Reason string
	// Deployed are the instances the deploy reached.
	Deployed []string
}

// ExponentialGroups returns 1, 2, 4, … summing to n.
func ExponentialGroups(n int) []int {
	var out []int
	for size, left := 1, n; left > 0; size *= 2 {
		g := min(size, left)
		out = append(out, g)
		left -= g
	}
	return out
}

// Deploy rolls req out and returns when the deploy is done, reverted or
// abandoned, or ctx ends. One deploy at a time.
func (m *Manager) Deploy(ctx context.Context, req Request) (Result, error) {
	m.mu.Lock()
	if m.busy {
		m.mu.Unlock()
		return Result{}, errors.New("manager: a deploy is already running")
	}
	m.busy = true
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.busy = false
		m.mu.Unlock()
	}()

	f := m.opts.Fleet
	service := f.Service()
	names := f.Instances()
	if req.Version == "" {
		return Result{}, errors.New("manager: version is empty")
	}
	groups := req.Groups
	if len(groups) == 0 {
		groups = ExponentialGroups(len(names))
	}
	total := 0
	for i, g := range groups {
		if g <= 0 {
			return Result{}, fmt.Errorf("manager: group %d has %d instances, want a positive number", i, g)
		}
		total += g
	}
	if total > len(names) {
		return Result{}, fmt.Errorf("manager: groups %v need %d instances, the fleet has %d", groups, total, len(names))
	}
	previous := map[string]string{}
	for _, n := range names {
		in, _ := f.Instance(n)
		previous[n] = in.Version()
	}
	if req.PreviousVersion == "" && len(names) > 0 {
		req.PreviousVersion = previous[names[0]]
	}
	if req.ID == "" {
		req.ID = service + "-" + req.Version + "-" + strconv.FormatInt(m.opts.Now().Unix(), 10)
	}
	if !deploy.ValidName(req.ID) {
		return Result{}, fmt.Errorf("manager: deploy id %q is not a valid name", req.ID)
	}
	d := &run{m: m, service: service, previous: previous, rec: deploy.DeployRecord{
		ID: req.ID, Service: service, Version: req.Version, PreviousVersion: req.PreviousVersion,
		Commit: req.Commit, Author: req.Author, StartedAt: m.opts.Now().UTC(), Groups: groups, State: deploy.StateRunning,
	}}
	return d.do(ctx, names)
}

// run is one deploy in progress.
type run struct {
	m        *Manager
	service  string
	rec      deploy.DeployRecord
	previous map[string]string
	deployed []string

	mu      sync.Mutex
	status  Status
	changed chan struct{}
}

func (d *run) do(ctx context.Context, names []string) (Result, error) {
	m := d.m
	if err := d.retry(ctx, "create deploy", func(ctx context.Context) error { return m.opts.Transport.Create(ctx, d.rec) }); err != nil {
		return Result{Record: d.rec}, err
	}
	d.emit(Event{Kind: EventDeployStarted, Group: -1, Version: d.rec.Version,
		Detail: fmt.Sprintf("from %s, groups %v", d.rec.PreviousVersion, d.rec.Groups)})

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d.changed = make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.watch(wctx)
	}()
	defer wg.Wait()
	defer cancel()

	next := 0
	for g, size := range d.rec.Groups {
		if res, done, err := d.checkRevert(ctx); done {
			return res, err
		}
		group := names[next : next+size]
		next += size
		gr := deploy.GroupRecord{Group: g, Instances: group, StartedAt: m.opts.Now().UTC()}
		if err := d.retry(ctx, "start group", func(ctx context.Context) error {
			return m.opts.Transport.StartGroup(ctx, d.service, d.rec.ID, gr)
		}); err != nil {
			return d.result(""), err
		}
		d.emit(Event{Kind: EventGroupStarted, Group: g, Version: d.rec.Version, Detail: strings.Join(group, ", ")})
		for _, name := range group {
			if res, done, err := d.checkRevert(ctx); done {
				return res, err
			}
			d.deployed = append(d.deployed, name)
			st, err := m.opts.Fleet.DeployInstance(ctx, name, d.rec.Version, Ref{DeployID: d.rec.ID, Group: g})
			if err != nil {
				return d.result(""), fmt.Errorf("deploy %s: %w", d.rec.ID, err)
			}
			st.At = m.opts.Now().UTC() // the manager's clock, as every record it writes
			if err := d.retry(ctx, "report self test", func(ctx context.Context) error {
				return m.opts.Transport.SelfTest(ctx, d.service, d.rec.ID, st)
			}); err != nil {
				return d.result(""), err
			}
		}
		last := g == len(d.rec.Groups)-1
		if last {
			if m.opts.SkipFinalGate {
				break
			}
			d.rec.State = deploy.StatePromoting
			if err := d.setState(ctx); err != nil {
				return d.result(""), err
			}
			d.emit(Event{Kind: EventPromoting, Group: g, Version: d.rec.Version})
		}
		decision, reason, err := d.waitGate(ctx, g)
		if err != nil {
			return d.result(""), err
		}
		switch decision {
		case deploy.GateRevert:
			return d.revert(ctx, reason)
		case "":
			if m.opts.OnGateTimeout == GateTimeoutStop {
				d.emit(Event{Kind: EventGateTimeout, Group: g, Detail: "no decision within " + m.opts.GateTimeout.String() + ": stop"})
				d.rec.State = deploy.StateAbandoned
				if err := d.setState(ctx); err != nil {
					return d.result(""), err
				}
				d.emit(Event{Kind: EventAbandoned, Group: -1, Version: d.rec.Version, Detail: "no gate decision"})
				m.deploys.WithLabelValues(d.service, d.rec.State).Inc()
				return d.result("no gate decision for group " + strconv.Itoa(g) + " within " + m.opts.GateTimeout.String()), nil
			}
			d.emit(Event{Kind: EventGateTimeout, Group: g, Detail: "no decision within " + m.opts.GateTimeout.String() + ": proceed"})
		}
	}
	d.rec.State = deploy.StateDone
	if err := d.setState(ctx); err != nil {
		return d.result(""), err
	}
	d.emit(Event{Kind: EventDone, Group: -1, Version: d.rec.Version})
	m.deploys.WithLabelValues(d.service, d.rec.State).Inc()
	return d.result(""), nil
}

func (d *run) result(reason string) Result {
	return Result{Record: d.rec, Reason: reason, Deployed: append([]string(nil), d.deployed...)}
}

// watch keeps d.status current until ctx ends.
func (d *run) watch(ctx context.Context) {
	backoff := d.m.opts.RetryBackoff
	for {
		st, changed, err := d.m.opts.Transport.Status(ctx, d.service, d.rec.ID)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d.m.log.Warn("manager: read immune's status", "deploy", d.rec.ID, "err", err)
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		backoff = d.m.opts.RetryBackoff
		d.mu.Lock()
		d.status = st
		close(d.changed)
		d.changed = make(chan struct{})
		d.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

func (d *run) current() (Status, <-chan struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.status, d.changed
}

// checkRevert reverts when immune asked for it.
func (d *run) checkRevert(ctx context.Context) (Result, bool, error) {
	st, _ := d.current()
	if st.Revert == nil {
		return Result{}, false, nil
	}
	res, err := d.revert(ctx, st.Revert.Reason)
	return res, true, err
}

// waitGate waits for immune's decision on group g: proceed or revert, or
// "" after GateTimeout.
func (d *run) waitGate(ctx context.Context, g int) (decision, reason string, err error) {
	m := d.m
	start := m.opts.Now()
	d.emit(Event{Kind: EventGateWaiting, Group: g})
	timer := time.NewTimer(m.opts.GateTimeout)
	defer timer.Stop()
	for {
		st, changed := d.current()
		if st.Revert != nil {
			d.emit(Event{Kind: EventRevertRequest, Group: g, Detail: st.Revert.Reason})
			m.gate.WithLabelValues(d.service, deploy.GateRevert).Observe(m.opts.Now().Sub(start).Seconds())
			return deploy.GateRevert, st.Revert.Reason, nil
		}
		if dec, why := st.Gate(g); dec != "" {
			kind := EventGateProceed
			if dec == deploy.GateRevert {
				kind = EventGateRevert
			}
			d.emit(Event{Kind: kind, Group: g, Detail: why})
			m.gate.WithLabelValues(d.service, dec).Observe(m.opts.Now().Sub(start).Seconds())
			return dec, why, nil
		}
		select {
		case <-ctx.Done():
			return "", "", fmt.Errorf("deploy %s: wait for the gate of group %d: %w", d.rec.ID, g, ctx.Err())
		case <-timer.C:
			m.gate.WithLabelValues(d.service, "timeout").Observe(m.opts.Now().Sub(start).Seconds())
			return "", "", nil
		case <-changed:
		}
	}
}

// revert redeploys every instance the deploy reached to the version it
// ran before, and records the state reverted.
func (d *run) revert(ctx context.Context, reason string) (Result, error) {
	m := d.m
	d.emit(Event{Kind: EventReverting, Group: -1, Version: d.rec.PreviousVersion, Detail: reason})
	d.rec.State = deploy.StateReverting
	if err := d.setState(ctx); err != nil {
		return d.result(reason), err
	}
	for _, name := range d.deployed {
		if _, err := m.opts.Fleet.DeployInstance(ctx, name, d.previous[name], Ref{DeployID: d.rec.ID, Group: -1}); err != nil {
			return d.result(reason), fmt.Errorf("revert %s: %w", d.rec.ID, err)
		}
	}
	d.rec.State = deploy.StateReverted
	if err := d.setState(ctx); err != nil {
		return d.result(reason), err
	}
	d.emit(Event{Kind: EventReverted, Group: -1, Version: d.rec.PreviousVersion, Detail: reason})
	m.deploys.WithLabelValues(d.service, d.rec.State).Inc()
	return d.result(reason), nil
}

func (d *run) setState(ctx context.Context) error {
	sw, ok := d.m.opts.Transport.(StateWriter)
	if !ok {
		return nil
	}
	return d.retry(ctx, "record state "+d.rec.State, func(ctx context.Context) error { return sw.SetState(ctx, d.rec) })
}

// retry calls fn up to Attempts times while it fails with a retryable
// error.
func (d *run) retry(ctx context.Context, what string, fn func(context.Context) error) error {
	var err error
	wait := d.m.opts.RetryBackoff
	for i := range d.m.opts.Attempts {
		if i > 0 {
			t := time.NewTimer(wait)
			wait = min(2*wait, maxBackoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("deploy %s: %s: %w", d.rec.ID, what, ctx.Err())
			case <-t.C:
			}
		}
		if err = fn(ctx); err == nil {
			return nil
		}
		if errors.Is(err, ErrRejected) || ctx.Err() != nil {
			break
		}
		d.emit(Event{Kind: EventError, Group: -1, Detail: what + ": " + err.Error()})
	}
	return fmt.Errorf("deploy %s: %s: %w", d.rec.ID, what, err)
}

func (d *run) emit(e Event) {
	e.At, e.Service, e.DeployID = d.m.opts.Now(), d.service, d.rec.ID
	d.m.log.Info("manager", "event", string(e.Kind), "deploy", e.DeployID, "group", e.Group, "detail", e.Detail)
	if d.m.opts.OnEvent != nil {
		d.m.opts.OnEvent(e)
	}
}
