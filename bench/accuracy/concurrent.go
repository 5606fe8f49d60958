package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/prometheus/common/model"

	"github.com/immune-project/immune/analysis"
	"github.com/immune-project/immune/collector"
	"github.com/immune-project/immune/collector/load"
	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/detector"
)

// The concurrent table: a `concurrent` baseline on real multi-machine
// data. NAB holds EC2 CPU series of machines recorded over the same two
// weeks; each group of them is a fleet, one instance per machine, of a
// service whose KPI is avg(cpu) over its instances. Every machine takes
// its turn as the canary (a first rollout group of one), judged against
// the other machines over the same steps: by immune calibrated across
// instances (selectors.instance: the canary machine's own past against
// the others, less its offset from them), by immune without
// the calibration (Mann-Whitney of the canary's values against the
// others', p × the looks), and by a Kayenta-style judge of the canary's
// window against the others' mean over the same steps.

const (
	benchConcurrent = "concurrent"
	// detUncalibrated is immune with a concurrent baseline and no
	// selectors.instance: the Mann-Whitney test of the canary's values
	// against the baseline's over the same steps, p × the looks.
	detUncalibrated = "immune-uncalibrated"
	// The fleet's series in the store: cpu{copy, instance, version}.
	cpuMetric     = "cpu"
	instanceLabel = "instance"
	versionLabel  = "version"
	oldVersion    = "v1"
	newVersion    = "v2"
	// fleetStep is the fleets' sampling interval.
	fleetStep = 5 * time.Minute
	// fleetMaxSkew is the most the timestamps of one grid step may differ
	// between the machines of a fleet (less than a step).
	fleetMaxSkew = 4 * time.Minute
	// concurrentMinHistory is the least history before a deploy's window:
	// two days of 5-minute steps, for the calibration's placebos.
	concurrentMinHistory = 2 * countsDay
	// concurrentPerUnit is how many deploy points of one canary share a
	// store (each in every case).
	concurrentPerUnit = 24
)

// fleetSpec names the machines of a fleet: the CSV files
// <Dir>/<Prefix><id>.csv under the NAB directory, one instance each.
type fleetSpec struct {
	Name   string
	Dir    string
	Prefix string
	IDs    []string
}

// concurrentFleets are NAB's EC2 CPU series recorded at the same time.
var concurrentFleets = []fleetSpec{
	{Name: "ec2-feb", Dir: "realAWSCloudwatch", Prefix: "ec2_cpu_utilization_", IDs: []string{"24ae8d", "53ea38", "5f5533", "fe7f93"}},
	{Name: "ec2-apr", Dir: "realAWSCloudwatch", Prefix: "ec2_cpu_utilization_", IDs: []string{"77c1ca", "ac20cd", "c6585a"}},
}

// concurrentCases are the table's cases: the canary's window shifted by
// k × s, s = 1.4826 × MAD of the canary's L values before the deploy.
var concurrentCases = []benchCase{
	{"null", 0, 1},
	{"shift-0.5", 0.5, 1},
	{"shift-1", 1, 1},
	{"shift-2", 2, 1},
	{"shift-4", 4, 1},
}

// fleet is the machines of a fleet on one grid of fleetStep: step j is at
// Start + j·Step for every machine.
type fleet struct {
	Name      string
	Instances []string // the machines' ids, the instance label's values
	Start     time.Time
	Step      time.Duration
	// Values[i][j] is machine i's value at step j, NaN where its file has
	// no row for the step.
	Values [][]float64
	// Skew is the largest difference between the timestamps the machines'
	// files give one step of the grid.
	Skew time.Duration
	// Missing[i] is how many steps of the grid machine i has no row for;
	// Dropped how many rows, in all, lay beyond the steps every machine
	// covers.
	Missing []int
	Dropped int
}

func (f *fleet) time(j int) time.Time { return f.Start.Add(time.Duration(j) * f.Step) }

// steps is the length of the fleet's grid.
func (f *fleet) steps() int { return len(f.Values[0]) }

// seriesName is the records' series of a canary: <fleet>/<id>.
func (f *fleet) seriesName(canary int) string { return f.Name + "/" + f.Instances[canary] }

