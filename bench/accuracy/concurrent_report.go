package main

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// concurrentReport is the concurrent table.
type concurrentReport struct {
	Params     params
	MinHistory int
	Fleets     []*fleet
	Records    []record
}

// concurrentDetectors are the table's detectors, in its columns' order.
var concurrentDetectors = []struct{ name, title string }{
	{detImmune, "immune calibrated"},
	{detUncalibrated, "immune uncalibrated"},
	{detKayenta, "Kayenta-style"},
}

func (c *concurrentReport) write(w io.Writer) {
	p := c.Params
	fmt.Fprintf(w, "### Concurrent baseline on real multi-machine data (NAB EC2 fleets)\n\n")
	var fleets []string
	for _, f := range c.Fleets {
		var gaps []string
		for i, m := range f.Missing {
			if m > 0 {
				gaps = append(gaps, fmt.Sprintf("%s has no row for %d", f.Instances[i], m))
			}
		}
		desc := fmt.Sprintf("%s: %s, %d steps of %s from %s UTC, rows of one step within %s of each other",
			f.Name, strings.Join(f.Instances, ", "), f.steps(), model.Duration(f.Step), f.Start.UTC().Format(time.DateTime), model.Duration(f.Skew))
		if len(gaps) > 0 {
			desc += "; " + strings.Join(gaps, ", ") + " of them"
		}
		if f.Dropped > 0 {
			desc += fmt.Sprintf("; %d rows beyond the steps every machine covers left out", f.Dropped)
		}
		fleets = append(fleets, desc)
	}
	judged, skipped, irregular := 0, 0, 0
	for _, r := range c.Records {
		switch {
		case r.Verdict == verdictSkipped:
			skipped++
		case r.Detector == detImmune && r.Case == p.Cases[0].Name:
			judged++
			if r.Irregular {
				irregular++
			}
		}
	}
	fmt.Fprintf(w, "Fleets of NAB EC2 machines recorded at the same time, one instance each, the KPI `avg(cpu)` over the instances, "+
		"the files aligned row by row on one grid (%s). "+
		"Every machine in turn is the canary (rollout groups 1 and n−1): its series `version=\"v2\"` after the deploy, the others `v1`. "+
		"Deploys every W steps from the first with %d steps of history, each copy keeping the %d steps before it that the calibration reads. "+
		"W = %d steps, alpha %g, `bad: increase`; shift-k: k·s added to the canary's window, s = 1.4826 × MAD of its L = %d values before the deploy. "+
		"%d deploys judged, each in %d cases; %d skipped with a flat lookback (s = 0); %d of the judged span a step where a machine has no row. "+
		"immune calibrated: baseline `concurrent`, lookback L, `selectors.instance` (placebos of the canary machine's own past against the others, "+
		"each less its mean difference from them over the lookback before it, as the deploy is); "+
		"uncalibrated: the same without `instance:` (Mann-Whitney of the canary's values against the other instances' over the same steps, p × the looks); "+
		"Kayenta-style: Mann-Whitney 98%% interval of the canary's W window values against the other machines' mean at the same steps, one look at the end of the window. "+
		"fail: share judged fail (null: the false rollback rate); delay: median window samples seen when failing.\n\n",
		strings.Join(fleets, "; "), c.MinHistory, p.History, p.W, p.Alpha, p.L, judged, len(p.Cases), skipped, irregular)

	fleetOf := func(series string) string { return group(series) }
	m := tallies(c.Records, fleetOf)
	head, rule := "| fleet | case | deploys |", "|---|---|---:|"
	for _, d := range concurrentDetectors {
		head += fmt.Sprintf(" %s: fail |", d.title)
		rule += "---:|"
		if d.name != detKayenta {
			head += fmt.Sprintf(" %s: inconclusive |", d.title)
			rule += "---:|"
		}
		head += fmt.Sprintf(" %s: delay |", d.title)
		rule += "---:|"
	}
	fmt.Fprintf(w, "%s\n%s\n", head, rule)
	groups := []string{}
	for _, f := range c.Fleets {
		groups = append(groups, f.Name)
	}
	groups = append(groups, "")
	for _, g := range groups {
		name := g
		if g == "" {
			name = "all"
		}
		for _, cs := range p.Cases {
			im := m[key{g, cs.Name, detImmune}]
			if im == nil {
				continue
			}
			row := fmt.Sprintf("| %s | %s | %d |", name, caseLabel(cs.Name), im.N)
			for _, d := range concurrentDetectors {
				t := m[key{g, cs.Name, d.name}]
				if t == nil {
					t = &tally{}
				}
				row += fmt.Sprintf(" %s |", pct(t.failRate()))
				if d.name != detKayenta {
					row += fmt.Sprintf(" %s |", pct(t.inconclusiveRate()))
				}
				row += fmt.Sprintf(" %s |", num(t.medianDelay(), 1))
			}
			fmt.Fprintln(w, row)
		}
	}

	// By canary: where the false rollbacks and the misses are.
	per := tallies(c.Records, func(s string) string { return s })
	skips := map[string]int{}
	for _, r := range c.Records {
		if r.Verdict == verdictSkipped {
			skips[r.Series]++
		}
	}
	fmt.Fprintf(w, "\nBy canary machine: its median cpu over the fleet's steps and median s over the judged deploys; "+
		"false rollbacks (null), immune calibrated's inconclusive share over all cases, and detection of shift-1 and shift-4:\n\n")
	fmt.Fprintf(w, "| canary | median cpu | median s | deploys | skipped (s = 0) |")
	for _, d := range concurrentDetectors {
		fmt.Fprintf(w, " %s: null |", d.title)
		if d.name == detImmune {
			fmt.Fprintf(w, " %s: inconclusive |", d.title)
		}
		fmt.Fprintf(w, " %s: shift-1 | %s: shift-4 |", d.title, d.title)
	}
	fmt.Fprintf(w, "\n|---|---:|---:|---:|---:|%s\n", strings.Repeat("---:|", 3*len(concurrentDetectors)+1))
	scales := map[string][]float64{}
	for _, r := range c.Records {
		if r.Detector == detImmune && r.Case == p.Cases[0].Name {
			scales[r.Series] = append(scales[r.Series], r.S)
		}
	}
	for _, f := range c.Fleets {
		for i := range f.Instances {
			s := f.seriesName(i)
			null := per[key{s, "null", detImmune}]
			n := 0
			if null != nil {
				n = null.N
			}
			var level []float64
			for _, v := range f.Values[i] {
				if !math.IsNaN(v) {
					level = append(level, v)
				}
			}
			fmt.Fprintf(w, "| %s | %s | %s | %d | %d |", s, num(median(level), 3), num(median(scales[s]), 3), n, skips[s])
			for _, d := range concurrentDetectors {
				rate := func(cs string) string {
					if t := per[key{s, cs, d.name}]; t != nil {
						return pct(t.failRate())
					}
					return "–"
				}
				fmt.Fprintf(w, " %s |", rate("null"))
				if d.name == detImmune {
					var all tally
					for _, cs := range p.Cases {
						if t := per[key{s, cs.Name, d.name}]; t != nil {
							all.N += t.N
							all.Inconclusive += t.Inconclusive
						}
					}
					fmt.Fprintf(w, " %s |", pct(all.inconclusiveRate()))
				}
				fmt.Fprintf(w, " %s | %s |", rate("shift-1"), rate("shift-4"))
			}
			fmt.Fprintln(w)
		}
	}
	fmt.Fprintln(w)
}
