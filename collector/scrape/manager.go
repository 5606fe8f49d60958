package scrape

import (
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of Options.
const (
	DefaultInterval      = 15 * time.Second
	DefaultTimeout       = 10 * time.Second
	DefaultBodySizeLimit = 32 << 20 // bytes
	DefaultSeriesLimit   = 100_000
)

// Options configure a Manager. The zero value works.
type Options struct {
	// Interval between two scrapes of a target, default DefaultInterval.
	Interval time.Duration
	// Timeout of one scrape, default DefaultTimeout, at most Interval.
	Timeout time.Duration
	// BodySizeLimit is the largest body taken, in bytes after
	// decompression, default DefaultBodySizeLimit.
	BodySizeLimit int64
	// SeriesLimit is the most series one target may expose; a scrape
	// above it stores nothing and reports up 0. Default
	// DefaultSeriesLimit; negative: no limit.
	SeriesLimit int
	// Client does the HTTP requests; nil means a client of its own.
	Client *http.Client
	// Now is the clock that stamps the samples; nil means time.Now.
	Now func() time.Time
	// Logger receives failed scrapes (debug) and target changes; nil
	// discards.
	Logger *slog.Logger
	// Registerer receives the immune_scrape_* metrics; nil registers
	// nothing.
	Registerer prometheus.Registerer
}

// settings are the Options with defaults, shared by the scrapers.
type settings struct {
	interval, timeout time.Duration
	bodyLimit         int64
	seriesLimit       int
	client            *http.Client
	ownClient         bool // client made here: its idle connections are closed after Run
	now               func() time.Time
	log               *slog.Logger
	metrics           *metrics
}

// Log attribute keys.
const (
	logKeyURL    = "url"
	logKeyErr    = "err"
	logKeySource = "source"
	logKeyCount  = "targets"
)

func newSettings(o Options) *settings {
	s := &settings{
		interval: o.Interval, timeout: o.Timeout, bodyLimit: o.BodySizeLimit, seriesLimit: o.SeriesLimit,
		client: o.Client, now: o.Now, log: o.Logger, metrics: newMetrics(),
	}
	if s.interval <= 0 {
		s.interval = DefaultInterval
	}
	if s.timeout <= 0 {
		s.timeout = DefaultTimeout
	}
	s.timeout = min(s.timeout, s.interval)
	if s.bodyLimit <= 0 {
		s.bodyLimit = DefaultBodySizeLimit
	}
	switch {
	case s.seriesLimit == 0:
		s.seriesLimit = DefaultSeriesLimit
	case s.seriesLimit < 0:
		s.seriesLimit = 0
	}
	if s.client == nil {
		s.client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
		s.ownClient = true
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return s
}

// Manager scrapes a changing set of targets, one loop per target.
type Manager struct {
	store Appendable
	o     *settings

	mu      sync.Mutex
	sources map[string][]Target // by source
	loops   map[string]*loop    // by target key
	ctx     context.Context     // of Run, nil outside it
	wg      sync.WaitGroup
}

// NewManager returns a Manager appending to store. It registers its
// metrics with opts.Registerer.
func NewManager(store Appendable, opts Options) (*Manager, error) {
	if store == nil {
		return nil, ErrNoStore
	}
	m := &Manager{store: store, o: newSettings(opts), sources: map[string][]Target{}, loops: map[string]*loop{}}
	if opts.Registerer != nil {
		if err := m.o.metrics.register(opts.Registerer); err != nil {
			return nil, fmt.Errorf("scrape: register metrics: %w", err)
		}
	}
	return m, nil
}

// loop scrapes one target until cancelled.
type loop struct {
	s       *scraper
	cancel  context.CancelFunc
	removed bool // guarded by Manager.mu: the target went away (stale markers)
}

// SetTargets replaces the targets of one source (like "static" or
// "serverset/checkout"). Targets no source has any more stop, and their
// series get staleness markers; new ones start at a jittered offset in
// the interval. A target given by several sources is scraped once. Safe
// from any goroutine, before or during Run.
func (m *Manager) SetTargets(source string, targets []Target) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(targets) == 0 {
		delete(m.sources, source)
	} else {
		m.sources[source] = slices.Clone(targets)
	}
	m.o.log.Info("scrape targets", logKeySource, source, logKeyCount, len(targets))
	if m.ctx != nil {
		m.sync()
	}
}

// sync starts and stops loops to match the sources; m.mu held.
func (m *Manager) sync() {
	want := map[string]Target{}
	for _, ts := range m.sources {
		for _, t := range ts {
			want[t.key()] = t
		}
	}
	for k, l := range m.loops {
		if _, ok := want[k]; !ok {
			l.removed = true
			l.cancel()
			delete(m.loops, k)
		}
	}
	for k, t := range want {
		if _, ok := m.loops[k]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(m.ctx)
		l := &loop{s: newScraper(t, m.store, m.o), cancel: cancel}
		m.loops[k] = l
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.run(ctx, l, offset(k, m.o.interval, m.o.now()))
		}()
	}
	m.o.metrics.targets.Set(float64(len(m.loops)))
}

