package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"gonum.org/v1/gonum/stat/distuv"

	"github.com/immune-project/immune/collector"
	"github.com/immune-project/immune/detector"
)

// The events/trials table: per-step error counts out of request counts,
// judged by immune's events/trials KPI (the two-proportion test,
// calibrated on placebo deploys of the history) and by the binomial test
// times the looks, what immune did before the calibration.

const (
	benchCounts = "counts"
	// detBinomial is the reference detector of the events/trials table.
	detBinomial = "binomial"
	// Metric names of the copies in the store.
	eventsMetric = "errors"
	trialsMetric = "requests"
	// countsDay is the daily cycle's period in steps (a day of 5 minutes).
	countsDay = 288
	// countsCycle is the daily cycle's amplitude: the rate moves ±20 %
	// around its mean over the day.
	countsCycle = 0.2
	// countsWeek is the least history before a deploy's window: a week
	// of 5-minute steps, for the calibration's placebo deploys.
	countsWeek = 7 * countsDay
	// countsRate and countsTrials: 1 % errors of 5 000 requests a step.
	countsRate   = 0.01
	countsTrials = 5000
)

// countsSpec is how the events/trials series are made.
type countsSpec struct {
	Levels []float64 // coefficients of variation of the per-step rate
	Series int       // series per level
	Steps  int       // samples per series
	// MinHistory is the least number of samples before a deploy's window:
	// earlier protocol points get no deploy.
	MinHistory int
	Rate       float64 // mean error rate
	Trials     float64 // requests per step
	Seed       uint64
}

// defaultCountsLevels are the table's levels of cv: pure binomial, and two
// overdispersed rates.
var defaultCountsLevels = []float64{0, 0.1, 0.25}

// countsSeries is one synthetic events/trials series on a regular clock.
type countsSeries struct {
	Name   string // counts/cv0.10/007
	Level  float64
	Mean   float64 // the error rate over a day
	Phase  float64 // of the daily cycle, in radians
	Start  time.Time
	Step   time.Duration
	Rate   []float64 // the per-step error rate the events were drawn at
	Events []float64
	Trials []float64
	Seed   [2]uint64 // of the cases' redraws
}

func (s *countsSeries) time(i int) time.Time { return s.Start.Add(time.Duration(i) * s.Step) }

// cycle is the mean error rate at step i: Mean on a daily cycle of ±20 %.
func (s *countsSeries) cycle(i int) float64 {
	return s.Mean * (1 + countsCycle*math.Sin(s.Phase+2*math.Pi*float64(i)/countsDay))
}

// countsLevelName names a level of cv in series names and tables.
func countsLevelName(cv float64) string { return fmt.Sprintf("cv%.2f", cv) }

// makeCountsSeries returns series i of level index li: n steps of
// spec.Trials requests, errors binomial at a per-step rate drawn from a
// beta distribution of mean m(i) and standard deviation cv·m(i) (m itself
// for cv = 0), m following a daily cycle of ±20 % around spec.Rate at a
// random phase. A PCG seeded by (seed, level, series) draws it, so the
// same arguments give the same series on every run, and no other table's
// series share its stream.
func makeCountsSeries(spec countsSpec, li, i int) *countsSeries {
	cv := spec.Levels[li]
	stream := 1<<62 | uint64(li)<<32 | uint64(i)
	r := rand.New(rand.NewPCG(spec.Seed, stream))
	src := rand.NewPCG(r.Uint64(), r.Uint64())
	s := &countsSeries{Name: fmt.Sprintf("counts/%s/%03d", countsLevelName(cv), i), Level: cv, Mean: spec.Rate,
		Start: gaussStart, Step: gaussStep, Rate: make([]float64, spec.Steps),
		Events: make([]float64, spec.Steps), Trials: make([]float64, spec.Steps),
		Seed: [2]uint64{r.Uint64(), r.Uint64()}}
	s.Phase = r.Float64() * 2 * math.Pi
	for j := range spec.Steps {
		m := s.cycle(j)
		p := m
		if cv > 0 {
			// Beta with mean m and sd cv·m.
			k := m*(1-m)/(cv*cv*m*m) - 1
			p = distuv.Beta{Alpha: m * k, Beta: (1 - m) * k, Src: src}.Rand()
		}
		s.Rate[j] = p
		s.Trials[j] = spec.Trials
		s.Events[j] = distuv.Binomial{N: spec.Trials, P: p, Src: src}.Rand()
	}
	return s
}

// countsCase multiplies the error rate over the deploy's window by
// Factor; 1 is the harmless deploy.
type countsCase struct {
	Name   string
	Factor float64
}

var countsCases = []countsCase{
	{"null", 1},
	{"rate-x1.25", 1.25},
	{"rate-x1.5", 1.5},
	{"rate-x2", 2},
}

// countsCopy is one case of one deploy: events and trials from From to
// T+W (exclusive), the window's events redrawn for a raised rate.
type countsCopy struct {
	ID             string // <series>/<t>/<case>
	Series         *countsSeries
	T              int // first sample of the window
	Case           countsCase
	From           int
	Events, Trials []float64
}

// countsDeployPoints are the protocol's deploy points with at least
// minHistory samples before the window.
func countsDeployPoints(n, l, w, minHistory int) []int {
	var ts []int
	for _, t := range deployPoints(n, l, w) {
		if t >= minHistory {
			ts = append(ts, t)
		}
	}
	return ts
}

