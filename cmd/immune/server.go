package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/immune-project/immune/analysis"
	"github.com/immune-project/immune/annotator"
	"github.com/immune-project/immune/annotator/grafana"
	annstore "github.com/immune-project/immune/annotator/store"
	"github.com/immune-project/immune/collector"
	"github.com/immune-project/immune/collector/embedded"
	"github.com/immune-project/immune/collector/ingest"
	"github.com/immune-project/immune/collector/queryapi"
	"github.com/immune-project/immune/collector/remote"
	"github.com/immune-project/immune/collector/scrape"
	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/deploy/alertmanager"
	"github.com/immune-project/immune/deploy/httpapi"
	deployzk "github.com/immune-project/immune/deploy/zookeeper"
	"github.com/immune-project/immune/internal/config"
	"github.com/immune-project/immune/internal/zkconn"
	"github.com/immune-project/immune/rollback"
	"github.com/immune-project/immune/rollback/audit"
	revertcmd "github.com/immune-project/immune/rollback/command"
	"github.com/immune-project/immune/rollback/webhook"
	zkrollback "github.com/immune-project/immune/rollback/zookeeper"
	"github.com/immune-project/immune/rules"
	"github.com/immune-project/immune/web"
)

// server is a running immune: the composition root of `immune run` and
// `immune demo`, where the config picks the concrete backends and the
// seams are wired to them.
type server struct {
	cfg   *config.Config
	log   *slog.Logger
	reg   *prometheus.Registry
	mux   *http.ServeMux
	store *embedded.Store // nil when KPIs come from a remote Prometheus
	src   collector.Source
	rules *rules.Set
	audit *audit.Log
	zk    *zkconn.Conn
	sup   *analysis.Supervisor
	ann   []*annotator.Async
	notes *annstore.Store

	sources []deploy.Source
	events  chan deploy.Event
	// runners are more goroutines of Run: the scraper, the discovery, the
	// annotation store's retention.
	runners []func(ctx context.Context) error
	owners  *zkrollback.Owners
	scraper *scrape.Manager
	deploys *httpapi.API
	alerts  *alertmanager.Receiver
	pages   *web.Pages
	now     func() time.Time
	// closers run in reverse order at shutdown, after the HTTP server.
	closers []func()
	ready   chan struct{}

	rulesReloads *prometheus.CounterVec
	rulesOK      prometheus.Gauge
}

// serverOptions are what the command line adds to the config.
type serverOptions struct {
	// RulePatterns are more rule files (flags), added to the config's.
	RulePatterns []string
	// Log receives the server's logs.
	Log *slog.Logger
	// Now is the clock (time.Now by default), After waits on it.
	Now   func() time.Time
	After func(time.Duration) <-chan time.Time
	// Annotators are told of every deploy, verdict and revert, besides
	// the built-in store and Grafana (the demo's timeline).
	Annotators []annotator.Annotator
	// Scraper creates the scrape manager even without targets in the
	// config (the demo sets its targets itself).
	Scraper bool
}

