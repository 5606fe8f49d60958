package analysis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/immune-project/immune/annotator"
	"github.com/immune-project/immune/collector"
	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/detector"
	"github.com/immune-project/immune/rollback"
	"github.com/immune-project/immune/rollback/audit"
	"github.com/immune-project/immune/rules"
)

// SupervisorOptions wires a Supervisor. Source, Rules and Trigger are
// required; the rest is optional.
type SupervisorOptions struct {
	Source collector.Source
	Rules  RuleSet
	// Trigger pulls the revert path (shadow or real, rollback.Selector),
	// at most once per deploy (rollback.Once).
	Trigger rollback.Trigger
	// Gate publishes verdicts and per-group gate decisions.
	Gate rollback.Gate
	// Annotator is told of every deploy, verdict, revert and end; it
	// must not block (annotator.Async).
	Annotator annotator.Annotator
	// Ownership shares deploys between instances; nil: this instance
	// analyses every deploy.
	Ownership rollback.Ownership
	// Journal is the audit log; nil: nothing survives a restart.
	Journal Journal
	// Instance names this immune instance in reverts and verdicts.
	Instance string
	// Delay is how long after a look's instant the look is taken, so that
	// its samples have arrived (default 0).
	Delay time.Duration
	// GateLooks is how many looks a rollout group must be watched, with no
	// fail, before its gate says proceed (default 2).
	GateLooks int
	// Shadow says which deploys are in shadow mode (besides rule files
	// with mode: shadow); the Trigger must agree (rollback.Selector with
	// the same config).
	Shadow rollback.ShadowConfig
	// AlertsRevert makes a firing alert of the deploy's service, during
	// its window, a failure of the deploy.
	AlertsRevert bool
	// Now is the clock (default time.Now).
	Now func() time.Time
	// After waits on the clock: a channel that receives after d of Now's
	// time (default time.After; a demo running its clock faster divides).
	After  func(d time.Duration) <-chan time.Time
	Logger *slog.Logger
	// Registerer takes the supervisor's metrics; nil: not registered.
	Registerer prometheus.Registerer
}

// Supervisor runs the live analyses: one goroutine per deploy, from its
// start to its verdict, pulling the revert path on a fail.
type Supervisor struct {
	o       SupervisorOptions
	log     *slog.Logger
	m       *metrics
	mu      sync.Mutex
	deploys map[string]*tracked
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// Record is where one deploy's analysis stands, for the pages and the API.
type Record struct {
	Deploy   deploy.Deploy
	RuleFile string
	Shadow   bool
	// State is waiting (for ownership or the first look), running,
	// decided, or skipped (no rule file, or ended before immune saw it).
	State string
	// Decision is the last judged look (zero after a restart: see Report).
	Decision Decision `json:"-"`
	// Report is the decision in numbers: per KPI the p-value, threshold,
	// levels, effect and interval.
	Report *Report
	// Verdict is pending until a look is judged, then the decision's.
	Verdict string
	// Reason is the verdict's first sentence.
	Reason      string
	Explanation []string
	DecidedAt   time.Time
	Revert      *RevertInfo
	Gates       []deploy.GroupVerdict
	Groups      []deploy.GroupRecord
	SelfTests   []deploy.SelfTestRecord
	Skipped     int
	LastError   string
	Owner       bool
	File        *rules.File `json:"-"`
}

// RevertInfo is the revert pulled for a deploy.
type RevertInfo struct {
	At       time.Time
	Reason   string
	Reverted bool
	Trigger  string
	Detail   string
	Error    string
}

// Record states.
const (
	StateWaiting = "waiting"
	StateRunning = "running"
	StateDecided = "decided"
	StateSkipped = "skipped"
)

type tracked struct {
	rec     Record
	signals chan signal
	done    chan struct{}
}

type signal struct {
	reason string
	kpi    string
}

// NewSupervisor returns a Supervisor; Run it, then hand it deploy events.
func NewSupervisor(o SupervisorOptions) (*Supervisor, error) {
	if o.Source == nil || o.Rules == nil || o.Trigger == nil {
		return nil, errors.New("supervisor: Source, Rules and Trigger are required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.After == nil {
		o.After = time.After
	}
	if o.GateLooks <= 0 {
		o.GateLooks = 2
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Supervisor{o: o, log: log, m: m, deploys: map[string]*tracked{}, ctx: ctx, cancel: cancel}, nil
}

// Close stops every analysis and waits for them. What was judged is in
// the journal; a restart resumes from it.
func (s *Supervisor) Close() {
	s.cancel()
	s.wg.Wait()
}

// Start begins the analysis of a deploy; a deploy already known is left
// as it is (sources deliver at least once).
func (s *Supervisor) Start(d deploy.Deploy) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return
	}
	if _, ok := s.deploys[d.ID]; ok {
		return
	}
	t := &tracked{rec: Record{Deploy: d, State: StateWaiting, Verdict: "pending"}, signals: make(chan signal, 16), done: make(chan struct{})}
	s.deploys[d.ID] = t
	f := s.o.Rules.For(d.Service)
	if f == nil {
		t.rec.State = StateSkipped
		t.rec.LastError = fmt.Sprintf("no rule file for service %q", d.Service)
		close(t.done)
		s.log.Warn("deploy not analysed: no rule file", "deploy", d.ID, "service", d.Service)
		return
	}
	t.rec.File, t.rec.RuleFile = f, f.Filename
	t.rec.Shadow = s.o.Shadow.Shadowed(rollback.Request{Deploy: d, RuleFile: f.Filename,
		Shadow: f.Analysis.Mode == rules.ModeShadow})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(t.done)
		s.run(s.ctx, t)
	}()
}

