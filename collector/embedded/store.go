// Package embedded is the default collector.Source: Prometheus's own TSDB
// and PromQL engine, used as a library, in a directory of this process.
//
// Open a Store, write samples through an Appender (live ingestion) or
// Write (whole series, all or nothing: the history loaders), and query it
// with the same PromQL as a Prometheus server.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/tsdb"

	"github.com/immune-project/immune/collector"
)

var _ collector.Source = (*Store)(nil)

// Defaults of Options.
const (
	// DefaultOutOfOrderWindow lets history of any age be loaded behind
	// newer data (history files in any order, backfill behind live
	// ingestion): a sample is accepted if it is at most this much older
	// than the newest sample in the store.
	DefaultOutOfOrderWindow = 100 * 365 * 24 * time.Hour
	// DefaultBlockDuration is the TSDB's block size (Prometheus's).
	DefaultBlockDuration = 2 * time.Hour
	// DefaultQueryTimeout bounds one query's evaluation (Prometheus's).
	DefaultQueryTimeout = 2 * time.Minute
	// DefaultMaxSamples bounds the samples one query may hold in memory
	// at once (Prometheus's --query.max-samples).
	DefaultMaxSamples = 50_000_000
	// DefaultLookbackDelta is how far back an instant selector looks for
	// a sample (Prometheus's).
	DefaultLookbackDelta = 5 * time.Minute
	// DefaultAppendBatch is how many samples an Appender collects before
	// it commits on its own.
	DefaultAppendBatch = 10_000
)

// Options configure a Store. The zero value is a working ephemeral store.
type Options struct {
	// Dir holds the TSDB (blocks, WAL). Empty: a temporary directory,
	// without a WAL, removed by Close. With a Dir, every committed sample
	// is in the WAL and survives a restart.
	Dir string
	// Retention drops blocks older than this, measured from the newest
	// block. 0 keeps everything (history loaded for a backtest is
	// usually years old).
	Retention time.Duration
	// OutOfOrderWindow is how much older than the newest sample a sample
	// may be and still be stored. 0 means DefaultOutOfOrderWindow;
	// negative disables out-of-order ingestion (then a series only takes
	// samples newer than its last, and the store as a whole only takes
	// samples newer than an hour before its newest one).
	OutOfOrderWindow time.Duration
	// BlockDuration is the span of the TSDB's smallest block, default
	// DefaultBlockDuration. Blocks are compacted up to 31 days (or a
	// tenth of Retention if smaller), as Prometheus does.
	BlockDuration time.Duration
	// QueryTimeout bounds one query's evaluation, default
	// DefaultQueryTimeout.
	QueryTimeout time.Duration
	// MaxSamples bounds the samples one query holds in memory, default
	// DefaultMaxSamples.
	MaxSamples int
	// LookbackDelta is how far back an instant selector looks, default
	// DefaultLookbackDelta.
	LookbackDelta time.Duration
	// AppendBatch is the number of samples after which an Appender
	// commits on its own, default DefaultAppendBatch.
	AppendBatch int
	// Logger receives the TSDB's and the engine's logs; nil discards.
	Logger *slog.Logger
	// Registerer receives the TSDB's (prometheus_tsdb_*) and the engine's
	// (prometheus_engine_*) metrics; nil registers nothing. One Registerer
	// serves one Store: wrap it (prometheus.WrapRegistererWith) for more.
	Registerer prometheus.Registerer
}

// Log attribute keys.
const (
	logKeyDir = "dir"
	logKeyErr = "err"
)

// Store is the embedded TSDB and PromQL engine. It is safe for concurrent
// use; Close it to release the directory, files and goroutines.
type Store struct {
	db      *tsdb.DB
	engine  *promql.Engine
	dir     string
	tempDir bool
	batch   int
	log     *slog.Logger

	mu     sync.RWMutex // held for reading by queries and appends, for writing by Close
	closed bool
}

// Open opens (or creates) the store in opts.Dir, replaying its WAL, or an
// empty ephemeral store when opts.Dir is empty. Replaying a large WAL takes
// time and cannot be cancelled.
func Open(opts Options) (*Store, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Retention < 0 {
		return nil, fmt.Errorf("embedded: retention %v is negative", opts.Retention)
	}
	topts := tsdb.DefaultOptions()
	topts.RetentionDuration = opts.Retention.Milliseconds()
	blockDuration := opts.BlockDuration
	if blockDuration <= 0 {
		blockDuration = DefaultBlockDuration
	}
	maxBlock := 31 * 24 * time.Hour
	if opts.Retention > 0 && opts.Retention/10 < maxBlock {
		maxBlock = opts.Retention / 10
	}
	maxBlock = max(maxBlock, blockDuration)
	topts.MinBlockDuration = blockDuration.Milliseconds()
	topts.MaxBlockDuration = maxBlock.Milliseconds()
	switch ooo := opts.OutOfOrderWindow; {
	case ooo == 0:
		topts.OutOfOrderTimeWindow = DefaultOutOfOrderWindow.Milliseconds()
	case ooo > 0:
		topts.OutOfOrderTimeWindow = ooo.Milliseconds()
	}

	s := &Store{dir: opts.Dir, log: log, batch: opts.AppendBatch}
	if s.batch <= 0 {
		s.batch = DefaultAppendBatch
	}
	if s.dir == "" {
		dir, err := os.MkdirTemp("", "immune-tsdb-")
		if err != nil {
			return nil, fmt.Errorf("embedded: %w", err)
		}
		s.dir, s.tempDir = dir, true
		// Nothing could replay a WAL of a directory that Close removes.
		topts.WALSegmentSize = -1
	}
	db, err := tsdb.Open(s.dir, log, opts.Registerer, topts, nil)
	if err != nil {
		if s.tempDir {
			err = errors.Join(err, os.RemoveAll(s.dir))
		}
		return nil, fmt.Errorf("embedded: open tsdb %s: %w", s.dir, err)
	}
	s.db = db

	eopts := promql.EngineOpts{
		Logger:               log,
		Reg:                  opts.Registerer,
		MaxSamples:           opts.MaxSamples,
		Timeout:              opts.QueryTimeout,
		LookbackDelta:        opts.LookbackDelta,
		EnableAtModifier:     true,
		EnableNegativeOffset: true,
	}
	if eopts.MaxSamples <= 0 {
		eopts.MaxSamples = DefaultMaxSamples
	}
	if eopts.Timeout <= 0 {
		eopts.Timeout = DefaultQueryTimeout
	}
	if eopts.LookbackDelta <= 0 {
		eopts.LookbackDelta = DefaultLookbackDelta
	}
	s.engine = promql.NewEngine(eopts)
	log.Debug("embedded store open", logKeyDir, s.dir)
	return s, nil
}

