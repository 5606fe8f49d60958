package web

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// chart is the geometry of one KPI's SVG chart, computed here and drawn by
// the "chart" template (which escapes every text).
type chart struct {
	ID                       string // unique in the page, for aria-labelledby
	Title                    string
	W, H                     float64
	Left, Right, Top, Bottom float64 // the plot area
	Canary, Baseline         string  // SVG path data; empty when no point
	XTicks, YTicks           []tick
	Markers                  []marker
	Empty                    bool
	Unit                     string
}

type tick struct {
	Pos   float64
	Label string
}

type marker struct {
	X              float64
	Label          string
	Class          string // deploy, decision, revert
	LabelX, LabelY float64
	Anchor         string // start or end: labels near the right edge are drawn to the left
}

const (
	chartW      = 760
	chartH      = 260
	chartLeft   = 64.0
	chartRight  = 744.0
	chartTop    = 34.0
	chartBottom = 222.0
)

// newChart lays out canary and baseline of k across the window, with a
// vertical marker at the deploy, the decision and the revert.
func newChart(id string, k KPIReport, deployed, decided time.Time, reverted *time.Time) chart {
	c := chart{ID: id, Title: k.Name, W: chartW, H: chartH, Left: chartLeft, Right: chartRight, Top: chartTop, Bottom: chartBottom, Unit: k.Unit}
	var t0, t1 time.Time
	vmin, vmax := math.Inf(1), math.Inf(-1)
	seeT := func(t time.Time) {
		if t.IsZero() {
			return
		}
		if t0.IsZero() || t.Before(t0) {
			t0 = t
		}
		if t1.IsZero() || t.After(t1) {
			t1 = t
		}
	}
	n := 0
	for _, s := range [][]Point{k.Canary, k.Baseline} {
		for _, p := range s {
			if math.IsNaN(p.V) || math.IsInf(p.V, 0) || p.T.IsZero() {
				continue
			}
			n++
			seeT(p.T)
			vmin, vmax = math.Min(vmin, p.V), math.Max(vmax, p.V)
		}
	}
	if n == 0 {
		c.Empty = true
		return c
	}
	seeT(deployed)
	seeT(decided)
	if reverted != nil {
		seeT(*reverted)
	}
	if !t1.After(t0) {
		t0, t1 = t0.Add(-time.Minute), t1.Add(time.Minute)
	}
	lo, hi, step := niceRange(vmin, vmax, 5)
	x := func(t time.Time) float64 {
		return c.Left + float64(t.Sub(t0))/float64(t1.Sub(t0))*(c.Right-c.Left)
	}
	y := func(v float64) float64 {
		return c.Bottom - (v-lo)/(hi-lo)*(c.Bottom-c.Top)
	}
	c.Canary = path(k.Canary, x, y)
	c.Baseline = path(k.Baseline, x, y)
	for v := lo; v <= hi+step/2; v += step {
		c.YTicks = append(c.YTicks, tick{Pos: y(v), Label: formatTick(v, step)})
	}
	tstep := timeStep(t1.Sub(t0), 7)
	first := t0.Truncate(tstep)
	if first.Before(t0) {
		first = first.Add(tstep)
	}
	layout := "15:04"
	if t1.Sub(t0) > 20*time.Hour {
		layout = "Jan 2 15:04"
	}
	for t := first; !t.After(t1); t = t.Add(tstep) {
		c.XTicks = append(c.XTicks, tick{Pos: x(t), Label: t.UTC().Format(layout)})
	}
	add := func(t time.Time, label, class string) {
		if t.IsZero() {
			return
		}
		m := marker{X: x(t), Label: label, Class: class, LabelY: c.Top - 6 - float64(len(c.Markers)%2)*12, Anchor: "start"}
		m.LabelX = m.X + 4
		if m.X > c.Right-90 {
			m.Anchor, m.LabelX = "end", m.X-4
		}
		c.Markers = append(c.Markers, m)
	}
	add(deployed, "deploy "+deployed.UTC().Format("15:04"), "deploy")
	add(decided, "decision "+decided.UTC().Format("15:04"), "decision")
	if reverted != nil {
		add(*reverted, "revert "+reverted.UTC().Format("15:04"), "revert")
	}
	return c
}

// path is SVG path data through the points; a NaN breaks the line.
func path(ps []Point, x func(time.Time) float64, y func(float64) float64) string {
	var b strings.Builder
	pen := false
	for _, p := range ps {
		if math.IsNaN(p.V) || math.IsInf(p.V, 0) || p.T.IsZero() {
			pen = false
			continue
		}
		cmd := "L"
		if !pen {
			cmd = "M"
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s%.1f,%.1f", cmd, x(p.T), y(p.V))
		pen = true
	}
	return b.String()
}

// niceRange widens [lo, hi] to round ticks about n apart.
func niceRange(lo, hi float64, n int) (float64, float64, float64) {
	if hi == lo {
		d := math.Abs(lo) * 0.1
		if d == 0 {
			d = 1
		}
		lo, hi = lo-d, hi+d
	}
	step := niceNum((hi - lo) / float64(n-1))
	return math.Floor(lo/step) * step, math.Ceil(hi/step) * step, step
}

// niceNum rounds x to the nearest 1, 2 or 5 times a power of ten.
func niceNum(x float64) float64 {
	exp := math.Floor(math.Log10(x))
	f := x / math.Pow(10, exp)
	var nf float64
	switch {
	case f < 1.5:
		nf = 1
	case f < 3:
		nf = 2
	case f < 7:
		nf = 5
	default:
		nf = 10
	}
	return nf * math.Pow(10, exp)
}

// formatTick prints v with as many decimals as the step needs.
func formatTick(v, step float64) string {
	if math.Abs(v) < step/1e6 {
		v = 0
	}
	d := max(0, int(-math.Floor(math.Log10(step))))
	if math.Abs(v) >= 1e6 || (v != 0 && math.Abs(v) < 1e-4) {
		return fmt.Sprintf("%.2g", v)
	}
	return fmt.Sprintf("%.*f", d, v)
}

var timeSteps = []time.Duration{
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour,
}

// timeStep is the smallest round step giving at most n ticks over span.
func timeStep(span time.Duration, n int) time.Duration {
	for _, s := range timeSteps {
		if span/s < time.Duration(n) {
			return s
		}
	}
	return 24 * time.Hour * (span/(24*time.Hour)/time.Duration(n) + 1)
}
