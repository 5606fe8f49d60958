package main

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/common/model"

	"github.com/immune-project/immune/analysis"
	"github.com/immune-project/immune/collector"
	"github.com/immune-project/immune/collector/embedded"
	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/detector"
	"github.com/immune-project/immune/rules"
)

// Detector names, as in the tables and the JSON.
const (
	detImmune    = "immune"
	detKayenta   = "kayenta"
	detThreshold = "threshold"
)

// Verdicts of the records besides immune's pass, fail and inconclusive.
const (
	verdictSkipped = "skipped"
)

// params are the protocol's parameters for one table.
type params struct {
	L, W int
	// History is how many samples before the window a copy keeps
	// (counting the lookback); 0 keeps all of them.
	History int
	Alpha   float64
	Cases   []benchCase
	// MADUnit: shifts are in units of the deploy's s (the NAB table);
	// otherwise of the noise's σ = 1 (the Gaussian table).
	MADUnit bool
	// References: also run the Kayenta-style and threshold-style judges.
	References bool
	// SkipIrregular skips deploys whose original timestamps were not
	// regular over [t−L, t+W); otherwise they are judged on the regular
	// clock.
	SkipIrregular bool
}

// unit is the work of one store: some series under one set of params.
type unit struct {
	Bench  string // nab, gauss, counts or concurrent
	Params params
	Series []*series
	// Counts are the events/trials series of a counts unit (Series is
	// empty), judged in the cases countsCases at the deploy points with at
	// least MinHistory samples before their window.
	Counts     []*countsSeries
	MinHistory int
	// Fleet, for a concurrent unit (Series empty), is judged with its
	// machine Canary as the canary at the deploy points Deploys.
	Fleet   *fleet
	Canary  int
	Deploys []int
}

// names returns the names of the unit's first and last series.
func (u *unit) names() (first, last string) {
	if len(u.Counts) > 0 {
		return u.Counts[0].Name, u.Counts[len(u.Counts)-1].Name
	}
	if u.Fleet != nil {
		name := u.Fleet.seriesName(u.Canary)
		return fmt.Sprintf("%s/%d", name, u.Deploys[0]), fmt.Sprintf("%s/%d", name, u.Deploys[len(u.Deploys)-1])
	}
	return u.Series[0].Name, u.Series[len(u.Series)-1].Name
}

// record is one detector's decision on one case of one deploy (a line of
// the -json output), or a skipped deploy (Detector and Case empty).
type record struct {
	Bench    string    `json:"bench"`
	Series   string    `json:"series"`
	Deploy   int       `json:"deploy"` // the window's first sample, t
	Time     time.Time `json:"time"`   // immune's deploy time: sample t−1
	Case     string    `json:"case,omitempty"`
	Detector string    `json:"detector,omitempty"`
	Verdict  string    `json:"verdict"`
	// Delay is in samples (deciding on sample t is 1); null unless fail.
	Delay *int `json:"delay"`
	// S is the deploy's scale, 1.4826 × MAD of its lookback.
	S         float64 `json:"s"`
	Irregular bool    `json:"irregular,omitempty"`
	// PValue is immune's p-value of the KPI at the deciding look.
	PValue *float64 `json:"p_value,omitempty"`
	// Reason explains immune's verdict (the KPI's sentence at the
	// deciding look) and why a deploy was skipped.
	Reason string `json:"reason,omitempty"`
}

// deployments places a series' deploys and returns those to judge and the
// records of the skipped ones.
func deployments(bench string, s *series, p params) ([]deployment, []record) {
	var keep []deployment
	var skipped []record
	for _, t := range deployPoints(len(s.Values), p.L, p.W) {
		center, sc := robustScale(s.Values[t-p.L : t])
		d := deployment{T: t, Center: center, S: sc, Irregular: s.irregularSpan(t-p.L, t+p.W-1)}
		skip := func(why string) {
			skipped = append(skipped, record{Bench: bench, Series: s.Name, Deploy: t, Time: s.time(t - 1),
				Verdict: verdictSkipped, S: sc, Irregular: d.Irregular, Reason: why})
		}
		switch {
		case sc == 0:
			skip("flat lookback: s = 1.4826 × MAD = 0")
		case p.SkipIrregular && d.Irregular:
			skip("irregular sampling in [t−L, t+W)")
		default:
			keep = append(keep, d)
		}
	}
	return keep, skipped
}

