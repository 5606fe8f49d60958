package analysis

import (
	"context"
	"fmt"
	"time"

	"github.com/immune-project/immune/collector"
	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/detector"
	"github.com/immune-project/immune/rules"
)

// Decision is where the analysis of one deploy ended.
type Decision struct {
	Deploy deploy.Deploy
	// Verdict is the judgement at At: the first failing look, or the last
	// look of the window.
	Verdict detector.Verdict
	// At is the evaluation time of Verdict.
	At time.Time
	// DecidedAt is At for a fail, zero otherwise: when the revert would
	// have been pulled.
	DecidedAt time.Time
	// Looks is how many times the deploy was judged, and Planned how many
	// looks the window holds.
	Looks, Planned int
	// Alpha is the rule file's: the most the whole analysis may risk
	// failing a harmless deploy, over every look and every KPI.
	Alpha float64
}

// Explanation is the verdict's explanation, its first line saying at which
// look it came.
func (d Decision) Explanation() []string {
	lines := d.Verdict.Explanation()
	if len(lines) > 0 {
		lines[0] = fmt.Sprintf("%s (look %d of %d, alpha %g over the window)", lines[0], d.Looks, d.Planned, d.Alpha)
	}
	return lines
}

// Looks returns the number of evaluations in a rule file's window: one per
// step, the first one step after the deploy.
func Looks(a rules.Analysis) int {
	n := int(a.Window / a.Step)
	if n < 1 {
		n = 1
	}
	return n
}

// Replay judges deploy d as the analysis would have live: at deploy+step,
// deploy+2·step, … up to deploy+window, each time with the data up to that
// instant only, and stops at the first fail. The verdict at an instant
// never depends on data after it.
//
// The KPIs are calibrated first, on the history before the deploy
// (Calibrate); a calibrated KPI's p-value is valid over every look of the
// window, an uncalibrated one's is multiplied by the number of looks
// (Bonferroni). Either way the chance of failing a harmless deploy stays
// at most the rule file's alpha, however often the analysis looks.
//
// progress, when not nil, is called after every look.
func Replay(ctx context.Context, src collector.Source, f *rules.File, d deploy.Deploy, progress func(look int)) (Decision, error) {
	a := f.Analysis
	planned := Looks(a)
	dec := Decision{Deploy: d, Planned: planned, Alpha: a.Alpha}
	cal, err := Calibrate(ctx, src, f, d)
	if err != nil {
		return Decision{}, err
	}
	for look := 1; look <= planned; look++ {
		at := d.Time.Add(time.Duration(look) * a.Step)
		v, err := JudgeAt(ctx, src, f, d, at, cal)
		if err != nil {
			return Decision{}, err
		}
		dec.Verdict, dec.At, dec.Looks = v, at, look
		if progress != nil {
			progress(look)
		}
		if v.Outcome == detector.Fail {
			dec.DecidedAt = at
			break
		}
	}
	return dec, nil
}

// JudgeAt gathers the KPIs of f for d as they stand at time at and judges
// them, with the rule file's alpha spread over the window's looks.
func JudgeAt(ctx context.Context, src collector.Source, f *rules.File, d deploy.Deploy, at time.Time, cal Calibrations) (detector.Verdict, error) {
	kpis, err := Gather(ctx, src, f, d, at, cal)
	if err != nil {
		return detector.Verdict{}, err
	}
	v, err := detector.Judge(kpis, detector.JudgeOptions{Alpha: f.Analysis.Alpha, Looks: Looks(f.Analysis)})
	if err != nil {
		return detector.Verdict{}, fmt.Errorf("deploy %q: %w", d.ID, err)
	}
	return v, nil
}
