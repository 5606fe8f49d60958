// Package analysis is the lifecycle of a deploy's analysis: it turns a rule
// file's KPIs into the canary's and the baseline's numbers through a
// collector.Source, judges them with the detector at every step of the
// deploy's window, and stops at the first failure. It is the only package
// that wires the others together, and it takes the time as a parameter:
// it never reads a clock.
package analysis

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/immune-project/immune/collector"
	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/detector"
	"github.com/immune-project/immune/rules"
)

// Span is a range of evaluation instants: From, From+Step, … up to To.
type Span struct {
	From, To time.Time
}

// Spans returns the evaluation instants of the canary and of the baseline
// when the deploy is judged at time at.
//
// The canary is evaluated at deploy+step, deploy+2·step, … up to at: each
// instant sees the data up to it, so the first one covers the first step
// after the deploy and none covers data after at. The baseline depends on
// the rule file's analysis.baseline:
//
//   - before: the lookback before the deploy, evaluated at deploy,
//     deploy−step, … (lookback/step instants, none after the deploy);
//   - concurrent: the canary's instants, through the baseline selectors;
//   - seasonal: the canary's instants shifted back by one season, two
//     seasons, … (analysis.seasons spans).
func Spans(a rules.Analysis, deployed, at time.Time) (canary Span, baseline []Span) {
	canary = Span{From: deployed.Add(a.Step), To: at}
	switch a.Baseline {
	case rules.BaselineConcurrent:
		baseline = []Span{canary}
	case rules.BaselineSeasonal:
		for s := 1; s <= a.Seasons; s++ {
			back := -time.Duration(s) * a.Season
			baseline = append(baseline, Span{From: canary.From.Add(back), To: canary.To.Add(back)})
		}
	default:
		n := a.Lookback / a.Step
		baseline = []Span{{From: deployed.Add(-(n - 1) * a.Step), To: deployed}}
	}
	return canary, baseline
}

// Gather evaluates every KPI of f for deploy d as it stands at time at,
// using no data after at, and returns them ready for detector.Judge. A KPI
// whose data cannot be had (its query was refused, returned no series or
// several) comes back with Missing set, so that it is judged inconclusive
// with the reason: never a pass, never a fail.
//
// The error is for a failure of the source as a whole (unreachable after
// its retries, credentials refused, not a Prometheus API, closed), which
// would fail every KPI alike, and for a cancelled ctx: the look cannot be
// judged at all, and the caller decides what that means (a backtest
// stops; a live analysis tries again at the next step).
//
// cal holds the calibrations of the KPIs (Calibrate), by name; a KPI
// without one is judged with its test's p-value alone. A concurrent KPI
// calibrated across instances is calibrated here, on its canary's own
// instances' past when they have one, else on A/A comparisons among the
// instances (ownCalibration, aaCalibration; kept in cal for the next
// looks).
func Gather(ctx context.Context, src collector.Source, f *rules.File, d deploy.Deploy, at time.Time, cal Calibrations) ([]detector.KPI, error) {
	canary, baseline := Spans(f.Analysis, d.Time, at)
	kpis := make([]detector.KPI, 0, len(f.KPIs))
	for i := range f.KPIs {
		rk := &f.KPIs[i]
		k := kpiSpec(rk)
		k.Calibration = cal[rk.Name]
		err := gatherKPI(ctx, src, f, rk, d, f.Analysis.Step, canary, baseline, &k, cal)
		if err != nil {
			if err := lookFailed(ctx, err); err != nil {
				return nil, err
			}
			k.Missing = err.Error()
		}
		kpis = append(kpis, k)
	}
	return kpis, nil
}

// varsOf is a deploy's values of the selectors' placeholders; an empty
// service is the rule file's (rules.File.Queries).
func varsOf(d deploy.Deploy) rules.Vars {
	return rules.Vars{Service: d.Service, Version: d.Version, PreviousVersion: d.PreviousVersion, Deploy: d.ID}
}

