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
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunks"

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
	// DefaultBlockDuration is the TSDB's smallest block with a Dir
	// (Prometheus's).
	DefaultBlockDuration = 2 * time.Hour
	// EphemeralBlockDuration is the block size without a Dir: a block
	// wider than any history, so that nothing is ever compacted. Loading
	// history then takes about a third of the time (no blocks written,
	// no out-of-order chunks), and queries read one head.
	EphemeralBlockDuration = 100 * 365 * 24 * time.Hour
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
	// BlockDuration is the span of the TSDB's smallest block: default
	// DefaultBlockDuration with a Dir, EphemeralBlockDuration without.
	// Blocks are compacted up to 31 days (or a tenth of Retention if
	// smaller), as Prometheus does. Retention drops whole blocks only,
	// so an ephemeral store keeps everything until Close.
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
	// (prometheus_engine_*) metrics until Close; nil registers nothing.
	// One Registerer serves one open Store at a time: wrap it
	// (prometheus.WrapRegistererWith) for more.
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

	blockRange int64       // milliseconds: the head's chunk range, the smallest block
	reg        *registerer // nil without Options.Registerer

	// The store compacts the TSDB itself, never while a query runs: the
	// TSDB can drop a head chunk that a running query is about to read
	// (see transient); with history loads, whose head compaction writes
	// hundreds of blocks, queries failed that way.
	compactMu     sync.RWMutex // held for reading by queries, for writing by compaction
	compactc      chan struct{}
	stopCompactor context.CancelFunc
	compactorDone chan struct{}
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
	switch {
	case blockDuration > 0:
	case opts.Dir == "":
		blockDuration = EphemeralBlockDuration
	default:
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
	var reg prometheus.Registerer
	if opts.Registerer != nil {
		s.reg = &registerer{inner: opts.Registerer}
		reg = s.reg
	}
	db, err := tsdb.Open(s.dir, log, reg, topts, nil)
	if err != nil {
		if s.tempDir {
			err = errors.Join(err, os.RemoveAll(s.dir))
		}
		if s.reg != nil {
			s.reg.unregisterAll()
		}
		return nil, fmt.Errorf("embedded: open tsdb %s: %w", s.dir, err)
	}
	s.db = db
	s.blockRange = topts.MinBlockDuration
	db.DisableCompactions() // the TSDB's own loop; compactor below runs it
	cctx, cancel := context.WithCancel(context.Background())
	s.compactc = make(chan struct{}, 1)
	s.stopCompactor = cancel
	s.compactorDone = make(chan struct{})
	go s.compactor(cctx)

	eopts := promql.EngineOpts{
		Logger:               log,
		Reg:                  reg,
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
	if s.reg != nil {
		if err := s.reg.err(); err != nil {
			s.Close()
			return nil, fmt.Errorf("embedded: register metrics: %w", err)
		}
	}
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
	s.stopCompactor()
	<-s.compactorDone
	err := errors.Join(s.engine.Close(), s.db.Close())
	if s.reg != nil {
		s.reg.unregisterAll()
	}
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
	var m collector.Matrix
	warnings, err := s.exec(ctx, query,
		func() (promql.Query, error) { return s.engine.NewRangeQuery(ctx, s.db, nil, query, start, end, step) },
		func(v parser.Value) (err error) { m, err = toMatrix(v); return err })
	return m, warnings, err
}

// Query evaluates query at ts.
func (s *Store) Query(ctx context.Context, query string, ts time.Time) (collector.Vector, collector.Warnings, error) {
	var vec collector.Vector
	warnings, err := s.exec(ctx, query,
		func() (promql.Query, error) { return s.engine.NewInstantQuery(ctx, s.db, nil, query, ts) },
		func(v parser.Value) (err error) { vec, err = toVector(v); return err })
	return vec, warnings, err
}

// exec prepares and runs a query and converts its result, before closing
// the query: Close hands the result's memory back to the engine's pools.
func (s *Store) exec(ctx context.Context, query string, prepare func() (promql.Query, error), convert func(parser.Value) error) (collector.Warnings, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, fmt.Errorf("embedded: query %q: %w", query, collector.ErrClosed)
	}
	s.compactMu.RLock()
	defer s.compactMu.RUnlock()
	q, err := prepare()
	if err != nil {
		return nil, queryError(ctx, query, err)
	}
	defer q.Close()
	res := q.Exec(ctx)
	warnings := warningsOf(res, query)
	if res.Err != nil {
		return warnings, queryError(ctx, query, res.Err)
	}
	if err := convert(res.Value); err != nil {
		return warnings, fmt.Errorf("embedded: query %q: %w", query, err)
	}
	return warnings, nil
}

