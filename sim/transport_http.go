package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/internal/bearer"
)

var (
	_ Transport   = (*HTTPTransport)(nil)
	_ StateWriter = (*HTTPTransport)(nil)
)

// HTTPOptions configure an HTTPTransport.
type HTTPOptions struct {
	// URL is immune's base URL, such as http://127.0.0.1:9797.
	URL    string
	Client *http.Client // http.DefaultClient when nil
	// TokenFile holds a bearer token sent on every request (read at each
	// request; never logged nor put in an error).
	TokenFile string
	// WebhookTokenFile, when set, holds the token POST /revert requires
	// as "Authorization: Bearer <token>" (what immune's webhook trigger
	// sends from its auth_file); read at each request, never logged.
	WebhookTokenFile string
	// PollInterval is how often Status polls GET /api/v1/deploys/{id},
	// default 1s; a revert arriving at the webhook wakes it at once.
	PollInterval time.Duration
	Logger       *slog.Logger
}

// HTTPTransport speaks immune's HTTP deploy API, and serves the webhook
// POST /revert through which immune (its webhook trigger) asks for a
// revert, as a real pipeline would.
type HTTPTransport struct {
	base   *url.URL
	client *http.Client
	opts   HTTPOptions
	log    *slog.Logger

	mu      sync.Mutex
	known   map[string]bool                 // deploys created here
	reverts map[string]*deploy.RevertRecord // received at the webhook
	notify  map[string]chan struct{}        // closed when the webhook receives a revert
}

// NewHTTPTransport checks the options and returns a transport.
func NewHTTPTransport(opts HTTPOptions) (*HTTPTransport, error) {
	u, err := url.Parse(opts.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("deploy api url %q: want http(s)://host:port", redactURL(opts.URL))
	}
	if u.User != nil {
		return nil, fmt.Errorf("deploy api url %q: credentials in the URL: use a token file", redactURL(opts.URL))
	}
	for _, f := range []string{opts.TokenFile, opts.WebhookTokenFile} {
		if f == "" {
			continue
		}
		if _, err := readToken(f); err != nil {
			return nil, err
		}
	}
	if opts.Client == nil {
		opts.Client = http.DefaultClient
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Second
	}
	t := &HTTPTransport{base: u, client: opts.Client, opts: opts, log: opts.Logger,
		known: map[string]bool{}, reverts: map[string]*deploy.RevertRecord{}, notify: map[string]chan struct{}{}}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	return t, nil
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		if i := strings.Index(s, "@"); i >= 0 {
			return "…" + s[i:]
		}
		return s
	}
	u.User = url.User("redacted")
	return u.String()
}

func readToken(file string) (string, error) {
	b, err := bearer.Read(file)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// Create posts the record to POST /api/v1/deploys (201, or 200 for an
// identical retry).
func (t *HTTPTransport) Create(ctx context.Context, rec deploy.DeployRecord) error {
	if err := t.do(ctx, http.MethodPost, "/api/v1/deploys", rec, nil); err != nil {
		return err
	}
	t.mu.Lock()
	t.known[rec.ID] = true
	t.mu.Unlock()
	return nil
}

// StartGroup posts to POST /api/v1/deploys/{id}/groups.
func (t *HTTPTransport) StartGroup(ctx context.Context, _, id string, g deploy.GroupRecord) error {
	return t.do(ctx, http.MethodPost, "/api/v1/deploys/"+url.PathEscape(id)+"/groups", g, nil)
}

// SelfTest posts to POST /api/v1/deploys/{id}/selftest.
func (t *HTTPTransport) SelfTest(ctx context.Context, _, id string, r deploy.SelfTestRecord) error {
	return t.do(ctx, http.MethodPost, "/api/v1/deploys/"+url.PathEscape(id)+"/selftest", r, nil)
}

// SetState posts rec.State to POST /api/v1/deploys/{id}/state.
func (t *HTTPTransport) SetState(ctx context.Context, rec deploy.DeployRecord) error {
	return t.do(ctx, http.MethodPost, "/api/v1/deploys/"+url.PathEscape(rec.ID)+"/state", map[string]string{"state": rec.State}, nil)
}

// Status reads GET /api/v1/deploys/{id} and adds a revert received at
// the webhook. The channel closes after PollInterval, or at once when
// the webhook receives a revert for the deploy.
func (t *HTTPTransport) Status(ctx context.Context, _, id string) (Status, <-chan struct{}, error) {
	t.mu.Lock()
	notify := t.notify[id]
	if notify == nil {
		notify = make(chan struct{})
		t.notify[id] = notify
	}
	t.mu.Unlock()
	var raw json.RawMessage
	if err := t.do(ctx, http.MethodGet, "/api/v1/deploys/"+url.PathEscape(id), nil, &raw); err != nil {
		return Status{}, nil, err
	}
	st, err := ParseStatus(raw)
	if err != nil {
		return Status{}, nil, err
	}
	t.mu.Lock()
	if st.Revert == nil && t.reverts[id] != nil {
		r := *t.reverts[id]
		st.Revert = &r
	}
	t.mu.Unlock()
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		timer := time.NewTimer(t.opts.PollInterval)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-notify:
		case <-ctx.Done():
		}
	}()
	return st, ch, nil
}

