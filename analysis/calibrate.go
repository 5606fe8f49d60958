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

// Calibrations are the KPIs' calibrations, by KPI name. Gather adds the
// ones it makes at a look (a concurrent KPI's on its canary's own
// instances, under a key of the KPI's name and the instances), so that
// the next looks reuse them: one deploy's analysis owns its Calibrations,
// and does not share them with another goroutine.
type Calibrations map[string]*detector.Calibration

// Calibrate measures, for each Mann-Whitney KPI (test auto or
// mann-whitney, not events/trials) of a rule file with a `before` baseline,
// how its statistic behaves at placebo deploys in the history before
// deploy d (detector.CalibrateInPhase): placebos with the rule's lookback
// and window, their windows ending before the deploy's own lookback, at
// the same time of day when the KPI repeats daily and the history holds
// enough of them. An
// events/trials KPI (test auto or proportion) is calibrated the same way
// on its two-proportion z (detector.CalibrateCounts, from the events and
// trials of each step). With a `seasonal` baseline (a season that is a
// whole number of steps) the placebos are compared with their own earlier
// seasons (detector.CalibrateSeasonal, detector.CalibrateSeasonalCounts).
// A `concurrent` KPI with selectors.instance gets none here: it is
// calibrated at the looks, once its canary's instances are known
// (gatherConcurrent). Only data before the deploy is read.
//
// A KPI whose history cannot be read (no series, say) gets an empty
// calibration, and so is inconclusive for too little history, like one
// with too short a history. KPIs with another baseline or another test
// get none: they are judged with their test's p-value times the looks. A
// source that fails as a whole is an error.
func Calibrate(ctx context.Context, src collector.Source, f *rules.File, d deploy.Deploy) (Calibrations, error) {
	a := f.Analysis
	cal := Calibrations{}
	// The KPI with the smallest share of alpha needs the most placebos
	// (weighted Holm's first threshold); twice that, at least
	// MaxPlacebos, and no more history than that is read.
	need, placebos := placebosOf(f)
	window := Looks(a)

	// What each kind of baseline reads, and how it calibrates a history.
	var (
		steps int
		grid  bool // history on the step grid, gaps kept (seasonal)
		build func(history []float64, bad detector.Direction) detector.Calibration
		// counts calibrates an events/trials KPI's history.
		counts func(events, trials []float64, bad detector.Direction) detector.Calibration
	)
	switch {
	case a.Baseline == rules.BaselineSeasonal && a.Season%a.Step == 0:
		season := int(a.Season / a.Step)
		steps = detector.Calibration{Window: window, Season: season, Seasons: a.Seasons}.HistoryFor(placebos)
		if steps > MaxSeasonalHistory {
			// Long seasons at short steps (5 weeks at 15 s): reading that
			// much history per KPI and deploy costs more than it gives;
			// the test's p-value times the looks, as before.
			return cal, nil
		}
		// On the step grid, a step without a value kept as NaN, so that
		// every placebo meets its seasons at the right offsets.
		grid = true
		build = func(h []float64, bad detector.Direction) detector.Calibration {
			return detector.CalibrateSeasonal(h, season, a.Seasons, window, bad, placebos)
		}
		counts = func(e, t []float64, bad detector.Direction) detector.Calibration {
			return detector.CalibrateSeasonalCounts(e, t, season, a.Seasons, window, bad, placebos)
		}
	case a.Baseline == rules.BaselineConcurrent && f.Selectors != nil && f.Selectors.Instance != "":
		// Calibrated at the looks, on the canary's instances once they
		// are known (gatherConcurrent).
		return cal, nil
	case a.Baseline == rules.BaselineBefore:
		lookback := int(a.Lookback / a.Step)
		steps = detector.Calibration{Lookback: lookback, Window: window}.HistoryFor(placebos)
		// A day's worth of steps, for placebos at the same time of day, and
		// enough days of history to find 2·need of them (up to 5 weeks).
		period, tol := 0, 0
		if day := 24 * time.Hour; day%a.Step == 0 && a.Step <= 30*time.Minute {
			period, tol = int(day/a.Step), max(1, int(time.Hour/a.Step))
			days := (2*need)/(2*tol+1) + 2
			steps = min(max(steps, 2*lookback+window+days*period), 2*lookback+window+35*period)
		}
		build = func(h []float64, bad detector.Direction) detector.Calibration {
			return detector.CalibrateInPhase(h, lookback, window, bad, placebos, period, tol, 2*need)
		}
		counts = func(e, t []float64, bad detector.Direction) detector.Calibration {
			return detector.CalibrateCounts(e, t, lookback, window, bad, placebos, period, tol, 2*need)
		}
	default:
		return cal, nil
	}

	span := Span{From: d.Time.Add(-time.Duration(steps-1) * a.Step), To: d.Time}
	vars := varsOf(d)
	for i := range f.KPIs {
		rk := &f.KPIs[i]
		switch rk.ResolvedTest() {
		case rules.MannWhitneyTest:
		case rules.ProportionTest:
			if counts != nil && rk.IsRatio() {
				c, err := calibrateCounts(ctx, src, f, rk, vars, a.Step, span, grid, counts)
				if err != nil {
					return nil, err
				}
				cal[rk.Name] = &c
			}
			continue
		default:
			// The placebos measure the Mann-Whitney statistic (or, for a
			// seasonal baseline, the signed-rank one) and the
			// two-proportion z: a KPI judged by Welch or KS keeps its own
			// test (with Bonferroni over the looks).
			continue
		}
		var history []float64
		q, err := f.Queries(rk, rules.RoleBaseline, vars)
		if err == nil {
			if grid {
				var g [][]float64
				if g, err = onGrid(ctx, src, q.Query, a.Step, "history", span); err == nil {
					history = g[0]
				}
			} else {
				history, err = values(ctx, src, q.Query, a.Step, "history", span)
			}
		}
		if err != nil {
			if err := lookFailed(ctx, err); err != nil {
				return nil, err
			}
			history = nil // no placebos: inconclusive, as too short a history
		}
		c := build(history, kpiSpec(rk).Bad)
		cal[rk.Name] = &c
	}
	return cal, nil
}

