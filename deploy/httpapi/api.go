// Package httpapi is the HTTP deploy source, for pipelines without
// ZooKeeper: a pipeline announces a deploy, each rollout group and the
// self tests over HTTP (docs/deploys.md), and reads back the verdict.
//
//	POST /api/v1/deploys                 start a deploy (deploy.DeployRecord)
//	POST /api/v1/deploys/{id}/groups     rollout group n started (deploy.GroupRecord)
//	POST /api/v1/deploys/{id}/selftest   a self test result (deploy.SelfTestRecord)
//	POST /api/v1/deploys/{id}/state      the deploy's state changed ({"state":"done"})
//	GET  /api/v1/deploys                 recent deploys with their status
//	GET  /api/v1/deploys/{id}            one deploy with its status
//
// Accepted records are appended to a JSON-lines log in the data
// directory, fsynced before the answer, and replayed at start: a deploy
// accepted over HTTP survives a restart of immune, and its events are
// delivered again by the next Run (a consumer skips what it finished).
package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/deploy/internal/httpx"
	"github.com/immune-project/immune/deploy/internal/queue"
)

// SourceName is the Event.Source of this package's events.
const SourceName = "http"

// Log attribute keys.
const (
	logDeploy = "deploy"
	logErr    = "err"
	logFile   = "file"
)

// Status is what the analysis says of a deploy, for the GET endpoints.
type Status struct {
	// Verdict is the last verdict written (nil before the first).
	Verdict *deploy.VerdictRecord `json:"verdict"`
	// Revert is the revert request, when the deploy was reverted.
	Revert *deploy.RevertRecord `json:"revert"`
}

// StatusFunc returns the status of deploy id, and whether the analysis
// knows it. The supervisor implements it; it must not block long.
type StatusFunc func(ctx context.Context, id string) (Status, bool)

// Options configure an API.
type Options struct {
	// DataDir holds the log of accepted deploys (LogFile). Empty keeps
	// them in memory only: they do not survive a restart.
	DataDir string
	// Retention drops deploys that started longer ago than this from
	// the log at start; 0 means DefaultRetention (7 days), a negative
	// value keeps them all.
	Retention time.Duration
	// TokenFile, when set, holds the bearer token the POST endpoints
	// require ("Authorization: Bearer …"). It is read at every request
	// and never logged nor put in an answer.
	TokenFile string
	// Status answers the GET endpoints' verdict and revert; nil leaves
	// them empty.
	Status StatusFunc
	// Logger: discard when nil. Registerer: the deploy.Metrics
	// counters, none when nil.
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Now is the clock of defaults (started_at, at) and Event.At;
	// time.Now when nil.
	Now func() time.Time
}

// DefaultRetention is Options.Retention's default.
const DefaultRetention = 7 * 24 * time.Hour

// API is the HTTP deploy source.
type API struct {
	status  StatusFunc // nil: no verdicts
	log     *slog.Logger
	metrics *deploy.Metrics
	now     func() time.Time
	token   httpx.Token
	q       *queue.Queue

	mu      sync.Mutex
	store   *store // nil without DataDir
	deploys map[string]*state
	order   []string // ids in the order accepted
}

var _ deploy.Source = (*API)(nil)

type state struct {
	rec       deploy.DeployRecord
	groups    map[int]deploy.GroupRecord
	selftests map[string]deploy.SelfTestRecord
	stOrder   []string
}

