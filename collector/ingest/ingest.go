// Package ingest takes samples over HTTP into the embedded store: the
// Prometheus remote-write receiver (POST /api/v1/write, protocols 1.0 and
// 2.0) and push (POST /api/v1/push: Prometheus text, OpenMetrics,
// delimited protobuf as a Pushgateway takes them, and JSON samples).
//
// Every request is all or nothing: it is decoded and checked in full
// (limits, labels, timestamps) before the first sample is appended, and
// its samples are committed in one transaction of the store, or none of
// them. Requests that can never succeed get a 4xx answer, so that senders
// do not retry them; a 5xx answer (the store failed, or is closed) means
// nothing was stored and a retry can succeed.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/storage"

	"github.com/immune-project/immune/internal/bearer"
)

// Storage is where the receiver appends: *embedded.Store.
type Storage interface {
	// Update runs fn with an appender and commits what it appended when
	// fn returns nil, or rolls all of it back when fn returns an error.
	// A series reference the appender returned must name the same series
	// (or none) for the storage's life: the receiver passes it back.
	Update(ctx context.Context, fn func(app storage.AppenderV2) error) error
}

// Default limits (Limits' zero values).
const (
	DefaultMaxBodyBytes         = 32 << 20 // Prometheus's own receiver's bound on a decoded request
	DefaultMaxSamplesPerRequest = 100_000
	DefaultMaxSeriesPerRequest  = 100_000
	DefaultMaxLabelsPerSeries   = 64
	DefaultMaxLabelNameLength   = 1024
	DefaultMaxLabelValueLength  = 4096
	DefaultMaxAhead             = 10 * time.Minute // as Prometheus's receiver
)

// Limits bound what one request may hold. A request over a limit is
// refused as a whole (400, or 413 for the body size) and its samples are
// counted as rejected for that reason. For each field, 0 means the
// default and a negative value means no limit.
type Limits struct {
	// MaxBodyBytes bounds the body as sent and, for remote write, its
	// snappy-decoded size.
	MaxBodyBytes int64
	// MaxSamplesPerRequest bounds the samples (floats and native
	// histograms) of a request.
	MaxSamplesPerRequest int
	// MaxSeriesPerRequest bounds the series of a request: the time series
	// entries of a remote-write request (Prometheus sends one per sample
	// with protocol 1.0), the distinct label sets of a push.
	MaxSeriesPerRequest int
	// MaxLabelsPerSeries bounds the labels of a series, its name included.
	MaxLabelsPerSeries int
	// MaxLabelNameLength and MaxLabelValueLength bound the bytes of a
	// label name and of a label value (the metric name is a value).
	MaxLabelNameLength  int
	MaxLabelValueLength int
	// MaxAhead is how far past the receiver's clock a sample's timestamp
	// may be.
	MaxAhead time.Duration
}

// withDefaults fills zero fields with the defaults and turns negative ones
// into "no limit".
func (l Limits) withDefaults() Limits {
	const none = 1<<62 - 1
	i64 := func(v *int64, def int64) {
		switch {
		case *v == 0:
			*v = def
		case *v < 0:
			*v = none
		}
	}
	i := func(v *int, def int) {
		switch {
		case *v == 0:
			*v = def
		case *v < 0:
			*v = none
		}
	}
	i64(&l.MaxBodyBytes, DefaultMaxBodyBytes)
	i(&l.MaxSamplesPerRequest, DefaultMaxSamplesPerRequest)
	i(&l.MaxSeriesPerRequest, DefaultMaxSeriesPerRequest)
	i(&l.MaxLabelsPerSeries, DefaultMaxLabelsPerSeries)
	i(&l.MaxLabelNameLength, DefaultMaxLabelNameLength)
	i(&l.MaxLabelValueLength, DefaultMaxLabelValueLength)
	switch {
	case l.MaxAhead == 0:
		l.MaxAhead = DefaultMaxAhead
	case l.MaxAhead < 0:
		l.MaxAhead = 100 * 365 * 24 * time.Hour
	}
	return l
}

// Options configure a Receiver. The zero value works: default limits, no
// authentication, the system clock, no logs, no metrics.
type Options struct {
	Limits Limits
	// TokenFile holds the bearer token that write requests must present
	// ("Authorization: Bearer <token>"); empty: no authentication. The
	// file is read once, by New.
	TokenFile string
	// Now is the clock: the time of pushed samples without a timestamp,
	// and the reference of Limits.MaxAhead. Default time.Now.
	Now func() time.Time
	// SeriesCacheSize is the number of remote-write series whose checked
	// labels and store reference the receiver remembers (a series sent
	// again skips decoding, checks and lookup). Only remote write 1.0
	// requests of float samples use it (the wire decoder); 2.0 requests
	// and 1.0 requests with native histograms are decoded in full. Default
	// DefaultSeriesCacheSize, negative for none. About 200 bytes a
	// series, plus its labels.
	SeriesCacheSize int
	// Logger receives a line per refused request (never a token);
	// nil discards.
	Logger *slog.Logger
	// Registerer receives the receiver's metrics (immune_ingest_*,
	// immune_ingested_samples_total, immune_rejected_samples_total); nil
	// registers nothing.
	Registerer prometheus.Registerer
}

// Receiver serves the write endpoints. It is safe for concurrent use:
// every request appends in a transaction of its own.
type Receiver struct {
	st     Storage
	limits Limits
	token  *bearer.Token
	now    func() time.Time
	log    *slog.Logger
	m      *metrics
	cache  *seriesCache // nil: none
}

// New returns a Receiver that appends into st.
func New(st Storage, opts Options) (*Receiver, error) {
	if st == nil {
		return nil, errors.New("ingest: no storage")
	}
	token, err := bearer.Load(opts.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	r := &Receiver{
		st:     st,
		limits: opts.Limits.withDefaults(),
		token:  token,
		now:    opts.Now,
		log:    opts.Logger,
		cache:  newSeriesCache(opts.SeriesCacheSize),
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.log == nil {
		r.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if r.m, err = newMetrics(opts.Registerer); err != nil {
		return nil, fmt.Errorf("ingest: register metrics: %w", err)
	}
	return r, nil
}

// Register adds the write endpoints to mux: POST /api/v1/write (remote
// write) and POST /api/v1/push.
func (r *Receiver) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/write", r.serveWrite)
	mux.HandleFunc("POST /api/v1/push", r.servePush)
}
