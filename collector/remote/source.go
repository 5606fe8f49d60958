// Package remote is a collector.Source for any server that speaks
// Prometheus's HTTP query API (Prometheus, Thanos, Mimir, Cortex,
// VictoriaMetrics), through client_golang's api/prometheus/v1.
//
// It retries network errors and HTTP 5xx with exponential backoff, never
// 4xx; reads a bearer token or a basic-auth password from a file on every
// request (so a rotated secret is picked up); and keeps every secret, and
// the URL's userinfo, out of its errors and logs.
package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"

	"github.com/immune-project/immune/collector"
)

var _ collector.Source = (*Source)(nil)

// Defaults of Options.
const (
	DefaultTimeout     = 30 * time.Second
	DefaultMaxAttempts = 4
	DefaultMinBackoff  = 250 * time.Millisecond
	DefaultMaxBackoff  = 5 * time.Second
)

// Options configure a Source.
type Options struct {
	// URL of the API root, as for Prometheus's own UI:
	// http://prometheus:9090 or https://mimir/prometheus. Userinfo in the
	// URL (https://user:pass@host) is used as basic auth and never shown.
	URL string
	// Timeout bounds one attempt, default DefaultTimeout. It is also
	// sent, in whole seconds, as the query's timeout parameter so that
	// the server stops evaluating when the client stops waiting.
	Timeout time.Duration
	// MaxAttempts is the number of attempts of a query, default
	// DefaultMaxAttempts; 1 disables retries.
	MaxAttempts int
	// MinBackoff and MaxBackoff bound the wait before a retry, which
	// doubles from MinBackoff up to MaxBackoff, with jitter.
	MinBackoff, MaxBackoff time.Duration
	// BearerTokenFile holds the token sent as "Authorization: Bearer …".
	BearerTokenFile string
	// BasicAuthUsername and BasicAuthPasswordFile set basic auth.
	BasicAuthUsername     string
	BasicAuthPasswordFile string
	// Transport sends the requests; nil clones http.DefaultTransport.
	// Set it for TLS client certificates or custom CAs.
	Transport http.RoundTripper
	// Logger receives a warning per retry; nil discards.
	Logger *slog.Logger
	// Registerer receives the immune_collector_remote_* metrics; nil
	// registers nothing. One Source per Registerer: a second is an error
	// of New.
	Registerer prometheus.Registerer
}

// Log attribute keys.
const (
	logKeyURL     = "url"
	logKeyAttempt = "attempt"
	logKeyStatus  = "status"
	logKeyBackoff = "backoff"
	logKeyErr     = "err"
	logKeyQuery   = "query"
)

// Source queries a Prometheus-compatible HTTP API. It is safe for
// concurrent use. Close releases idle connections.
type Source struct {
	api     v1.API
	client  *retryClient
	url     string // redacted: no userinfo
	secrets *secrets
	idle    interface{ CloseIdleConnections() } // the transport, when it has idle connections to close
}