// Dir is the store's directory (a temporary one when none was configured).
func (s *Store) Dir() string { return s.dir }

// Close waits for running queries, closes the TSDB (flushing the WAL) and
// removes the directory if it was temporary. Later calls return nil; later
// queries and appends return collector.ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	err := errors.Join(s.engine.Close(), s.db.Close())
	if s.tempDir {
		err = errors.Join(err, os.RemoveAll(s.dir))
	}
	if err != nil {
		s.log.Warn("embedded store close", logKeyDir, s.dir, logKeyErr, err)
		return fmt.Errorf("embedded: close: %w", err)
	}
	return nil
}

// QueryRange evaluates query at every step from start to end.
func (s *Store) QueryRange(ctx context.Context, query string, start, end time.Time, step time.Duration) (collector.Matrix, collector.Warnings, error) {
	if err := collector.CheckRange(start, end, step); err != nil {
		return nil, nil, fmt.Errorf("embedded: query %q: %w", query, err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, nil, fmt.Errorf("embedded: query %q: %w", query, collector.ErrClosed)
	}
	q, err := s.engine.NewRangeQuery(ctx, s.db, nil, query, start, end, step)
	if err != nil {
		return nil, nil, queryError(ctx, query, err)
	}
	defer q.Close()
	res := q.Exec(ctx)
	warnings := warningsOf(res, query)
	if res.Err != nil {
		return nil, warnings, queryError(ctx, query, res.Err)
	}
	m, err := toMatrix(res.Value)
	if err != nil {
		return nil, warnings, fmt.Errorf("embedded: query %q: %w", query, err)
	}
	return m, warnings, nil
}

// Query evaluates query at ts.
func (s *Store) Query(ctx context.Context, query string, ts time.Time) (collector.Vector, collector.Warnings, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, nil, fmt.Errorf("embedded: query %q: %w", query, collector.ErrClosed)
	}
	q, err := s.engine.NewInstantQuery(ctx, s.db, nil, query, ts)
	if err != nil {
		return nil, nil, queryError(ctx, query, err)
	}
	defer q.Close()
	res := q.Exec(ctx)
	warnings := warningsOf(res, query)
	if res.Err != nil {
		return nil, warnings, queryError(ctx, query, res.Err)
	}
	v, err := toVector(res.Value)
	if err != nil {
		return nil, warnings, fmt.Errorf("embedded: query %q: %w", query, err)
	}
	return v, warnings, nil
}

// queryError maps the engine's errors to the collector's sentinels.
func queryError(ctx context.Context, query string, err error) error {
	var (
		timeout  promql.ErrQueryTimeout
		canceled promql.ErrQueryCanceled
		samples  promql.ErrTooManySamples
		storage  promql.ErrStorage
	)
	var kinds []error
	switch {
	case ctx.Err() != nil:
		// The caller's deadline or cancellation: say so, whatever the
		// engine made of it.
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			kinds = append(kinds, collector.ErrTimeout)
		}
		kinds = append(kinds, ctx.Err())
	case errors.As(err, &timeout):
		kinds = append(kinds, collector.ErrTimeout)
	case errors.As(err, &canceled):
		kinds = append(kinds, context.Canceled)
	case errors.As(err, &samples):
		kinds = append(kinds, collector.ErrTooManySamples)
	case errors.As(err, &storage):
		kinds = append(kinds, collector.ErrUnavailable)
	default:
		// Parse and type errors while preparing; at run time, the errors
		// Prometheus's API answers with 422 (many-to-many matching,
		// duplicate label sets, …).
		kinds = append(kinds, collector.ErrBadQuery)
	}
	return &queryErr{query: query, kinds: kinds, err: err}
}

// queryErr reads `embedded: query "…": <kinds>: <engine's message>` and
// matches the kinds and the engine's error.
type queryErr struct {
	query string
	kinds []error
	err   error
}

func (e *queryErr) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "embedded: query %q: ", e.query)
	for _, k := range e.kinds {
		b.WriteString(k.Error())
		b.WriteString(": ")
	}
	b.WriteString(e.err.Error())
	return b.String()
}

func (e *queryErr) Unwrap() []error { return append(slices.Clip(e.kinds), e.err) }