// New opens the log in opts.DataDir, replays it (its events wait for
// Run) and returns the API. A log line that cannot be read is an error
// naming file:line, except a last line cut short by a crash, which is
// dropped.
func New(opts Options) (*API, error) {
	a := &API{
		status: opts.Status, log: opts.Logger, metrics: deploy.NewMetrics(opts.Registerer), now: opts.Now,
		token: httpx.Token{File: opts.TokenFile}, q: queue.New(), deploys: map[string]*state{},
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.now == nil {
		a.now = time.Now
	}
	if opts.Retention == 0 {
		opts.Retention = DefaultRetention
	}
	if opts.DataDir == "" {
		return a, nil
	}
	path := filepath.Join(opts.DataDir, LogFile)
	entries, truncated, err := readLog(path)
	if err != nil {
		return nil, err
	}
	if truncated {
		a.log.Warn("deploy log: dropped a last line cut short", logFile, path)
		a.metrics.Error(SourceName, "malformed")
	}
	now := a.now()
	var kept []entry
	for _, e := range entries {
		if a.replay(e, now, opts.Retention) {
			kept = append(kept, e)
		}
	}
	st, err := openStore(path, kept, truncated || len(kept) != len(entries))
	if err != nil {
		return nil, err
	}
	a.store = st
	return a, nil
}

// replay applies one log entry, queueing its event; it reports whether
// the entry is kept.
func (a *API) replay(e entry, now time.Time, retention time.Duration) bool {
	switch e.Op {
	case opDeploy:
		if !keep(e.Deploy.StartedAt, now, retention) {
			return false
		}
		a.addDeploy(*e.Deploy)
	case opGroup:
		s, ok := a.deploys[e.DeployID]
		if !ok {
			return false
		}
		a.addGroup(s, *e.Group)
	case opSelfTest:
		s, ok := a.deploys[e.DeployID]
		if !ok {
			return false
		}
		a.addSelfTest(s, *e.SelfTest)
	case opState:
		s, ok := a.deploys[e.DeployID]
		if !ok {
			return false
		}
		a.setState(s, e.State)
	}
	return true
}

func (a *API) addDeploy(rec deploy.DeployRecord) {
	if _, ok := a.deploys[rec.ID]; !ok {
		a.order = append(a.order, rec.ID)
	}
	a.deploys[rec.ID] = &state{rec: rec, groups: map[int]deploy.GroupRecord{}, selftests: map[string]deploy.SelfTestRecord{}}
	a.q.Push(deploy.Event{Kind: deploy.EventStarted, Source: SourceName, At: a.now(), Deploy: rec.Deploy(), State: rec.State})
}

func (a *API) addGroup(s *state, g deploy.GroupRecord) {
	s.groups[g.Group] = g
	a.q.Push(deploy.Event{Kind: deploy.EventGroup, Source: SourceName, At: a.now(), Deploy: s.rec.Deploy(), State: s.rec.State, Group: &g})
}

func (a *API) addSelfTest(s *state, t deploy.SelfTestRecord) {
	if _, ok := s.selftests[t.Instance]; !ok {
		s.stOrder = append(s.stOrder, t.Instance)
	}
	s.selftests[t.Instance] = t
	a.q.Push(deploy.Event{Kind: deploy.EventSelfTest, Source: SourceName, At: a.now(), Deploy: s.rec.Deploy(), State: s.rec.State, SelfTest: &t})
}

func (a *API) setState(s *state, st string) {
	s.rec.State = st
	a.q.Push(deploy.Event{Kind: deploy.EventState, Source: SourceName, At: a.now(), Deploy: s.rec.Deploy(), State: st})
}

// Run delivers the replayed events, then those of accepted requests, to
// out until ctx ends; it returns ctx.Err().
func (a *API) Run(ctx context.Context, out chan<- deploy.Event) error {
	return a.q.Drain(ctx, out, func(ev deploy.Event) { a.metrics.Event(SourceName, ev.Kind) })
}

// Close closes the log.
func (a *API) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.store == nil {
		return nil
	}
	err := a.store.close()
	a.store = nil
	return err
}

// Register adds the endpoints to mux.
func (a *API) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/deploys", a.postDeploy)
	mux.HandleFunc("POST /api/v1/deploys/{id}/groups", a.postGroup)
	mux.HandleFunc("POST /api/v1/deploys/{id}/selftest", a.postSelfTest)
	mux.HandleFunc("POST /api/v1/deploys/{id}/state", a.postState)
	mux.HandleFunc("GET /api/v1/deploys", a.list)
	mux.HandleFunc("GET /api/v1/deploys/{id}", a.get)
}

// authorize checks the token of a write request.
func (a *API) authorize(w http.ResponseWriter, r *http.Request) bool {
	ok, err := a.token.Authorize(w, r)
	switch {
	case ok:
	case errors.Is(err, httpx.ErrUnauthorized):
		a.metrics.Error(SourceName, "unauthorized")
		a.log.Warn("deploy api: request without the right bearer token", "remote", r.RemoteAddr, "path", r.URL.Path)
	default:
		// Answered 500: the server's fault, not the request's; logged,
		// not counted as unauthorized.
		a.log.Error("deploy api: cannot check the bearer token", logErr, err)
	}
	return ok
}

// fail answers err with its code: 404 for deploy.ErrUnknownDeploy, 409
// for deploy.ErrConflict, 500 otherwise.
func fail(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, deploy.ErrUnknownDeploy):
		code = http.StatusNotFound
	case errors.Is(err, deploy.ErrConflict):
		code = http.StatusConflict
	}
	httpx.WriteError(w, code, err.Error())
}

