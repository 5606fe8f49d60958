package analysis

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/immune-project/immune/collector"
	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/detector"
	"github.com/immune-project/immune/rules"
)

// MaxSubsets is the most instance subsets a concurrent calibration
// compares with the other instances: every subset of the canary's size
// when there are no more, else this many drawn at random (the draw seeded
// by the deploy's id, so that a restart calibrates alike).
const MaxSubsets = 32

// acrossInstances reports whether KPI rk of f is calibrated across
// instances: a concurrent baseline with selectors.instance, and a KPI
// the placebos measure (Mann-Whitney, or an events/trials KPI's
// two-proportion test; Welch and KS keep their test's p-value times the
// looks).
func acrossInstances(f *rules.File, rk *rules.KPI) bool {
	if f.Analysis.Baseline != rules.BaselineConcurrent || f.Selectors == nil || f.Selectors.Instance == "" {
		return false
	}
	switch rk.ResolvedTest() {
	case rules.MannWhitneyTest:
		return !rk.IsRatio()
	case rules.ProportionTest:
		return rk.IsRatio()
	}
	return false
}

// aaCalibration is the calibration of KPI rk on A/A comparisons among the
// instances the baseline selectors found in the history before deploy d
// (detector.CalibrateConcurrent without a lookback,
// detector.CalibrateConcurrentCounts): what judges a canary whose
// instances were not there before the deploy (new pods). The
// pseudo-canary is a subset of as many instances as the deploy's first
// rollout group (one when the deploy does not say): the smallest canary
// the deploy will have, and the noisiest, so the calibration is never
// looser for the larger canaries of later groups. Each subset and the
// other instances are read through the baseline selectors with
// instance=~"<subset>" and instance!~"<subset>" added. Made at the first
// look that needs it, and kept in cal for the next ones. Only data
// before the deploy is read.
func aaCalibration(ctx context.Context, src collector.Source, f *rules.File, rk *rules.KPI, d deploy.Deploy, cal Calibrations) (*detector.Calibration, error) {
	key := rk.Name + "\x00aa"
	if c, ok := cal[key]; ok {
		return c, nil
	}
	a := f.Analysis
	_, placebos := placebosOf(f)
	window := Looks(a)
	steps := min(placebos+window-1, MaxSeasonalHistory)
	span := Span{From: d.Time.Add(-time.Duration(steps-1) * a.Step), To: d.Time}
	size := 1
	if len(d.Groups) > 0 && d.Groups[0] > 0 {
		size = d.Groups[0]
	}
	c, err := calibrateConcurrentKPI(ctx, src, f, rk, varsOf(d), d.ID, a.Step, span, size, window, placebos)
	if err != nil {
		return nil, err
	}
	cal[key] = &c
	return &c, nil
}

// calibrateConcurrentKPI calibrates one KPI: it finds the instances of the
// history, draws the subsets, reads each subset and the rest on the step
// grid. A history that cannot be read, or that names fewer than two
// instances, gives a calibration that says why (the KPI is then
// inconclusive); a source that fails as a whole is an error.
func calibrateConcurrentKPI(ctx context.Context, src collector.Source, f *rules.File, rk *rules.KPI, vars rules.Vars, id string,
	step time.Duration, span Span, size, window, placebos int) (detector.Calibration, error) {
	label := f.Selectors.Instance
	empty := detector.Calibration{Window: window, Subsets: 1, Counts: rk.IsRatio()}
	unavailable := func(err error) (detector.Calibration, error) {
		if err := lookFailed(ctx, err); err != nil {
			return detector.Calibration{}, err
		}
		empty.Unavailable = err.Error()
		return empty, nil
	}
	q, err := f.Queries(rk, rules.RoleBaseline, vars)
	if err != nil {
		return unavailable(err)
	}
	// The instances: the label's values on the series the KPI reads (its
	// trials for a ratio: every instance has trials, not every one has
	// errors) over the history.
	first := q.Query
	if rk.IsRatio() {
		first = q.Trials
	}
	sets, err := instanceSets(ctx, src, first, label, span, step)
	if err != nil {
		return unavailable(fmt.Errorf("find the instances (label %s) before the deploy: %w", label, err))
	}
	names := instancesIn(sets)
	if len(names) < 2 {
		return unavailable(fmt.Errorf("the history before the deploy has %d instance(s) under label %s: comparing instances needs at least 2", len(names), label))
	}
	subsets := drawSubsets(names, min(size, len(names)-1), id)
	empty.Subsets = len(subsets)
	// read returns, for each subset, the history of query with the subset's
	// matcher added (in: the subset, else the other instances).
	read := func(query, what string, in, events bool) ([][]float64, error) {
		out := make([][]float64, len(subsets))
		for i, re := range subsets {
			h, err := historyOf(ctx, src, query, label, re, in, events, step, span, what)
			if err != nil {
				return nil, err
			}
			out[i] = h
		}
		return out, nil
	}
	if !rk.IsRatio() {
		c, err := read(q.Query, "history of a subset of instances", true, false)
		if err != nil {
			return unavailable(err)
		}
		b, err := read(q.Query, "history of the other instances", false, false)
		if err != nil {
			return unavailable(err)
		}
		return detector.CalibrateConcurrent(c, b, 0, window, kpiSpec(rk).Bad, placebos), nil
	}
	var sides [4][][]float64
	for i, x := range []struct {
		query, what string
		in          bool
	}{
		{q.Events, "history events of a subset of instances", true},
		{q.Trials, "history trials of a subset of instances", true},
		{q.Events, "history events of the other instances", false},
		{q.Trials, "history trials of the other instances", false},
	} {
		if sides[i], err = read(x.query, x.what, x.in, i%2 == 0); err != nil {
			return unavailable(err)
		}
	}
	for _, p := range [][2]int{{0, 1}, {2, 3}} {
		for i := range sides[p[0]] {
			noEvents(sides[p[0]][i], sides[p[1]][i])
		}
	}
	return detector.CalibrateConcurrentCounts(sides[0], sides[1], sides[2], sides[3], 0, window, kpiSpec(rk).Bad, placebos), nil
}

