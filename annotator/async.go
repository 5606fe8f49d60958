package annotator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/immune-project/immune/internal/backoff"
)

// Log attribute keys.
const (
	logKeyAnnotator = "annotator"
	logKeyKind      = "kind"
	logKeyDeploy    = "deploy"
	logKeyAttempt   = "attempt"
	logKeyBackoff   = "backoff"
	logKeyErr       = "err"
)

// AsyncOptions configure Async. The zero value is usable.
type AsyncOptions struct {
	// Name labels the metrics and logs (annotator="grafana"); "default"
	// when empty. Two Asyncs on one registry need different names.
	Name string
	// QueueSize is how many events may wait (256 when zero). An event
	// that finds the queue full is dropped.
	QueueSize int
	// MaxAttempts is how many times an event is tried (8 when zero).
	MaxAttempts int
	// MinBackoff and MaxBackoff bound the wait between attempts, doubling
	// from MinBackoff (500ms and 30s when zero), with jitter.
	MinBackoff, MaxBackoff time.Duration
	// AttemptTimeout bounds each call of the wrapped annotator (30s when
	// zero).
	AttemptTimeout time.Duration
	Registerer     prometheus.Registerer
	Logger         *slog.Logger
}

// Async wraps an Annotator so that Annotate never blocks: events go to a
// bounded queue, one worker writes them in order, retrying errors that are
// not Permanent with backoff. Events dropped because the queue was full or
// the Async closed are counted in immune_annotations_dropped_total.
type Async struct {
	next    Annotator
	opts    AsyncOptions
	log     *slog.Logger
	metrics *asyncMetrics

	mu     sync.Mutex
	closed bool
	queue  chan Event

	ctx    context.Context // the worker's; cancelled when Close gives up
	cancel context.CancelFunc
	done   chan struct{}
	// dropped counts the events the worker abandoned at Close.
	dropped int
}

var _ Annotator = (*Async)(nil)

// NewAsync starts the worker of an Async around next. Close it.
func NewAsync(next Annotator, opts AsyncOptions) *Async {
	if opts.Name == "" {
		opts.Name = "default"
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 256
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 8
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 500 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	opts.MaxBackoff = max(opts.MaxBackoff, opts.MinBackoff)
	if opts.AttemptTimeout <= 0 {
		opts.AttemptTimeout = 30 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &Async{
		next:    next,
		opts:    opts,
		log:     log.With(logKeyAnnotator, opts.Name),
		metrics: newAsyncMetrics(opts.Registerer, opts.Name),
		queue:   make(chan Event, opts.QueueSize),
		ctx:     ctx,
		cancel:  cancel,
		done:    make(chan struct{}),
	}
	go a.run()
	return a
}

// Annotate queues ev and returns at once: ErrBadEvent for an event that
// cannot be annotated, ErrQueueFull when the queue is full and ErrClosed
// after Close (the event is dropped in both cases), nil otherwise. The
// outcome of writing it shows in the metrics and the log.
func (a *Async) Annotate(_ context.Context, ev Event) error {
	if err := ev.Check(); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		a.metrics.dropped.WithLabelValues(dropClosed).Inc()
		return fmt.Errorf("annotate %s of deploy %s: %w", ev.Kind, ev.Deploy.ID, ErrClosed)
	}
	select {
	case a.queue <- ev:
		a.metrics.queued.Inc()
		return nil
	default:
		// Counted, not logged: the caller logs the error.
		a.metrics.dropped.WithLabelValues(dropQueueFull).Inc()
		return fmt.Errorf("annotate %s of deploy %s: %d events waiting: %w", ev.Kind, ev.Deploy.ID, cap(a.queue), ErrQueueFull)
	}
}

// Close stops taking events and writes those queued, until ctx ends: then
// the event being written is cancelled and the rest are dropped (and
// counted), and Close returns an error saying how many. The worker has
// stopped when Close returns.
func (a *Async) Close(ctx context.Context) error {
	a.mu.Lock()
	if !a.closed {
		a.closed = true
		close(a.queue)
	}
	a.mu.Unlock()
	select {
	case <-a.done:
	case <-ctx.Done():
		a.cancel()
		<-a.done
	}
	a.cancel()
	if a.dropped > 0 {
		return fmt.Errorf("close annotator %s: %d events not written: %w", a.opts.Name, a.dropped, ctx.Err())
	}
	return nil
}

func (a *Async) run() {
	defer close(a.done)
	for ev := range a.queue {
		a.metrics.queued.Dec()
		if a.ctx.Err() != nil {
			a.dropped++
			a.metrics.dropped.WithLabelValues(dropClosed).Inc()
			continue
		}
		a.write(ev)
	}
}

// write tries ev until it is written, fails for good, or the worker is
// cancelled.
func (a *Async) write(ev Event) {
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(a.ctx, a.opts.AttemptTimeout)
		err := a.next.Annotate(actx, ev)
		cancel()
		switch {
		case err == nil:
			a.metrics.results.WithLabelValues(resultOK).Inc()
			return
		case a.ctx.Err() != nil:
			a.dropped++
			a.metrics.dropped.WithLabelValues(dropClosed).Inc()
			return
		case Permanent(err) || attempt >= a.opts.MaxAttempts:
			a.metrics.results.WithLabelValues(resultFailed).Inc()
			a.log.Error("annotation failed", logKeyKind, string(ev.Kind), logKeyDeploy, ev.Deploy.ID,
				logKeyAttempt, attempt, logKeyErr, err.Error())
			return
		}
		wait := a.backoff(attempt)
		a.metrics.retries.Inc()
		a.log.Warn("annotation failed, retrying", logKeyKind, string(ev.Kind), logKeyDeploy, ev.Deploy.ID,
			logKeyAttempt, attempt, logKeyBackoff, wait, logKeyErr, err.Error())
		timer := time.NewTimer(wait)
		select {
		case <-a.ctx.Done():
			timer.Stop()
			a.dropped++
			a.metrics.dropped.WithLabelValues(dropClosed).Inc()
			return
		case <-timer.C:
		}
	}
}

