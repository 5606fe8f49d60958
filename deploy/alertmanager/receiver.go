// Package alertmanager receives Alertmanager's webhook notifications
// (payload version 4) at POST /api/v1/alerts and delivers each firing
// alert labelled with a service as a deploy.Event of kind alert, for
// the analysis to count against that service's deploys in their window.
//
// Alertmanager repeats a notification at every group_interval and
// repeat_interval and after its own restarts; an alert is delivered
// once per fingerprint and startsAt, however long it keeps firing. An
// alert that resolves and fires again keeps its startsAt while
// Alertmanager still holds it (it is the same alert) and gets a new one
// after that (a new alert).
package alertmanager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/deploy/internal/httpx"
	"github.com/immune-project/immune/deploy/internal/queue"
)

// SourceName is the Event.Source of this package's events.
const SourceName = "alertmanager"

// Version is the webhook payload version this receiver reads.
const Version = "4"

// Alert statuses in a payload.
const (
	StatusFiring   = "firing"
	StatusResolved = "resolved"
)

// Message is what the receiver reads of Alertmanager's webhook payload;
// the other fields (groupKey, groupLabels, commonLabels, externalURL, …)
// are ignored.
type Message struct {
	Version  string  `json:"version"`
	Receiver string  `json:"receiver"`
	Alerts   []Alert `json:"alerts"`
}

// Alert is one alert of a Message.
type Alert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

// Parse decodes and checks a payload. Errors name the field, like
// "field alerts[2].startsAt: …"; a version other than 4 is an error.
func Parse(body []byte) (*Message, error) {
	// The alerts are decoded one by one, so that an error names the
	// alert; the rest of the message first.
	var h struct {
		Version  string          `json:"version"`
		Receiver string          `json:"receiver"`
		Alerts   json.RawMessage `json:"alerts"`
	}
	if err := httpx.DecodeObject(body, &h, "", false); err != nil {
		return nil, err
	}
	switch {
	case h.Version == "":
		return nil, &httpx.FieldError{Field: "version", Msg: "missing: want \"4\" (Alertmanager's webhook payload)"}
	case h.Version != Version:
		return nil, &httpx.FieldError{Field: "version", Msg: fmt.Sprintf("%q: want \"4\"", h.Version)}
	case h.Alerts == nil:
		return nil, &httpx.FieldError{Field: "alerts", Msg: "missing"}
	}
	var alerts []json.RawMessage
	if err := json.Unmarshal(h.Alerts, &alerts); err != nil || alerts == nil {
		return nil, &httpx.FieldError{Field: "alerts", Msg: "want an array of alerts"}
	}
	m := &Message{Version: h.Version, Receiver: h.Receiver, Alerts: make([]Alert, len(alerts))}
	for i, ra := range alerts {
		prefix := fmt.Sprintf("alerts[%d].", i)
		a := &m.Alerts[i]
		if err := httpx.DecodeObject(ra, a, prefix, false); err != nil {
			return nil, err
		}
		field := func(f, msg string) error { return &httpx.FieldError{Field: prefix + f, Msg: msg} }
		switch {
		case a.Status != StatusFiring && a.Status != StatusResolved:
			return nil, field("status", fmt.Sprintf("%q: want firing or resolved", a.Status))
		case a.Labels == nil:
			return nil, field("labels", "missing")
		case a.StartsAt.IsZero():
			return nil, field("startsAt", "missing")
		case a.Fingerprint == "":
			return nil, field("fingerprint", "missing (Alertmanager 0.19 and later send it)")
		}
	}
	return m, nil
}