// Group records that rollout group g of a deploy started.
func (s *Supervisor) Group(id string, g deploy.GroupRecord) {
	s.update(id, func(r *Record) {
		for _, x := range r.Groups {
			if x.Group == g.Group {
				return
			}
		}
		r.Groups = append(r.Groups, g)
		sort.Slice(r.Groups, func(i, j int) bool { return r.Groups[i].Group < r.Groups[j].Group })
	})
}

// SelfTest records an instance's self test; a failure fails the deploy
// at once.
func (s *Supervisor) SelfTest(id string, st deploy.SelfTestRecord) {
	var t *tracked
	s.update(id, func(r *Record) {
		r.SelfTests = append(r.SelfTests, st)
		if !st.Passed {
			t = s.deploys[id]
		}
	})
	if t != nil {
		reason := fmt.Sprintf("self test failed on %s", st.Instance)
		if st.Detail != "" {
			reason += ": " + st.Detail
		}
		select {
		case t.signals <- signal{reason: reason, kpi: "selftest"}:
		default:
		}
	}
}

// Alert counts a firing alert of a service against its running deploys
// (when AlertsRevert is set): each fails at once.
func (s *Supervisor) Alert(service, name, fingerprint string, at time.Time) {
	if !s.o.AlertsRevert {
		return
	}
	s.mu.Lock()
	var targets []*tracked
	for _, t := range s.deploys {
		r := &t.rec
		if r.Deploy.Service != service || r.State == StateDecided || r.State == StateSkipped || r.File == nil {
			continue
		}
		end := r.Deploy.Time.Add(r.File.Analysis.Window)
		if !at.Before(r.Deploy.Time) && !at.After(end) {
			targets = append(targets, t)
		}
	}
	s.mu.Unlock()
	for _, t := range targets {
		select {
		case t.signals <- signal{reason: fmt.Sprintf("alert %s firing (fingerprint %s)", name, fingerprint), kpi: "alert:" + name}:
		default:
		}
	}
}

// Records returns every known deploy, newest first.
func (s *Supervisor) Records() []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Record, 0, len(s.deploys))
	for _, t := range s.deploys {
		out = append(out, copyRecord(t.rec))
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Deploy.Time.Equal(out[j].Deploy.Time) {
			return out[i].Deploy.Time.After(out[j].Deploy.Time)
		}
		return out[i].Deploy.ID < out[j].Deploy.ID
	})
	return out
}

