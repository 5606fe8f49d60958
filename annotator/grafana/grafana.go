// Package grafana writes immune's annotations to Grafana through
// github.com/grafana-tools/sdk: a region from a deploy's start to the end
// of its analysis, and points at its verdicts and revert, organisation-wide
// or on the configured dashboards and panels.
//
// The SDK hands 4xx answers back as results; here its HTTP client turns
// every answer of 400 or more into an error, classified as
// annotator.ErrUnauthorized (401, 403), annotator.ErrRejected (other 4xx)
// or annotator.ErrUnavailable (5xx, 429, network), so that annotator.Async
// retries only what can succeed. Every write is preceded by a search, so a
// retried event, or one seen again after a restart, finds the annotation it
// wrote before instead of writing a second one.
package grafana

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/grafana-tools/sdk"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/immune-project/immune/annotator"
)

// Dashboard is a dashboard to annotate, by UID, and optionally only some
// of its panels.
type Dashboard struct {
	UID      string `yaml:"uid" json:"uid"`
	PanelIDs []int  `yaml:"panel_ids" json:"panel_ids"`
}

// Config says where and how to annotate.
type Config struct {
	// URL of Grafana, e.g. https://grafana.example.com (a sub-path is kept).
	URL string `yaml:"url" json:"url"`
	// TokenFile holds a service account token (Bearer). It is read on
	// every request, so a rotated token is picked up; it never appears in
	// a log line or an error.
	TokenFile string `yaml:"token_file" json:"token_file"`
	// Dashboards to annotate; none means organisation-wide annotations,
	// which any dashboard shows through an annotation query by tags.
	Dashboards []Dashboard `yaml:"dashboards" json:"dashboards"`
	// ReportBaseURL is immune's own address; the text of each annotation
	// links to <ReportBaseURL>/deploys/<id>.
	ReportBaseURL string `yaml:"report_base_url" json:"report_base_url"`
	// Timeout bounds each HTTP request (10s when zero).
	Timeout time.Duration `yaml:"timeout" json:"timeout"`
}

// Options are the injected dependencies. The zero value is usable.
type Options struct {
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Transport carries the requests (http.DefaultTransport when nil).
	Transport http.RoundTripper
}

// Annotator writes annotations to Grafana.
type Annotator struct {
	cfg     Config
	client  *sdk.Client
	log     *slog.Logger
	secrets *secrets

	mu         sync.Mutex
	dashboards map[string]uint // resolved UID → numeric id
	regions    map[regionKey]uint
}

var _ annotator.Annotator = (*Annotator)(nil)

type target struct {
	dashboard uint // 0: organisation-wide
	panel     uint
}

type regionKey struct {
	deploy string
	target target
}

var uidRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,40}$`)

// Validate reports the first unusable field of the configuration.
func (c Config) Validate() error {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("grafana url %q: want http(s)://host[:port][/path]", c.URL)
	}
	if u.User != nil {
		return fmt.Errorf("grafana url: no credentials in the url, use token_file")
	}
	if c.TokenFile == "" {
		return fmt.Errorf("grafana token_file: missing")
	}
	for i, d := range c.Dashboards {
		if !uidRE.MatchString(d.UID) {
			return fmt.Errorf("grafana dashboards[%d].uid %q: want 1 to 40 letters, digits, - or _", i, d.UID)
		}
		for j, p := range d.PanelIDs {
			if p <= 0 {
				return fmt.Errorf("grafana dashboards[%d].panel_ids[%d]: %d is not a panel id", i, j, p)
			}
		}
	}
	if c.ReportBaseURL != "" {
		if u, err := url.Parse(c.ReportBaseURL); err != nil || u.Scheme == "" || u.Host == "" {
			return fmt.Errorf("grafana report_base_url %q: want an absolute URL", c.ReportBaseURL)
		}
	}
	if c.Timeout < 0 {
		return fmt.Errorf("grafana timeout: %v is negative", c.Timeout)
	}
	return nil
}

// New checks cfg and returns an Annotator. It does no I/O: Check reaches
// Grafana.
func New(cfg Config, opts Options) (*Annotator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	next := opts.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "immune_annotator_grafana_requests_total",
		Help: "HTTP requests to Grafana, by method and status code (\"error\" when no answer came).",
	}, []string{"method", "code"})
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(requests); err != nil {
			return nil, fmt.Errorf("grafana metrics: %w", err)
		}
	}
	sec := &secrets{}
	hc := &http.Client{
		Timeout:   cfg.Timeout,
		Transport: &transport{next: next, tokenFile: cfg.TokenFile, secrets: sec, requests: requests},
	}
	// The token goes in by the transport, never through the SDK: the SDK
	// would put a token with a colon in the URL as basic auth.
	client, err := sdk.NewClient(cfg.URL, "", hc)
	if err != nil {
		return nil, fmt.Errorf("grafana url: %w", err)
	}
	return &Annotator{
		cfg: cfg, client: client, log: log.With("annotator", "grafana"), secrets: sec,
		dashboards: map[string]uint{}, regions: map[regionKey]uint{},
	}, nil
}

// Check resolves the configured dashboards and reads the annotations
// once: it fails on a wrong URL, a refused token or an unknown dashboard.
func (a *Annotator) Check(ctx context.Context) error {
	if _, err := a.targets(ctx); err != nil {
		return err
	}
	_, err := a.client.GetAnnotations(ctx, sdk.WithTag(annotator.TagImmune), sdk.WithAnnotationType(), sdk.WithLimit(1))
	return a.fail("read annotations", err)
}

// Annotate writes ev: at deploy the region (from the deploy's start), at
// verdict and revert a point, at end the region extended to ev.At with the
// final tags and text (created if it is not found).
func (a *Annotator) Annotate(ctx context.Context, ev annotator.Event) error {
	if err := ev.Check(); err != nil {
		return err
	}
	targets, err := a.targets(ctx)
	if err != nil {
		return err
	}
	text := annotator.Text(ev, annotator.ReportURL(a.cfg.ReportBaseURL, ev.Deploy.ID))
	tags := annotator.Tags(ev)
	var errs []error
	for _, t := range targets {
		var err error
		switch ev.Kind {
		case annotator.KindDeploy:
			err = a.openRegion(ctx, ev, t, tags, text)
		case annotator.KindEnd:
			err = a.closeRegion(ctx, ev, t, tags, text)
		default:
			err = a.point(ctx, ev, t, tags, text)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (a *Annotator) openRegion(ctx context.Context, ev annotator.Event, t target, tags []string, text string) error {
	_, found, err := a.findRegion(ctx, ev.Deploy.ID, t)
	if err != nil || found {
		return err
	}
	start := ev.Start().UnixMilli()
	id, err := a.create(ctx, sdk.CreateAnnotationRequest{
		DashboardID: t.dashboard, PanelID: t.panel, Time: start, TimeEnd: start, Tags: tags, Text: text,
	}, "region", ev.Deploy.ID)
	if err != nil {
		return err
	}
	a.remember(ev.Deploy.ID, t, id)
	return nil
}

func (a *Annotator) closeRegion(ctx context.Context, ev annotator.Event, t target, tags []string, text string) error {
	start, end := ev.Start().UnixMilli(), ev.At.UnixMilli()
	end = max(end, start)
	id, found, err := a.findRegion(ctx, ev.Deploy.ID, t)
	if err != nil {
		return err
	}
	if found {
		_, err = a.client.PatchAnnotation(ctx, id, sdk.PatchAnnotationRequest{Time: start, TimeEnd: end, Tags: tags, Text: text})
		var he *httpError
		if !errors.As(err, &he) || he.code != http.StatusNotFound {
			if err == nil {
				a.forget(ev.Deploy.ID, t)
			}
			return a.fail(fmt.Sprintf("extend region %d of deploy %s", id, ev.Deploy.ID), err)
		}
		// Deleted by someone since: write it again.
		a.forget(ev.Deploy.ID, t)
	}
	_, err = a.create(ctx, sdk.CreateAnnotationRequest{
		DashboardID: t.dashboard, PanelID: t.panel, Time: start, TimeEnd: end, Tags: tags, Text: text,
	}, "region", ev.Deploy.ID)
	return err
}

func (a *Annotator) point(ctx context.Context, ev annotator.Event, t target, tags []string, text string) error {
	at := ev.At.UnixMilli()
	list, err := a.find(ctx, ev.Deploy.ID, annotator.KindTag(ev.Kind), t)
	if err != nil {
		return err
	}
	for _, an := range list {
		if an.Time == at {
			return nil // written before this retry or restart
		}
	}
	_, err = a.create(ctx, sdk.CreateAnnotationRequest{
		DashboardID: t.dashboard, PanelID: t.panel, Time: at, Tags: tags, Text: text,
	}, string(ev.Kind), ev.Deploy.ID)
	return err
}

func (a *Annotator) create(ctx context.Context, req sdk.CreateAnnotationRequest, what, deployID string) (uint, error) {
	msg, err := a.client.CreateAnnotation(ctx, req)
	if err != nil {
		return 0, a.fail(fmt.Sprintf("create %s of deploy %s", what, deployID), err)
	}
	if msg.ID == nil {
		return 0, fmt.Errorf("grafana: create %s of deploy %s: answer without an id: %w", what, deployID, annotator.ErrUnavailable)
	}
	a.log.Debug("annotation created", "id", *msg.ID, "what", what, "deploy", deployID)
	return *msg.ID, nil
}

// findRegion returns the id of the deploy's region on t: from memory, or
// found in Grafana (after a restart).
func (a *Annotator) findRegion(ctx context.Context, deployID string, t target) (uint, bool, error) {
	a.mu.Lock()
	id, ok := a.regions[regionKey{deployID, t}]
	a.mu.Unlock()
	if ok {
		return id, true, nil
	}
	list, err := a.find(ctx, deployID, annotator.TagRegion, t)
	if err != nil || len(list) == 0 {
		return 0, false, err
	}
	// The oldest, should there be more than one.
	id = list[0].ID
	for _, an := range list[1:] {
		id = min(id, an.ID)
	}
	a.remember(deployID, t, id)
	return id, true, nil
}

// find lists immune's annotations of a deploy with the kind tag on t.
func (a *Annotator) find(ctx context.Context, deployID, kindTag string, t target) ([]sdk.AnnotationResponse, error) {
	params := []sdk.GetAnnotationsParams{
		sdk.WithTag(annotator.TagImmune), sdk.WithTag(annotator.DeployTag(deployID)), sdk.WithTag(kindTag),
		sdk.WithAnnotationType(), sdk.WithLimit(1000),
	}
	if t.dashboard != 0 {
		params = append(params, sdk.WithDashboard(t.dashboard))
	}
	if t.panel != 0 {
		params = append(params, sdk.WithPanel(t.panel))
	}
	list, err := a.client.GetAnnotations(ctx, params...)
	if err != nil {
		return nil, a.fail(fmt.Sprintf("find annotations of deploy %s", deployID), err)
	}
	// Grafana searches every dashboard when none is given: keep those of t.
	out := list[:0]
	for _, an := range list {
		if an.DashboardID == t.dashboard && an.PanelID == t.panel {
			out = append(out, an)
		}
	}
	return out, nil
}

func (a *Annotator) remember(deployID string, t target, id uint) {
	a.mu.Lock()
	a.regions[regionKey{deployID, t}] = id
	a.mu.Unlock()
}

func (a *Annotator) forget(deployID string, t target) {
	a.mu.Lock()
	delete(a.regions, regionKey{deployID, t})
	a.mu.Unlock()
}

// targets are where each annotation goes: organisation-wide, or each
// configured dashboard (or each of its panels). Dashboard UIDs are
// resolved to ids once.
func (a *Annotator) targets(ctx context.Context) ([]target, error) {
	if len(a.cfg.Dashboards) == 0 {
		return []target{{}}, nil
	}
	var out []target
	for _, d := range a.cfg.Dashboards {
		id, err := a.dashboardID(ctx, d.UID)
		if err != nil {
			return nil, err
		}
		if len(d.PanelIDs) == 0 {
			out = append(out, target{dashboard: id})
		}
		for _, p := range d.PanelIDs {
			out = append(out, target{dashboard: id, panel: uint(p)})
		}
	}
	return out, nil
}

func (a *Annotator) dashboardID(ctx context.Context, uid string) (uint, error) {
	a.mu.Lock()
	id, ok := a.dashboards[uid]
	a.mu.Unlock()
	if ok {
		return id, nil
	}
	raw, _, err := a.client.GetRawDashboardByUID(ctx, uid)
	if err != nil {
		var he *httpError
		if errors.As(err, &he) && he.code == http.StatusNotFound {
			return 0, fmt.Errorf("grafana: dashboard uid %s: not found (%s): %w", uid, he.message, annotator.ErrRejected)
		}
		return 0, a.fail("resolve dashboard uid "+uid, err)
	}
	var board struct {
		ID  uint   `json:"id"`
		UID string `json:"uid"`
	}
	if err := json.Unmarshal(raw, &board); err != nil || board.ID == 0 {
		return 0, fmt.Errorf("grafana: dashboard uid %s: answer without a numeric id: %w", uid, annotator.ErrUnavailable)
	}
	a.mu.Lock()
	a.dashboards[uid] = board.ID
	a.mu.Unlock()
	return board.ID, nil
}

// fail classifies an error of the SDK: 401 and 403 as ErrUnauthorized,
// other 4xx as ErrRejected, 5xx, 429, network errors and timeouts as
// ErrUnavailable. The message never holds the token.
func (a *Annotator) fail(what string, err error) error {
	if err == nil {
		return nil
	}
	var he *httpError
	switch {
	case errors.As(err, &he):
		sentinel := annotator.ErrRejected
		switch {
		case he.code == http.StatusUnauthorized || he.code == http.StatusForbidden:
			sentinel = annotator.ErrUnauthorized
		case he.code >= 500 || he.code == http.StatusTooManyRequests:
			sentinel = annotator.ErrUnavailable
		}
		return fmt.Errorf("grafana: %s: %s: %w", what, he.Error(), sentinel)
	case errors.Is(err, errTokenFile):
		return fmt.Errorf("grafana: %s: %s: %w", what, unwrapURL(err), annotator.ErrUnauthorized)
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("grafana: %s: %w", what, context.Canceled)
	}
	return fmt.Errorf("grafana: %s: %s: %w", what, a.secrets.redact(unwrapURL(err)), annotator.ErrUnavailable)
}

// unwrapURL is the message of err without the SDK's prefixes, keeping the
// innermost cause of a *url.Error (whose URL holds no secret: the token
// goes in a header).
func unwrapURL(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return strings.TrimSpace(fmt.Sprintf("%s %s: %v", ue.Op, ue.URL, ue.Err))
	}
	return err.Error()
}