// lookFailed returns the error that stops a look, when err, one KPI's
// query error, is one: the context ended, or the whole source failed
// rather than one query. Otherwise nil: the KPI alone lacks data.
func lookFailed(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	for _, e := range []error{collector.ErrUnavailable, collector.ErrUnauthorized, collector.ErrBadResponse, collector.ErrClosed} {
		if errors.Is(err, e) {
			return err
		}
	}
	return nil
}

// kpiSpec maps a rule file KPI onto the detector's, data aside.
func kpiSpec(rk *rules.KPI) detector.KPI {
	k := detector.KPI{
		Name:       rk.Name,
		Critical:   rk.Critical,
		Weight:     rk.Weight,
		HasCounts:  rk.IsRatio(),
		MinEffect:  detector.MinEffect{Value: rk.MinEffect.Value, Relative: rk.MinEffect.Relative},
		RateOffset: math.NaN(), // set by gatherConcurrentCounts when known
	}
	switch rk.Bad {
	case rules.Increase:
		k.Bad = detector.Increase
	case rules.Decrease:
		k.Bad = detector.Decrease
	case rules.Either:
		k.Bad = detector.Either
	}
	switch rk.Test {
	case rules.MannWhitneyTest:
		k.Test = detector.MannWhitneyTest
	case rules.WelchTest:
		k.Test = detector.WelchTest
	case rules.KSTest:
		k.Test = detector.KSTest
	case rules.ProportionTest:
		k.Test = detector.ProportionTest
	default:
		k.Test = detector.Auto
	}
	return k
}

func gatherKPI(ctx context.Context, src collector.Source, f *rules.File, rk *rules.KPI, d deploy.Deploy,
	step time.Duration, canary Span, baseline []Span, k *detector.KPI, cal Calibrations) error {
	if canary.To.Before(canary.From) {
		return errors.New("no canary data yet: the first evaluation is one step after the deploy")
	}
	vars := varsOf(d)
	cq, err := f.Queries(rk, rules.RoleCanary, vars)
	if err != nil {
		return err
	}
	bq, err := f.Queries(rk, rules.RoleBaseline, vars)
	if err != nil {
		return err
	}
	if acrossInstances(f, rk) {
		// Concurrent, calibrated across instances: on the canary's own
		// past when its instances have one, else on A/A comparisons.
		if rk.IsRatio() {
			return gatherConcurrentCounts(ctx, src, f, rk, d, cq, bq, step, canary, cal, k)
		}
		return gatherConcurrent(ctx, src, f, rk, d, cq, bq, step, canary, cal, k)
	}
	if !rk.IsRatio() {
		if c := k.Calibration; c != nil && c.Paired() {
			k.Canary, k.Baseline, err = paired(ctx, src, cq.Query, bq.Query, step, canary, baseline)
			return err
		}
		if k.Canary, err = values(ctx, src, cq.Query, step, "canary", canary); err != nil {
			return err
		}
		k.Baseline, err = values(ctx, src, bq.Query, step, "baseline", baseline...)
		return err
	}
	for _, side := range []struct {
		name   string
		q      rules.Queries
		spans  []Span
		counts *detector.Counts
	}{{"canary", cq, []Span{canary}, &k.CanaryCounts}, {"baseline", bq, baseline, &k.BaselineCounts}} {
		ev, err := values(ctx, src, side.q.Events, step, side.name+" events", side.spans...)
		if err != nil {
			return err
		}
		tr, err := values(ctx, src, side.q.Trials, step, side.name+" trials", side.spans...)
		if err != nil {
			return err
		}
		side.counts.Events, side.counts.Trials = sum(ev), sum(tr)
	}
	return nil
}