// backoff is the wait after the given attempt: doubling from MinBackoff,
// capped at MaxBackoff, with jitter in [d/2, d].
func (a *Async) backoff(attempt int) time.Duration {
	return backoff.Jittered(a.opts.MinBackoff, a.opts.MaxBackoff, attempt)
}

// Metric label values.
const (
	resultOK      = "ok"
	resultFailed  = "failed"
	dropQueueFull = "queue_full"
	dropClosed    = "closed"
)

type asyncMetrics struct {
	results *prometheus.CounterVec
	dropped *prometheus.CounterVec
	retries prometheus.Counter
	queued  prometheus.Gauge
}

func newAsyncMetrics(reg prometheus.Registerer, name string) *asyncMetrics {
	labels := prometheus.Labels{"annotator": name}
	m := &asyncMetrics{
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "immune_annotations_total",
			Help:        "Annotation events written (result=\"ok\") or given up after a permanent error or the last retry (result=\"failed\").",
			ConstLabels: labels,
		}, []string{"result"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "immune_annotations_dropped_total",
			Help:        "Annotation events never written: the queue was full (reason=\"queue_full\") or the annotator closed first (reason=\"closed\").",
			ConstLabels: labels,
		}, []string{"reason"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name:        "immune_annotation_retries_total",
			Help:        "Annotation attempts retried after an error that was not permanent (network, HTTP 5xx).",
			ConstLabels: labels,
		}),
		queued: prometheus.NewGauge(prometheus.GaugeOpts{
			Name:        "immune_annotation_queue_length",
			Help:        "Annotation events waiting to be written.",
			ConstLabels: labels,
		}),
	}
	for _, r := range []string{resultOK, resultFailed} {
		m.results.WithLabelValues(r)
	}
	for _, r := range []string{dropQueueFull, dropClosed} {
		m.dropped.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.results, m.dropped, m.retries, m.queued)
	}
	return m
}

// Multi writes each event to every annotator in turn and joins their
// errors. Wrap each member in its own Async, so that a slow backend does
// not hold back the others and a retry does not write twice to the ones
// that succeeded.
type Multi []Annotator

var _ Annotator = Multi(nil)

// Annotate calls every annotator.
func (m Multi) Annotate(ctx context.Context, ev Event) error {
	var errs []error
	for _, a := range m {
		if err := a.Annotate(ctx, ev); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