// instanceSets returns, for each step of span (on the step grid from
// its start), the sorted values of label on the series that query reads
// (all its vector selectors) at that step: the instances there then.
func instanceSets(ctx context.Context, src collector.Source, query, label string, span Span, step time.Duration) ([][]string, error) {
	sels, err := rules.VectorSelectors(query)
	if err != nil {
		return nil, err
	}
	q := fmt.Sprintf("group by (%s) (%s)", label, strings.Join(sels, " or "))
	out := make([][]string, int(span.To.Sub(span.From)/step)+1)
	for _, s := range split([]Span{span}, step) {
		m, _, err := src.QueryRange(ctx, q, s.From, s.To, step)
		if err != nil {
			return nil, fmt.Errorf("instances (label %s) query: %w", label, err)
		}
		for _, series := range m {
			name := series.Labels[label]
			if name == "" {
				continue
			}
			for _, p := range series.Samples {
				if j := int((p.T.Sub(span.From) + step/2) / step); j >= 0 && j < len(out) {
					out[j] = append(out[j], name)
				}
			}
		}
	}
	for _, names := range out {
		slices.Sort(names)
	}
	return out, nil
}

// instancesIn returns, sorted, the instances of sets at any step.
func instancesIn(sets [][]string) []string {
	var all []string
	for _, names := range sets {
		all = append(all, names...)
	}
	slices.Sort(all)
	return slices.Compact(all)
}

// alternation is the regular expression that matches names and nothing
// else.
func alternation(names []string) string {
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = regexp.QuoteMeta(n)
	}
	return strings.Join(parts, "|")
}