// newServer builds everything the config asks for; Close undoes it.
func newServer(ctx context.Context, cfg *config.Config, o serverOptions) (_ *server, err error) {
	s := &server{cfg: cfg, log: o.Log, reg: prometheus.NewRegistry(), mux: http.NewServeMux(),
		events: make(chan deploy.Event, 256), ready: make(chan struct{})}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s.now = o.Now
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.rulesReloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "immune_rules_reloads_total", Help: "Reloads of the rule files, by result (success, failure).",
	}, []string{"result"})
	s.rulesOK = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "immune_rules_last_reload_successful", Help: "1 when the last reload of the rule files took, 0 when it failed and the previous rules stay.",
	})
	s.reg.MustRegister(s.rulesReloads, s.rulesOK)
	s.rulesOK.Set(1)

	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}

	// Rules.
	patterns := append(append([]string(nil), cfg.Rules...), o.RulePatterns...)
	if len(patterns) == 0 {
		s.log.Warn("no rule files (rules: in the config, or --rules): deploys are recorded, none is analysed")
		s.rules = &rules.Set{}
	} else {
		set, errs := rules.LoadSet(patterns)
		if len(errs) > 0 {
			return nil, fmt.Errorf("rule files:\n%w", errors.Join(errs...))
		}
		s.rules = set
		for _, f := range set.Files() {
			s.log.Info("rules", "service", f.Service, "file", f.Filename, "kpis", len(f.KPIs), "mode", f.Analysis.Mode.String())
		}
	}

	// Metrics source.
	switch cfg.Metrics.Source {
	case "prometheus":
		p := cfg.Metrics.Prometheus
		rs, err := remote.New(remote.Options{URL: p.URL, Timeout: p.Timeout.D(), BearerTokenFile: p.BearerTokenFile,
			Logger: s.log, Registerer: s.reg})
		if err != nil {
			return nil, fmt.Errorf("metrics.prometheus: %w", err)
		}
		s.src = rs
		s.closers = append(s.closers, func() { rs.Close() })
	default:
		st, err := embedded.Open(embedded.Options{Dir: filepath.Join(cfg.DataDir, "tsdb"), Retention: cfg.Metrics.Retention.D(),
			Logger: slog.New(minLevel{s.log.Handler(), slog.LevelWarn}).With("component", "tsdb"), Registerer: prometheus.WrapRegistererWith(prometheus.Labels{"store": "embedded"}, s.reg)})
		if err != nil {
			return nil, fmt.Errorf("embedded store: %w", err)
		}
		s.store, s.src = st, st
		s.closers = append(s.closers, func() { st.Close() })
	}

	// Audit log.
	al, err := audit.Open(filepath.Join(cfg.DataDir, "audit.jsonl"), audit.Options{Logger: s.log})
	if err != nil {
		return nil, err
	}
	s.audit = al
	s.closers = append(s.closers, func() { al.Close() })

	// ZooKeeper.
	if z := cfg.ZooKeeper; z != nil {
		zc := zkconn.Config{Servers: z.Servers, SessionTimeout: z.SessionTimeout.D(), CredentialsFile: z.CredentialsFile, Logger: s.log}
		if z.TLS != nil {
			tc, err := tlsConfig(z.TLS)
			if err != nil {
				return nil, fmt.Errorf("zookeeper.tls: %w", err)
			}
			zc.TLS = tc
		}
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		conn, err := zkconn.Dial(dctx, zc)
		cancel()
		if err != nil {
			return nil, err
		}
		s.zk = conn
		s.closers = append(s.closers, conn.Close)
	}

	// The revert path.
	trig, gate, owners, err := s.triggers(o)
	if err != nil {
		return nil, err
	}

	// Live collection into the embedded store: scraping, remote-write
	// and push, and the query API over it.
	if s.store != nil {
		if err := s.collection(o); err != nil {
			return nil, err
		}
	}

	// Annotators: the built-in store always, Grafana when configured.
	notes, err := annstore.Open(filepath.Join(cfg.DataDir, "annotations.jsonl"), annstore.Options{ReportBaseURL: cfg.ExternalURL, Logger: s.log})
	if err != nil {
		return nil, err
	}
	s.notes = notes
	s.closers = append(s.closers, func() { notes.Close() })
	// The retention, applied at open, also while immune runs for months.
	s.runners = append(s.runners, func(ctx context.Context) error {
		t := time.NewTicker(time.Hour)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
				if _, err := notes.Expire(); err != nil {
					s.log.Warn("annotation store: expiring old annotations", "err", err.Error())
				}
			}
		}
	})
	anns := []annotator.Annotator{s.async("store", notes)}
	if g := cfg.Grafana; g != nil {
		gc := *g
		if gc.ReportBaseURL == "" {
			gc.ReportBaseURL = cfg.ExternalURL // after --listen
		}
		ga, err := grafana.New(gc, grafana.Options{Logger: s.log, Registerer: s.reg})
		if err != nil {
			return nil, fmt.Errorf("grafana: %w", err)
		}
		// Reach Grafana once, in the background, so that a wrong URL,
		// token or dashboard UID shows in the log at start rather than as
		// failed annotations later. Not fatal: Grafana may be down while
		// immune starts, and start-up does not wait for it.
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		checked := make(chan struct{})
		go func() {
			defer close(checked)
			if err := ga.Check(cctx); err != nil && cctx.Err() != context.Canceled {
				s.log.Warn("grafana check failed: annotations will be retried", "err", err)
			}
		}()
		s.closers = append(s.closers, func() { cancel(); <-checked })
		anns = append(anns, s.async("grafana", ga))
	}
	anns = append(anns, o.Annotators...)

	shadow := shadowConfig(cfg)
	sup, err := analysis.NewSupervisor(analysis.SupervisorOptions{
		Source: s.src, Rules: s.rules, Trigger: trig, Gate: gate, Ownership: owners,
		Annotator: annotator.Multi(anns), Journal: al, Instance: cfg.Instance,
		Delay: cfg.Analysis.Delay.D(), GateLooks: cfg.Analysis.GateLooks, Shadow: shadow,
		AlertsRevert: cfg.Alerts.Revert, Now: o.Now, After: o.After, Logger: s.log, Registerer: s.reg,
	})
	if err != nil {
		return nil, err
	}
	s.sup = sup

	// Deploy sources.
	if *cfg.Deploys.HTTP {
		api, err := httpapi.New(httpapi.Options{DataDir: cfg.DataDir, Retention: cfg.Deploys.Retention.D(),
			TokenFile: cfg.Deploys.TokenFile, Status: s.status, Logger: s.log, Registerer: s.reg, Now: o.Now})
		if err != nil {
			return nil, fmt.Errorf("http deploy api: %w", err)
		}
		s.deploys = api
		s.closers = append(s.closers, func() { api.Close() })
		s.sources = append(s.sources, api)
	}
	s.alerts = alertmanager.New(alertmanager.Options{ServiceLabel: cfg.Alerts.ServiceLabel, TokenFile: cfg.Alerts.TokenFile,
		Logger: s.log, Registerer: s.reg, Now: o.Now})
	s.sources = append(s.sources, s.alerts)
	if *cfg.Deploys.ZooKeeper {
		w, err := deployzk.New(s.zk, deployzk.Options{Layout: cfg.Layout(), Services: cfg.Deploys.Services, Logger: s.log,
			Registerer: s.reg, Now: o.Now})
		if err != nil {
			return nil, fmt.Errorf("zookeeper deploy watcher: %w", err)
		}
		s.sources = append(s.sources, w)
	}

	pages, err := web.New(pageStore{s}, web.Options{Logger: s.log})
	if err != nil {
		return nil, err
	}
	s.pages = pages
	s.routes()
	return s, nil
}