// Run scrapes the targets until ctx ends, then waits for the loops to
// stop and returns nil. Ending ctx writes no staleness markers: a
// restart continues the series.
func (m *Manager) Run(ctx context.Context) error {
	m.mu.Lock()
	m.ctx = ctx
	m.sync()
	m.mu.Unlock()
	<-ctx.Done()
	m.mu.Lock()
	m.ctx = nil
	clear(m.loops)
	m.o.metrics.targets.Set(0)
	m.mu.Unlock()
	m.wg.Wait()
	if m.o.ownClient {
		m.o.client.CloseIdleConnections()
	}
	return nil
}

// TargetStatus is a target and its latest scrape.
type TargetStatus struct {
	Target Target
	URL    string
	// Last is the latest scrape; Last.At is zero before the first.
	Last Report
}

// Targets returns the targets being scraped, sorted by URL, with their
// latest scrape.
func (m *Manager) Targets() []TargetStatus {
	m.mu.Lock()
	out := make([]TargetStatus, 0, len(m.loops))
	for _, l := range m.loops {
		out = append(out, TargetStatus{Target: l.s.t, URL: l.s.url, Last: l.s.lastReport()})
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b TargetStatus) int {
		if c := strings.Compare(a.URL, b.URL); c != 0 {
			return c
		}
		return strings.Compare(a.Target.labels().String(), b.Target.labels().String())
	})
	return out
}

// offset is when, after now, a target's first scrape is due: at a fixed
// phase of the interval derived from the target, so that the scrapes of
// many targets spread over the interval and each target keeps its phase
// across restarts.
func offset(key string, interval time.Duration, now time.Time) time.Duration {
	h := fnv.New64a()
	_, _ = h.Write([]byte(key))
	phase := time.Duration(h.Sum64() % uint64(interval))
	return (phase - time.Duration(now.UnixNano()%int64(interval)) + interval) % interval
}

func (m *Manager) run(ctx context.Context, l *loop, wait time.Duration) {
	timer := time.NewTimer(wait)
	select {
	case <-ctx.Done():
		timer.Stop()
	case <-timer.C:
		tick := time.NewTicker(m.o.interval)
		for ctx.Err() == nil {
			l.s.scrape(ctx, m.o.now())
			select {
			case <-ctx.Done():
			case <-tick.C:
			}
		}
		tick.Stop()
	}
	m.mu.Lock()
	removed := l.removed
	m.mu.Unlock()
	if !removed {
		return
	}
	// The target went away: its series end now.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.o.timeout)
	defer cancel()
	if err := l.s.markStale(sctx, m.o.now()); err != nil {
		m.o.log.Warn("scrape: staleness markers of a removed target", logKeyURL, l.s.url, logKeyErr, err)
	}
}

type metrics struct {
	targets  prometheus.Gauge
	attempts prometheus.Counter
	duration prometheus.Histogram
	failures *prometheus.CounterVec
	appended prometheus.Counter
	rejected *prometheus.CounterVec
	stale    prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		targets: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "immune_scrape_targets", Help: "Targets being scraped.",
		}),
		attempts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "immune_scrape_attempts_total", Help: "Scrapes done, failed or not.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "immune_scrape_duration_seconds",
			Help:    "Duration of a scrape: request, body and parse.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "immune_scrape_failures_total",
			Help: "Failed scrapes (up 0) by reason: http, timeout, status, body_size, parse, series_limit, store.",
		}, []string{"reason"}),
		appended: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "immune_scrape_samples_appended_total", Help: "Scraped samples stored (report series and staleness markers not included).",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "immune_scrape_samples_rejected_total",
			Help: "Scraped samples dropped one by one, by reason: duplicate, out_of_order, out_of_bounds, too_old.",
		}, []string{"reason"}),
		stale: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "immune_scrape_stale_markers_total", Help: "Staleness markers appended for series and targets gone.",
		}),
	}
	for _, r := range []string{reasonHTTP, reasonTimeout, reasonStatus, reasonBodySize, reasonParse, reasonSeriesLimit, reasonStore} {
		m.failures.WithLabelValues(r)
	}
	return m
}

func (m *metrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.targets, m.attempts, m.duration, m.failures, m.appended, m.rejected, m.stale} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func (m *metrics) observe(rep Report) {
	m.attempts.Inc()
	m.duration.Observe(rep.Duration.Seconds())
	if rep.Reason != "" {
		m.failures.WithLabelValues(rep.Reason).Inc()
	}
}