func (a *API) badRequest(w http.ResponseWriter, err error) {
	a.metrics.Error(SourceName, "malformed")
	httpx.WriteError(w, http.StatusBadRequest, err.Error())
}

// persist appends e to the log; the caller holds a.mu.
func (a *API) persist(w http.ResponseWriter, e entry) bool {
	if a.store == nil {
		return true
	}
	if err := a.store.append(e); err != nil {
		a.metrics.Error(SourceName, "persist")
		a.log.Error("deploy api: cannot persist", logErr, err)
		httpx.WriteError(w, http.StatusInternalServerError, err.Error())
		return false
	}
	return true
}

func (a *API) postDeploy(w http.ResponseWriter, r *http.Request) {
	if !a.authorize(w, r) {
		return
	}
	body, err := httpx.ReadBody(r)
	if err != nil {
		a.badRequest(w, err)
		return
	}
	rec, err := ParseDeploy(body)
	if err != nil {
		a.badRequest(w, err)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if old, ok := a.deploys[rec.ID]; ok && rec.ID != "" {
		if rec.StartedAt.IsZero() {
			rec.StartedAt = old.rec.StartedAt
		}
		if rec.State == "" {
			rec.State = old.rec.State
		}
		if !sameDeploy(old.rec, rec) {
			fail(w, fmt.Errorf("%w: deploy %s exists with different content", deploy.ErrConflict, rec.ID))
			return
		}
		httpx.WriteJSON(w, http.StatusOK, old.rec)
		return
	}
	now := a.now().UTC()
	if rec.ID == "" {
		rec.ID = newID(rec.Service, now)
	}
	if rec.StartedAt.IsZero() {
		rec.StartedAt = now
	}
	if rec.State == "" {
		rec.State = deploy.StateRunning
	}
	if !a.persist(w, entry{Op: opDeploy, Deploy: &rec}) {
		return
	}
	a.addDeploy(rec)
	a.log.Info("deploy api: deploy started", logDeploy, rec.ID, "service", rec.Service, "version", rec.Version)
	w.Header().Set("Location", "/api/v1/deploys/"+rec.ID)
	httpx.WriteJSON(w, http.StatusCreated, rec)
}

func sameDeploy(a, b deploy.DeployRecord) bool {
	return a.ID == b.ID && a.Service == b.Service && a.Version == b.Version && a.PreviousVersion == b.PreviousVersion &&
		a.Commit == b.Commit && a.Author == b.Author && a.StartedAt.Equal(b.StartedAt) && slices.Equal(a.Groups, b.Groups) &&
		a.State == b.State
}

// newID makes a deploy id: service, UTC time, random suffix.
func newID(service string, now time.Time) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%s-%s", service, now.Format("20060102T150405Z"), hex.EncodeToString(b[:]))
}

func (a *API) lookup(w http.ResponseWriter, r *http.Request) (*state, bool) {
	id := r.PathValue("id")
	s, ok := a.deploys[id]
	if !ok {
		fail(w, fmt.Errorf("%w %q", deploy.ErrUnknownDeploy, id))
	}
	return s, ok
}