// Options configure a Receiver.
type Options struct {
	// ServiceLabel is the alert label naming the service (default
	// "service"). Alerts without it are ignored.
	ServiceLabel string
	// TokenFile, when set, holds the bearer token the endpoint requires
	// (Alertmanager's http_config.authorization.credentials_file). It is
	// read at every request, never logged nor put in an answer.
	TokenFile string
	// Memory is how long an alert (fingerprint and startsAt) is
	// remembered to drop repeats, counted from the last notification
	// that carried it (default 24h): an alert firing for days is
	// delivered once. Keep it longer than the longest analysis window
	// and than Alertmanager's repeat_interval.
	Memory time.Duration
	// Logger: discard when nil. Registerer: the deploy.Metrics
	// counters, none when nil. Now: the clock of Event.At and of the
	// memory; time.Now when nil.
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// Receiver is the Alertmanager webhook receiver, a deploy.Source.
type Receiver struct {
	label   string
	token   httpx.Token
	memory  time.Duration
	log     *slog.Logger
	metrics *deploy.Metrics
	now     func() time.Time
	q       *queue.Queue

	mu   sync.Mutex
	seen map[seenKey]time.Time // -> when a notification last carried it
}

var _ deploy.Source = (*Receiver)(nil)

type seenKey struct {
	fingerprint string
	startsAt    int64
}

// New returns a receiver.
func New(opts Options) *Receiver {
	r := &Receiver{
		label: opts.ServiceLabel, token: httpx.Token{File: opts.TokenFile}, memory: opts.Memory,
		log: opts.Logger, metrics: deploy.NewMetrics(opts.Registerer), now: opts.Now,
		q: queue.New(), seen: map[seenKey]time.Time{},
	}
	if r.label == "" {
		r.label = "service"
	}
	if r.memory <= 0 {
		r.memory = 24 * time.Hour
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.now == nil {
		r.now = time.Now
	}
	return r
}

// Register adds POST /api/v1/alerts to mux.
func (r *Receiver) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/alerts", r.post)
}

// Run delivers the alerts received to out until ctx ends; it returns
// ctx.Err().
func (r *Receiver) Run(ctx context.Context, out chan<- deploy.Event) error {
	return r.q.Drain(ctx, out, func(ev deploy.Event) { r.metrics.Event(SourceName, ev.Kind) })
}

// Result is the answer to a notification.
type Result struct {
	Status string `json:"status"` // success
	// Accepted alerts became events; Duplicates were delivered before;
	// Ignored are resolved or carry no service label.
	Accepted   int `json:"accepted"`
	Duplicates int `json:"duplicates"`
	Ignored    int `json:"ignored"`
}

func (r *Receiver) post(w http.ResponseWriter, req *http.Request) {
	if ok, err := r.token.Authorize(w, req); !ok {
		if errors.Is(err, httpx.ErrUnauthorized) {
			r.metrics.Error(SourceName, "unauthorized")
			r.log.Warn("alertmanager receiver: refused a notification", "err", err, "remote", req.RemoteAddr)
		} else {
			// Answered 500: the server's fault, not counted as unauthorized.
			r.log.Error("alertmanager receiver: cannot check the bearer token", "err", err)
		}
		return
	}
	body, err := httpx.ReadBody(req)
	if err != nil {
		r.metrics.Error(SourceName, "malformed")
		httpx.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	m, err := Parse(body)
	if err != nil {
		r.metrics.Error(SourceName, "malformed")
		r.log.Warn("alertmanager receiver: bad notification", "err", err, "remote", req.RemoteAddr)
		httpx.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	httpx.WriteJSON(w, http.StatusOK, r.accept(m))
}

// accept turns the new firing alerts of m into events.
func (r *Receiver) accept(m *Message) Result {
	now := r.now()
	res := Result{Status: "success"}
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, last := range r.seen {
		if now.Sub(last) > r.memory {
			delete(r.seen, k)
		}
	}
	var evs []deploy.Event
	for _, a := range m.Alerts {
		svc := a.Labels[r.label]
		if a.Status != StatusFiring || svc == "" {
			res.Ignored++
			continue
		}
		k := seenKey{a.Fingerprint, a.StartsAt.UnixNano()}
		_, dup := r.seen[k]
		r.seen[k] = now
		if dup {
			res.Duplicates++
			continue
		}
		res.Accepted++
		evs = append(evs, deploy.Event{
			Kind: deploy.EventAlert, Source: SourceName, Deploy: deploy.Deploy{Service: svc}, At: now,
			Alert: &deploy.Alert{
				Fingerprint: a.Fingerprint, Status: a.Status, Labels: a.Labels, Annotations: a.Annotations,
				StartsAt: a.StartsAt, EndsAt: a.EndsAt, GeneratorURL: a.GeneratorURL, Receiver: m.Receiver,
			},
		})
		r.log.Info("alertmanager receiver: firing alert", "service", svc, "alertname", a.Labels["alertname"], "fingerprint", a.Fingerprint)
	}
	r.q.Push(evs...)
	return res
}
