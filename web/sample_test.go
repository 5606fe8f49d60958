package web_test

import (
	"context"
	"errors"
	"math"
	"slices"
	"time"

	"github.com/immune-project/immune/web"
)

// fakeStore is a Store of fixed, realistic deploys.
type fakeStore struct {
	reports []web.Report
	err     error
}

var _ web.Store = (*fakeStore)(nil)

func (s *fakeStore) Deploys(ctx context.Context) ([]web.DeploySummary, error) {
	if s.err != nil {
		return nil, s.err
	}
	var out []web.DeploySummary
	for _, r := range s.reports {
		out = append(out, r.DeploySummary)
	}
	slices.SortFunc(out, func(a, b web.DeploySummary) int { return b.Start.Compare(a.Start) })
	return out, nil
}

func (s *fakeStore) Report(ctx context.Context, id string) (web.Report, bool, error) {
	if s.err != nil {
		return web.Report{}, false, s.err
	}
	for _, r := range s.reports {
		if r.ID == id {
			return r, true, nil
		}
	}
	return web.Report{}, false, nil
}

var errStoreDown = errors.New("read analyses: zookeeper: connection lost")

var (
	deployAt = time.Date(2026, 11, 25, 2, 50, 0, 0, time.UTC)
	decideAt = deployAt.Add(25 * time.Minute)
	revertAt = decideAt.Add(20 * time.Second)
)

// series is a deterministic noisy series of n points a minute apart.
func series(from time.Time, n int, level, noise, phase float64) []web.Point {
	ps := make([]web.Point, n)
	for i := range ps {
		x := float64(i)
		v := level + noise*(math.Sin(x*0.9+phase)+0.5*math.Sin(x*2.3+2*phase))
		ps[i] = web.Point{T: from.Add(time.Duration(i) * time.Minute), V: v}
	}
	return ps
}

func sampleStore() *fakeStore {
	revert := revertAt
	failed := web.Report{
		DeploySummary: web.DeploySummary{
			ID: "checkout-20261125-0250", Service: "checkout", Version: "v2.4.0", PreviousVersion: "v2.3.9",
			Author: "ana.lima", Commit: "9f1c2e7", Start: deployAt, Verdict: web.VerdictFail, Decided: decideAt, Revert: &revert,
		},
		Reason:      "conversion fell from 3.1% to 2.41% (effect −0.69 points, 95% CI −0.92 to −0.45), p=0.0004 < 0.005.",
		Explanation: "latency_p99 and error_ratio show no significant change.\nThe deploy was reverted 20 seconds after the decision.",
		GrafanaLinks: []web.Link{
			{Title: "Checkout overview", URL: "https://grafana.example/d/checkout-main/checkout?from=1795661400000&to=1795665000000"},
			{Title: "Checkout latency", URL: "https://grafana.example/d/checkout-lat/latency"},
		},
		KPIs: []web.KPIReport{
			{
				Name: "conversion", Bad: "decrease", Verdict: web.VerdictFail, Unit: "%",
				Query:    `sum(rate(checkout_completed_total[5m])) / sum(rate(checkout_started_total[5m])) * 100`,
				Sentence: "conversion fell from 3.1% to 2.41%: −0.69 points [−0.92, −0.45], p=0.0004 < 0.005.",
				P:        0.0004, Threshold: 0.005, BaselineMedian: 3.1, CanaryMedian: 2.41, Effect: -0.69, EffectLow: -0.92, EffectHigh: -0.45, MDE: 0.21,
				Baseline: series(deployAt.Add(-60*time.Minute), 61, 3.1, 0.08, 0),
				Canary:   series(deployAt.Add(time.Minute), 25, 2.41, 0.09, 1),
			},
			{
				Name: "latency_p99", Bad: "increase", Verdict: web.VerdictPass, Unit: "ms",
				Query:    `histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{job="checkout"}[5m]))) * 1000`,
				Sentence: "latency_p99 did not change significantly: +6 ms [−3, +15], p=0.21.",
				P:        0.21, Threshold: 0.005, BaselineMedian: 212, CanaryMedian: 218, Effect: 6, EffectLow: -3, EffectHigh: 15, MDE: 11,
				Baseline: series(deployAt.Add(-60*time.Minute), 61, 212, 7, 2),
				Canary:   series(deployAt.Add(time.Minute), 25, 218, 8, 3),
			},
			{
				Name: "error_ratio", Bad: "increase", Verdict: web.VerdictPass, Unit: "%",
				Sentence: "error_ratio did not change significantly: +0.01 points [−0.02, +0.04], p=0.64.",
				P:        0.64, Threshold: 0.005, BaselineMedian: 0.12, CanaryMedian: 0.13, Effect: 0.01, EffectLow: -0.02, EffectHigh: 0.04, MDE: 0.05,
				Baseline: series(deployAt.Add(-60*time.Minute), 61, 0.12, 0.015, 4),
				Canary:   series(deployAt.Add(time.Minute), 25, 0.13, 0.015, 5),
			},
		},
		Events: []web.TimelineEvent{
			{At: deployAt, What: "group 0 (1 instance) took traffic"},
			{At: deployAt.Add(10 * time.Minute), What: "group 1 (2 instances) took traffic"},
			{At: decideAt, What: "verdict fail: conversion"},
			{At: revertAt, What: "revert requested at /deploys/checkout/checkout-20261125-0250/revert"},
		},
	}
	passed := web.Report{
		DeploySummary: web.DeploySummary{ID: "payments-881", Service: "payments", Version: "v9.1.0", PreviousVersion: "v9.0.3",
			Author: "bo", Start: deployAt.Add(-3 * time.Hour), Verdict: web.VerdictPass, Decided: deployAt.Add(-3*time.Hour + 62*time.Minute)},
		Reason: "No KPI changed significantly in 1h02m.",
	}
	running := web.Report{
		DeploySummary: web.DeploySummary{ID: "search-12", Service: "search", Version: "v4", PreviousVersion: "v3",
			Author: "chen", Start: deployAt.Add(40 * time.Minute), Verdict: web.VerdictRunning},
	}
	shadow := web.Report{
		DeploySummary: web.DeploySummary{ID: "ledger-3", Service: "ledger", Version: "v1.2", Author: "dee",
			Start: deployAt.Add(-26 * time.Hour), Verdict: web.VerdictInconclusive, Decided: deployAt.Add(-25 * time.Hour), Shadow: true},
		Reason: "Too little traffic to judge: 38 requests in the window, 200 needed.",
	}
	return &fakeStore{reports: []web.Report{failed, passed, running, shadow}}
}
