package analysis

import (
	"context"
	"time"

	"github.com/immune-project/immune/collector"
	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/rules"
)

// KPISeries is one KPI's canary and baseline values over time, as the
// analysis saw them, for charts: the canary at the window's instants up
// to the evaluation time, the baseline at its own (before the deploy for a
// `before` baseline; the same instants for `concurrent`; one season back,
// shifted forward onto the window, for `seasonal`). Ratio KPIs
// (events/trials) are shown as events/trials at each instant.
type KPISeries struct {
	Name             string
	Canary, Baseline []collector.Sample
	// Err says why a side is missing, when it is.
	Err string
}

// Series evaluates every KPI of f for deploy d up to time at. A KPI whose
// data cannot be had comes back with Err set; the error is for a failure
// of the source as a whole and for a cancelled ctx.
func Series(ctx context.Context, src collector.Source, f *rules.File, d deploy.Deploy, at time.Time) ([]KPISeries, error) {
	a := f.Analysis
	canary, baseline := Spans(a, d.Time, at)
	var shift time.Duration
	if a.Baseline == rules.BaselineSeasonal && len(baseline) > 0 {
		baseline, shift = baseline[:1], a.Season
	}
	vars := varsOf(d)
	out := make([]KPISeries, 0, len(f.KPIs))
	for i := range f.KPIs {
		rk := &f.KPIs[i]
		ks := KPISeries{Name: rk.Name}
		var err error
		if ks.Canary, err = sideSeries(ctx, src, f, rk, rules.RoleCanary, vars, a.Step, []Span{canary}, 0); err == nil {
			ks.Baseline, err = sideSeries(ctx, src, f, rk, rules.RoleBaseline, vars, a.Step, baseline, shift)
		}
		if err != nil {
			if e := lookFailed(ctx, err); e != nil {
				return nil, e
			}
			ks.Err = err.Error()
		}
		out = append(out, ks)
	}
	return out, nil
}

func sideSeries(ctx context.Context, src collector.Source, f *rules.File, rk *rules.KPI, role rules.Role, vars rules.Vars,
	step time.Duration, spans []Span, shift time.Duration) ([]collector.Sample, error) {
	if len(spans) == 0 || spans[0].To.Before(spans[0].From) {
		return nil, nil
	}
	q, err := f.Queries(rk, role, vars)
	if err != nil {
		return nil, err
	}
	if !rk.IsRatio() {
		return samples(ctx, src, q.Query, step, spans, shift)
	}
	ev, err := samples(ctx, src, q.Events, step, spans, shift)
	if err != nil {
		return nil, err
	}
	tr, err := samples(ctx, src, q.Trials, step, spans, shift)
	if err != nil {
		return nil, err
	}
	trials := map[int64]float64{}
	for _, p := range tr {
		trials[p.T.UnixMilli()] = p.V
	}
	var out []collector.Sample
	for _, p := range ev {
		if t, ok := trials[p.T.UnixMilli()]; ok && t > 0 {
			out = append(out, collector.Sample{T: p.T, V: p.V / t})
		}
	}
	return out, nil
}

func samples(ctx context.Context, src collector.Source, query string, step time.Duration, spans []Span, shift time.Duration) ([]collector.Sample, error) {
	var out []collector.Sample
	err := rangeSamples(ctx, src, query, step, query, spans, func(_ int, p collector.Sample) {
		out = append(out, collector.Sample{T: p.T.Add(shift), V: p.V})
	})
	return out, err
}