// collection sets up what feeds the embedded store.
func (s *server) collection(o serverOptions) error {
	cfg := s.cfg
	in := cfg.Ingest
	rcv, err := ingest.New(s.store, ingest.Options{
		Limits: ingest.Limits{MaxBodyBytes: in.MaxBodyBytes, MaxSamplesPerRequest: in.MaxSamplesPerRequest,
			MaxSeriesPerRequest: in.MaxSeriesPerRequest, MaxLabelsPerSeries: in.MaxLabelsPerSeries,
			MaxLabelNameLength: in.MaxLabelNameLength, MaxLabelValueLength: in.MaxLabelValueLength, MaxAhead: in.MaxAhead.D()},
		TokenFile: in.TokenFile, Now: o.Now, Logger: s.log, Registerer: s.reg})
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	rcv.Register(s.mux)
	qa, err := queryapi.New(s.store, queryapi.Options{TokenFile: cfg.Query.TokenFile, Now: o.Now, Revision: version,
		Logger: s.log, Registerer: s.reg})
	if err != nil {
		return fmt.Errorf("query api: %w", err)
	}
	qa.Register(s.mux)

	sc := cfg.Scrape
	if len(sc.Static) == 0 && sc.ServerSets == nil && !o.Scraper {
		return nil
	}
	m, err := scrape.NewManager(scrape.Embedded{Store: s.store}, sc.Options(scrape.Options{Now: o.Now, Logger: s.log, Registerer: s.reg}))
	if err != nil {
		return fmt.Errorf("scrape: %w", err)
	}
	s.scraper = m
	m.SetTargets(scrape.SourceStatic, sc.StaticTargets())
	s.runners = append(s.runners, m.Run)
	if ss := sc.ServerSets; ss != nil {
		disc, err := deploy.NewServerSetDiscovery(s.zk, ss.Services, deploy.ServerSetOptions{Layout: cfg.Layout(), Logger: s.log, Registerer: s.reg})
		if err != nil {
			return fmt.Errorf("scrape.serversets: %w", err)
		}
		s.runners = append(s.runners, func(ctx context.Context) error {
			return disc.Run(ctx, func(service string, members []deploy.Announcement) {
				m.SetTargets(scrape.ServerSetSource(service), scrape.ServerSetTargets(ss, members))
			})
		})
	}
	return nil
}

