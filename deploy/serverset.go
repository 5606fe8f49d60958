package deploy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/immune-project/immune/internal/zk"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/immune-project/immune/internal/zkconn"
)

// This file is the announcement (ServerSet) discovery: the members of a
// service, as its instances announce them in ZooKeeper under
// Layout.Members(service), watched continuously.

// Reasons a member is ignored, the reason label of
// immune_serverset_members_ignored_total.
const (
	IgnoredBadJSON     = "bad_json"     // the znode's data is not a ServerSet member
	IgnoredBadEndpoint = "bad_endpoint" // serviceEndpoint has no host or no valid port
	IgnoredNotAlive    = "not_alive"    // status is not ALIVE
)

// ErrNoServices is returned by NewServerSetDiscovery without services.
var ErrNoServices = errors.New("serverset discovery: no services")

// Announcement is one announced, alive member of a service.
type Announcement struct {
	Service string
	// Znode is the member's path, like /services/checkout/members/member_0000000007.
	Znode  string
	Member Member
}

// Address is the member's serviceEndpoint as host:port.
func (a Announcement) Address() string {
	return net.JoinHostPort(a.Member.ServiceEndpoint.Host, strconv.Itoa(a.Member.ServiceEndpoint.Port))
}

// Instance is the member's name: metadata.instance, or Address when the
// member has none.
func (a Announcement) Instance() string {
	if a.Member.Metadata.Instance != "" {
		return a.Member.Metadata.Instance
	}
	return a.Address()
}

// ParseMember decodes and checks the ServerSet JSON of the znode p. The
// reason is one of the Ignored* constants when the member is to be
// ignored, with an error that names p (the error is nil for a member
// that is well-formed but not ALIVE).
func ParseMember(p string, data []byte) (m Member, reason string, err error) {
	if err := Unmarshal(p, data, &m); err != nil {
		return Member{}, IgnoredBadJSON, err
	}
	ep := m.ServiceEndpoint
	if ep.Host == "" || strings.ContainsAny(ep.Host, " /\t\r\n") {
		return Member{}, IgnoredBadEndpoint, fmt.Errorf("znode %s: serviceEndpoint.host %q is not a host", p, ep.Host)
	}
	if ep.Port <= 0 || ep.Port > 65535 {
		return Member{}, IgnoredBadEndpoint, fmt.Errorf("znode %s: serviceEndpoint.port %d is not a port", p, ep.Port)
	}
	if m.Status != StatusAlive {
		return m, IgnoredNotAlive, nil
	}
	return m, "", nil
}

// ServerSetOptions configure a ServerSetDiscovery. The zero value works.
type ServerSetOptions struct {
	// Layout holds the roots; the zero value means DefaultLayout.
	Layout Layout
	// Logger receives ignored members and ZooKeeper errors; nil discards.
	Logger *slog.Logger
	// Registerer receives the immune_serverset_* metrics; nil registers
	// nothing.
	Registerer prometheus.Registerer
	// RetryDelay is the wait after a ZooKeeper error before the members
	// are listed again (default 1s).
	RetryDelay time.Duration
}

// ServerSetDiscovery watches the members of services in ZooKeeper.
type ServerSetDiscovery struct {
	conn     *zkconn.Conn
	layout   Layout
	services []string
	log      *slog.Logger
	retry    time.Duration
	m        *serverSetMetrics

	mu sync.Mutex // serializes the update calls
}

// NewServerSetDiscovery returns the discovery of the members of services
// through conn. It registers its metrics with opts.Registerer.
func NewServerSetDiscovery(conn *zkconn.Conn, services []string, opts ServerSetOptions) (*ServerSetDiscovery, error) {
	if len(services) == 0 {
		return nil, ErrNoServices
	}
	layout := opts.Layout
	if layout == (Layout{}) {
		layout = DefaultLayout
	}
	if err := layout.Validate(); err != nil {
		return nil, fmt.Errorf("serverset discovery: %w", err)
	}
	seen := map[string]bool{}
	for i, s := range services {
		if !ValidName(s) {
			return nil, fmt.Errorf("serverset discovery: services[%d]: %q is not a valid service name", i, s)
		}
		if seen[s] {
			return nil, fmt.Errorf("serverset discovery: services[%d]: %q is listed twice", i, s)
		}
		seen[s] = true
	}
	if conn == nil {
		return nil, errors.New("serverset discovery: no zookeeper connection")
	}
	d := &ServerSetDiscovery{
		conn: conn, layout: layout, services: slices.Clone(services),
		log: opts.Logger, retry: opts.RetryDelay, m: newServerSetMetrics(),
	}
	if d.log == nil {
		d.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if d.retry <= 0 {
		d.retry = time.Second
	}
	if opts.Registerer != nil {
		if err := d.m.register(opts.Registerer); err != nil {
			return nil, fmt.Errorf("serverset discovery: register metrics: %w", err)
		}
	}
	return d, nil
}

// Run watches every service until ctx ends, then returns nil. update gets
// the complete set of a service's alive members: once the members are
// first read (even when there are none), and again whenever the set
// changes; calls are never concurrent. A member is left out while its
// JSON is bad or its status is not ALIVE. Two members with the same
// serviceEndpoint (an instance that announced again before its old
// session's ephemeral znode expired) count once: the newer one (higher
// sequence number). The members come sorted by znode.
//
// After a session expiry, the members are listed again from scratch.
func (d *ServerSetDiscovery) Run(ctx context.Context, update func(service string, members []Announcement)) error {
	var wg sync.WaitGroup
	for _, s := range d.services {
		w := &serviceWatch{d: d, service: s, dir: d.layout.Members(s), update: update}
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(ctx)
		}()
	}
	wg.Wait()
	return nil
}