// readFleet reads a fleet's files with immune's CSV loader and puts them
// on one grid.
//
// The machines were recorded at the same 5-minute intervals but not at
// the same minutes (24ae8d and 53ea38 at :30, :35, …, 5f5533 and fe7f93 at
// :27, :32, …; 77c1ca at :25, c6585a and ac20cd at :29), so the files are
// aligned by row: each file's row k is grid step k, the grid's times
// being the first file's. Where a file skips intervals (ac20cd has a
// 15-minute and a 20-minute interval) its rows after the gap move on by
// as many steps as the gap holds, so that a row never lands more than the
// files' offset away from the others' rows of its step; the steps of the
// gap have no value for that machine. readFleet checks that every row of
// a file is on its own 5-minute clock and that the rows of one step lie
// within fleetMaxSkew of each other (the first rows' offset: 3 minutes in
// February, 4 in April), and keeps the steps every file covers.
func readFleet(dir string, spec fleetSpec) (*fleet, error) {
	if len(spec.IDs) < 2 {
		return nil, fmt.Errorf("fleet %s: %d machines, want at least 2", spec.Name, len(spec.IDs))
	}
	f := &fleet{Name: spec.Name, Instances: slices.Clone(spec.IDs), Step: fleetStep}
	type file struct {
		samples []collector.Sample
		steps   []int // each row's grid step
	}
	files := make([]file, len(spec.IDs))
	n := math.MaxInt
	for i, id := range spec.IDs {
		path := filepath.Join(dir, spec.Dir, spec.Prefix+id+".csv")
		r, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("fleet %s: %w", spec.Name, err)
		}
		ss, _, err := load.CSV(path, r, load.Options{})
		r.Close()
		if err != nil {
			return nil, fmt.Errorf("fleet %s: %w", spec.Name, err)
		}
		if len(ss) != 1 || len(ss[0].Samples) < 2 {
			return nil, fmt.Errorf("fleet %s: %s: want one series of at least two samples, got %d series", spec.Name, path, len(ss))
		}
		smp := ss[0].Samples
		steps := make([]int, len(smp))
		for k, p := range smp {
			off := p.T.Sub(smp[0].T)
			steps[k] = int((off + fleetStep/2) / fleetStep)
			if off != time.Duration(steps[k])*fleetStep {
				return nil, fmt.Errorf("fleet %s: %s: row at %s is not on the file's %s clock", spec.Name, path, p.T.Format(time.DateTime), model.Duration(fleetStep))
			}
		}
		files[i] = file{smp, steps}
		n = min(n, steps[len(steps)-1]+1)
	}
	f.Start = files[0].samples[0].T
	f.Values = make([][]float64, len(files))
	f.Missing = make([]int, len(files))
	for i, fl := range files {
		vs := make([]float64, n)
		for j := range vs {
			vs[j] = math.NaN()
		}
		for k, p := range fl.samples {
			j := fl.steps[k]
			if j >= n {
				f.Dropped++
				continue
			}
			skew := p.T.Sub(f.time(j)).Abs()
			if skew > fleetMaxSkew {
				return nil, fmt.Errorf("fleet %s: %s at %s is %s from the grid's step %d (%s): the files do not line up",
					spec.Name, spec.IDs[i], p.T.Format(time.DateTime), skew, j, f.time(j).Format(time.DateTime))
			}
			f.Skew = max(f.Skew, skew)
			vs[j] = p.V
		}
		for _, v := range vs {
			if math.IsNaN(v) {
				f.Missing[i]++
			}
		}
		f.Values[i] = vs
	}
	return f, nil
}

// fleetDeployPoints are the deploy points of a fleet of n steps: the first
// window starts after minHistory steps, the next ones every w steps, none
// overlapping another.
func fleetDeployPoints(n, w, minHistory int) []int {
	var ts []int
	for t := minHistory; t+w <= n; t += w {
		ts = append(ts, t)
	}
	return ts
}

// concurrentHistory is how many steps before a deploy analysis.Calibrate
// reads for a concurrent KPI with selectors.instance
// (analysis/concurrent.go): placebos + lookback + W − 1, with
// max(detector.MaxPlacebos, 2 × detector.PlacebosFor(alpha)) placebos for
// a rule file of one KPI. A copy keeps that much history.
func concurrentHistory(alpha float64, l, w int) int {
	return min(max(detector.MaxPlacebos, 2*detector.PlacebosFor(alpha))+l+w-1, analysis.MaxSeasonalHistory)
}