// triggers builds the revert path: the configured trigger behind the
// shadow selector, at most once per deploy through the audit log.
func (s *server) triggers(o serverOptions) (rollback.Trigger, rollback.Gate, rollback.Ownership, error) {
	cfg := s.cfg
	var real rollback.Trigger
	var gate rollback.Gate
	var owners rollback.Ownership
	metrics := rollback.NewMetrics(s.reg)
	if s.zk != nil {
		// With ZooKeeper, instances share deploys: ownership, and the
		// gate verdicts fenced by it.
		ow, err := zkrollback.NewOwners(s.zk, zkrollback.Options{Layout: cfg.Layout(), FenceRoot: cfg.Rollback.ZooKeeper.FenceRoot,
			Instance: cfg.Instance, LostAfter: lostAfter(cfg), Now: o.Now, Logger: s.log, Metrics: metrics})
		if err != nil {
			return nil, nil, nil, fmt.Errorf("zookeeper ownership: %w", err)
		}
		s.owners = ow
		s.closers = append(s.closers, func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = ow.Close(ctx)
		})
		zt := zkrollback.NewTrigger(ow)
		// Every gate verdict written also goes to the audit log, with the
		// znode version written.
		owners, gate = ow, rollback.AuditGate(zt, s.audit, o.Now)
		if cfg.Rollback.Trigger == "zookeeper" {
			real = zt
		}
	}
	switch cfg.Rollback.Trigger {
	case "shadow":
		real = rollback.Shadow{}
	case "zookeeper":
		// set above
	case "webhook":
		wc := *cfg.Rollback.Webhook
		t, err := webhook.New(wc, webhook.Options{Logger: s.log, Metrics: metrics})
		if err != nil {
			return nil, nil, nil, fmt.Errorf("rollback.webhook: %w", err)
		}
		real = t
	case "command":
		t, err := revertcmd.New(*cfg.Rollback.Command, revertcmd.Options{Logger: s.log, Metrics: metrics})
		if err != nil {
			return nil, nil, nil, fmt.Errorf("rollback.command: %w", err)
		}
		real = t
	}
	sel := &rollback.Selector{Real: real, Config: shadowConfig(cfg)}
	once := rollback.Once(sel, s.audit, rollback.OnceOptions{Name: cfg.Rollback.Trigger, Now: o.Now, Logger: s.log,
		Metrics: metrics})
	return once, gate, owners, nil
}

func lostAfter(cfg *config.Config) time.Duration {
	if d := cfg.Rollback.ZooKeeper.LostAfter; d > 0 {
		return d
	}
	return cfg.ZooKeeper.SessionTimeout.D()
}

func shadowConfig(cfg *config.Config) rollback.ShadowConfig {
	return rollback.ShadowConfig{All: cfg.Rollback.Trigger == "shadow", Services: cfg.Rollback.ShadowServices,
		RuleFiles: cfg.Rollback.ShadowRuleFiles}
}

func (s *server) async(name string, a annotator.Annotator) annotator.Annotator {
	as := annotator.NewAsync(a, annotator.AsyncOptions{Name: name, Registerer: s.reg, Logger: s.log})
	s.ann = append(s.ann, as)
	return as
}

