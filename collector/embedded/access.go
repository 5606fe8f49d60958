package embedded

import (
	"context"
	"errors"
	"fmt"

	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"

	"github.com/immune-project/immune/collector"
	"github.com/immune-project/immune/collector/ingest"
	"github.com/immune-project/immune/collector/queryapi"
)

var (
	_ ingest.Storage   = (*Store)(nil)
	_ queryapi.Storage = (*Store)(nil)
)

// Update runs fn with an appender of the TSDB, in one transaction: what fn
// appended is committed when fn returns nil, and rolled back, all of it,
// when fn returns an error (which Update returns). Updates may run
// concurrently; Close waits for them. fn must not keep app.
//
// Append errors of the TSDB wrap storage.ErrOutOfOrderSample,
// storage.ErrOutOfBounds, storage.ErrTooOldSample and
// storage.ErrDuplicateSampleForTimestamp. Samples of one series appended
// in one transaction are checked against each other only at commit, where
// one that cannot be stored (a second value at a time, an older sample
// without out-of-order window) is dropped without an error, as in
// Prometheus.
func (s *Store) Update(ctx context.Context, fn func(app storage.AppenderV2) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return fmt.Errorf("embedded: update: %w", collector.ErrClosed)
	}
	app := s.db.AppenderV2(ctx)
	if err := fn(app); err != nil {
		return errors.Join(err, app.Rollback())
	}
	if err := ctx.Err(); err != nil {
		return errors.Join(fmt.Errorf("embedded: update: %w", err), app.Rollback())
	}
	if err := app.Commit(); err != nil {
		return fmt.Errorf("embedded: update: commit: %w", err)
	}
	s.compactSoon()
	return nil
}

// View runs fn with the store's PromQL engine and its TSDB as a
// storage.Queryable, for callers that need Prometheus's own types (the
// HTTP query API). Compaction and Close wait until fn returns; fn must
// close every query and querier it opens before returning, and keep
// nothing of them.
func (s *Store) View(ctx context.Context, fn func(engine promql.QueryEngine, q storage.Queryable) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return fmt.Errorf("embedded: view: %w", collector.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("embedded: view: %w", err)
	}
	s.compactMu.RLock()
	defer s.compactMu.RUnlock()
	return fn(s.engine, s.db)
}
