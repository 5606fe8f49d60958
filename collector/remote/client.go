package remote

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/api"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/immune-project/immune/internal/backoff"
	"github.com/immune-project/immune/internal/bearer"
)

// callInfo records, for one query, what the retry client saw of the last
// attempt: the api/v1 layer keeps the status code and the body of a 5xx to
// itself.
type callInfo struct {
	attempts  int
	status    int
	errorType string // of a JSON error body
	message   string // of a JSON error body
}

type callInfoKey struct{}

func withInfo(ctx context.Context) (context.Context, *callInfo) {
	info := &callInfo{}
	return context.WithValue(ctx, callInfoKey{}, info), info
}

// retryClient is the api.Client under api/v1: each attempt gets its own
// timeout; network errors and 5xx are retried with backoff, 4xx never.
type retryClient struct {
	api.Client
	timeout     time.Duration
	maxAttempts int
	minBackoff  time.Duration
	maxBackoff  time.Duration
	log         *slog.Logger
	secrets     *secrets
	metrics     *metrics
}

func (c *retryClient) Do(ctx context.Context, req *http.Request) (*http.Response, []byte, error) {
	info, _ := ctx.Value(callInfoKey{}).(*callInfo)
	if info == nil {
		info = &callInfo{}
	}
	*info = callInfo{}
	for attempt := 1; ; attempt++ {
		resp, body, err := c.attempt(ctx, req)
		info.attempts = attempt
		retry, why := c.classify(ctx, info, resp, body, err)
		if !retry || attempt >= c.maxAttempts {
			return resp, body, err
		}
		wait := c.backoff(attempt)
		c.metrics.retries.Inc()
		c.log.Warn("remote query failed, retrying",
			logKeyQuery, c.secrets.redact(queryOf(req)),
			logKeyAttempt, attempt,
			logKeyStatus, why,
			logKeyBackoff, wait,
			logKeyErr, c.secrets.redact(errString(err)))
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, nil, ctx.Err()
		case <-timer.C:
		}
	}
}

func (c *retryClient) attempt(ctx context.Context, req *http.Request) (*http.Response, []byte, error) {
	actx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	r := req.Clone(actx)
	if req.GetBody != nil {
		b, err := req.GetBody()
		if err != nil {
			return nil, nil, err
		}
		r.Body = b
	}
	resp, body, err := c.Client.Do(actx, r)
	code := "error"
	if err == nil && resp != nil {
		code = strconv.Itoa(resp.StatusCode)
	}
	c.metrics.requests.WithLabelValues(code).Inc()
	if err != nil && ctx.Err() == nil && actx.Err() != nil {
		err = fmt.Errorf("no answer within %v: %w", c.timeout, err)
	}
	return resp, body, err
}

// classify says whether to retry, and why, and records the attempt.
func (c *retryClient) classify(ctx context.Context, info *callInfo, resp *http.Response, body []byte, err error) (bool, string) {
	info.status, info.errorType, info.message = 0, "", ""
	if err != nil {
		if ctx.Err() != nil || errors.Is(err, errAuthFile) {
			return false, ""
		}
		return true, "network error"
	}
	info.status = resp.StatusCode
	if resp.StatusCode >= 400 {
		var e struct {
			ErrorType string `json:"errorType"`
			Error     string `json:"error"`
		}
		if json.Unmarshal(body, &e) == nil {
			info.errorType, info.message = e.ErrorType, e.Error
		}
	}
	switch {
	case resp.StatusCode < 500:
		return false, ""
	case resp.StatusCode == http.StatusNotImplemented:
		// The server does not take POST: api/v1 falls back to GET.
		return false, ""
	case info.errorType == "timeout" || info.errorType == "canceled":
		// Prometheus answers a query that ran out of time with 503: the
		// same query would run out of time again.
		return false, ""
	}
	return true, strconv.Itoa(resp.StatusCode)
}