// Lookup returns one deploy's record.
func (s *Supervisor) Lookup(id string) (Record, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.deploys[id]
	if !ok {
		return Record{}, false
	}
	return copyRecord(t.rec), true
}

// Wait waits until the analysis of a deploy ends or ctx does.
func (s *Supervisor) Wait(ctx context.Context, id string) error {
	s.mu.Lock()
	t, ok := s.deploys[id]
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("deploy %q: unknown", id)
	}
	select {
	case <-t.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func copyRecord(r Record) Record {
	r.Gates = slices.Clone(r.Gates)
	r.Groups = slices.Clone(r.Groups)
	r.SelfTests = slices.Clone(r.SelfTests)
	r.Explanation = slices.Clone(r.Explanation)
	if r.Revert != nil {
		v := *r.Revert
		r.Revert = &v
	}
	if r.Report != nil {
		v := *r.Report
		v.KPIs = slices.Clone(v.KPIs)
		r.Report = &v
	}
	return r
}

func (s *Supervisor) update(id string, f func(r *Record)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.deploys[id]; ok {
		f(&t.rec)
	}
}

func (s *Supervisor) note(ctx context.Context, ev annotator.Event, log *slog.Logger) {
	if s.o.Annotator == nil {
		return
	}
	if err := s.o.Annotator.Annotate(ctx, ev); err != nil && ctx.Err() == nil {
		log.Warn("annotate", "kind", ev.Kind, "err", err)
	}
}

// run is the life of one deploy's analysis.
func (s *Supervisor) run(ctx context.Context, t *tracked) {
	d := t.rec.Deploy
	log := s.log.With("deploy", d.ID, "service", d.Service, "version", d.Version)

	for {
		if s.decidedBefore(t) {
			return
		}
		if !s.runOwned(ctx, t, log) || ctx.Err() != nil {
			return
		}
		// The ownership was lost (session expired): wait to own the
		// deploy again, or for another instance to decide it.
	}
}

// runOwned runs the analysis while this instance owns the deploy. It
// returns true when the ownership was lost before the analysis ended.
func (s *Supervisor) runOwned(ctx context.Context, t *tracked, log *slog.Logger) (lost bool) {
	d := t.rec.Deploy
	f := t.rec.File
	var lease rollback.Lease
	if s.o.Ownership != nil {
		l, err := s.o.Ownership.Wait(ctx, d.ID)
		if err != nil {
			if ctx.Err() == nil {
				log.Error("ownership", "err", err)
			}
			return false
		}
		lease = l
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = lease.Release(ctx)
		}()
		if s.decidedBefore(t) {
			return false
		}
	}
	var lostc <-chan struct{}
	if lease != nil {
		lostc = lease.Lost()
	}
	s.update(d.ID, func(r *Record) { r.State, r.Owner = StateRunning, true })
	s.m.active.Inc()
	defer s.m.active.Dec()
	s.note(ctx, annotator.Event{Kind: annotator.KindDeploy, At: d.Time, Deploy: d, Shadow: t.rec.Shadow,
		Text: fmt.Sprintf("deploy %s of %s: %s → %s", d.ID, d.Service, orDash(d.PreviousVersion), d.Version)}, log)

	// Looks are taken again from the first after a restart: each sees only
	// the data up to its instant, so it judges as it did before.
	w := NewWatch(f, d, s.o.Delay)
	gates := map[int]string{}
	for !w.Done() {
		wait := w.Due().Sub(s.o.Now())
		select {
		case <-ctx.Done():
			return false
		case <-lostc:
			log.Warn("ownership lost: this instance or another takes the analysis over")
			s.update(d.ID, func(r *Record) { r.State, r.Owner = StateWaiting, false })
			return true
		case sig := <-t.signals:
			s.failNow(ctx, t, lease, sig, log)
			return false
		case <-s.o.After(max(wait, 0)):
		}
		start := time.Now()
		dec, judged, err := w.Look(ctx, s.o.Source)
		s.m.duration.Observe(time.Since(start).Seconds())
		if err != nil {
			if ctx.Err() != nil {
				return false
			}
			log.Error("analysis stopped", "err", err)
			s.update(d.ID, func(r *Record) { r.LastError = err.Error() })
			s.finish(ctx, t, lease, w.Decision, log)
			return false
		}
		if !judged {
			s.m.lookFailures.Inc()
			log.Warn("look skipped: the source failed", "look", w.Next()-1, "err", w.LastError)
			s.update(d.ID, func(r *Record) { r.Skipped, r.LastError = w.Skipped, w.LastError.Error() })
			if w.Done() {
				s.finish(ctx, t, lease, dec, log)
			}
			continue
		}
		lines := dec.Explanation()
		rep := dec.Report()
		s.update(d.ID, func(r *Record) {
			r.Decision, r.Report, r.Verdict = dec, &rep, "pending"
			if dec.Verdict.Outcome == detector.Fail || w.Done() {
				r.Verdict = dec.Verdict.Outcome.String()
			}
			r.Explanation = lines
			if len(lines) > 0 {
				r.Reason = lines[0]
			}
		})
		s.gate(ctx, t, lease, dec, w, gates, log)
		if w.Done() {
			s.finish(ctx, t, lease, dec, log)
			return false
		}
	}
	return false
}