// New checks opts and returns a Source. It does not contact the server.
func New(opts Options) (*Source, error) {
	u, err := url.Parse(opts.URL)
	if err != nil {
		// url.Parse quotes the URL, userinfo and all: say less.
		return nil, errors.New("remote: URL does not parse")
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("remote: URL %s: want http:// or https:// and a host", redactURL(u))
	}
	sec := &secrets{}
	auth := authFunc(nil)
	if u.User != nil {
		user := u.User.Username()
		pass, _ := u.User.Password()
		sec.add(user, pass, u.User.String(), basicToken(user, pass))
		auth = func(r *http.Request) error { r.SetBasicAuth(user, pass); return nil }
		u.User = nil
	}
	redacted := u.String()
	nauth := 0
	for _, set := range []bool{auth != nil, opts.BearerTokenFile != "", opts.BasicAuthUsername != "" || opts.BasicAuthPasswordFile != ""} {
		if set {
			nauth++
		}
	}
	if nauth > 1 {
		return nil, fmt.Errorf("remote: %s: set one of URL userinfo, bearer token file, basic auth", redacted)
	}
	switch {
	case opts.BearerTokenFile != "":
		auth = bearerAuth(opts.BearerTokenFile, sec)
	case opts.BasicAuthPasswordFile != "":
		if opts.BasicAuthUsername == "" {
			return nil, fmt.Errorf("remote: %s: basic auth password file without a username", redacted)
		}
		auth = basicAuth(opts.BasicAuthUsername, opts.BasicAuthPasswordFile, sec)
	case opts.BasicAuthUsername != "":
		return nil, fmt.Errorf("remote: %s: basic auth username without a password file", redacted)
	}

	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	log = log.With(logKeyURL, redacted)
	transport := opts.Transport
	if transport == nil {
		transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	idle, _ := transport.(interface{ CloseIdleConnections() })
	if auth != nil {
		transport = &authTransport{next: transport, auth: auth}
	}
	base, err := api.NewClient(api.Config{Address: redacted, RoundTripper: transport})
	if err != nil {
		return nil, fmt.Errorf("remote: %s: %w", redacted, err)
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("remote: %s: register metrics: %w", redacted, err)
	}
	rc := &retryClient{
		Client:      base,
		timeout:     positive(opts.Timeout, DefaultTimeout),
		maxAttempts: max(1, opts.MaxAttempts),
		minBackoff:  positive(opts.MinBackoff, DefaultMinBackoff),
		maxBackoff:  positive(opts.MaxBackoff, DefaultMaxBackoff),
		log:         log,
		secrets:     sec,
		metrics:     m,
	}
	if opts.MaxAttempts == 0 {
		rc.maxAttempts = DefaultMaxAttempts
	}
	rc.maxBackoff = max(rc.maxBackoff, rc.minBackoff)
	return &Source{
		api:     v1.NewAPI(rc),
		client:  rc,
		url:     redacted,
		secrets: sec,
		idle:    idle,
	}, nil
}

func positive(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// URL is the API root without userinfo.
func (s *Source) URL() string { return s.url }

// Close closes idle connections. The Source stays usable.
func (s *Source) Close() {
	if s.idle != nil {
		s.idle.CloseIdleConnections()
	}
}

func (s *Source) apiOptions() []v1.Option {
	if secs := s.client.timeout.Truncate(time.Second); secs > 0 {
		return []v1.Option{v1.WithTimeout(secs)}
	}
	return nil
}

// QueryRange evaluates query at every step from start to end.
func (s *Source) QueryRange(ctx context.Context, query string, start, end time.Time, step time.Duration) (collector.Matrix, collector.Warnings, error) {
	if err := collector.CheckRange(start, end, step); err != nil {
		return nil, nil, s.fail(query, err.Error(), err)
	}
	ctx, info := withInfo(ctx)
	val, warns, infos, err := s.api.QueryRange(ctx, query, v1.Range{Start: start, End: end, Step: step}, s.apiOptions()...)
	warnings := s.warnings(warns, infos)
	if err != nil {
		return nil, warnings, s.queryError(ctx, query, info, err)
	}
	m, err := toMatrix(val)
	if err != nil {
		return nil, warnings, s.fail(query, err.Error(), err)
	}
	return m, warnings, nil
}

// Query evaluates query at ts.
func (s *Source) Query(ctx context.Context, query string, ts time.Time) (collector.Vector, collector.Warnings, error) {
	ctx, info := withInfo(ctx)
	val, warns, infos, err := s.api.Query(ctx, query, ts, s.apiOptions()...)
	warnings := s.warnings(warns, infos)
	if err != nil {
		return nil, warnings, s.queryError(ctx, query, info, err)
	}
	v, err := toVector(val)
	if err != nil {
		return nil, warnings, s.fail(query, err.Error(), err)
	}
	return v, warnings, nil
}

func (s *Source) warnings(warns v1.Warnings, infos v1.Infos) collector.Warnings {
	if len(warns)+len(infos) == 0 {
		return nil
	}
	out := make(collector.Warnings, 0, len(warns)+len(infos))
	for _, w := range slices.Concat([]string(warns), []string(infos)) {
		out = append(out, s.secrets.redact(w))
	}
	return out
}

// queryError maps a failed call to the collector's sentinels, with the
// server's message, redacted.
func (s *Source) queryError(ctx context.Context, query string, info *callInfo, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		kinds := []error{ctxErr}
		if errors.Is(ctxErr, context.DeadlineExceeded) {
			kinds = []error{collector.ErrTimeout, ctxErr}
		}
		return s.fail(query, ctxErr.Error(), kinds...)
	}
	attempts := ""
	if info.attempts > 1 {
		attempts = fmt.Sprintf(" (after %d attempts)", info.attempts)
	}
	var apiErr *v1.Error
	if !errors.As(err, &apiErr) {
		if errors.Is(err, errAuthFile) {
			return s.fail(query, err.Error())
		}
		// Network errors, attempt timeouts.
		return s.fail(query, err.Error()+attempts, collector.ErrUnavailable)
	}
	msg := apiErr.Msg
	switch apiErr.Type {
	case v1.ErrBadData:
		return s.fail(query, msg, collector.ErrBadQuery)
	case v1.ErrExec:
		// Prometheus: "query processing would load too many samples
		// into memory in query execution".
		if strings.Contains(msg, "too many samples") {
			return s.fail(query, msg, collector.ErrTooManySamples)
		}
		return s.fail(query, msg, collector.ErrBadQuery)
	case v1.ErrTimeout, v1.ErrCanceled:
		return s.fail(query, msg, collector.ErrTimeout)
	}
	status := info.status
	if status/100 == 2 {
		// An answer api/v1 could not decode. It decodes no string
		// results: a query giving one is as wrong as the embedded
		// store says.
		if strings.Contains(msg, `unexpected value type "string"`) {
			return s.fail(query, "an instant query must give an instant vector or a scalar, not a string", collector.ErrBadQuery)
		}
		return s.fail(query, msg, collector.ErrBadResponse)
	}
	detail := info.message
	if detail == "" {
		detail = excerpt(apiErr.Detail)
	}
	what := fmt.Sprintf("HTTP %d %s", status, http.StatusText(status))
	if detail != "" {
		what += ": " + detail
	}
	switch {
	case info.errorType == string(v1.ErrTimeout) || info.errorType == string(v1.ErrCanceled):
		return s.fail(query, detail, collector.ErrTimeout)
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return s.fail(query, what, collector.ErrUnauthorized)
	case status >= 500:
		return s.fail(query, what+attempts, collector.ErrUnavailable)
	default:
		return s.fail(query, what, collector.ErrBadResponse)
	}
}

// fail builds the error of a query: the message is redacted; the raw
// errors are not kept (their text could hold what was redacted), only the
// kinds to match with errors.Is.
func (s *Source) fail(query, msg string, kinds ...error) error {
	return &queryErr{url: s.url, query: query, msg: s.secrets.redact(msg), kinds: kinds}
}

type queryErr struct {
	url, query, msg string
	kinds           []error
}

func (e *queryErr) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "remote %s: query %q: ", e.url, e.query)
	for _, k := range e.kinds {
		if strings.HasPrefix(e.msg, k.Error()) {
			continue
		}
		b.WriteString(k.Error())
		b.WriteString(": ")
	}
	b.WriteString(e.msg)
	return b.String()
}

