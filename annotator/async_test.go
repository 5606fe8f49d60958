package annotator_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/immune-project/immune/annotator"
	"github.com/immune-project/immune/deploy"
)

// scripted is an Annotator that answers from a script of errors, then nil,
// and records every call.
type scripted struct {
	mu      sync.Mutex
	errs    []error
	calls   []annotator.Event
	at      []time.Time
	block   chan struct{} // when set, calls wait on it or their context
	written []annotator.Event
}

var _ annotator.Annotator = (*scripted)(nil)

func (s *scripted) Annotate(ctx context.Context, ev annotator.Event) error {
	if s.block != nil {
		select {
		case <-s.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, ev)
	s.at = append(s.at, time.Now())
	if len(s.errs) > 0 {
		err := s.errs[0]
		s.errs = s.errs[1:]
		if err != nil {
			return err
		}
	}
	s.written = append(s.written, ev)
	return nil
}

func event(kind annotator.Kind, id string) annotator.Event {
	return annotator.Event{
		Kind: kind, At: time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC),
		Deploy:  deploy.Deploy{ID: id, Service: "checkout", Version: "v2", Time: time.Date(2026, 11, 25, 2, 50, 0, 0, time.UTC)},
		Verdict: map[annotator.Kind]string{annotator.KindVerdict: "fail"}[kind],
	}
}

var (
	errDown = fmt.Errorf("post annotation: HTTP 503: %w", annotator.ErrUnavailable)
	errBad  = fmt.Errorf("post annotation: HTTP 400: %w", annotator.ErrRejected)
	errAuth = fmt.Errorf("post annotation: HTTP 401: %w", annotator.ErrUnauthorized)
)

func TestAsyncRetries(t *testing.T) {
	for _, tc := range []struct {
		name        string
		errs        []error
		maxAttempts int
		wantCalls   int
		wantResult  string
		wantRetries float64
	}{
		{"first try", nil, 5, 1, "ok", 0},
		{"5xx retried then ok", []error{errDown, errDown}, 5, 3, "ok", 2},
		{"400 not retried", []error{errBad}, 5, 1, "failed", 0},
		{"401 not retried", []error{errAuth}, 5, 1, "failed", 0},
		{"bad event not retried", []error{fmt.Errorf("x: %w", annotator.ErrBadEvent)}, 5, 1, "failed", 0},
		{"unknown errors retried", []error{errors.New("disk full")}, 5, 2, "ok", 1},
		{"gives up after the last attempt", []error{errDown, errDown, errDown, errDown}, 3, 3, "failed", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				reg := prometheus.NewPedanticRegistry()
				s := &scripted{errs: tc.errs}
				a := annotator.NewAsync(s, annotator.AsyncOptions{
					Name: "test", MaxAttempts: tc.maxAttempts, MinBackoff: time.Second, MaxBackoff: 4 * time.Second, Registerer: reg,
				})
				if err := a.Annotate(t.Context(), event(annotator.KindDeploy, "d1")); err != nil {
					t.Fatalf("Annotate: %v", err)
				}
				if err := a.Close(t.Context()); err != nil {
					t.Fatalf("Close: %v", err)
				}
				if len(s.calls) != tc.wantCalls {
					t.Errorf("calls = %d, want %d", len(s.calls), tc.wantCalls)
				}
				// Backoff doubles from 1s with jitter in [d/2, d].
				for i := 1; i < len(s.at); i++ {
					d := time.Second << (i - 1)
					d = min(d, 4*time.Second)
					gap := s.at[i].Sub(s.at[i-1])
					if gap < d/2 || gap > d {
						t.Errorf("wait before attempt %d = %v, want in [%v, %v]", i+1, gap, d/2, d)
					}
				}
				if got := metricValue(t, reg, "immune_annotations_total", tc.wantResult); got != 1 {
					t.Errorf("immune_annotations_total{result=%q} = %v, want 1", tc.wantResult, got)
				}
				if got := metricValue(t, reg, "immune_annotation_retries_total", ""); got != tc.wantRetries {
					t.Errorf("retries = %v, want %v", got, tc.wantRetries)
				}
			})
		})
	}
}

