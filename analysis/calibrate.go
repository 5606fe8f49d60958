package analysis

import (
	"context"
	"math"
	"time"

	"github.com/immune-project/immune/collector"
	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/detector"
	"github.com/immune-project/immune/rules"
)

// Calibrations are the KPIs' calibrations, by KPI name.
type Calibrations map[string]*detector.Calibration

// Calibrate measures, for each Mann-Whitney KPI (test auto or
// mann-whitney, not events/trials) of a rule file with a `before` baseline, how its statistic behaves at placebo deploys in the
// history before deploy d (detector.Calibrate): up to
// detector.MaxPlacebos placebos, each with the rule's lookback and window,
// all of them before the deploy. Only data before the deploy is read.
//
// KPIs with another baseline or another test, and KPIs whose history
// cannot be read are left out: they are judged with their test's p-value
// times the looks. A source that fails as a whole is an error.
func Calibrate(ctx context.Context, src collector.Source, f *rules.File, d deploy.Deploy) (Calibrations, error) {
	a := f.Analysis
	cal := Calibrations{}
	if a.Baseline != rules.BaselineBefore {
		return cal, nil
	}
	lookback, window := int(a.Lookback/a.Step), Looks(a)
	// The KPI with the smallest share of alpha needs the most placebos
	// (weighted Holm's first threshold); twice that, at least
	// MaxPlacebos, and no more history than that is read.
	total, least := 0.0, math.Inf(1)
	for i := range f.KPIs {
		total += f.KPIs[i].Weight
		least = math.Min(least, f.KPIs[i].Weight)
	}
	placebos := max(detector.MaxPlacebos, 2*detector.PlacebosFor(a.Alpha*least/total))
	steps := lookback + window + placebos - 1
	span := Span{From: d.Time.Add(-time.Duration(steps-1) * a.Step), To: d.Time}
	vars := rules.Vars{Service: d.Service, Version: d.Version, PreviousVersion: d.PreviousVersion, Deploy: d.ID}
	for i := range f.KPIs {
		rk := &f.KPIs[i]
		if rk.ResolvedTest() != rules.MannWhitneyTest {
			// The placebos measure the Mann-Whitney statistic: a KPI
			// judged by Welch, KS or as a proportion keeps its own test
			// (with Bonferroni over the looks).
			continue
		}
		q, err := f.Queries(rk, rules.RoleBaseline, vars)
		if err != nil {
			continue
		}
		history, err := values(ctx, src, q.Query, a.Step, "history", span)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if sourceDown(err) {
				return nil, err
			}
			continue
		}
		c := detector.Calibrate(history, lookback, window, kpiSpec(rk).Bad, placebos)
		cal[rk.Name] = &c
	}
	return cal, nil
}