// fleetUnits are the units of a fleet: every machine as the canary, its
// deploy points concurrentPerUnit to a store.
func fleetUnits(f *fleet, p params, minHistory int) []*unit {
	var out []*unit
	ts := fleetDeployPoints(f.steps(), p.W, minHistory)
	for c := range f.Instances {
		for chunk := range slices.Chunk(ts, concurrentPerUnit) {
			out = append(out, &unit{Bench: benchConcurrent, Params: p, Fleet: f, Canary: c, Deploys: chunk})
		}
	}
	return out
}

// fleetDeployment is the deploy of the canary at t: its scale s from the
// canary's L values before t; Irregular when a machine has no value at a
// step of [t−L, t+W). skip says why the deploy is not judged ("" when it
// is).
func fleetDeployment(f *fleet, canary, t int, p params) (d deployment, skip string) {
	var lb []float64
	for _, v := range f.Values[canary][t-p.L : t] {
		if !math.IsNaN(v) {
			lb = append(lb, v)
		}
	}
	d.T = t
	d.Center, d.S = robustScale(lb)
	for _, vs := range f.Values {
		for _, v := range vs[t-p.L : t+p.W] {
			if math.IsNaN(v) {
				d.Irregular = true
			}
		}
	}
	if !(d.S > 0) {
		return d, "flat lookback: s = 1.4826 × MAD = 0"
	}
	return d, ""
}

// fleetCopy is one case of one deploy of a fleet: every machine's values
// from From to T+W (exclusive), the case applied to the canary's window.
type fleetCopy struct {
	ID     string // the copy label's value: <fleet>/<canary>/<t>/<case>
	Fleet  *fleet
	Canary int
	Deploy deployment
	Case   benchCase
	From   int
	// Values[i] are machine i's values at steps From … T+W−1.
	Values [][]float64
}

// makeFleetCopy builds the copy of the canary's deploy d in case c,
// keeping history steps before the window (0: all of them).
func makeFleetCopy(f *fleet, canary int, d deployment, c benchCase, w, history int) fleetCopy {
	from := 0
	if history > 0 {
		from = max(0, d.T-history)
	}
	cp := fleetCopy{ID: copyID(f.seriesName(canary), d.T, c.Name), Fleet: f, Canary: canary, Deploy: d, Case: c, From: from,
		Values: make([][]float64, len(f.Values))}
	for i, vs := range f.Values {
		cp.Values[i] = slices.Clone(vs[from : d.T+w])
	}
	c.apply(cp.Values[canary][d.T-from:], d.Center, d.S)
	return cp
}

// storeSeries are the copy as the store holds it: cpu{copy="<id>",
// instance="<machine>", version="v1"} for every machine, the canary's up
// to the deploy's instant (sample t−1) only, and from its first window
// step on cpu{…, version="v2"}. Steps without a value have no sample.
func (c *fleetCopy) storeSeries() []collector.Series {
	t := c.Deploy.T - c.From
	var out []collector.Series
	add := func(i int, version string, from, to int) {
		s := collector.Series{Labels: collector.Labels{collector.MetricName: cpuMetric, copyLabel: c.ID,
			instanceLabel: c.Fleet.Instances[i], versionLabel: version}}
		for j := from; j < to; j++ {
			if v := c.Values[i][j]; !math.IsNaN(v) {
				s.Samples = append(s.Samples, collector.Sample{T: c.Fleet.time(c.From + j), V: v})
			}
		}
		if len(s.Samples) > 0 {
			out = append(out, s)
		}
	}
	for i, vs := range c.Values {
		if i == c.Canary {
			add(i, oldVersion, 0, t)
			add(i, newVersion, t, len(vs))
			continue
		}
		add(i, oldVersion, 0, len(vs))
	}
	return out
}

// deployTime is sample t−1's time, as for the other tables.
func (c *fleetCopy) deployTime() time.Time { return c.Fleet.time(c.Deploy.T - 1) }

// deploy is the copy's deploy: v1 to v2, the canary a first rollout
// group of one instance, the other machines the second.
func (c *fleetCopy) deploy() deploy.Deploy {
	return deploy.Deploy{ID: c.ID, Time: c.deployTime(), Version: newVersion, PreviousVersion: oldVersion,
		Groups: []int{1, len(c.Values) - 1}}
}