// compactInterval is how often the compactor looks for work besides the
// commits that wake it.
const compactInterval = time.Minute

// compactor compacts the TSDB after commits and every compactInterval,
// until ctx ends.
func (s *Store) compactor(ctx context.Context) {
	defer close(s.compactorDone)
	tick := time.NewTicker(compactInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.compactc:
		case <-tick.C:
		}
		if err := s.compact(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("embedded store compaction", logKeyDir, s.dir, logKeyErr, err)
		}
	}
}

// compact does what tsdb.DB.Compact does, one head block at a time: the
// steps that truncate the head (head and out-of-order head into blocks)
// hold compactMu, so no query runs meanwhile, and queries get their turn
// between blocks. Merging blocks and retention need no lock: blocks are
// closed only when their last reader is done.
func (s *Store) compact(ctx context.Context) error {
	h := s.db.Head()
	compacted := false
	for ctx.Err() == nil && s.headCompactable() {
		mint := h.MinTime()
		end := (mint/s.blockRange)*s.blockRange + s.blockRange
		// As DB.Compact: blocks are half-open, chunks closed, hence
		// end-1; isolation is off because appends cannot start in a
		// range this far behind the newest sample; appends that
		// started before are waited for.
		rh := tsdb.NewRangeHeadWithIsolationDisabled(h, mint, end-1)
		h.WaitForAppendersOverlapping(rh.MaxTime())
		s.compactMu.Lock()
		err := s.db.CompactHead(rh)
		s.compactMu.Unlock()
		if err != nil {
			return err
		}
		compacted = true
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if compacted {
		s.compactMu.Lock()
		err := s.db.CompactOOOHead(ctx)
		s.compactMu.Unlock()
		if err != nil {
			return err
		}
	}
	// Merges blocks and applies retention; the head is not compactable
	// any more (unless a large write came in since: then DB.Compact
	// compacts it without the lock, and a query may meet a truncated
	// chunk: ErrUnavailable).
	return s.db.Compact(ctx)
}

// headCompactable reports whether the head spans more than 1.5 block
// ranges, as tsdb's head.compactable: then a head block can be written.
func (s *Store) headCompactable() bool {
	h := s.db.Head()
	mint, maxt := h.MinTime(), h.MaxTime()
	return mint != math.MaxInt64 && maxt-mint > s.blockRange/2*3
}

// compactSoon wakes the compactor when the head can be compacted: a wake
// costs a DB.Compact, which reads every block's meta.json. Merging blocks
// and retention wait for the minute's tick.
func (s *Store) compactSoon() {
	if !s.headCompactable() {
		return
	}
	select {
	case s.compactc <- struct{}{}:
	default:
	}
}

// transient: head compaction may drop a head chunk that a running query
// is about to read; the TSDB then fails the read ("cannot populate chunk
// …", a test of Prometheus's own says so). The compactor keeps compaction
// and queries apart; should it happen anyway, the error says unavailable,
// not bad query.
func transient(err error) bool {
	var corrupt *chunks.CorruptionErr
	return errors.As(err, &corrupt) || errors.Is(err, storage.ErrNotFound) ||
		strings.Contains(err.Error(), "cannot populate chunk")
}

// queryError maps the engine's errors to the collector's sentinels.
func queryError(ctx context.Context, query string, err error) error {
	var (
		timeout    promql.ErrQueryTimeout
		canceled   promql.ErrQueryCanceled
		samples    promql.ErrTooManySamples
		storageErr promql.ErrStorage
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
	case errors.As(err, &storageErr), transient(err):
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