// makeCountsCopy builds a copy, keeping at most history samples before
// the window (0: all). Factor 1 keeps the series' events; any other
// redraws each window step's events binomially from its trials at
// min(1, Factor × the step's rate), from a generator seeded by the series,
// the deploy and the case.
func makeCountsCopy(s *countsSeries, t, w, history int, ci int, c countsCase) countsCopy {
	from := 0
	if history > 0 {
		from = max(0, t-history)
	}
	cp := countsCopy{ID: copyID(s.Name, t, c.Name), Series: s, T: t, Case: c, From: from,
		Events: slices.Clone(s.Events[from : t+w]), Trials: slices.Clone(s.Trials[from : t+w])}
	if c.Factor != 1 {
		src := rand.NewPCG(s.Seed[0], s.Seed[1]^(uint64(t)<<8|uint64(ci)))
		for i := t; i < t+w; i++ {
			p := math.Min(1, c.Factor*s.Rate[i])
			cp.Events[i-from] = distuv.Binomial{N: s.Trials[i], P: p, Src: src}.Rand()
		}
	}
	return cp
}

// storeSeries are the copy's events and trials as the store holds them:
// errors{copy="<id>"} and requests{copy="<id>"}.
func (c *countsCopy) storeSeries() []collector.Series {
	mk := func(name string, vs []float64) collector.Series {
		out := collector.Series{Labels: collector.Labels{collector.MetricName: name, copyLabel: c.ID},
			Samples: make([]collector.Sample, len(vs))}
		for i, v := range vs {
			out.Samples[i] = collector.Sample{T: c.Series.time(c.From + i), V: v}
		}
		return out
	}
	return []collector.Series{mk(eventsMetric, c.Events), mk(trialsMetric, c.Trials)}
}

// countsRuleFile is the copy's rule file: an events/trials KPI on its
// series, baseline before.
func countsRuleFile(id string, p params, step time.Duration) string {
	return rulesWith(p, step, fmt.Sprintf("  - name: %s\n    events: '%s'\n    trials: '%s'\n    bad: increase\n",
		eventsMetric, copySelector(eventsMetric, id), copySelector(trialsMetric, id)))
}

// record returns the copy's record for a detector, verdict unset.
func (c *countsCopy) record(det string) record {
	return record{Bench: benchCounts, Series: c.Series.Name, Deploy: c.T, Time: c.deployTime(), Case: c.Case.Name, Detector: det}
}

// deployTime is sample t−1's time, as for the other tables.
func (c *countsCopy) deployTime() time.Time { return c.Series.time(c.T - 1) }

// sum pools counts.
func sum(events, trials []float64) detector.Counts {
	var c detector.Counts
	for i := range events {
		c.Events += events[i]
		c.Trials += trials[i]
	}
	return c
}

// binomialLooks is the reference detector: at every look k = 1 … W, the
// one-sided two-proportion test (detector.Proportion, R's prop.test) of
// the window's first k steps pooled against the lookback's L steps; the
// deploy fails at the first look where p × W ≤ alpha (Bonferroni over the
// looks). This is how immune judged an events/trials KPI before its
// calibration on placebo deploys.
func binomialLooks(c *countsCopy, l, w int, alpha float64) (refVerdict, error) {
	t := c.T - c.From
	base := sum(c.Events[t-l:t], c.Trials[t-l:t])
	for k := 1; k <= w; k++ {
		canary := sum(c.Events[t:t+k], c.Trials[t:t+k])
		r, err := detector.Proportion(canary, base, detector.Options{Alternative: detector.Greater})
		if errors.Is(err, detector.ErrConstant) {
			continue
		}
		if err != nil {
			return refVerdict{}, fmt.Errorf("binomial: %w", err)
		}
		if r.PValue*float64(w) <= alpha {
			return refVerdict{Fail: true, Delay: k}, nil
		}
	}
	return refVerdict{}, nil
}

// runCounts judges every case of every deploy of the unit's events/trials
// series, with immune and the reference, in a store of its own.
func (u *unit) runCounts(ctx context.Context) ([]record, error) {
	p := u.Params
	var cps []countsCopy
	for _, s := range u.Counts {
		for _, t := range countsDeployPoints(len(s.Events), p.L, p.W, u.MinHistory) {
			for ci, c := range countsCases {
				cps = append(cps, makeCountsCopy(s, t, p.W, p.History, ci, c))
			}
		}
	}
	if len(cps) == 0 {
		return nil, nil
	}
	store, err := storeOf(ctx, len(cps), func(i int) []collector.Series { return cps[i].storeSeries() })
	if err != nil {
		return nil, err
	}
	defer store.Close()
	var out []record
	for i := range cps {
		c := &cps[i]
		r, err := replay(ctx, store, c.ID, countsRuleFile(c.ID, p, c.Series.Step), c.deployTime(), c.Series.Step, c.record(detImmune))
		if err != nil {
			return nil, err
		}
		ref, err := binomialLooks(c, p.L, p.W, p.Alpha)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.ID, err)
		}
		out = append(out, r, withVerdict(c.record(detBinomial), ref))
	}
	return out, nil
}