// record returns the copy's record for a detector, verdict unset.
func (c *fleetCopy) record(det string) record {
	return record{Bench: benchConcurrent, Series: c.Fleet.seriesName(c.Canary), Deploy: c.Deploy.T, Time: c.deployTime(),
		Case: c.Case.Name, Detector: det, S: c.Deploy.S, Irregular: c.Deploy.Irregular}
}

// sides are what the Kayenta-style judge compares: the canary's window
// values, and the baseline's at the same steps, the mean of the other
// machines' values (avg(cpu) of the v1 instances). Steps without a value
// on a side are left out of that side.
func (c *fleetCopy) sides() (baseline, canary []float64) {
	t := c.Deploy.T - c.From
	for j := t; j < len(c.Values[c.Canary]); j++ {
		if v := c.Values[c.Canary][j]; !math.IsNaN(v) {
			canary = append(canary, v)
		}
		sum, n := 0.0, 0
		for i, vs := range c.Values {
			if i != c.Canary && !math.IsNaN(vs[j]) {
				sum += vs[j]
				n++
			}
		}
		if n > 0 {
			baseline = append(baseline, sum/float64(n))
		}
	}
	return baseline, canary
}

// concurrentRuleFile is a copy's rule file: baseline concurrent over W
// steps at alpha, the canary and the baseline told apart by the version
// label, the KPI avg(cpu) of the copy with bad: increase; calibrated adds
// selectors.instance (placebos of the canary machine's own past against
// the others, each less its mean difference from them over the lookback
// before it, L steps, as the deploy is; without instance the lookback is
// not used).
func concurrentRuleFile(id string, p params, step time.Duration, calibrated bool) string {
	dur := func(n int) string { return model.Duration(time.Duration(n) * step).String() }
	inst := ""
	if calibrated {
		inst = fmt.Sprintf("  instance: %s\n", instanceLabel)
	}
	return fmt.Sprintf(`version: 1
service: bench
analysis:
  baseline: concurrent
  lookback: %s
  window: %s
  step: %s
  alpha: %g
selectors:
  canary: '{%s="$version"}'
  baseline: '{%s="$previous_version"}'
%skpis:
  - name: %s
    query: 'avg(%s)'
    bad: increase
`, dur(p.L), dur(p.W), dur(1), p.Alpha, versionLabel, versionLabel, inst, cpuMetric, copySelector(cpuMetric, id))
}

// runConcurrent judges every case of the unit's deploys with the three
// detectors, in a store of its own, and returns the records in the
// copies' order after those of the skipped deploys.
func (u *unit) runConcurrent(ctx context.Context) ([]record, error) {
	p, f := u.Params, u.Fleet
	var out []record
	var cps []fleetCopy
	for _, t := range u.Deploys {
		d, why := fleetDeployment(f, u.Canary, t, p)
		if why != "" {
			out = append(out, record{Bench: benchConcurrent, Series: f.seriesName(u.Canary), Deploy: t, Time: f.time(t - 1),
				Verdict: verdictSkipped, S: d.S, Irregular: d.Irregular, Reason: why})
			continue
		}
		for _, c := range p.Cases {
			cps = append(cps, makeFleetCopy(f, u.Canary, d, c, p.W, p.History))
		}
	}
	if len(cps) == 0 {
		return out, nil
	}
	store, err := storeOf(ctx, len(cps), func(i int) []collector.Series { return cps[i].storeSeries() })
	if err != nil {
		return nil, err
	}
	defer store.Close()
	for i := range cps {
		c := &cps[i]
		for _, j := range []struct {
			det        string
			calibrated bool
		}{{detImmune, true}, {detUncalibrated, false}} {
			r, err := replayDeploy(ctx, store, concurrentRuleFile(c.ID, p, f.Step, j.calibrated), c.deploy(), f.Step, c.record(j.det))
			if err != nil {
				return nil, err
			}
			out = append(out, r)
		}
		kv, err := kayenta(c.sides())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.ID, err)
		}
		if kv.Fail {
			kv.Delay = p.W // one look, at the end of the window
		}
		out = append(out, withVerdict(c.record(detKayenta), kv))
	}
	return out, nil
}
