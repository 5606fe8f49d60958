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
	// LookAlpha is the alpha of each look (see Looks).
	LookAlpha float64
}

// Explanation is the verdict's explanation, its first line saying at which
// look it came and how the rule file's alpha was spread over the looks.
func (d Decision) Explanation() []string {
	lines := d.Verdict.Explanation()
	if len(lines) > 0 {
		lines[0] = fmt.Sprintf("%s (look %d of %d, alpha %g spread over the looks)",
			lines[0], d.Looks, d.Planned, d.LookAlpha*float64(d.Planned))
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
// Every look spends an equal share of the rule file's alpha
// (Bonferroni over the looks): however often the analysis looks, the
// chance of failing a harmless deploy stays at most alpha.
//
// progress, when not nil, is called after every look.
func Replay(ctx context.Context, src collector.Source, f *rules.File, d deploy.Deploy, progress func(look int)) (Decision, error) {
	a := f.Analysis
	planned := Looks(a)
	dec := Decision{Deploy: d, Planned: planned, LookAlpha: a.Alpha / float64(planned)}
	for look := 1; look <= planned; look++ {
		at := d.Time.Add(time.Duration(look) * a.Step)
		v, err := JudgeAt(ctx, src, f, d, at, dec.LookAlpha)
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
// them at the given alpha.
func JudgeAt(ctx context.Context, src collector.Source, f *rules.File, d deploy.Deploy, at time.Time, alpha float64) (detector.Verdict, error) {
	kpis, err := Gather(ctx, src, f, d, at)
	if err != nil {
		return detector.Verdict{}, err
	}
	v, err := detector.Judge(kpis, detector.JudgeOptions{Alpha: alpha})
	if err != nil {
		return detector.Verdict{}, fmt.Errorf("deploy %q: %w", d.ID, err)
	}
	return v, nil
}