// backoff is the wait after the given attempt: doubling from minBackoff,
// capped at maxBackoff, with jitter in [d/2, d].
func (c *retryClient) backoff(attempt int) time.Duration {
	return backoff.Jittered(c.minBackoff, c.maxBackoff, attempt)
}

func queryOf(req *http.Request) string {
	if q := req.URL.Query().Get("query"); q != "" {
		return q
	}
	if req.GetBody == nil {
		return ""
	}
	b, err := req.GetBody()
	if err != nil {
		return ""
	}
	defer b.Close()
	var buf bytes.Buffer
	_, _ = io.Copy(&buf, io.LimitReader(b, 1<<16))
	for _, kv := range strings.Split(buf.String(), "&") {
		if v, ok := strings.CutPrefix(kv, "query="); ok {
			if u, err := url.QueryUnescape(v); err == nil {
				return u
			}
		}
	}
	return ""
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// errAuthFile marks a secret file that cannot be read: retrying will not
// help and the query is not sent.
var errAuthFile = errors.New("auth file")

type authFunc func(*http.Request) error

// authTransport adds credentials to every request.
type authTransport struct {
	next http.RoundTripper
	auth authFunc
}

func (t *authTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	// A RoundTripper must not change the request it is given.
	r := req.Clone(req.Context())
	if err := t.auth(r); err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	return t.next.RoundTrip(r)
}

func bearerAuth(file string, sec *secrets) authFunc {
	return func(r *http.Request) error {
		token, err := readSecret(file, "bearer", sec)
		if err != nil {
			return err
		}
		r.Header.Set("Authorization", "Bearer "+token)
		return nil
	}
}

func basicAuth(user, file string, sec *secrets) authFunc {
	return func(r *http.Request) error {
		pass, err := readSecret(file, "basic auth password", sec)
		if err != nil {
			return err
		}
		sec.add(basicToken(user, pass))
		r.SetBasicAuth(user, pass)
		return nil
	}
}

// basicToken is what an Authorization: Basic header carries: a server
// echoing the header must not reveal the password either.
func basicToken(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
}

// readSecret reads a secret file (leading and trailing white space
// trimmed, bearer.Read) and remembers the secret for redaction. Its errors
// name the file, never the content: "read bearer token file …".
func readSecret(file, what string, sec *secrets) (string, error) {
	b, err := bearer.Read(file)
	if err != nil {
		return "", fmt.Errorf("%w: read %s %v", errAuthFile, what, err)
	}
	s := string(b)
	sec.add(s)
	return s, nil
}

// secrets are the strings never to show: the credentials as last read.
type secrets struct {
	mu   sync.Mutex
	list []string
}

// minSecret is the shortest secret redacted from messages: replacing every
// "a" of a message would make it unreadable, and a secret that short is no
// secret.
const minSecret = 4

func (s *secrets) add(vs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range vs {
		if len(v) < minSecret {
			continue
		}
		found := false
		for _, have := range s.list {
			if have == v {
				found = true
				break
			}
		}
		if !found {
			s.list = append(s.list, v)
		}
	}
}

func (s *secrets) redact(msg string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range s.list {
		msg = strings.ReplaceAll(msg, v, "<redacted>")
	}
	return msg
}

type metrics struct {
	requests *prometheus.CounterVec
	retries  prometheus.Counter
}

// newMetrics registers the metrics with reg (nil: none), registering
// none when one cannot be.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "immune_collector_remote_requests_total",
			Help: "HTTP requests to the remote query API, by status code (\"error\" when no answer came).",
		}, []string{"code"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "immune_collector_remote_retries_total",
			Help: "Query attempts retried after a network error or an HTTP 5xx.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	if err := reg.Register(m.requests); err != nil {
		return nil, err
	}
	if err := reg.Register(m.retries); err != nil {
		reg.Unregister(m.requests)
		return nil, err
	}
	return m, nil
}
