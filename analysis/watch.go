package analysis

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/immune-project/immune/collector"
	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/detector"
	"github.com/immune-project/immune/rules"
)

// Watch is the live analysis of one deploy: the same looks as Replay, one
// per step of the window, but taken one at a time as the caller's clock
// reaches them. It does no waiting and reads no clock: the supervisor asks
// it when the next look is due (Due) and takes it (Look).
//
// A look whose source fails as a whole (unreachable, credentials refused)
// is not judged: it is counted in Skipped and the next look tries again.
// When the window ends without a judged look the verdict is inconclusive:
// missing data is never a pass and never a revert.
type Watch struct {
	File   *rules.File
	Deploy deploy.Deploy
	// Delay is how long after a look's instant the look is taken, so that
	// the samples of the instant have arrived (a scrape interval, the
	// remote-write lag).
	Delay time.Duration

	cal        Calibrations
	calibrated bool
	next       int // the next look, 1-based
	planned    int
	// Decision is where the analysis stands: the last judged look.
	Decision Decision
	// Skipped counts the looks whose source failed.
	Skipped int
	// LastError is the error of the last skipped look.
	LastError error
	done      bool
}

// NewWatch starts the analysis of d under rule file f. The first look is
// due one step after the deploy, plus delay.
func NewWatch(f *rules.File, d deploy.Deploy, delay time.Duration) *Watch {
	planned := Looks(f.Analysis)
	return &Watch{
		File: f, Deploy: d, Delay: delay, next: 1, planned: planned,
		Decision: Decision{Deploy: d, Planned: planned, Alpha: f.Analysis.Alpha,
			Verdict: detector.Verdict{Outcome: detector.Inconclusive}},
	}
}

// Done reports whether the analysis has ended: a fail, or the window's
// last look taken.
func (w *Watch) Done() bool { return w.done }

// Next is the number of the next look.
func (w *Watch) Next() int { return w.next }

// At is the instant of look n: deploy + n·step.
func (w *Watch) At(n int) time.Time {
	return w.Deploy.Time.Add(time.Duration(n) * w.File.Analysis.Step)
}

// Due is when the next look can be taken: its instant plus the delay.
func (w *Watch) Due() time.Time { return w.At(w.next).Add(w.Delay) }

// Look takes the next look, at its instant (never later: the verdict
// must not depend on when the look happened to run). It calibrates the
// KPIs first if not done yet. It returns the decision after the look and
// whether the look was judged; a false with a nil error means the source
// failed and the look was skipped (w.LastError says why). The error is
// for a cancelled ctx and for a rule file the detector refuses.
func (w *Watch) Look(ctx context.Context, src collector.Source) (Decision, bool, error) {
	if w.done {
		return w.Decision, false, errors.New("analysis already ended")
	}
	n := w.next
	at := w.At(n)
	w.next++
	if n >= w.planned {
		w.done = true
	}
	if !w.calibrated {
		cal, err := Calibrate(ctx, src, w.File, w.Deploy)
		if err != nil {
			if ctx.Err() != nil {
				return w.Decision, false, ctx.Err()
			}
			w.Skipped++
			w.LastError = fmt.Errorf("calibrate: %w", err)
			return w.Decision, false, nil
		}
		w.cal, w.calibrated = cal, true
	}
	v, err := JudgeAt(ctx, src, w.File, w.Deploy, at, w.cal)
	if err != nil {
		if ctx.Err() != nil {
			return w.Decision, false, ctx.Err()
		}
		if lookFailed(ctx, err) != nil {
			w.Skipped++
			w.LastError = err
			return w.Decision, false, nil
		}
		return w.Decision, false, err
	}
	w.Decision.Verdict, w.Decision.At, w.Decision.Looks = v, at, n
	if v.Outcome == detector.Fail {
		w.Decision.DecidedAt = at
		w.done = true
	}
	return w.Decision, true, nil
}