// gate publishes, for the newest started group, proceed once it has been
// watched GateLooks looks without a fail; a fail is published by finish.
func (s *Supervisor) gate(ctx context.Context, t *tracked, lease rollback.Lease, dec Decision, w *Watch, gates map[int]string, log *slog.Logger) {
	if dec.Verdict.Outcome == detector.Fail {
		return
	}
	for _, k := range dec.Verdict.KPIs {
		if k.NoData {
			// Missing data is never a reason to go on: wait (the
			// deployment manager's own timeout decides).
			return
		}
	}
	s.mu.Lock()
	groups := slices.Clone(t.rec.Groups)
	s.mu.Unlock()
	step := w.File.Analysis.Step
	for _, g := range groups {
		if gates[g.Group] != "" {
			continue
		}
		start := g.StartedAt
		if start.Before(w.Deploy.Time) {
			start = w.Deploy.Time
		}
		if dec.At.Before(start.Add(time.Duration(s.o.GateLooks) * step)) {
			continue
		}
		gates[g.Group] = deploy.GateProceed
		s.publish(ctx, t, lease, g.Group, deploy.GateProceed, dec.Verdict.Outcome.String(), "no regression after "+fmt.Sprint(s.o.GateLooks)+" looks of the group: "+firstLine(dec.Explanation()), dec.At, log)
	}
}

func (s *Supervisor) publish(ctx context.Context, t *tracked, lease rollback.Lease, group int, decision, verdict, reason string, at time.Time, log *slog.Logger) {
	d := t.rec.Deploy
	gv := deploy.GroupVerdict{Group: group, Decision: decision, Verdict: verdict, At: at}
	var all []deploy.GroupVerdict
	s.update(d.ID, func(r *Record) {
		for _, g := range r.Gates {
			if g.Group == group && g.Decision == decision {
				all = slices.Clone(r.Gates)
				return // published before this instance's ownership was lost
			}
		}
		r.Gates = append(r.Gates, gv)
		all = slices.Clone(r.Gates)
	})
	if s.o.Gate == nil {
		return
	}
	v := deploy.VerdictRecord{DeployID: d.ID, Verdict: verdict, Group: group, Decision: decision,
		Reason: reason, At: at, Instance: s.o.Instance, Groups: all}
	if _, err := s.o.Gate.WriteVerdict(ctx, d, v); err != nil {
		log.Error("publish the gate decision", "group", group, "decision", decision, "err", err)
	}
}