// values evaluates query over the spans and returns the values of its one
// series. No series, or more than one, is an error that says so.
func values(ctx context.Context, src collector.Source, query string, step time.Duration, what string, spans ...Span) ([]float64, error) {
	var out []float64
	err := rangeSamples(ctx, src, query, step, what, spans, func(_ int, p collector.Sample) {
		out = append(out, p.V)
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no %s data: only NaN or infinite values", what)
	}
	return out, nil
}

// rangeSamples evaluates query over each span at every step and calls
// each with the index of the span and every finite sample of the query's
// one series, in time order. No series in a span, or more than one, is an
// error that says so.
func rangeSamples(ctx context.Context, src collector.Source, query string, step time.Duration, what string, spans []Span, each func(span int, p collector.Sample)) error {
	for i, sp := range spans {
		// A span read in pieces (a long history) may have pieces without
		// the series (a counter created partway): only a span without it
		// in any piece has no data.
		found := false
		for _, s := range split([]Span{sp}, step) {
			m, _, err := src.QueryRange(ctx, query, s.From, s.To, step)
			if err != nil {
				return fmt.Errorf("%s query: %w", what, err)
			}
			switch len(m) {
			case 0:
				continue
			case 1:
				found = true
			default:
				return fmt.Errorf("%s query returned %d series (%s, …): aggregate it to one, with sum() or avg()",
					what, len(m), m[0].Labels)
			}
			for _, p := range m[0].Samples {
				if !math.IsNaN(p.V) && !math.IsInf(p.V, 0) {
					each(i, p)
				}
			}
		}
		if !found {
			return fmt.Errorf("no %s data: %w from %s to %s",
				what, errNoSeries, sp.From.UTC().Format(time.RFC3339), sp.To.UTC().Format(time.RFC3339))
		}
	}
	return nil
}

// errNoSeries is a query that returned no series.
var errNoSeries = errors.New("the query returned no series")

// onGrid evaluates query over each span (all of one length) and returns,
// per span, one value per step from the span's start, NaN where the
// source has none.
func onGrid(ctx context.Context, src collector.Source, query string, step time.Duration, what string, spans ...Span) ([][]float64, error) {
	out := make([][]float64, len(spans))
	for i, sp := range spans {
		out[i] = make([]float64, int(sp.To.Sub(sp.From)/step)+1)
		for j := range out[i] {
			out[i][j] = math.NaN()
		}
	}
	err := rangeSamples(ctx, src, query, step, what, spans, func(i int, p collector.Sample) {
		if j := int((p.T.Sub(spans[i].From) + step/2) / step); j >= 0 && j < len(out[i]) {
			out[i][j] = p.V
		}
	})
	return out, err
}

// paired reads a seasonal KPI's canary and seasons on the step grid and
// keeps the steps where the canary and every season have a value, so
// that the canary's j-th value and each season's j-th value are the same
// step of the window (detector.SeasonalStatistic pairs them by position).
func paired(ctx context.Context, src collector.Source, cq, bq string, step time.Duration, canary Span, seasons []Span) (c, b []float64, err error) {
	cg, err := onGrid(ctx, src, cq, step, "canary", canary)
	if err != nil {
		return nil, nil, err
	}
	bg, err := onGrid(ctx, src, bq, step, "baseline", seasons...)
	if err != nil {
		return nil, nil, err
	}
	var keep []int
	for j, v := range cg[0] {
		ok := !math.IsNaN(v)
		for _, g := range bg {
			ok = ok && j < len(g) && !math.IsNaN(g[j])
		}
		if ok {
			keep = append(keep, j)
		}
	}
	if len(keep) == 0 {
		return nil, nil, errors.New("no canary step has a value in every season: nothing to pair")
	}
	for _, j := range keep {
		c = append(c, cg[0][j])
	}
	for _, g := range bg {
		for _, j := range keep {
			b = append(b, g[j])
		}
	}
	return c, b, nil
}

// maxPoints is the most evaluation instants asked of a source in one range
// query: Prometheus' HTTP API refuses more than 11 000.
const maxPoints = 10000

// split cuts spans into pieces of at most maxPoints instants each, on the
// same grid of instants.
func split(spans []Span, step time.Duration) []Span {
	var out []Span
	for _, s := range spans {
		for from := s.From; !from.After(s.To); from = from.Add(maxPoints * step) {
			to := from.Add((maxPoints - 1) * step)
			if to.After(s.To) {
				to = s.To
			}
			out = append(out, Span{From: from, To: to})
		}
	}
	return out
}

func sum(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s
}