// ParseStatus reads the answer of GET /api/v1/deploys/{id}: an object
// with verdict and revert (each an object or null; other fields are
// ignored).
func ParseStatus(b []byte) (Status, error) {
	var body struct {
		Verdict *deploy.VerdictRecord `json:"verdict"`
		Revert  *deploy.RevertRecord  `json:"revert"`
	}
	if err := json.Unmarshal(b, &body); err != nil {
		return Status{}, fmt.Errorf("deploy status: %w: %w", ErrBadResponse, err)
	}
	return Status{Verdict: body.Verdict, Revert: body.Revert}, nil
}

// Reverted returns the revert request the webhook received for a
// deploy, if any.
func (t *HTTPTransport) Reverted(id string) *deploy.RevertRecord {
	t.mu.Lock()
	defer t.mu.Unlock()
	if r := t.reverts[id]; r != nil {
		c := *r
		return &c
	}
	return nil
}

// Register adds the revert webhook, POST /revert, to mux.
func (t *HTTPTransport) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /revert", t.serveRevert)
}

// maxWebhookBody bounds the body of a revert request.
const maxWebhookBody = 1 << 20

// ParseRevertRequest reads a revert webhook body, as immune's webhook
// trigger sends it: a JSON object with at least deploy_id and reason;
// other fields are ignored.
func ParseRevertRequest(b []byte) (deploy.RevertRecord, error) {
	var r deploy.RevertRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return deploy.RevertRecord{}, fmt.Errorf("revert request: %w", err)
	}
	switch {
	case r.DeployID == "":
		return r, errors.New("revert request: deploy_id is missing")
	case !deploy.ValidName(r.DeployID):
		return r, fmt.Errorf("revert request: deploy_id %q is not a valid name", r.DeployID)
	case strings.TrimSpace(r.Reason) == "":
		return r, errors.New("revert request: reason is missing")
	}
	return r, nil
}

func (t *HTTPTransport) serveRevert(w http.ResponseWriter, r *http.Request) {
	if f := t.opts.WebhookTokenFile; f != "" {
		tok, err := readToken(f)
		if err != nil {
			t.log.Error("revert webhook: token file unreadable", "err", err)
			writeJSON(w, http.StatusInternalServerError, map[string]string{"status": "error", "error": "revert webhook: token unavailable"})
			return
		}
		if !bearer.Matches(r, []byte(tok)) {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"status": "error", "error": "revert webhook: missing or wrong bearer token"})
			return
		}
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWebhookBody))
	if err != nil {
		writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"status": "error", "error": "revert request: body over 1 MiB"})
		return
	}
	rec, err := ParseRevertRequest(b)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"status": "error", "error": err.Error()})
		return
	}
	t.mu.Lock()
	if !t.known[rec.DeployID] {
		t.mu.Unlock()
		writeJSON(w, http.StatusNotFound, map[string]string{"status": "error", "error": fmt.Sprintf("revert request: unknown deploy %q", rec.DeployID)})
		return
	}
	dup := t.reverts[rec.DeployID] != nil
	if !dup {
		t.reverts[rec.DeployID] = &rec
	}
	if ch := t.notify[rec.DeployID]; ch != nil {
		close(ch)
		delete(t.notify, rec.DeployID)
	}
	t.mu.Unlock()
	if dup {
		writeJSON(w, http.StatusOK, map[string]string{"status": "success", "detail": "already requested"})
		return
	}
	t.log.Info("revert requested at the webhook", "deploy", rec.DeployID, "reason", rec.Reason)
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "success"})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// do sends one request; into, when not nil, receives the answer's body.
// Errors never hold the token.
func (t *HTTPTransport) do(ctx context.Context, method, p string, body any, into *json.RawMessage) error {
	var token string
	if t.opts.TokenFile != "" {
		var err error
		if token, err = readToken(t.opts.TokenFile); err != nil {
			return err
		}
	}
	redact := func(s string) string {
		if token == "" {
			return s
		}
		return strings.ReplaceAll(s, token, "<redacted>")
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	u := *t.base
	u.Path = strings.TrimSuffix(u.Path, "/") + p
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return fmt.Errorf("%s %s: %s", method, p, redact(err.Error()))
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %s: %w", method, p, redact(err.Error()), ErrUnavailable)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %s: %w", method, p, redact(err.Error()), ErrUnavailable)
	}
	if resp.StatusCode/100 != 2 {
		msg := strings.TrimSpace(string(b))
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		if len(msg) > 200 {
			msg = msg[:200] + "…"
		}
		kind := ErrUnavailable
		if resp.StatusCode/100 == 4 {
			kind = ErrRejected
		}
		return fmt.Errorf("%s %s: HTTP %d: %s: %w", method, p, resp.StatusCode, redact(msg), kind)
	}
	if into != nil {
		*into = b
	}
	return nil
}
