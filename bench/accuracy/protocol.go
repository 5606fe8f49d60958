package main

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// series is one metric series of the benchmark as a sequence of samples on
// a regular clock: sample i is at Start + i·Step.
type series struct {
	// Name identifies the series: the CSV's path under the NAB directory
	// without .csv ("realAWSCloudwatch/ec2_cpu_utilization_24ae8d"), or
	// gauss/NN for a synthetic one.
	Name   string
	Start  time.Time
	Step   time.Duration
	Values []float64
	// Irregular[i] is true when the original timestamps of samples i and
	// i+1 were not Step apart (a gap, a jitter). Nil for a regular series.
	Irregular []bool
}

// time returns the time of sample i.
func (s *series) time(i int) time.Time { return s.Start.Add(time.Duration(i) * s.Step) }

// irregularSpan reports whether any interval between samples from and to
// (inclusive) was irregular in the original timestamps.
func (s *series) irregularSpan(from, to int) bool {
	for i := max(from, 0); i < to && i < len(s.Irregular); i++ {
		if s.Irregular[i] {
			return true
		}
	}
	return false
}

// deployPoints places deploys as the protocol does: every l+w samples from
// sample l, each with l samples before it and w samples from it on. The
// returned t is the first sample of the deploy's window.
func deployPoints(n, l, w int) []int {
	var ts []int
	for t := l; t+w <= n; t += l + w {
		ts = append(ts, t)
	}
	return ts
}

// median returns the median of xs (the mean of the two middle values for
// an even count), NaN for none. xs is not modified.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// madConstant makes the MAD a consistent estimator of a normal σ.
const madConstant = 1.4826

// robustScale returns the lookback's median and s = 1.4826 × MAD, the
// median of the absolute deviations from the median.
func robustScale(lookback []float64) (med, s float64) {
	med = median(lookback)
	dev := make([]float64, len(lookback))
	for i, x := range lookback {
		dev[i] = math.Abs(x - med)
	}
	return med, madConstant * median(dev)
}

// benchCase is a change made to the deploy's window [t, t+W): the values
// become center + Scale·(x − center) + Shift·unit, where center is the
// lookback's median and unit the deploy's scale s (σ for the Gaussian
// series).
type benchCase struct {
	Name  string
	Shift float64
	Scale float64
}

// nabCases are the protocol's cases.
var nabCases = []benchCase{
	{"null", 0, 1},
	{"shift-0.5", 0.5, 1},
	{"shift-1", 1, 1},
	{"shift-2", 2, 1},
	{"shift-4", 4, 1},
	{"scale-3", 0, 3},
}

// gaussCases are the synthetic table's: shifts in units of the noise's σ.
var gaussCases = []benchCase{
	{"null", 0, 1},
	{"shift-0.5", 0.5, 1},
	{"shift-1", 1, 1},
	{"shift-2", 2, 1},
}

// apply changes the window in place.
func (c benchCase) apply(window []float64, center, unit float64) {
	for i, x := range window {
		if c.Scale != 1 {
			x = center + c.Scale*(x-center)
		}
		window[i] = x + c.Shift*unit
	}
}

// deployment is one deploy point of a series with its scale.
type deployment struct {
	T int // first sample of the window
	// Center is the lookback's median, S = 1.4826 × MAD of the lookback.
	Center, S float64
	// Irregular: the original timestamps of [t−L, t+W) were not regular.
	Irregular bool
}

// benchCopy is one case of one deploy: the series from From to T+W
// (exclusive) with the case applied to the window. It is built from the
// original series, so that no change made for a deploy or a case is
// visible to another.
type benchCopy struct {
	ID     string // the copy label's value: <series>/<t>/<case>
	Series *series
	Deploy deployment
	Case   benchCase
	From   int       // index in Series of Values[0]
	Values []float64 // samples From … T+W−1
}

// copyID names a copy.
func copyID(series string, t int, c string) string { return fmt.Sprintf("%s/%d/%s", series, t, c) }

// makeCopy builds the copy of s for deploy d and case c, keeping at most
// history samples before the window (0: all of them).
func makeCopy(s *series, d deployment, c benchCase, w, history int, unit float64) benchCopy {
	from := 0
	if history > 0 {
		from = max(0, d.T-history)
	}
	vals := slices.Clone(s.Values[from : d.T+w])
	c.apply(vals[d.T-from:], d.Center, unit)
	return benchCopy{ID: copyID(s.Name, d.T, c.Name), Series: s, Deploy: d, Case: c, From: from, Values: vals}
}

// lookback returns the l samples before the window of the copy.
func (c *benchCopy) lookback(l int) []float64 {
	t := c.Deploy.T - c.From
	return c.Values[t-l : t]
}

// window returns the copy's window samples.
func (c *benchCopy) window() []float64 { return c.Values[c.Deploy.T-c.From:] }

// deployTime is the deploy's time in immune's terms: the time of the last
// sample before the window (sample t−1). immune's first look is one step
// later, at sample t.
func (c *benchCopy) deployTime() time.Time { return c.Series.time(c.Deploy.T - 1) }

// delaySamples converts the time a detector decided at into the
// benchmark's delay: the number of window samples it had seen, so that
// deciding on the first changed sample (sample t, one step after the
// deploy's time) is delay 1.
func delaySamples(deployed, decided time.Time, step time.Duration) int {
	return int((decided.Sub(deployed) + step/2) / step)
}
