package analysis

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/immune-project/immune/collector"
	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/detector"
)

// TestWatchMatchesReplay: taking the looks one at a time gives Replay's
// decision, at the same look.
func TestWatchMatchesReplay(t *testing.T) {
	from := t0.Add(-24 * time.Hour)
	f := parseRules(t, beforeRules)
	for _, shift := range []float64{0, -20} {
		t.Run(fmt.Sprint(shift), func(t *testing.T) {
			src := store(t, series(from, 24*12+24+1, noise(1, from, 100, 5, shift), "__name__", "conversion"))
			d := deploy.Deploy{ID: "d1", Time: t0}
			want, err := Replay(context.Background(), src, f, d, nil)
			if err != nil {
				t.Fatal(err)
			}
			w := NewWatch(f, d, 30*time.Second)
			if got := w.Due(); !got.Equal(t0.Add(step + 30*time.Second)) {
				t.Fatalf("first look due %v, want deploy+step+delay", got)
			}
			var got Decision
			for !w.Done() {
				var judged bool
				got, judged, err = w.Look(context.Background(), src)
				if err != nil || !judged {
					t.Fatalf("look %d: judged %v, %v", w.Next()-1, judged, err)
				}
			}
			if got.Verdict.Outcome != want.Verdict.Outcome || got.Looks != want.Looks || !got.DecidedAt.Equal(want.DecidedAt) {
				t.Fatalf("watch: %v at look %d, replay: %v at look %d", got.Verdict.Outcome, got.Looks, want.Verdict.Outcome, want.Looks)
			}
		})
	}
}

// downSource fails as a whole, like an unreachable Prometheus.
type downSource struct{ collector.Source }

func (downSource) QueryRange(context.Context, string, time.Time, time.Time, time.Duration) (collector.Matrix, collector.Warnings, error) {
	return nil, nil, fmt.Errorf("query: %w", collector.ErrUnavailable)
}

// TestWatchSourceDown: looks whose source is down are skipped, never
// judged; a window without a judged look ends inconclusive.
func TestWatchSourceDown(t *testing.T) {
	f := parseRules(t, beforeRules)
	w := NewWatch(f, deploy.Deploy{ID: "d1", Time: t0}, 0)
	for !w.Done() {
		dec, judged, err := w.Look(context.Background(), downSource{})
		if err != nil || judged {
			t.Fatalf("look against a down source: judged %v, err %v", judged, err)
		}
		if dec.Verdict.Outcome != detector.Inconclusive {
			t.Fatalf("verdict %v with the source down", dec.Verdict.Outcome)
		}
	}
	if w.Skipped != 24 || w.LastError == nil {
		t.Fatalf("skipped %d looks (last error %v), want 24", w.Skipped, w.LastError)
	}
}

// TestSeries: the chart series are the canary after the deploy and the
// lookback before it, at the step's instants.
func TestSeries(t *testing.T) {
	from := t0.Add(-24 * time.Hour)
	f := parseRules(t, beforeRules)
	src := store(t, series(from, 24*12+24+1, noise(1, from, 100, 5, 0), "__name__", "conversion"))
	ks, err := Series(context.Background(), src, f, deploy.Deploy{ID: "d1", Time: t0}, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(ks) != 1 || ks[0].Err != "" {
		t.Fatalf("series: %+v", ks)
	}
	c, b := ks[0].Canary, ks[0].Baseline
	if len(c) != 12 || !c[0].T.Equal(t0.Add(step)) || !c[11].T.Equal(t0.Add(time.Hour)) {
		t.Fatalf("canary: %d points from %v", len(c), c[0].T)
	}
	if len(b) != 48 || !b[47].T.Equal(t0) || !b[0].T.Equal(t0.Add(-47*step)) {
		t.Fatalf("baseline: %d points, last %v", len(b), b[len(b)-1].T)
	}
}