// metricValue returns the value of a metric with the given result or
// reason label ("" for none).
func metricValue(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := label == ""
			for _, lp := range m.GetLabel() {
				if (lp.GetName() == "result" || lp.GetName() == "reason") && lp.GetValue() == label {
					match = true
				}
			}
			if !match {
				continue
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s{%s}", name, label)
	return 0
}

func TestAsyncKeepsOrder(t *testing.T) {
	s := &scripted{errs: []error{nil, errDown}}
	a := annotator.NewAsync(s, annotator.AsyncOptions{MinBackoff: time.Millisecond})
	kinds := []annotator.Kind{annotator.KindDeploy, annotator.KindVerdict, annotator.KindRevert, annotator.KindEnd}
	for _, k := range kinds {
		if err := a.Annotate(t.Context(), event(k, "d1")); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	var got []annotator.Kind
	for _, ev := range s.written {
		got = append(got, ev.Kind)
	}
	if fmt.Sprint(got) != fmt.Sprint(kinds) {
		t.Errorf("written in order %v, want %v", got, kinds)
	}
}

func TestAsyncNeverBlocks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewPedanticRegistry()
		s := &scripted{block: make(chan struct{})}
		logs := &syncBuffer{}
		a := annotator.NewAsync(s, annotator.AsyncOptions{QueueSize: 2, Registerer: reg, Logger: slog.New(slog.NewTextHandler(logs, nil))})
		// The first event is taken by the worker, which blocks; two wait;
		// the fourth finds the queue full.
		var errs []error
		for i := range 4 {
			errs = append(errs, a.Annotate(t.Context(), event(annotator.KindDeploy, fmt.Sprint("d", i))))
			synctest.Wait()
		}
		// The caller logs the error it gets: Async does not log it twice.
		if l := logs.String(); l != "" {
			t.Errorf("Annotate logged: %s", l)
		}
		for i, err := range errs[:3] {
			if err != nil {
				t.Errorf("event %d: %v", i, err)
			}
		}
		if !errors.Is(errs[3], annotator.ErrQueueFull) {
			t.Errorf("event 3: %v, want ErrQueueFull", errs[3])
		}
		if got := metricValue(t, reg, "immune_annotation_queue_length", ""); got != 2 {
			t.Errorf("queue length = %v, want 2", got)
		}
		// Close gives up after 10s: the blocked call is cancelled and the two
		// queued events are dropped.
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		err := a.Close(ctx)
		if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "3 events not written") {
			t.Errorf("Close = %v, want 3 events not written: context deadline exceeded", err)
		}
		if got := metricValue(t, reg, "immune_annotations_dropped_total", "queue_full"); got != 1 {
			t.Errorf("dropped{queue_full} = %v, want 1", got)
		}
		if got := metricValue(t, reg, "immune_annotations_dropped_total", "closed"); got != 3 {
			t.Errorf("dropped{closed} = %v, want 3", got)
		}
		if err := a.Annotate(t.Context(), event(annotator.KindEnd, "d9")); !errors.Is(err, annotator.ErrClosed) {
			t.Errorf("Annotate after Close = %v, want ErrClosed", err)
		}
	})
}

func TestAsyncDrainsOnClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &scripted{errs: []error{errDown, errDown}}
		a := annotator.NewAsync(s, annotator.AsyncOptions{MinBackoff: time.Second})
		for i := range 3 {
			if err := a.Annotate(t.Context(), event(annotator.KindDeploy, fmt.Sprint("d", i))); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		if err := a.Close(ctx); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if len(s.written) != 3 {
			t.Errorf("written %d events, want 3", len(s.written))
		}
	})
}

func TestAsyncRejectsBadEvents(t *testing.T) {
	a := annotator.NewAsync(&scripted{}, annotator.AsyncOptions{})
	defer a.Close(t.Context())
	for _, ev := range []annotator.Event{
		{Kind: "bogus", At: time.Unix(1, 0), Deploy: deploy.Deploy{ID: "d"}},
		{Kind: annotator.KindDeploy, At: time.Unix(1, 0)},
		{Kind: annotator.KindDeploy, Deploy: deploy.Deploy{ID: "d"}},
		{Kind: annotator.KindVerdict, At: time.Unix(1, 0), Deploy: deploy.Deploy{ID: "d"}},
		{Kind: annotator.KindEnd, At: time.Unix(1, 0), Deploy: deploy.Deploy{ID: "d"}, Verdict: "maybe"},
	} {
		if err := a.Annotate(t.Context(), ev); !errors.Is(err, annotator.ErrBadEvent) {
			t.Errorf("Annotate(%+v) = %v, want ErrBadEvent", ev, err)
		}
	}
}

func TestAsyncMetricsNames(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	a := annotator.NewAsync(&scripted{}, annotator.AsyncOptions{Name: "grafana", Registerer: reg})
	b := annotator.NewAsync(&scripted{}, annotator.AsyncOptions{Name: "store", Registerer: reg})
	if err := a.Annotate(t.Context(), event(annotator.KindDeploy, "d1")); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP immune_annotations_total Annotation events written (result="ok") or given up after a permanent error or the last retry (result="failed").
# TYPE immune_annotations_total counter
immune_annotations_total{annotator="grafana",result="failed"} 0
immune_annotations_total{annotator="grafana",result="ok"} 1
immune_annotations_total{annotator="store",result="failed"} 0
immune_annotations_total{annotator="store",result="ok"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "immune_annotations_total"); err != nil {
		t.Error(err)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

func TestMulti(t *testing.T) {
	a, b := &scripted{errs: []error{errBad}}, &scripted{}
	err := annotator.Multi{a, b}.Annotate(t.Context(), event(annotator.KindDeploy, "d1"))
	if !errors.Is(err, annotator.ErrRejected) {
		t.Errorf("Multi = %v, want the first annotator's error", err)
	}
	if len(b.written) != 1 {
		t.Errorf("second annotator wrote %d events, want 1", len(b.written))
	}
}

// syncBuffer is a log destination safe for the worker and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