// failNow fails the deploy on a signal (self test, alert) and reverts it.
func (s *Supervisor) failNow(ctx context.Context, t *tracked, lease rollback.Lease, sig signal, log *slog.Logger) {
	d := t.rec.Deploy
	at := s.o.Now()
	reason := "fail: " + sig.reason
	log.Warn("deploy failed", "reason", reason)
	s.update(d.ID, func(r *Record) {
		r.Verdict, r.Reason, r.Explanation, r.DecidedAt = detector.Fail.String(), reason, []string{reason}, at
	})
	evidence, _ := json.Marshal(map[string]string{"signal": sig.kpi, "reason": sig.reason})
	s.decide(ctx, t, lease, detector.Fail.String(), reason, []string{sig.kpi}, evidence, at, log)
}

// finish ends the analysis with its last decision.
func (s *Supervisor) finish(ctx context.Context, t *tracked, lease rollback.Lease, dec Decision, log *slog.Logger) {
	d := t.rec.Deploy
	lines := dec.Explanation()
	verdict := dec.Verdict.Outcome.String()
	at := dec.At
	if at.IsZero() {
		at = s.o.Now()
		s.mu.Lock()
		skipped, last := t.rec.Skipped, t.rec.LastError
		s.mu.Unlock()
		lines = []string{fmt.Sprintf("inconclusive: no look of the window could be judged (%d skipped; last error: %s)", skipped, last)}
	}
	rep := dec.Report()
	s.update(d.ID, func(r *Record) {
		r.Decision, r.Verdict, r.Explanation = dec, verdict, lines
		if dec.Looks > 0 {
			r.Report = &rep
		}
		r.Reason = firstLine(lines)
		if dec.Verdict.Outcome == detector.Fail {
			r.DecidedAt = dec.DecidedAt
		}
	})
	var failing []string
	for _, k := range dec.Verdict.KPIs {
		if k.Outcome == detector.Fail {
			failing = append(failing, k.Name)
		}
	}
	evidence, err := json.Marshal(dec)
	if err != nil {
		evidence = nil
	}
	s.decide(ctx, t, lease, verdict, firstLine(lines), failing, evidence, at, log)
}

// decide records the verdict, publishes it, reverts a fail, annotates.
func (s *Supervisor) decide(ctx context.Context, t *tracked, lease rollback.Lease, verdict, reason string, failing []string, evidence json.RawMessage, at time.Time, log *slog.Logger) {
	d := t.rec.Deploy
	shadow := t.rec.Shadow
	s.m.verdicts.WithLabelValues(d.Service, verdict).Inc()
	if !d.Time.IsZero() {
		s.m.timeToVerdict.Observe(at.Sub(d.Time).Seconds())
	}
	s.journal(ctx, audit.Record{Time: at, Kind: audit.KindDecision, DeployID: d.ID, Service: d.Service, Version: d.Version,
		PreviousVersion: d.PreviousVersion, RuleFile: t.rec.RuleFile, Verdict: verdict, Reason: reason, Evidence: evidence}, log)
	text := strings.Join(t.explanation(s), "\n")
	s.note(ctx, annotator.Event{Kind: annotator.KindVerdict, At: at, Deploy: d, Verdict: verdict, FailingKPIs: failing, Text: text, Shadow: shadow}, log)

	s.mu.Lock()
	current := -1
	for _, g := range t.rec.Groups {
		current = max(current, g.Group)
	}
	s.mu.Unlock()
	if verdict == detector.Fail.String() {
		s.publish(ctx, t, lease, max(current, 0), deploy.GateRevert, verdict, reason, at, log)
		req := rollback.Request{Deploy: d, Reason: reason, At: at, Instance: s.o.Instance, RuleFile: t.rec.RuleFile, Evidence: evidence,
			Shadow: t.rec.File.Analysis.Mode == rules.ModeShadow}
		res, err := s.o.Trigger.Revert(ctx, req)
		info := &RevertInfo{At: at, Reason: reason, Reverted: res.Reverted && !res.Shadow, Trigger: res.Trigger, Detail: res.Detail}
		result := "reverted"
		switch {
		case err != nil:
			info.Error, result = err.Error(), "error"
			log.Error("revert failed", "err", err)
		case res.Shadow:
			result = "shadow"
		case res.Already:
			result = "already"
		}
		s.m.reverts.WithLabelValues(d.Service, result).Inc()
		s.update(d.ID, func(r *Record) { r.Revert = info })
		if err == nil && res.Reverted && !res.Already && !res.Shadow {
			s.note(ctx, annotator.Event{Kind: annotator.KindRevert, At: at, Deploy: d, Verdict: verdict, FailingKPIs: failing, Text: "reverted: " + reason, Shadow: shadow}, log)
			log.Warn("deploy reverted", "reason", reason, "trigger", res.Trigger)
		}
	} else if verdict == detector.Pass.String() {
		s.publish(ctx, t, lease, max(current, 0), deploy.GateProceed, verdict, reason, at, log)
	}
	s.update(d.ID, func(r *Record) { r.State = StateDecided })
	s.note(ctx, annotator.Event{Kind: annotator.KindEnd, At: at, Deploy: d, Verdict: verdict, FailingKPIs: failing, Text: text, Shadow: shadow}, log)
}

