// Package web serves the on-call pages: the list of deploys and, for each,
// a report an engineer woken at 3 a.m. understands in ten seconds: the
// verdict and its reason first, then per KPI a chart of canary and
// baseline across the window with the deploy, the decision and the revert
// marked, the numbers behind the verdict, and links to Grafana. The pages
// are server-rendered html/template with inline CSS and SVG charts drawn on
// the server: no front-end build.
//
// The pages read their data through Store; the analysis' records are
// adapted to it by the caller.
package web

import (
	"context"
	"time"
)

// Store is where the pages read deploys and their reports.
type Store interface {
	// Deploys lists the deploys, newest first.
	Deploys(ctx context.Context) ([]DeploySummary, error)
	// Report is the report of one deploy; false when there is none.
	Report(ctx context.Context, id string) (Report, bool, error)
}

// Verdicts of a deploy (DeploySummary.Verdict) and of a KPI
// (KPIReport.Verdict). They are also CSS class suffixes: one word each.
const (
	VerdictPass         = "pass"
	VerdictFail         = "fail"
	VerdictInconclusive = "inconclusive"
	// VerdictRunning: a deploy under analysis, no verdict yet.
	VerdictRunning = "running"
	// VerdictSkipped: a deploy immune did not analyse (no rule file, …);
	// the report's Reason says why.
	VerdictSkipped = "skipped"
	// VerdictPending: a KPI without a result yet.
	VerdictPending = "pending"
)

// DeploySummary is one line of the deploy list.
type DeploySummary struct {
	ID              string    `json:"id"`
	Service         string    `json:"service"`
	Version         string    `json:"version"`
	PreviousVersion string    `json:"previous_version,omitempty"`
	Author          string    `json:"author,omitempty"`
	Commit          string    `json:"commit,omitempty"`
	Start           time.Time `json:"start"`
	// Verdict is pass, fail, inconclusive, running while undecided, or
	// skipped when not analysed.
	Verdict string `json:"verdict"`
	// Decided is when the verdict was reached (zero while running or
	// skipped).
	Decided time.Time `json:"decided,omitzero"`
	// Shadow: judged in shadow mode, never reverted.
	Shadow bool `json:"shadow"`
	// Revert is when the revert path was pulled; nil when it was not.
	Revert *time.Time `json:"revert,omitempty"`
}

// Report is everything the report page shows of a deploy.
type Report struct {
	DeploySummary
	// Reason is the verdict's first sentence.
	Reason string `json:"reason"`
	// Explanation is the verdict's other sentences, one per line.
	Explanation  string          `json:"explanation,omitempty"`
	KPIs         []KPIReport     `json:"kpis"`
	GrafanaLinks []Link          `json:"grafana_links,omitempty"`
	Events       []TimelineEvent `json:"events,omitempty"`
}

// KPIReport is one KPI's test and its data.
type KPIReport struct {
	Name string `json:"name"`
	// Bad is the direction that is bad: increase, decrease or either.
	Bad   string `json:"bad"`
	Query string `json:"query,omitempty"`
	// Verdict is pass, fail, inconclusive, or pending without a result.
	Verdict  string `json:"verdict"`
	Sentence string `json:"sentence"`
	// P is the KPI's p-value; Threshold what it had to beat to fail.
	P              float64 `json:"p"`
	Threshold      float64 `json:"threshold"`
	CanaryMedian   float64 `json:"canary_median"`
	BaselineMedian float64 `json:"baseline_median"`
	// Effect is the shift of the canary against the baseline, with its
	// confidence interval [EffectLow, EffectHigh].
	Effect     float64 `json:"effect"`
	EffectLow  float64 `json:"effect_low"`
	EffectHigh float64 `json:"effect_high"`
	// MDE is the minimum detectable effect with the data seen.
	MDE float64 `json:"mde"`
	// Unit is shown after the values ("%", "ms", …); may be empty.
	Unit     string  `json:"unit,omitempty"`
	Canary   []Point `json:"canary"`
	Baseline []Point `json:"baseline"`
}

// Point is one value of a series.
type Point struct {
	T time.Time `json:"t"`
	V float64   `json:"v"`
}

// Link is a titled URL.
type Link struct {
	Title string `json:"title"`
	URL   string `json:"url"`
}

// TimelineEvent is one line of a deploy's timeline.
type TimelineEvent struct {
	At   time.Time `json:"at"`
	What string    `json:"what"`
}