// placebosOf is how many placebos the KPI with the smallest share of
// alpha needs (weighted Holm's first threshold), and how many a
// calibration of the rule file aims at: twice that, at least
// detector.MaxPlacebos.
func placebosOf(f *rules.File) (need, placebos int) {
	total, least := 0.0, math.Inf(1)
	for i := range f.KPIs {
		total += f.KPIs[i].Weight
		least = math.Min(least, f.KPIs[i].Weight)
	}
	need = detector.PlacebosFor(f.Analysis.Alpha * least / total)
	return need, max(detector.MaxPlacebos, 2*need)
}

// calibrateCounts reads an events/trials KPI's events and trials on the
// step grid over span and calibrates the steps with valid counts (a step
// with trials and no events sample has 0 events, as in the deploy's own
// sums); with grid, every step is kept, those without valid counts as NaN
// (a seasonal calibration pairs steps by their position). A history
// that cannot be read gives an empty calibration (inconclusive for too
// little history); a source that fails as a whole is an error.
func calibrateCounts(ctx context.Context, src collector.Source, f *rules.File, rk *rules.KPI, vars rules.Vars,
	step time.Duration, span Span, grid bool, build func(events, trials []float64, bad detector.Direction) detector.Calibration) (detector.Calibration, error) {
	var events, trials []float64
	q, err := f.Queries(rk, rules.RoleBaseline, vars)
	if err == nil {
		var e, t [][]float64
		if e, err = onGrid(ctx, src, q.Events, step, "history events", span); err == nil {
			if t, err = onGrid(ctx, src, q.Trials, step, "history trials", span); err == nil {
				for j := range e[0] {
					ev, tr := e[0][j], t[0][j]
					if math.IsNaN(ev) {
						// No events sample where there are trials: none
						// happened (an error counter that appears with the
						// first error), as the deploy's own sums count it.
						ev = 0
					}
					if ev >= 0 && ev <= tr && !math.IsInf(tr, 0) {
						events, trials = append(events, ev), append(trials, tr)
					} else if grid {
						events, trials = append(events, math.NaN()), append(trials, math.NaN())
					}
				}
			}
		}
	}
	if err != nil {
		if err := lookFailed(ctx, err); err != nil {
			return detector.Calibration{}, err
		}
		events, trials = nil, nil
	}
	return build(events, trials, kpiSpec(rk).Bad), nil
}

// MaxSeasonalHistory bounds the steps of history a seasonal calibration
// reads per KPI (a week at 5-minute steps with two seasons and 2 000
// placebos is about 10 000); beyond it the KPI is not calibrated.
const MaxSeasonalHistory = 100000
