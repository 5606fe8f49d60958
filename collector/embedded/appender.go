package embedded

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"

	"github.com/immune-project/immune/collector"
)

// SeriesRef identifies a series to the store. Append returns it; passing it
// back with the same labels skips the label lookup. 0 means unknown.
type SeriesRef = storage.SeriesRef

// Appender adds samples to the store, committing on its own every
// Options.AppendBatch samples and on Commit. Use one Appender from one
// goroutine; open as many as needed. Samples of a series must come in time
// order unless they fall in the out-of-order window.
//
// Append errors of the TSDB come wrapped: test them with errors.Is against
// storage.ErrOutOfOrderSample, storage.ErrOutOfBounds,
// storage.ErrTooOldSample and storage.ErrDuplicateSampleForTimestamp.
type Appender struct {
	s     *Store
	ctx   context.Context
	app   storage.AppenderV2
	batch int
	n     int // samples since the last commit
}

// Appender returns a new Appender. ctx bounds its commits.
func (s *Store) Appender(ctx context.Context) *Appender {
	return &Appender{s: s, ctx: ctx, batch: s.batch}
}

// Append adds the sample (t in milliseconds since the Unix epoch, v) to the
// series ls, or to the series ref when ref is not 0. ls must be sorted and
// hold the metric name; labels.FromStrings and labels.Builder make such
// sets.
func (a *Appender) Append(ref SeriesRef, ls labels.Labels, t int64, v float64) (SeriesRef, error) {
	a.s.mu.RLock()
	defer a.s.mu.RUnlock()
	if a.s.closed {
		return 0, fmt.Errorf("embedded: append: %w", collector.ErrClosed)
	}
	if a.app == nil {
		a.app = a.s.db.AppenderV2(a.ctx)
	}
	ref, err := a.app.Append(ref, ls, 0, t, v, nil, nil, storage.AOptions{})
	if err != nil {
		return 0, fmt.Errorf("embedded: append %s @%d: %w", ls, t, err)
	}
	a.n++
	if a.n >= a.batch {
		if err := a.commit(); err != nil {
			return 0, err
		}
	}
	return ref, nil
}

// Commit stores the samples appended since the last commit. The Appender
// can be used again afterwards.
func (a *Appender) Commit() error {
	a.s.mu.RLock()
	defer a.s.mu.RUnlock()
	if a.s.closed {
		return fmt.Errorf("embedded: commit: %w", collector.ErrClosed)
	}
	return a.commit()
}

func (a *Appender) commit() error {
	if a.app == nil {
		return nil
	}
	app := a.app
	a.app, a.n = nil, 0
	if err := a.ctx.Err(); err != nil {
		return errors.Join(fmt.Errorf("embedded: commit: %w", err), app.Rollback())
	}
	if err := app.Commit(); err != nil {
		return fmt.Errorf("embedded: commit: %w", err)
	}
	a.s.compactSoon()
	return nil
}

// Rollback drops the samples appended since the last commit.
func (a *Appender) Rollback() error {
	a.s.mu.RLock()
	defer a.s.mu.RUnlock()
	if a.app == nil || a.s.closed {
		a.app = nil
		return nil
	}
	app := a.app
	a.app, a.n = nil, 0
	if err := app.Rollback(); err != nil {
		return fmt.Errorf("embedded: rollback: %w", err)
	}
	return nil
}

// Write stores whole series in one transaction: all of them, or, on any
// error, none. Labels with empty values are dropped; every series needs a
// metric name. Samples may come in any order; two samples of a series at
// the same time must have the same value (then one is stored).
//
// The TSDB checks a sample against the stored ones when it is appended,
// except an out-of-order sample (older than the series' newest) at a time
// already stored: that one is taken without a word, and which of the two
// values a query sees is the TSDB's business (today: the later write).
func (s *Store) Write(ctx context.Context, series []collector.Series) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return fmt.Errorf("embedded: write: %w", collector.ErrClosed)
	}
	app := s.db.AppenderV2(ctx)
	fail := func(err error) error {
		return errors.Join(err, app.Rollback())
	}
	b := labels.NewBuilder(labels.EmptyLabels())
	for i, sr := range series {
		if i%64 == 0 {
			if err := ctx.Err(); err != nil {
				return fail(fmt.Errorf("embedded: write: %w", err))
			}
		}
		ls, err := seriesLabels(b, sr.Labels)
		if err != nil {
			return fail(err)
		}
		samples := sr.Samples
		if !slices.IsSortedFunc(samples, compareSamples) {
			samples = slices.Clone(samples)
			slices.SortStableFunc(samples, compareSamples)
		}
		var ref SeriesRef
		for j, smp := range samples {
			t := smp.T.UnixMilli()
			if j > 0 && t == samples[j-1].T.UnixMilli() {
				// The TSDB checks a sample against committed ones only.
				if math.Float64bits(smp.V) == math.Float64bits(samples[j-1].V) {
					continue
				}
				return fail(fmt.Errorf("embedded: write %s @%s: %w", ls, smp.T.UTC().Format("2006-01-02T15:04:05.000Z"),
					storage.NewDuplicateFloatErr(t, samples[j-1].V, smp.V)))
			}
			ref, err = app.Append(ref, ls, 0, t, smp.V, nil, nil, storage.AOptions{})
			if err != nil {
				return fail(fmt.Errorf("embedded: write %s @%s: %w", ls, smp.T.UTC().Format("2006-01-02T15:04:05.000Z"), err))
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return fail(fmt.Errorf("embedded: write: %w", err))
	}
	if err := app.Commit(); err != nil {
		return fmt.Errorf("embedded: write: commit: %w", err)
	}
	s.compactSoon()
	return nil
}

func compareSamples(a, b collector.Sample) int { return cmp.Compare(a.T.UnixMilli(), b.T.UnixMilli()) }

// seriesLabels turns a collector label set into a TSDB one, checking it.
func seriesLabels(b *labels.Builder, l collector.Labels) (labels.Labels, error) {
	b.Reset(labels.EmptyLabels())
	for k, v := range l {
		if v == "" {
			continue
		}
		if !model.UTF8Validation.IsValidLabelName(k) {
			return labels.EmptyLabels(), fmt.Errorf("embedded: write %s: invalid label name %q", l, k)
		}
		b.Set(k, v)
	}
	ls := b.Labels()
	if ls.Get(model.MetricNameLabel) == "" {
		return labels.EmptyLabels(), fmt.Errorf("embedded: write %s: no metric name", l)
	}
	return ls, nil
}
