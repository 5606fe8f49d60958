package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// tally counts one detector's decisions on one case.
type tally struct {
	N, Fail, Inconclusive int
	Delays                []int // of the failed deploys
}

func (t *tally) add(r record) {
	t.N++
	switch r.Verdict {
	case "fail":
		t.Fail++
		if r.Delay != nil {
			t.Delays = append(t.Delays, *r.Delay)
		}
	case "inconclusive":
		t.Inconclusive++
	}
}

func (t *tally) failRate() float64         { return ratio(t.Fail, t.N) }
func (t *tally) inconclusiveRate() float64 { return ratio(t.Inconclusive, t.N) }

func ratio(a, b int) float64 {
	if b == 0 {
		return math.NaN()
	}
	return float64(a) / float64(b)
}

// medianDelay is the median delay of the failed deploys, NaN for none.
func (t *tally) medianDelay() float64 {
	xs := make([]float64, len(t.Delays))
	for i, d := range t.Delays {
		xs[i] = float64(d)
	}
	return median(xs)
}

// meanDelay is the mean delay of the failed deploys, NaN for none.
func (t *tally) meanDelay() float64 {
	if len(t.Delays) == 0 {
		return math.NaN()
	}
	s := 0
	for _, d := range t.Delays {
		s += d
	}
	return float64(s) / float64(len(t.Delays))
}

// key identifies a tally.
type key struct{ Series, Case, Detector string }

// tallies groups records by (series, case, detector); the empty Series
// holds the totals. group maps a record's series to the series key it is
// counted under besides the totals ("" for none).
func tallies(recs []record, group func(string) string) map[key]*tally {
	m := map[key]*tally{}
	add := func(k key, r record) {
		t := m[k]
		if t == nil {
			t = &tally{}
			m[k] = t
		}
		t.add(r)
	}
	for _, r := range recs {
		if r.Detector == "" {
			continue
		}
		add(key{"", r.Case, r.Detector}, r)
		if group != nil {
			if g := group(r.Series); g != "" {
				add(key{g, r.Case, r.Detector}, r)
			}
		}
	}
	return m
}

func pct(x float64) string {
	if math.IsNaN(x) {
		return "–"
	}
	return fmt.Sprintf("%.1f%%", 100*x)
}

func num(x float64, prec int) string {
	if math.IsNaN(x) {
		return "–"
	}
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.*f", prec, x), "0"), ".")
}

func caseLabel(c string) string {
	if c == "null" {
		return "null (false rollbacks)"
	}
	return c
}

// nabReport is what the NAB table needs to know besides the records.
type nabReport struct {
	Params  params
	Files   []fileInfo
	Records []record
}

// group is a NAB series' directory (realAWSCloudwatch, …).
func group(series string) string {
	g, _, ok := strings.Cut(series, "/")
	if !ok {
		return ""
	}
	return g
}

