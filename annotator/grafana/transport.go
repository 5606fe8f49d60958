package grafana

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/immune-project/immune/internal/bearer"
)

// httpError is what the transport makes of an HTTP answer of 400 or more:
// the SDK hands 4xx bodies back as if they were results.
type httpError struct {
	method, path string
	code         int
	message      string // Grafana's {"message": ...}, or the start of the body
}

func (e *httpError) Error() string {
	if e.message == "" {
		return fmt.Sprintf("%s %s: HTTP %d", e.method, e.path, e.code)
	}
	return fmt.Sprintf("%s %s: HTTP %d: %s", e.method, e.path, e.code, e.message)
}

// errTokenFile marks a token file that cannot be read: nothing was sent.
var errTokenFile = errors.New("no token sent")

// transport adds the bearer token, read from its file on every request
// (so a rotated token is picked up), turns answers of 400 and more into
// *httpError, and counts requests.
type transport struct {
	next      http.RoundTripper
	tokenFile string
	secrets   *secrets
	requests  *prometheus.CounterVec
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	token, err := t.token() // Config.Validate requires a token file
	if err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	r.Header.Set("Authorization", "Bearer "+token)
	resp, err := t.next.RoundTrip(r)
	if err != nil {
		t.requests.WithLabelValues(req.Method, "error").Inc()
		return nil, err
	}
	t.requests.WithLabelValues(req.Method, fmt.Sprint(resp.StatusCode)).Inc()
	if resp.StatusCode < 400 {
		return resp, nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return nil, &httpError{method: req.Method, path: req.URL.Path, code: resp.StatusCode, message: t.secrets.redact(message(body))}
}

func (t *transport) token() (string, error) {
	b, err := bearer.Read(t.tokenFile)
	if err != nil {
		return "", fmt.Errorf("%w: %w", errTokenFile, err)
	}
	s := string(b)
	t.secrets.set(s)
	return s, nil
}

// message is Grafana's {"message": ...} of an error body, or the body's
// first line, shortened.
func message(body []byte) string {
	var m struct {
		Message string `json:"message"`
	}
	s := ""
	if json.Unmarshal(body, &m) == nil && m.Message != "" {
		s = m.Message
	} else {
		s, _, _ = strings.Cut(strings.TrimSpace(string(body)), "\n")
	}
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		cut := 200
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// secrets holds the token as last read, to redact it from every message.
type secrets struct {
	mu    sync.Mutex
	token string
}

func (s *secrets) set(v string) {
	s.mu.Lock()
	s.token = v
	s.mu.Unlock()
}

func (s *secrets) redact(msg string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.token) < 4 {
		return msg
	}
	return strings.ReplaceAll(msg, s.token, "<redacted>")
}