// copies builds every case of every deploy of the unit.
func (u *unit) copies() ([]benchCopy, []record) {
	var out []benchCopy
	var skipped []record
	for _, s := range u.Series {
		ds, sk := deployments(u.Bench, s, u.Params)
		skipped = append(skipped, sk...)
		for _, d := range ds {
			unit := 1.0
			if u.Params.MADUnit {
				unit = d.S
			}
			for _, c := range u.Params.Cases {
				out = append(out, makeCopy(s, d, c, u.Params.W, u.Params.History, unit))
			}
		}
	}
	return out, skipped
}

// copyLabel is the label that tells the copies apart in the store.
const (
	copyLabel  = "copy"
	metricName = "value"
)

// storeSeries is a copy as the store holds it: value{copy="<id>"} on the
// series' clock.
func (c *benchCopy) storeSeries() collector.Series {
	out := collector.Series{Labels: collector.Labels{collector.MetricName: metricName, copyLabel: c.ID},
		Samples: make([]collector.Sample, len(c.Values))}
	for i, v := range c.Values {
		out.Samples[i] = collector.Sample{T: c.Series.time(c.From + i), V: v}
	}
	return out
}

// ruleFile is the copy's rule file: the protocol's KPI rule on its series.
func ruleFile(id string, p params, step time.Duration) string {
	return rulesWith(p, step, fmt.Sprintf("  - name: %s\n    query: '%s'\n    bad: increase\n", metricName, copySelector(metricName, id)))
}

// rulesWith is a copy's rule file: the protocol's analysis (baseline
// before, lookback L, window W, alpha) at step, and the KPI given in YAML.
func rulesWith(p params, step time.Duration, kpi string) string {
	dur := func(n int) string { return model.Duration(time.Duration(n) * step).String() }
	return fmt.Sprintf(`version: 1
service: bench
analysis:
  baseline: before
  lookback: %s
  window: %s
  step: %s
  alpha: %g
kpis:
`, dur(p.L), dur(p.W), dur(1), p.Alpha) + kpi
}

// copySelector is the series name{copy="<id>"}, quoted for a YAML
// single-quoted string.
func copySelector(name, id string) string {
	return strings.ReplaceAll(fmt.Sprintf("%s{%s=%q}", name, copyLabel, id), "'", "''")
}

// judgeImmune replays the copy's deploy through immune's own code path,
// analysis.Replay on the store, as `immune backtest` does.
func judgeImmune(ctx context.Context, src collector.Source, c *benchCopy, p params) (record, error) {
	return replay(ctx, src, c.ID, ruleFile(c.ID, p, c.Series.Step), c.deployTime(), c.Series.Step, c.record(detImmune))
}

// replay judges the deploy of copy id at deployed with the rule file rule
// through analysis.Replay on the store and fills r with the decision.
func replay(ctx context.Context, src collector.Source, id, rule string, deployed time.Time, step time.Duration, r record) (record, error) {
	return replayDeploy(ctx, src, rule, deploy.Deploy{ID: id, Time: deployed}, step, r)
}

