// Package webhook is the revert path over HTTP: a POST of a JSON revert
// request to the deployment manager (or anything that reverts), retried
// with exponential backoff on 5xx and network errors, never on 4xx,
// within an overall deadline. The Idempotency-Key header is the deploy
// id, so a receiver can drop a request it has seen; within the process
// the trigger sends at most one successful request per deploy.
package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/immune-project/immune/internal/backoff"
	"github.com/immune-project/immune/internal/bearer"
	"github.com/immune-project/immune/rollback"
)

// Name is the trigger's name in results, metrics and the audit log.
const Name = "webhook"

// Config is a webhook trigger's configuration.
type Config struct {
	// URL receives the POST (http or https).
	URL string `yaml:"url"`
	// AuthFile holds the value of the AuthHeader (e.g. "Bearer abc…"),
	// read at every request (so it can rotate); never logged.
	AuthFile string `yaml:"auth_file"`
	// AuthHeader is the header AuthFile's content goes in
	// (default Authorization).
	AuthHeader string `yaml:"auth_header"`
	// Timeout bounds one attempt (default 10s).
	Timeout time.Duration `yaml:"timeout"`
	// Deadline bounds the whole revert, retries included (default 2m).
	Deadline time.Duration `yaml:"deadline"`
	// MinBackoff and MaxBackoff bound the wait between attempts, which
	// doubles from MinBackoff (default 500ms) up to MaxBackoff (default
	// 10s), with jitter.
	MinBackoff time.Duration `yaml:"min_backoff"`
	MaxBackoff time.Duration `yaml:"max_backoff"`
}

// Validate reports the first bad field.
func (c Config) Validate() error {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("webhook url: want an http or https URL, got %q", redactURL(c.URL))
	}
	if c.AuthHeader != "" && !validHeader(c.AuthHeader) {
		return fmt.Errorf("webhook auth_header: %q is not a header name", c.AuthHeader)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"timeout", c.Timeout}, {"deadline", c.Deadline}, {"min_backoff", c.MinBackoff}, {"max_backoff", c.MaxBackoff}} {
		if d.v < 0 {
			return fmt.Errorf("webhook %s: %v is negative", d.name, d.v)
		}
	}
	if c.MinBackoff > 0 && c.MaxBackoff > 0 && c.MinBackoff > c.MaxBackoff {
		return fmt.Errorf("webhook min_backoff %v is above max_backoff %v", c.MinBackoff, c.MaxBackoff)
	}
	return nil
}

func validHeader(h string) bool {
	if h == "" {
		return false
	}
	for _, r := range h {
		if r <= ' ' || r >= 0x7f || strings.ContainsRune("()<>@,;:\\\"/[]?={}", r) {
			return false
		}
	}
	return true
}

// Options of New.
type Options struct {
	// Client sends the requests; when nil, a client of its own that
	// follows no redirect (a 3xx is a rejection: following a 302 or 303
	// would turn the POST into a GET, and send the auth header to another
	// URL).
	Client *http.Client
	// Logger receives retries; discard when nil.
	Logger *slog.Logger
	// Metrics count the attempts; nil records nothing.
	Metrics *rollback.Metrics
}

// Trigger is the webhook trigger.
type Trigger struct {
	cfg    Config
	url    string
	client *http.Client
	log    *slog.Logger
	m      *rollback.Metrics
	dedup  rollback.Dedup
}

var _ rollback.Trigger = (*Trigger)(nil)