func (a *API) postGroup(w http.ResponseWriter, r *http.Request) {
	if !a.authorize(w, r) {
		return
	}
	body, err := httpx.ReadBody(r)
	if err != nil {
		a.badRequest(w, err)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s, ok := a.lookup(w, r)
	if !ok {
		return
	}
	g, err := ParseGroup(body, len(s.rec.Groups))
	if err != nil {
		a.badRequest(w, err)
		return
	}
	if old, ok := s.groups[g.Group]; ok {
		if g.StartedAt.IsZero() {
			g.StartedAt = old.StartedAt
		}
		if !reflect.DeepEqual(normGroup(old), normGroup(g)) {
			fail(w, fmt.Errorf("%w: group %d of deploy %s exists with different content", deploy.ErrConflict, g.Group, s.rec.ID))
			return
		}
		httpx.WriteJSON(w, http.StatusOK, old)
		return
	}
	if g.StartedAt.IsZero() {
		g.StartedAt = a.now().UTC()
	}
	if !a.persist(w, entry{Op: opGroup, DeployID: s.rec.ID, Group: &g}) {
		return
	}
	a.addGroup(s, g)
	a.log.Info("deploy api: group started", logDeploy, s.rec.ID, "group", g.Group)
	httpx.WriteJSON(w, http.StatusCreated, g)
}

func normGroup(g deploy.GroupRecord) deploy.GroupRecord {
	g.StartedAt = g.StartedAt.UTC()
	if len(g.Instances) == 0 {
		g.Instances = nil
	}
	return g
}

func (a *API) postSelfTest(w http.ResponseWriter, r *http.Request) {
	if !a.authorize(w, r) {
		return
	}
	body, err := httpx.ReadBody(r)
	if err != nil {
		a.badRequest(w, err)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s, ok := a.lookup(w, r)
	if !ok {
		return
	}
	t, err := ParseSelfTest(body)
	if err != nil {
		a.badRequest(w, err)
		return
	}
	if t.Version == "" {
		t.Version = s.rec.Version
	}
	if old, ok := s.selftests[t.Instance]; ok {
		if t.At.IsZero() {
			t.At = old.At
		}
		if old.Instance == t.Instance && old.Version == t.Version && old.Passed == t.Passed && old.Detail == t.Detail && old.At.Equal(t.At) {
			httpx.WriteJSON(w, http.StatusOK, old)
			return
		}
	}
	if t.At.IsZero() {
		t.At = a.now().UTC()
	}
	if !a.persist(w, entry{Op: opSelfTest, DeployID: s.rec.ID, SelfTest: &t}) {
		return
	}
	a.addSelfTest(s, t)
	a.log.Info("deploy api: self test", logDeploy, s.rec.ID, "instance", t.Instance, "passed", t.Passed)
	httpx.WriteJSON(w, http.StatusCreated, t)
}

// postState records a change of the deploy's state: {"state":"done"}.
// The same state again is answered 200 without an event.
func (a *API) postState(w http.ResponseWriter, r *http.Request) {
	if !a.authorize(w, r) {
		return
	}
	body, err := httpx.ReadBody(r)
	if err != nil {
		a.badRequest(w, err)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s, ok := a.lookup(w, r)
	if !ok {
		return
	}
	st, err := ParseState(body)
	if err != nil {
		a.badRequest(w, err)
		return
	}
	if st != s.rec.State {
		if !a.persist(w, entry{Op: opState, DeployID: s.rec.ID, State: st}) {
			return
		}
		a.setState(s, st)
		a.log.Info("deploy api: state", logDeploy, s.rec.ID, "state", st)
	}
	httpx.WriteJSON(w, http.StatusOK, s.rec)
}

// View is the JSON of GET /api/v1/deploys/{id} and of each item of GET
// /api/v1/deploys.
type View struct {
	// Deploy is nil for a deploy the analysis knows from another
	// source (ZooKeeper) but not this API.
	Deploy    *deploy.DeployRecord    `json:"deploy"`
	Groups    []deploy.GroupRecord    `json:"groups"`
	SelfTests []deploy.SelfTestRecord `json:"selftests"`
	Status
}

func (a *API) view(ctx context.Context, id string) (View, bool) {
	a.mu.Lock()
	s, known := a.deploys[id]
	v := View{Groups: []deploy.GroupRecord{}, SelfTests: []deploy.SelfTestRecord{}}
	if known {
		rec := s.rec
		v.Deploy = &rec
		for _, g := range s.groups {
			v.Groups = append(v.Groups, g)
		}
		slices.SortFunc(v.Groups, func(x, y deploy.GroupRecord) int { return x.Group - y.Group })
		for _, inst := range s.stOrder {
			v.SelfTests = append(v.SelfTests, s.selftests[inst])
		}
	}
	a.mu.Unlock()
	if a.status != nil {
		st, ok := a.status(ctx, id)
		if ok {
			v.Status = st
			known = true
		}
	}
	return v, known
}

func (a *API) get(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	v, ok := a.view(r.Context(), id)
	if !ok {
		fail(w, fmt.Errorf("%w %q", deploy.ErrUnknownDeploy, id))
		return
	}
	httpx.WriteJSON(w, http.StatusOK, v)
}

// list answers the deploys accepted by this API, newest first;
// ?service=S keeps one service, ?limit=N (default 100) the first N.
func (a *API) list(w http.ResponseWriter, r *http.Request) {
	limit := 100
	if l := r.URL.Query().Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n <= 0 {
			a.badRequest(w, &httpx.FieldError{Field: "limit", Msg: fmt.Sprintf("%q is not a positive integer", l)})
			return
		}
		limit = n
	}
	service := r.URL.Query().Get("service")
	a.mu.Lock()
	var ids []string
	for i := len(a.order) - 1; i >= 0 && len(ids) < limit; i-- {
		if s := a.deploys[a.order[i]]; service == "" || s.rec.Service == service {
			ids = append(ids, a.order[i])
		}
	}
	a.mu.Unlock()
	views := []View{}
	for _, id := range ids {
		if v, ok := a.view(r.Context(), id); ok {
			views = append(views, v)
		}
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"status": "success", "deploys": views})
}

// ParseDeploy decodes and checks the body of POST /api/v1/deploys. id,
// started_at and state may be empty (the API fills them in); an error
// names the field.
func ParseDeploy(body []byte) (deploy.DeployRecord, error) {
	var rec deploy.DeployRecord
	if err := httpx.DecodeObject(body, &rec, "", true); err != nil {
		return rec, err
	}
	field := func(f, format string, args ...any) error {
		return &httpx.FieldError{Field: f, Msg: fmt.Sprintf(format, args...)}
	}
	switch {
	case rec.ID != "" && !deploy.ValidName(rec.ID):
		return rec, field("id", "%q is not a valid name (%s)", rec.ID, nameRule)
	case rec.Service == "":
		return rec, field("service", "missing")
	case !deploy.ValidName(rec.Service):
		return rec, field("service", "%q is not a valid name (%s)", rec.Service, nameRule)
	case strings.TrimSpace(rec.Version) == "":
		return rec, field("version", "missing")
	}
	for i, g := range rec.Groups {
		if g <= 0 {
			return rec, field(fmt.Sprintf("groups[%d]", i), "%d: want a positive number of instances", g)
		}
	}
	if rec.State != "" && !validState(rec.State) {
		return rec, field("state", "%q: %s", rec.State, stateWant)
	}
	return rec, nil
}

// nameRule is deploy.ValidName's rule, for the answers.
const nameRule = "no /, not . or .., at most 255 bytes of UTF-8 without control characters nor others ZooKeeper refuses in paths"

const stateWant = "want running, promoting, done, reverting, reverted or abandoned"

func validState(s string) bool {
	switch s {
	case deploy.StateRunning, deploy.StateDone, deploy.StateReverted, deploy.StateAbandoned,
		deploy.StateReverting, deploy.StatePromoting:
		return true
	}
	return false
}

// ParseState decodes and checks the body of POST …/state.
func ParseState(body []byte) (string, error) {
	var v struct {
		State string `json:"state"`
	}
	if err := httpx.DecodeObject(body, &v, "", true); err != nil {
		return "", err
	}
	switch {
	case v.State == "":
		return "", &httpx.FieldError{Field: "state", Msg: "missing: " + stateWant}
	case !validState(v.State):
		return "", &httpx.FieldError{Field: "state", Msg: fmt.Sprintf("%q: %s", v.State, stateWant)}
	}
	return v.State, nil
}

// ParseGroup decodes and checks the body of POST …/groups for a deploy
// with planned groups (0: unplanned, any group number).
func ParseGroup(body []byte, planned int) (deploy.GroupRecord, error) {
	var g deploy.GroupRecord
	g.Group = -1
	if err := httpx.DecodeObject(body, &g, "", true); err != nil {
		return g, err
	}
	switch {
	case g.Group == -1:
		return g, &httpx.FieldError{Field: "group", Msg: "missing"}
	case g.Group < 0:
		return g, &httpx.FieldError{Field: "group", Msg: fmt.Sprintf("%d: want 0, 1, 2, …", g.Group)}
	case planned > 0 && g.Group >= planned:
		return g, &httpx.FieldError{Field: "group", Msg: fmt.Sprintf("%d: the deploy plans groups 0 to %d", g.Group, planned-1)}
	}
	for i, inst := range g.Instances {
		if !deploy.ValidName(inst) {
			return g, &httpx.FieldError{Field: fmt.Sprintf("instances[%d]", i), Msg: fmt.Sprintf("%q is not a valid instance name", inst)}
		}
	}
	return g, nil
}

// ParseSelfTest decodes and checks the body of POST …/selftest.
func ParseSelfTest(body []byte) (deploy.SelfTestRecord, error) {
	var t deploy.SelfTestRecord
	if err := httpx.DecodeObject(body, &t, "", true); err != nil {
		return t, err
	}
	if t.Instance == "" {
		return t, &httpx.FieldError{Field: "instance", Msg: "missing"}
	}
	if !deploy.ValidName(t.Instance) {
		return t, &httpx.FieldError{Field: "instance", Msg: fmt.Sprintf("%q is not a valid instance name", t.Instance)}
	}
	if !httpx.HasField(body, "passed") {
		return t, &httpx.FieldError{Field: "passed", Msg: "missing: say true or false"}
	}
	return t, nil
}