// replayDeploy is replay for a deploy that says more than its id and
// time (versions, rollout groups); an empty d.Service is the rule file's.
func replayDeploy(ctx context.Context, src collector.Source, rule string, d deploy.Deploy, step time.Duration, r record) (record, error) {
	f, errs := rules.Parse(d.ID+".yaml", []byte(rule))
	if len(errs) > 0 {
		return record{}, fmt.Errorf("rules for %s: %v", d.ID, errs)
	}
	if d.Service == "" {
		d.Service = f.Service
	}
	dec, err := analysis.Replay(ctx, src, f, d, nil)
	if err != nil {
		return record{}, fmt.Errorf("replay %s: %w", d.ID, err)
	}
	r.Verdict = dec.Verdict.Outcome.String()
	if dec.Verdict.Outcome == detector.Fail {
		k := delaySamples(d.Time, dec.DecidedAt, step)
		r.Delay = &k
	}
	r.Reason = dec.Verdict.Reason
	if len(dec.Verdict.KPIs) > 0 {
		k := dec.Verdict.KPIs[0]
		r.Reason = k.Sentence
		if !math.IsNaN(k.PValue) {
			p := k.PValue
			r.PValue = &p
		}
	}
	return r, nil
}

// record returns the copy's record for a detector, verdict unset.
func (c *benchCopy) record(det string) record {
	return record{Series: c.Series.Name, Deploy: c.Deploy.T, Time: c.deployTime(), Case: c.Case.Name,
		Detector: det, S: c.Deploy.S, Irregular: c.Deploy.Irregular}
}

// refRecord turns a reference verdict into a record.
func refRecord(c *benchCopy, det string, v refVerdict) record { return withVerdict(c.record(det), v) }

// withVerdict is r with a reference detector's verdict: pass, or fail
// with its delay.
func withVerdict(r record, v refVerdict) record {
	r.Verdict = detector.Pass.String()
	if v.Fail {
		r.Verdict = detector.Fail.String()
		k := v.Delay
		r.Delay = &k
	}
	return r
}

// run judges every copy of the unit with every detector, in a store of its
// own, and returns the records in the copies' order.
func (u *unit) run(ctx context.Context) ([]record, error) {
	switch u.Bench {
	case benchCounts:
		return u.runCounts(ctx)
	case benchConcurrent:
		return u.runConcurrent(ctx)
	}
	cps, out := u.copies()
	if len(cps) == 0 {
		return out, nil
	}
	store, err := storeOf(ctx, len(cps), func(i int) []collector.Series { return []collector.Series{cps[i].storeSeries()} })
	if err != nil {
		return nil, err
	}
	defer store.Close()
	for i := range cps {
		c := &cps[i]
		r, err := judgeImmune(ctx, store, c, u.Params)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
		if !u.Params.References {
			continue
		}
		base, win := c.lookback(u.Params.L), c.window()
		kv, err := kayenta(base, win)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.ID, err)
		}
		out = append(out, refRecord(c, detKayenta, kv), refRecord(c, detThreshold, threshold(base, win)))
	}
	for i := range out {
		out[i].Bench = u.Bench
	}
	return out, nil
}

// runAll runs the units on workers goroutines and returns their records in
// the units' order. progress, when not nil, is called after each unit.
func runAll(ctx context.Context, units []*unit, workers int, progress func(u *unit, recs []record, took time.Duration)) ([][]record, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := make([][]record, len(units))
	jobs := make(chan int)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for range max(workers, 1) {
		wg.Go(func() {
			for i := range jobs {
				start := time.Now()
				recs, err := units[i].run(ctx)
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						first, _ := units[i].names()
						firstErr = fmt.Errorf("%s: %w", first, err)
					}
					cancel()
				} else {
					out[i] = recs
					if progress != nil {
						progress(units[i], recs, time.Since(start))
					}
				}
				mu.Unlock()
			}
		})
	}
feed:
	for i := range units {
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// storeOf opens an embedded store holding the series of a unit's n
// copies, series(i) those of copy i. The caller closes it; the series
// are not kept once written.
func storeOf(ctx context.Context, n int, series func(i int) []collector.Series) (*embedded.Store, error) {
	var ss []collector.Series
	for i := range n {
		ss = append(ss, series(i)...)
	}
	store, err := embedded.Open(embedded.Options{})
	if err != nil {
		return nil, err
	}
	if err := store.Write(ctx, ss); err != nil {
		store.Close()
		return nil, err
	}
	return store, nil
}