// New returns a webhook trigger.
func New(cfg Config, opts Options) (*Trigger, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.AuthHeader == "" {
		cfg.AuthHeader = "Authorization"
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Deadline == 0 {
		cfg.Deadline = 2 * time.Minute
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 500 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = max(10*time.Second, cfg.MinBackoff)
	}
	t := &Trigger{cfg: cfg, url: cfg.URL, client: opts.Client, log: opts.Logger, m: opts.Metrics}
	if t.client == nil {
		t.client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	return t, nil
}

// Body is the JSON of the revert request.
type Body struct {
	DeployID        string          `json:"deploy_id"`
	Service         string          `json:"service"`
	Version         string          `json:"version"`
	PreviousVersion string          `json:"previous_version,omitempty"`
	Commit          string          `json:"commit,omitempty"`
	Author          string          `json:"author,omitempty"`
	Reason          string          `json:"reason"`
	At              time.Time       `json:"at"`
	Instance        string          `json:"instance,omitempty"`
	RuleFile        string          `json:"rule_file,omitempty"`
	Evidence        json.RawMessage `json:"evidence,omitempty"`
}

// Revert POSTs the revert request, at most once successfully per deploy
// in this process.
func (t *Trigger) Revert(ctx context.Context, req rollback.Request) (rollback.Result, error) {
	res := rollback.Result{Trigger: Name, ZKVersion: -1}
	if req.Deploy.ID == "" {
		return res, fmt.Errorf("webhook revert: %w: no deploy id", rollback.ErrBadRequest)
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("webhook revert of deploy %s: %w", req.Deploy.ID, err)
	}
	return t.dedup.Do(ctx, req.Deploy.ID, func() (rollback.Result, error) { return t.revert(ctx, req) })
}

func (t *Trigger) revert(parent context.Context, req rollback.Request) (rollback.Result, error) {
	res := rollback.Result{Trigger: Name, ZKVersion: -1}
	d := req.Deploy
	body, err := json.Marshal(Body{DeployID: d.ID, Service: d.Service, Version: d.Version, PreviousVersion: d.PreviousVersion,
		Commit: d.Commit, Author: d.Author, Reason: req.Reason, At: req.At.UTC(), Instance: req.Instance,
		RuleFile: req.RuleFile, Evidence: req.Evidence})
	if err != nil {
		return res, fmt.Errorf("webhook revert of deploy %s: %w", d.ID, err)
	}
	ctx, cancel := context.WithTimeout(parent, t.cfg.Deadline)
	defer cancel()
	for {
		res.Attempts++
		status, detail, secret, err := t.attempt(ctx, d.ID, body)
		redact := func(s string) string {
			if secret != "" {
				s = strings.ReplaceAll(s, secret, "<redacted>")
			}
			return s
		}
		detail = redact(detail)
		switch {
		case err == nil && status >= 200 && status < 300:
			t.m.Attempt(Name, strconv.Itoa(status))
			res.Reverted, res.Detail = true, fmt.Sprintf("HTTP %d%s", status, detail)
			return res, nil
		case err == nil && status < 500:
			t.m.Attempt(Name, strconv.Itoa(status))
			res.Detail = fmt.Sprintf("HTTP %d%s", status, detail)
			return res, fmt.Errorf("webhook revert of deploy %s: %w: HTTP %d from %s%s", d.ID, rollback.ErrRejected, status, redactURL(t.url), detail)
		case errors.Is(err, errAuthFile):
			t.m.Attempt(Name, "error")
			return res, fmt.Errorf("webhook revert of deploy %s: %w: %w", d.ID, rollback.ErrRejected, err)
		}
		why := fmt.Sprintf("HTTP %d%s", status, detail)
		if err != nil {
			t.m.Attempt(Name, "network")
			why = redact(err.Error())
		} else {
			t.m.Attempt(Name, strconv.Itoa(status))
		}
		res.Detail = why
		wait := t.backoff(res.Attempts)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			wait = time.Until(dl)
		}
		t.log.Warn("webhook revert failed, retrying", "deploy", d.ID, "url", redactURL(t.url), "attempt", res.Attempts, "err", why, "backoff", wait)
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			if parent.Err() != nil {
				return res, fmt.Errorf("webhook revert of deploy %s: %w: %w (last: %s)", d.ID, rollback.ErrUnavailable, parent.Err(), why)
			}
			return res, fmt.Errorf("webhook revert of deploy %s: %w: no success within the %v deadline after %d attempts (last: %s)",
				d.ID, rollback.ErrUnavailable, t.cfg.Deadline, res.Attempts, why)
		case <-timer.C:
		}
	}
}

var errAuthFile = errors.New("auth_file")

// attempt sends one request; it returns the status, a bounded excerpt
// of an error body, and the secret sent (for redaction).
func (t *Trigger) attempt(ctx context.Context, id string, body []byte) (status int, detail, secret string, err error) {
	if t.cfg.AuthFile != "" {
		b, rerr := bearer.Read(t.cfg.AuthFile)
		if rerr != nil {
			return 0, "", "", fmt.Errorf("%w: %w", errAuthFile, rerr)
		}
		secret = string(b)
	}
	actx, cancel := context.WithTimeout(ctx, t.cfg.Timeout)
	defer cancel()
	r, err := http.NewRequestWithContext(actx, http.MethodPost, t.url, bytes.NewReader(body))
	if err != nil {
		return 0, "", secret, err
	}
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Idempotency-Key", id)
	if secret != "" {
		r.Header.Set(textproto.CanonicalMIMEHeaderKey(t.cfg.AuthHeader), secret)
	}
	resp, err := t.client.Do(r)
	if err != nil {
		return 0, "", secret, err
	}
	defer resp.Body.Close()
	excerpt, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if loc := resp.Header.Get("Location"); resp.StatusCode >= 300 && resp.StatusCode < 400 && loc != "" {
		detail = " (redirect to " + redactURL(loc) + ", not followed)"
	}
	if resp.StatusCode >= 300 && len(bytes.TrimSpace(excerpt)) > 0 {
		detail += ": " + strings.TrimSpace(string(excerpt))
	}
	return resp.StatusCode, detail, secret, nil
}

// backoff is the wait after the given attempt: doubling from MinBackoff,
// capped at MaxBackoff, with jitter in [d/2, d].
func (t *Trigger) backoff(attempt int) time.Duration {
	return backoff.Jittered(t.cfg.MinBackoff, t.cfg.MaxBackoff, attempt)
}

// redactURL hides a password in a URL's user info.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "<unparsable URL>"
	}
	return u.Redacted()
}