func (t *tracked) explanation(s *Supervisor) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(t.rec.Explanation)
}

func (s *Supervisor) journal(ctx context.Context, r audit.Record, log *slog.Logger) {
	if s.o.Journal == nil {
		return
	}
	r.Instance = s.o.Instance
	if err := s.o.Journal.Append(ctx, r); err != nil {
		log.Error("audit log", "kind", r.Kind, "err", err)
	}
}

// decidedBefore restores a decision the journal holds (from before a
// restart) into the record; true when there was one.
func (s *Supervisor) decidedBefore(t *tracked) bool {
	if s.o.Journal == nil {
		return false
	}
	id := t.rec.Deploy.ID
	decs := s.o.Journal.Decisions(id)
	if len(decs) == 0 {
		return false
	}
	last := decs[len(decs)-1]
	rev, reverted := s.o.Journal.Reverted(id)
	s.update(id, func(r *Record) {
		r.State, r.Verdict, r.Reason, r.DecidedAt = StateDecided, last.Verdict, last.Reason, last.Time
		r.Explanation = []string{last.Reason, "(decided before a restart of immune: see the audit log)"}
		var rep Report
		if json.Unmarshal(last.Evidence, &rep) == nil && rep.ID == id {
			r.Report = &rep
		}
		if reverted {
			r.Revert = &RevertInfo{At: rev.Time, Reason: rev.Reason, Reverted: rev.Result != audit.ResultShadow,
				Trigger: rev.Trigger, Detail: rev.Detail}
		}
	})
	return true
}

func firstLine(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return lines[0]
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

type metrics struct {
	verdicts      *prometheus.CounterVec
	reverts       *prometheus.CounterVec
	duration      prometheus.Histogram
	timeToVerdict prometheus.Histogram
	active        prometheus.Gauge
	lookFailures  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		verdicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "immune_verdicts_total", Help: "Verdicts of deploy analyses, by service and verdict.",
		}, []string{"service", "verdict"}),
		reverts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "immune_revert_decisions_total", Help: "Failing deploys handed to the revert path, by service and result (reverted, already, shadow, error).",
		}, []string{"service", "result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "immune_analysis_duration_seconds", Help: "Time to take one look of a deploy's analysis (queries and tests).",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}),
		timeToVerdict: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "immune_time_to_verdict_seconds", Help: "From a deploy's start to its verdict.",
			Buckets: prometheus.ExponentialBuckets(15, 2, 12),
		}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "immune_analyses_active", Help: "Deploy analyses owned and running in this instance.",
		}),
		lookFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "immune_looks_skipped_total", Help: "Looks not judged because the metrics source failed.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.verdicts, m.reverts, m.duration, m.timeToVerdict, m.active, m.lookFailures} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register metrics: %w", err)
			}
		}
	}
	return m, nil
}