// Log attribute keys.
const (
	logKeyService = "service"
	logKeyZnode   = "znode"
	logKeyReason  = "reason"
	logKeyErr     = "err"
)

// serviceWatch follows the members of one service.
type serviceWatch struct {
	d       *ServerSetDiscovery
	service string
	dir     string
	update  func(string, []Announcement)

	members   map[string]memberState // by znode name
	published []Announcement
	havePub   bool
	rounds    int
}

type memberState struct {
	ann   Announcement
	alive bool // well-formed and ALIVE
}

// memberEvent is a fired data watch of a member.
type memberEvent struct {
	name string
	ev   zk.Event
}

// errResync ends a round: the session changed or a watch was lost.
var errResync = errors.New("resync")

func (w *serviceWatch) run(ctx context.Context) {
	for ctx.Err() == nil {
		err := w.round(ctx)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errResync) {
			continue
		}
		w.d.m.errors.WithLabelValues(w.service).Inc()
		w.d.log.Warn("serverset discovery: zookeeper", logKeyService, w.service, logKeyErr, err)
		t := time.NewTimer(w.d.retry)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// round lists the members from scratch and follows their changes until
// the session changes generation, a watch is lost, or an error.
func (w *serviceWatch) round(ctx context.Context) error {
	if err := w.d.conn.WaitSession(ctx); err != nil {
		return err
	}
	_, _, gen := w.d.conn.Session()
	if w.rounds > 0 {
		w.d.m.resyncs.WithLabelValues(w.service).Inc()
	}
	w.rounds++
	rctx, cancel := context.WithCancel(ctx) // ends this round's watch forwarders
	defer cancel()
	events := make(chan memberEvent)
	w.members = map[string]memberState{}
	childCh, err := w.list(rctx, events)
	if err != nil {
		return err
	}
	w.publish(ctx)
	for {
		changed := w.d.conn.Changed()
		if _, _, g := w.d.conn.Session(); g != gen {
			return errResync
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		case ev := <-childCh:
			if ev.Type == zk.EventNotWatching {
				return errResync
			}
			if childCh, err = w.list(rctx, events); err != nil {
				return err
			}
			w.publish(ctx)
		case me := <-events:
			switch me.ev.Type {
			case zk.EventNotWatching:
				return errResync
			case zk.EventNodeDeleted:
				delete(w.members, me.name)
			default:
				if _, ok := w.members[me.name]; !ok {
					continue
				}
				delete(w.members, me.name)
				if err := w.read(rctx, me.name, events); err != nil {
					return err
				}
			}
			w.publish(ctx)
		}
	}
}

// list reads the children of the members directory with a watch, reads
// the members not known yet, and forgets the ones gone. Without the
// directory, it watches for its creation.
func (w *serviceWatch) list(ctx context.Context, events chan<- memberEvent) (<-chan zk.Event, error) {
	for {
		children, _, ch, err := w.d.conn.ChildrenW(w.dir)
		if errors.Is(err, zk.ErrNoNode) {
			ok, _, ech, err := w.d.conn.ExistsW(w.dir)
			if err != nil {
				return nil, fmt.Errorf("watch %s: %w", w.dir, err)
			}
			if ok {
				continue // created meanwhile
			}
			clear(w.members)
			return ech, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", w.dir, err)
		}
		present := make(map[string]bool, len(children))
		for _, c := range children {
			present[c] = true
			if _, ok := w.members[c]; ok {
				continue
			}
			if err := w.read(ctx, c, events); err != nil {
				return nil, err
			}
		}
		for name := range w.members {
			if !present[name] {
				delete(w.members, name)
			}
		}
		return ch, nil
	}
}

// read reads one member with a data watch, forwarded to events until it
// fires or ctx ends.
func (w *serviceWatch) read(ctx context.Context, name string, events chan<- memberEvent) error {
	p := path.Join(w.dir, name)
	data, _, ch, err := w.d.conn.GetW(p)
	if errors.Is(err, zk.ErrNoNode) {
		return nil // deleted meanwhile; the child watch fires
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", p, err)
	}
	go func() {
		select {
		case ev := <-ch:
			select {
			case events <- memberEvent{name: name, ev: ev}:
			case <-ctx.Done():
			}
		case <-ctx.Done():
		}
	}()
	m, reason, err := ParseMember(p, data)
	st := memberState{ann: Announcement{Service: w.service, Znode: p, Member: m}, alive: reason == ""}
	w.members[name] = st
	if reason != "" {
		w.d.m.ignored.WithLabelValues(w.service, reason).Inc()
		if err != nil {
			w.d.log.Warn("serverset discovery: member ignored", logKeyService, w.service, logKeyZnode, p,
				logKeyReason, reason, logKeyErr, err)
		} else {
			w.d.log.Info("serverset discovery: member not alive", logKeyService, w.service, logKeyZnode, p,
				"status", m.Status)
		}
	}
	return nil
}

// publish delivers the alive members if they changed since the last call.
func (w *serviceWatch) publish(ctx context.Context) {
	type seqAnn struct {
		seq int64
		a   Announcement
	}
	newest := map[string]seqAnn{} // by address
	for name, st := range w.members {
		if !st.alive {
			continue
		}
		seq := sequence(name)
		if cur, ok := newest[st.ann.Address()]; ok && (cur.seq > seq || cur.seq == seq && cur.a.Znode > st.ann.Znode) {
			continue
		}
		newest[st.ann.Address()] = seqAnn{seq, st.ann}
	}
	out := make([]Announcement, 0, len(newest))
	for _, sa := range newest {
		out = append(out, sa.a)
	}
	slices.SortFunc(out, func(a, b Announcement) int {
		return cmp.Or(cmp.Compare(sequence(path.Base(a.Znode)), sequence(path.Base(b.Znode))), cmp.Compare(a.Znode, b.Znode))
	})
	if w.havePub && slices.EqualFunc(out, w.published, sameAnnouncement) {
		return
	}
	w.d.mu.Lock()
	defer w.d.mu.Unlock()
	if ctx.Err() != nil {
		return
	}
	w.published, w.havePub = out, true
	w.d.m.members.WithLabelValues(w.service).Set(float64(len(out)))
	w.d.m.updates.WithLabelValues(w.service).Inc()
	w.update(w.service, slices.Clone(out))
}

func sameAnnouncement(a, b Announcement) bool {
	if a.Service != b.Service || a.Znode != b.Znode || a.Member.ServiceEndpoint != b.Member.ServiceEndpoint ||
		a.Member.Status != b.Member.Status || a.Member.Shard != b.Member.Shard || a.Member.Metadata != b.Member.Metadata ||
		len(a.Member.AdditionalEndpoints) != len(b.Member.AdditionalEndpoints) {
		return false
	}
	for k, v := range a.Member.AdditionalEndpoints {
		if w, ok := b.Member.AdditionalEndpoints[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// sequence is the sequence number ZooKeeper appended to a sequential
// znode's name (its trailing digits), or -1.
func sequence(name string) int64 {
	i := len(name)
	for i > 0 && name[i-1] >= '0' && name[i-1] <= '9' {
		i--
	}
	n, err := strconv.ParseInt(name[i:], 10, 64)
	if err != nil {
		return -1
	}
	return n
}

type serverSetMetrics struct {
	members *prometheus.GaugeVec
	ignored *prometheus.CounterVec
	updates *prometheus.CounterVec
	resyncs *prometheus.CounterVec
	errors  *prometheus.CounterVec
}

func newServerSetMetrics() *serverSetMetrics {
	return &serverSetMetrics{
		members: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "immune_serverset_members",
			Help: "Alive members of a service announced in ZooKeeper, as last delivered.",
		}, []string{"service"}),
		ignored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "immune_serverset_members_ignored_total",
			Help: "Member reads ignored, by reason: bad_json, bad_endpoint, not_alive.",
		}, []string{"service", "reason"}),
		updates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "immune_serverset_updates_total",
			Help: "Changed member sets delivered.",
		}, []string{"service"}),
		resyncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "immune_serverset_resyncs_total",
			Help: "Members listed again from scratch after a new session, a lost watch or an error.",
		}, []string{"service"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "immune_serverset_zookeeper_errors_total",
			Help: "ZooKeeper errors while listing or reading members.",
		}, []string{"service"}),
	}
}

func (m *serverSetMetrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.members, m.ignored, m.updates, m.resyncs, m.errors} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}