func (n *nabReport) write(w io.Writer) {
	p := n.Params
	judged, flat, irregularSkipped, irregular := 0, 0, 0, 0
	for _, r := range n.Records {
		switch {
		case r.Verdict == verdictSkipped && strings.HasPrefix(r.Reason, "flat"):
			flat++
		case r.Verdict == verdictSkipped:
			irregularSkipped++
		case r.Detector == detImmune && r.Case == p.Cases[0].Name:
			judged++
			if r.Irregular {
				irregular++
			}
		}
	}
	steps := map[time.Duration]int{}
	irrFiles, dupFiles, dupRows := 0, 0, 0
	for _, f := range n.Files {
		steps[f.Step]++
		if f.Irregular > 0 {
			irrFiles++
		}
		if f.Duplicates > 0 {
			dupFiles++
			dupRows += f.Duplicates
		}
	}
	var stepList []string
	for _, st := range slices.Sorted(maps.Keys(steps)) {
		stepList = append(stepList, fmt.Sprintf("%s for %d", model.Duration(st), steps[st]))
	}

	fmt.Fprintf(w, "### Deploy regressions on NAB series\n\n")
	head := fmt.Sprintf("%d series, L = %d, W = %d samples, alpha %g, rule `bad: increase`, baseline `before`. "+
		"%d deploys judged, each in %d cases; skipped: %d with a flat lookback (s = 0)",
		len(n.Files), p.L, p.W, p.Alpha, judged, len(p.Cases), flat)
	if p.SkipIrregular {
		head += fmt.Sprintf(", %d spanning irregular timestamps", irregularSkipped)
	}
	notes := []string{head + ".", fmt.Sprintf("Sampling interval Δ (the median interval of each file): %s.", strings.Join(stepList, ", "))}
	if !p.SkipIrregular {
		notes = append(notes, fmt.Sprintf("%d files have other intervals (gaps, jitter): every file is put on a regular clock of its Δ, "+
			"so each deploy has exactly L baseline and W window samples; %d of the judged deploys span such an interval.",
			irrFiles, irregular))
	}
	if dupFiles > 0 {
		notes = append(notes, fmt.Sprintf("%d files repeat timestamps: immune's CSV loader keeps the later row (%d rows dropped).",
			dupFiles, dupRows))
	}
	fmt.Fprintf(w, "%s\n\n", strings.Join(notes, " "))
	fmt.Fprintf(w, "fail: share of the deploys judged fail (for null, the false rollback rate). "+
		"delay: median over the failed deploys of the window samples seen when failing "+
		"(deploy time = sample t−1; failing on the first changed sample t is delay 1).\n\n")

	m := tallies(n.Records, group)
	fmt.Fprintf(w, "| case | deploys | immune: fail | immune: inconclusive | immune: delay | Kayenta-style: fail | Kayenta-style: delay | threshold-style: fail | threshold-style: delay |\n")
	fmt.Fprintf(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, c := range p.Cases {
		im, ka, th := m[key{"", c.Name, detImmune}], m[key{"", c.Name, detKayenta}], m[key{"", c.Name, detThreshold}]
		if im == nil || ka == nil || th == nil {
			continue
		}
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s | %s | %s | %s |\n", caseLabel(c.Name), im.N,
			pct(im.failRate()), pct(im.inconclusiveRate()), num(im.medianDelay(), 1),
			pct(ka.failRate()), num(ka.medianDelay(), 1),
			pct(th.failRate()), num(th.medianDelay(), 1))
	}

	// Where the false rollbacks come from.
	null := p.Cases[0].Name
	var groups []string
	for k := range m {
		if k.Series != "" && !slices.Contains(groups, k.Series) {
			groups = append(groups, k.Series)
		}
	}
	slices.Sort(groups)
	fmt.Fprintf(w, "\nFalse rollbacks (null case) by group of series:\n\n")
	fmt.Fprintf(w, "| group | deploys | immune | Kayenta-style | threshold-style |\n|---|---:|---:|---:|---:|\n")
	for _, g := range groups {
		im, ka, th := m[key{g, null, detImmune}], m[key{g, null, detKayenta}], m[key{g, null, detThreshold}]
		if im == nil || ka == nil || th == nil {
			continue
		}
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s |\n", g, im.N, pct(im.failRate()), pct(ka.failRate()), pct(th.failRate()))
	}

	var irr [3]tally
	for _, r := range n.Records {
		if r.Irregular && r.Case == null {
			for i, d := range []string{detImmune, detKayenta, detThreshold} {
				if r.Detector == d {
					irr[i].add(r)
				}
			}
		}
	}
	if irr[0].N > 0 {
		fmt.Fprintf(w, "\nOf these, the %d null deploys spanning irregular timestamps: immune %s, Kayenta-style %s, threshold-style %s.\n",
			irr[0].N, pct(irr[0].failRate()), pct(irr[1].failRate()), pct(irr[2].failRate()))
	}

	perSeries := tallies(n.Records, func(s string) string { return s })
	type row struct {
		name       string
		im, ka, th *tally
	}
	var rows []row
	for _, f := range n.Files {
		im := perSeries[key{f.Name, null, detImmune}]
		if im == nil || im.Fail == 0 {
			continue
		}
		rows = append(rows, row{f.Name, im, perSeries[key{f.Name, null, detKayenta}], perSeries[key{f.Name, null, detThreshold}]})
	}
	slices.SortStableFunc(rows, func(a, b row) int { return cmp.Compare(b.im.Fail, a.im.Fail) })
	if len(rows) > 0 {
		fmt.Fprintf(w, "\nSeries where immune rolled back harmless (null) deploys, most first:\n\n")
		fmt.Fprintf(w, "| series | deploys | immune | Kayenta-style | threshold-style |\n|---|---:|---:|---:|---:|\n")
		for _, r := range rows {
			fmt.Fprintf(w, "| %s | %d | %d | %d | %d |\n", r.name, r.im.N, r.im.Fail, failCount(r.ka), failCount(r.th))
		}
	}
	fmt.Fprintln(w)
}

func failCount(t *tally) int {
	if t == nil {
		return 0
	}
	return t.Fail
}

// waldBound is Wald's lower bound on the expected number of samples any
// test with error rates alpha (false alarm) and beta (miss) needs to
// detect a shift of delta σ in i.i.d. Gaussian noise.
func waldBound(delta, alpha, beta float64) float64 {
	return ((1-beta)*math.Log((1-beta)/alpha) + beta*math.Log(beta/(1-alpha))) / (delta * delta / 2)
}

// waldBeta is the miss rate of the bound.
const waldBeta = 0.05

// gaussReport is the synthetic table.
type gaussReport struct {
	Params        params
	Series, Count int // series and deploys per series
	Records       []record
}