// drawSubsets returns subsets of k of the names, each as the regular
// expression that matches its names and no other: all of them when there
// are at most MaxSubsets, else MaxSubsets distinct ones drawn with a
// generator seeded by seed.
func drawSubsets(names []string, k int, seed string) []string {
	re := func(idx []int) string {
		picked := make([]string, len(idx))
		for i, j := range idx {
			picked[i] = names[j]
		}
		return alternation(picked)
	}
	var out []string
	if binomial(len(names), k) <= MaxSubsets {
		idx := make([]int, k)
		for i := range idx {
			idx[i] = i
		}
		for {
			out = append(out, re(idx))
			// The next combination in lexicographic order.
			i := k - 1
			for i >= 0 && idx[i] == len(names)-k+i {
				i--
			}
			if i < 0 {
				return out
			}
			idx[i]++
			for j := i + 1; j < k; j++ {
				idx[j] = idx[j-1] + 1
			}
		}
	}
	h := fnv.New64a()
	h.Write([]byte(seed))
	r := rand.New(rand.NewPCG(h.Sum64(), uint64(len(names))<<16|uint64(k)))
	seen := map[string]bool{}
	for len(out) < MaxSubsets {
		idx := r.Perm(len(names))[:k]
		slices.Sort(idx)
		if s := re(idx); !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// binomial is n choose k, saturating at MaxSubsets+1.
func binomial(n, k int) int {
	c := 1
	for i := 1; i <= k; i++ {
		c = c * (n - k + i) / i
		if c > MaxSubsets {
			return MaxSubsets + 1
		}
	}
	return c
}

// gatherConcurrent reads a continuous KPI with a concurrent calibration
// across instances (calibrateConcurrent) at a look: its canary and
// baseline on the step grid of the canary span, kept where both have a
// value, and which instances the canary had at each step. When every kept
// step's instances were there before the deploy, the KPI is judged on
// their own past (ownCalibration): the calibration of the instances of
// the first kept step (the first rollout group: the smallest canary and
// the noisiest), and at each step the offset of the instances the canary
// had then (k.Offsets), so that a later group joining changes the
// offsets of its own steps only. Otherwise (new instances) it is judged
// against the A/A placebos of k.Calibration, uncentred.
func gatherConcurrent(ctx context.Context, src collector.Source, f *rules.File, rk *rules.KPI, d deploy.Deploy, cq, bq rules.Queries, step time.Duration,
	canary Span, cal Calibrations, k *detector.KPI) (err error) {
	cg, err := onGrid(ctx, src, cq.Query, step, "canary", canary)
	if err != nil {
		return err
	}
	bg, err := onGrid(ctx, src, bq.Query, step, "baseline", canary)
	if err != nil {
		return err
	}
	sets, err := instanceSets(ctx, src, cq.Query, f.Selectors.Instance, canary, step)
	if err != nil {
		return err
	}
	var keep []int
	for j := range cg[0] {
		if !math.IsNaN(cg[0][j]) && !math.IsNaN(bg[0][j]) {
			keep = append(keep, j)
			k.Canary, k.Baseline = append(k.Canary, cg[0][j]), append(k.Baseline, bg[0][j])
		}
	}
	if len(keep) == 0 {
		return errors.New("no step has both a canary and a baseline value: nothing to pair")
	}
	var (
		own     *detector.Calibration
		offsets []float64
	)
	for _, j := range keep {
		if len(sets[j]) == 0 {
			// Instances not known at a step: A/A comparisons.
			k.Calibration, err = aaCalibration(ctx, src, f, rk, d, cal)
			return err
		}
		c, err := ownCalibration(ctx, src, f, rk, bq, alternation(sets[j]), step, d.Time, cal)
		if err != nil {
			return err
		}
		if c == nil {
			// New instances: A/A comparisons.
			k.Calibration, err = aaCalibration(ctx, src, f, rk, d, cal)
			return err
		}
		if c.Unavailable != "" {
			k.Calibration = c // inconclusive, with why
			return nil
		}
		if own == nil {
			own = c
		}
		offsets = append(offsets, c.Offset)
	}
	k.Calibration, k.Offsets = own, offsets
	return nil
}

// gatherConcurrentCounts is gatherConcurrent for an events/trials KPI: its
// canary's and baseline's events and trials on the step grid of the
// canary span, summed over the steps with counts (a step with trials and
// no events sample has none, as everywhere), and which instances the
// canary had at each step (from its trials). When every step's instances
// with canary trials were there before the deploy, the KPI is judged on
// their own past (ownCalibration): the calibration of the first
// such step's instances, and the rate offset of the instances of each
// step weighted by the canary's trials there (k.RateOffset), its
// variance the largest of theirs. Otherwise it is judged against the A/A
// placebos of k.Calibration.
func gatherConcurrentCounts(ctx context.Context, src collector.Source, f *rules.File, rk *rules.KPI, d deploy.Deploy, cq, bq rules.Queries, step time.Duration,
	canary Span, cal Calibrations, k *detector.KPI) (err error) {
	var g [4][]float64
	for i, x := range []struct{ query, what string }{
		{cq.Events, "canary events"}, {cq.Trials, "canary trials"}, {bq.Events, "baseline events"}, {bq.Trials, "baseline trials"},
	} {
		v, err := onGrid(ctx, src, x.query, step, x.what, canary)
		switch {
		case err == nil:
			g[i] = v[0]
		case errors.Is(err, errNoSeries) && (i == 0 || i == 2):
			g[i] = make([]float64, int(canary.To.Sub(canary.From)/step)+1) // no events yet: none
		default:
			return err
		}
	}
	sets, err := instanceSets(ctx, src, cq.Trials, f.Selectors.Instance, canary, step)
	if err != nil {
		return err
	}
	valid := func(e, t float64) bool { return t >= 0 && !math.IsInf(t, 0) && (math.IsNaN(e) || e >= 0 && e <= t) }
	var steps []int // steps with canary trials
	for j := range g[1] {
		for _, side := range []struct {
			e, t   float64
			counts *detector.Counts
		}{{g[0][j], g[1][j], &k.CanaryCounts}, {g[2][j], g[3][j], &k.BaselineCounts}} {
			if !math.IsNaN(side.t) && valid(side.e, side.t) {
				if !math.IsNaN(side.e) {
					side.counts.Events += side.e
				}
				side.counts.Trials += side.t
			}
		}
		if t := g[1][j]; t > 0 && !math.IsInf(t, 0) {
			steps = append(steps, j)
		}
	}
	// Segments: the steps with one set of instances, in order of first
	// appearance; each with the canary's trials and the baseline's counts.
	type segment struct {
		own    *detector.Calibration
		trials float64 // the canary's
		base   detector.Counts
	}
	segs := map[string]*segment{}
	var order []*segment // in order of first appearance: sums in a fixed order
	aa := func() error {
		k.Calibration, err = aaCalibration(ctx, src, f, rk, d, cal)
		return err
	}
	for _, j := range steps {
		if len(sets[j]) == 0 {
			return aa() // instances not known at a step
		}
		re := alternation(sets[j])
		sg := segs[re]
		if sg == nil {
			c, err := ownCalibration(ctx, src, f, rk, bq, re, step, d.Time, cal)
			if err != nil {
				return err
			}
			if c == nil {
				return aa() // new instances
			}
			if c.Unavailable != "" {
				k.Calibration = c // inconclusive, with why
				return nil
			}
			sg = &segment{own: c}
			segs[re] = sg
			order = append(order, sg)
		}
		sg.trials += g[1][j]
		if e, t := g[2][j], g[3][j]; !math.IsNaN(t) && valid(e, t) {
			if !math.IsNaN(e) {
				sg.base.Events += e
			}
			sg.base.Trials += t
		}
	}
	if len(order) == 0 || !(k.BaselineCounts.Trials > 0) {
		return aa() // no step to centre: judged as A/A comparisons are
	}
	first := order[0]
	// Where the canary's rate would be had nothing changed: in each
	// segment the others' rate there plus the segment's instances' offset,
	// weighted by the canary's trials; less the baseline's pooled rate,
	// which the statistic compares with. With one set of instances that is
	// the set's offset, as each placebo's.
	expected, n := 0.0, 0.0
	for _, sg := range order {
		rate := k.BaselineCounts.Events / k.BaselineCounts.Trials
		if sg.base.Trials > 0 {
			rate = sg.base.Events / sg.base.Trials
		}
		expected, n = expected+sg.trials*(rate+sg.own.Offset), n+sg.trials
	}
	k.Calibration = first.own
	k.RateOffset = expected/n - k.BaselineCounts.Events/k.BaselineCounts.Trials
	if len(order) == 1 {
		k.RateOffset = first.own.Offset // exactly the placebos' arithmetic
	}
	return nil
}

// ownCalibration is the calibration of a KPI on the past of the instances
// that re (an alternation of their names) matches: they and the other
// instances are read through the baseline queries bq, with instance=~re
// and instance!~re added, over the history before the deploy, and
// calibrated with the rule's lookback, each placebo less its own offset
// over the lookback before it (detector.CalibrateConcurrent, or
// detector.CalibrateConcurrentCounts for an events/trials KPI, with one
// subset). The calibration's Offset is their offset over the lookback
// before the deploy: their mean difference from the others, or for an
// events/trials KPI the difference of their pooled rates (Before the
// lookback's counts behind it). Nil when they have no value (no trials)
// in that lookback: new instances. One that says why when the lookback
// and window are more steps than a calibration reads, or a read failed
// otherwise than the source as a whole (which is an error). Kept in cal
// under a key of the KPI and the instances, for the next looks.
func ownCalibration(ctx context.Context, src collector.Source, f *rules.File, rk *rules.KPI, bq rules.Queries, re string, step time.Duration,
	deployed time.Time, cal Calibrations) (*detector.Calibration, error) {
	key := rk.Name + "\x00own\x00" + re
	if c, ok := cal[key]; ok {
		return c, nil
	}
	keep := func(c *detector.Calibration) (*detector.Calibration, error) {
		cal[key] = c
		return c, nil
	}
	a := f.Analysis
	_, placebos := placebosOf(f)
	lookback, window := int(a.Lookback/a.Step), Looks(a)
	steps := min(placebos+lookback+window-1, MaxSeasonalHistory)
	c := detector.Calibration{Lookback: lookback, Window: window, Subsets: 1, Counts: rk.IsRatio()}
	if lookback+window > steps {
		c.Unavailable = fmt.Sprintf("lookback and window are %d steps: more than the %d steps of history a calibration reads", lookback+window, steps)
		return keep(&c)
	}
	span := Span{From: deployed.Add(-time.Duration(steps-1) * step), To: deployed}
	// The reads: the instances' and the others' values, or events and
	// trials. The first read that is not events is the instances' own:
	// without a series there, they are new.
	type read struct {
		query      string
		in, events bool
	}
	reads := []read{{bq.Query, true, false}, {bq.Query, false, false}}
	if rk.IsRatio() {
		reads = []read{{bq.Events, true, true}, {bq.Trials, true, false}, {bq.Events, false, true}, {bq.Trials, false, false}}
	}
	sides := make([][]float64, len(reads))
	own := true
	for i, r := range reads {
		h, err := historyOf(ctx, src, r.query, f.Selectors.Instance, re, r.in, r.events, step, span, "history of the canary's instances")
		switch {
		case err == nil:
			sides[i] = h
		case errors.Is(err, errNoSeries) && own && !r.events:
			return keep(nil) // new instances: no past
		default:
			if err := lookFailed(ctx, err); err != nil {
				return nil, err
			}
			c.Unavailable = "the canary's instances' past: " + err.Error()
			return keep(&c)
		}
		own = own && r.events
	}
	bad := kpiSpec(rk).Bad
	if !rk.IsRatio() {
		d := make([]float64, steps)
		for j := range d {
			d[j] = sides[0][j] - sides[1][j]
		}
		offset := detector.Offset(d[steps-lookback:])
		if math.IsNaN(offset) {
			return keep(nil)
		}
		c = detector.CalibrateConcurrent(sides[:1], sides[1:], lookback, window, bad, placebos)
		c.Offset = offset
		return keep(&c)
	}
	noEvents(sides[0], sides[1])
	noEvents(sides[2], sides[3])
	var cl, bl detector.Counts // the lookback before the deploy
	for j := steps - lookback; j < steps; j++ {
		for _, x := range []struct {
			e, t float64
			c    *detector.Counts
		}{{sides[0][j], sides[1][j], &cl}, {sides[2][j], sides[3][j], &bl}} {
			if x.e >= 0 && x.e <= x.t && !math.IsInf(x.t, 0) {
				x.c.Events, x.c.Trials = x.c.Events+x.e, x.c.Trials+x.t
			}
		}
	}
	offset := detector.RateOffset(cl, bl)
	if math.IsNaN(offset) {
		return keep(nil)
	}
	c = detector.CalibrateConcurrentCounts(sides[0:1], sides[1:2], sides[2:3], sides[3:4], lookback, window, bad, placebos)
	c.Offset, c.Before = offset, [2]detector.Counts{cl, bl}
	return keep(&c)
}

// historyOf reads query on the step grid over span with label=~re added
// (in), or label!~re: the history of some instances, or of the others.
// For events (events), a query without a series reads as none at every
// step: an error counter created with the first error.
func historyOf(ctx context.Context, src collector.Source, query, label, re string, in, events bool, step time.Duration, span Span, what string) ([]float64, error) {
	t := labels.MatchRegexp
	if !in {
		t = labels.MatchNotRegexp
	}
	m, err := labels.NewMatcher(t, label, re)
	if err != nil {
		return nil, err
	}
	q, err := rules.Inject(query, []*labels.Matcher{m})
	if err != nil {
		return nil, err
	}
	g, err := onGrid(ctx, src, q, step, what, span)
	if errors.Is(err, errNoSeries) && events {
		return make([]float64, int(span.To.Sub(span.From)/step)+1), nil
	}
	if err != nil {
		return nil, err
	}
	return g[0], nil
}

// noEvents sets to 0 the events of the steps that have trials and no
// events sample: none happened, as a deploy's own sums count them.
func noEvents(events, trials []float64) {
	for j, e := range events {
		if math.IsNaN(e) && !math.IsNaN(trials[j]) {
			events[j] = 0
		}
	}
}
