package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/immune-project/immune/internal/bearer"
)

// Log attribute keys.
const (
	logKeyProtocol = "protocol"
	logKeyReason   = "reason"
	logKeyCode     = "code"
	logKeySamples  = "samples"
	logKeyRemote   = "remote"
	logKeyErr      = "err"
)

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func getBuf() *bytes.Buffer { return bufPool.Get().(*bytes.Buffer) }

func putBuf(b *bytes.Buffer) {
	if b.Cap() > 64<<20 {
		return
	}
	b.Reset()
	bufPool.Put(b)
}

// readBody reads the body into buf, up to the body limit.
func (r *Receiver) readBody(w http.ResponseWriter, req *http.Request, buf *bytes.Buffer) error {
	if req.ContentLength > r.limits.MaxBodyBytes {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrBodyTooLarge, req.ContentLength, r.limits.MaxBodyBytes)
	}
	if req.ContentLength > 0 {
		buf.Grow(int(req.ContentLength))
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, req.Body, r.limits.MaxBodyBytes))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return fmt.Errorf("%w: more than %d bytes", ErrBodyTooLarge, r.limits.MaxBodyBytes)
	case err != nil:
		return fmt.Errorf("%w: read: %w", ErrParse, err)
	}
	return nil
}

// authorize checks the bearer token.
func (r *Receiver) authorize(req *http.Request) error {
	if r.token.Check(req) {
		return nil
	}
	return ErrUnauthorized
}

// outcome is what a request came to, for the answer, the log and the
// metrics.
type outcome struct {
	protocol string
	start    time.Time
	samples  int // of the request, once decoded
	bytes    int
	err      error
}

// finish answers the request and records it.
func (r *Receiver) finish(w http.ResponseWriter, req *http.Request, o outcome) {
	m := r.m
	if o.bytes > 0 {
		m.bytes.WithLabelValues(o.protocol).Add(float64(o.bytes))
	}
	code := http.StatusNoContent
	if o.err != nil {
		var reason string
		reason, code = classify(o.err)
		if o.samples > 0 {
			m.rejected.WithLabelValues(o.protocol, reason).Add(float64(o.samples))
		}
		level := r.log.Warn
		if code >= 500 {
			level = r.log.Error
		}
		// The error names the request's series and values, never a
		// header: the token cannot reach the log.
		level("write request refused", logKeyProtocol, o.protocol, logKeyReason, reason, logKeyCode, code,
			logKeySamples, o.samples, logKeyRemote, req.RemoteAddr, logKeyErr, o.err)
		if code == http.StatusUnauthorized {
			bearer.Challenge(w, req)
		}
		writeError(w, code, o.err)
	} else {
		m.ingested.WithLabelValues(o.protocol).Add(float64(o.samples))
		w.WriteHeader(code)
	}
	m.requests.WithLabelValues(o.protocol, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(o.protocol).Observe(r.now().Sub(o.start).Seconds())
}

type errorBody struct {
	Status string `json:"status"`
	Error  string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(errorBody{Status: "error", Error: err.Error()})
}

// drain reads what is left of a body the handler did not read (a refused
// request), up to a bound, so that the connection can be reused.
func drain(req *http.Request) {
	_, _ = io.CopyN(io.Discard, req.Body, 64<<10)
}