func (e *queryErr) Unwrap() []error { return e.kinds }

// excerpt shortens a response body for an error message.
func excerpt(body string) string {
	body = strings.TrimSpace(body)
	const n = 200
	if len(body) > n {
		body = body[:n] + "…"
	}
	return strings.ToValidUTF8(body, "?")
}

func redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}

func toLabels(m model.Metric) collector.Labels {
	l := make(collector.Labels, len(m))
	for k, v := range m {
		l[string(k)] = string(v)
	}
	return l
}

func toMatrix(v model.Value) (collector.Matrix, error) {
	switch v := v.(type) {
	case model.Matrix:
		m := make(collector.Matrix, 0, len(v))
		for _, s := range v {
			if len(s.Histograms) > 0 {
				return nil, fmt.Errorf("%w: %s has native histogram samples", collector.ErrUnsupported, s.Metric)
			}
			samples := make([]collector.Sample, len(s.Values))
			for i, p := range s.Values {
				samples[i] = collector.Sample{T: collector.Time(int64(p.Timestamp)), V: float64(p.Value)}
			}
			m = append(m, collector.Series{Labels: toLabels(s.Metric), Samples: samples})
		}
		slices.SortStableFunc(m, func(a, b collector.Series) int { return a.Labels.Compare(b.Labels) })
		return m, nil
	case nil:
		return nil, fmt.Errorf("%w: no result", collector.ErrBadResponse)
	default:
		return nil, fmt.Errorf("%w: range query returned %s", collector.ErrBadResponse, v.Type())
	}
}

func toVector(v model.Value) (collector.Vector, error) {
	switch v := v.(type) {
	case model.Vector:
		out := make(collector.Vector, 0, len(v))
		for _, s := range v {
			if s.Histogram != nil {
				return nil, fmt.Errorf("%w: %s is a native histogram sample", collector.ErrUnsupported, s.Metric)
			}
			out = append(out, collector.Element{Labels: toLabels(s.Metric), Sample: collector.Sample{T: collector.Time(int64(s.Timestamp)), V: float64(s.Value)}})
		}
		return out, nil
	case *model.Scalar:
		return collector.Vector{{Labels: collector.Labels{}, Sample: collector.Sample{T: collector.Time(int64(v.Timestamp)), V: float64(v.Value)}}}, nil
	case model.Matrix:
		return nil, fmt.Errorf("%w: an instant query must give an instant vector or a scalar, not a range vector (wrap it in a function such as avg_over_time)", collector.ErrBadQuery)
	case nil:
		return nil, fmt.Errorf("%w: no result", collector.ErrBadResponse)
	default:
		return nil, fmt.Errorf("%w: an instant query must give an instant vector or a scalar, not a %s", collector.ErrBadQuery, v.Type())
	}
}