func (g *gaussReport) write(w io.Writer) {
	p := g.Params
	fmt.Fprintf(w, "### Synthetic: i.i.d. Gaussian noise\n\n")
	fmt.Fprintf(w, "%d series of N(0, 1) noise (seeded), %d deploys each; L = %d, W = %d samples, alpha %g, "+
		"the baseline estimated from the L samples before the deploy as in real use; shifts of δσ from the deploy's first sample on. "+
		"The window is longer than the NAB table's so that a 0.5σ shift can be caught at all. "+
		"Wald's bound: the least mean number of samples any test with α = %g, β = %g needs, "+
		"((1−β)·ln((1−β)/α) + β·ln(β/(1−α))) / (δ²/2). Delays are over the detected deploys.\n\n",
		g.Series, g.Count, p.L, p.W, p.Alpha, p.Alpha, waldBeta)
	m := tallies(g.Records, nil)
	var missed []string
	fmt.Fprintf(w, "| case | deploys | immune: fail | immune: inconclusive | mean delay | median delay | Wald's bound | mean delay / bound |\n")
	fmt.Fprintf(w, "|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, c := range p.Cases {
		t := m[key{"", c.Name, detImmune}]
		if t == nil {
			continue
		}
		bound, mult := "–", "–"
		if c.Shift > 0 {
			b := waldBound(c.Shift, p.Alpha, waldBeta)
			bound, mult = num(b, 1), num(t.meanDelay()/b, 2)
		}
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s | %s | %s |\n", caseLabel(c.Name), t.N,
			pct(t.failRate()), pct(t.inconclusiveRate()), num(t.meanDelay(), 1), num(t.medianDelay(), 1), bound, mult)
		if c.Shift > 0 && t.failRate() < 1-waldBeta {
			missed = append(missed, c.Name)
		}
	}
	if len(missed) > 0 {
		fmt.Fprintf(w, "\nWald's bound is for tests that miss at most %g%% of the shifts; immune caught fewer than %g%% of %s within W = %d samples, "+
			"and a mean delay over the caught deploys only understates the delay (the misses would count at more than W).\n",
			100*waldBeta, 100*(1-waldBeta), strings.Join(missed, ", "), p.W)
	}
	fmt.Fprintln(w)
}

// writeJSON writes one record per line.
func writeJSON(w io.Writer, recs ...[]record) error {
	enc := json.NewEncoder(w)
	for _, rs := range recs {
		for _, r := range rs {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
	}
	return nil
}

// countsReport is the events/trials table.
type countsReport struct {
	Params  params
	Spec    countsSpec
	Records []record
}

// countsGroup is an events/trials series' level (cv0.10 of
// counts/cv0.10/007).
func countsGroup(series string) string {
	parts := strings.Split(series, "/")
	if len(parts) != 3 {
		return ""
	}
	return parts[1]
}

func (c *countsReport) write(w io.Writer) {
	p, s := c.Params, c.Spec
	perSeries := len(countsDeployPoints(s.Steps, p.L, p.W, s.MinHistory))
	fmt.Fprintf(w, "### Synthetic events/trials: per-request rates\n\n")
	fmt.Fprintf(w, "%d series per level of %d days of %s steps (seeded), each step %g requests and errors "+
		"binomial at a per-step rate: %g%% around a daily cycle of ±%g%% (%d steps, random phase), "+
		"beta-distributed with coefficient of variation cv (cv = 0: the cycle itself). "+
		"Deploys every L + W steps with at least %d steps (a week) before the window: %d per series, each in %d cases; "+
		"L = %d, W = %d steps, alpha %g, rule `events:`/`trials:` with `bad: increase`, baseline `before` "+
		"(calibrated on placebo deploys of the history). "+
		"rate-xk: the window's errors redrawn binomially at k × the step's rate. "+
		"Binomial ×W: the one-sided two-proportion test (`detector.Proportion`) of the window so far against the lookback, "+
		"fail when p × W ≤ alpha at any look (immune before the calibration). "+
		"delay: median window steps seen when failing.\n\n",
		s.Series, s.Steps/countsDay, model.Duration(gaussStep), s.Trials, 100*s.Rate, 100*countsCycle, countsDay,
		s.MinHistory, perSeries, len(countsCases), p.L, p.W, p.Alpha)
	m := tallies(c.Records, countsGroup)
	fmt.Fprintf(w, "| cv | case | deploys | immune: fail | immune: inconclusive | immune: delay | binomial ×W: fail | binomial ×W: delay |\n")
	fmt.Fprintf(w, "|---|---|---:|---:|---:|---:|---:|---:|\n")
	for _, cv := range s.Levels {
		g := countsLevelName(cv)
		for _, cc := range countsCases {
			im, bi := m[key{g, cc.Name, detImmune}], m[key{g, cc.Name, detBinomial}]
			if im == nil || bi == nil {
				continue
			}
			fmt.Fprintf(w, "| %s | %s | %d | %s | %s | %s | %s | %s |\n", num(cv, 2), caseLabel(cc.Name), im.N,
				pct(im.failRate()), pct(im.inconclusiveRate()), num(im.medianDelay(), 1),
				pct(bi.failRate()), num(bi.medianDelay(), 1))
		}
	}
	fmt.Fprintln(w)
}