func (s *server) routes() {
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg}))
	s.mux.HandleFunc("GET /-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "immune is healthy.\n")
	})
	s.mux.HandleFunc("GET /-/ready", func(w http.ResponseWriter, _ *http.Request) {
		select {
		case <-s.ready:
			io.WriteString(w, "immune is ready.\n")
		default:
			http.Error(w, "immune is starting.", http.StatusServiceUnavailable)
		}
	})
	s.notes.Register(s.mux)
	if s.deploys != nil {
		s.deploys.Register(s.mux)
	}
	s.alerts.Register(s.mux)
	s.pages.Register(s.mux)
}

// Run serves until ctx ends: the HTTP server, the deploy sources, the
// rule reloader. It returns nil after a clean shutdown.
func (s *server) Run(ctx context.Context, ln net.Listener, reload <-chan struct{}) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srv := &http.Server{Handler: s.mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	var wg sync.WaitGroup
	errc := make(chan error, 4+len(s.sources)+len(s.runners))
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("http: %w", err)
		}
	}()
	for _, r := range s.runners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r(ctx); err != nil && ctx.Err() == nil {
				errc <- err
			}
		}()
	}
	for _, src := range s.sources {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := src.Run(ctx, s.events); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("deploy source: %w", err)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.pump(ctx)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.reloader(ctx, reload)
	}()
	close(s.ready)
	s.log.Info("immune running", "listen", ln.Addr().String(), "instance", s.cfg.Instance, "metrics", s.cfg.Metrics.Source,
		"trigger", s.cfg.Rollback.Trigger, "data", s.cfg.DataDir)

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		s.log.Error("stopping", "err", err)
	}
	cancel()
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	_ = srv.Shutdown(sctx)
	wg.Wait()
	return err
}

// pump hands deploy events to the supervisor.
func (s *server) pump(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-s.events:
			s.handle(ev)
		}
	}
}

func (s *server) handle(ev deploy.Event) {
	switch ev.Kind {
	case deploy.EventStarted:
		switch ev.State {
		case deploy.StateDone, deploy.StateReverted, deploy.StateAbandoned:
			// Over before this instance saw it: nothing to watch.
			return
		}
		s.sup.Start(ev.Deploy)
	case deploy.EventGroup:
		if ev.Group != nil {
			s.sup.Group(ev.Deploy.ID, *ev.Group)
		}
	case deploy.EventSelfTest:
		if ev.SelfTest != nil {
			s.sup.SelfTest(ev.Deploy.ID, *ev.SelfTest)
		}
	case deploy.EventAlert:
		if a := ev.Alert; a != nil && a.Status == "firing" {
			s.sup.Alert(ev.Deploy.Service, a.Labels["alertname"], a.Fingerprint, a.StartsAt)
		}
	}
}

// reloader reloads the rule files on a signal and when they change; a
// bad file keeps the rules in force, says why in the log, and sets the
// immune_rules_last_reload_successful gauge to 0.
func (s *server) reloader(ctx context.Context, reload <-chan struct{}) {
	tick := time.NewTicker(rules.ReloadInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-reload:
		case <-tick.C:
			if !s.rules.Changed() {
				continue
			}
		}
		if errs := s.rules.Reload(); len(errs) > 0 {
			s.rulesReloads.WithLabelValues("failure").Inc()
			s.rulesOK.Set(0)
			s.log.Error("rule files not reloaded: the previous rules stay in force", "err", errors.Join(errs...))
			continue
		}
		s.rulesReloads.WithLabelValues("success").Inc()
		s.rulesOK.Set(1)
		s.log.Info("rule files reloaded", "files", len(s.rules.Files()))
	}
}

// Close stops the analyses, drains the annotators and closes the rest.
func (s *server) Close() {
	if s.sup != nil {
		s.sup.Close()
	}
	for _, a := range s.ann {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = a.Close(ctx)
		cancel()
	}
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
	s.closers = nil
}

// minLevel drops the records of a handler below a level: the TSDB's
// routine messages (WAL replay, compactions) at info would drown
// immune's own.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(as), h.min}
}

func (h minLevel) WithGroup(g string) slog.Handler { return minLevel{h.Handler.WithGroup(g), h.min} }

func tlsConfig(t *config.TLS) (*tls.Config, error) {
	tc := &tls.Config{ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificate", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		c, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{c}
	}
	return tc, nil
}
