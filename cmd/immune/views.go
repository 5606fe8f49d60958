package main

import (
	"context"
	"fmt"
	"math"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/immune-project/immune/analysis"
	"github.com/immune-project/immune/collector"
	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/deploy/httpapi"
	"github.com/immune-project/immune/web"
)

// pageStore shows the supervisor's records on the on-call pages.
type pageStore struct{ s *server }

var _ web.Store = pageStore{}

func (p pageStore) Deploys(context.Context) ([]web.DeploySummary, error) {
	recs := p.s.sup.Records()
	out := make([]web.DeploySummary, 0, len(recs))
	for _, r := range recs {
		out = append(out, summary(r))
	}
	return out, nil
}

func summary(r analysis.Record) web.DeploySummary {
	d := r.Deploy
	v := r.Verdict
	switch {
	case r.State == analysis.StateSkipped:
		v = web.VerdictSkipped
	case v == "pending" || v == "":
		v = web.VerdictRunning
	}
	decided := r.DecidedAt
	if decided.IsZero() && r.State == analysis.StateDecided {
		decided = r.Decision.At
	}
	sum := web.DeploySummary{ID: d.ID, Service: d.Service, Version: d.Version, PreviousVersion: d.PreviousVersion,
		Author: d.Author, Commit: d.Commit, Start: d.Time, Verdict: v, Decided: decided, Shadow: r.Shadow}
	if r.Revert != nil && r.Revert.Reverted {
		t := r.Revert.At
		sum.Revert = &t
	}
	return sum
}

func (p pageStore) Report(ctx context.Context, id string) (web.Report, bool, error) {
	r, ok := p.s.sup.Lookup(id)
	if !ok {
		return web.Report{}, false, nil
	}
	rep := web.Report{DeploySummary: summary(r), Reason: r.Reason}
	if r.State == analysis.StateSkipped {
		rep.Reason = r.LastError
	}
	if len(r.Explanation) > 1 {
		rep.Explanation = strings.Join(r.Explanation[1:], "\n")
	}
	rep.Events = timeline(r)
	if g := p.s.cfg.Grafana; g != nil {
		for _, d := range g.Dashboards {
			u := strings.TrimRight(g.URL, "/") + "/d/" + url.PathEscape(d.UID) + "?" + url.Values{
				"from": {fmt.Sprint(r.Deploy.Time.Add(-time.Hour).UnixMilli())},
				"to":   {fmt.Sprint(r.Deploy.Time.Add(2 * time.Hour).UnixMilli())},
			}.Encode()
			rep.GrafanaLinks = append(rep.GrafanaLinks, web.Link{Title: "Grafana dashboard " + d.UID, URL: u})
		}
	}
	byName := map[string]analysis.KPIReport{}
	if r.Report != nil {
		for _, k := range r.Report.KPIs {
			byName[k.Name] = k
		}
	}
	var series map[string]analysis.KPISeries
	if r.File != nil {
		at := r.Decision.At
		if at.IsZero() {
			at = p.s.now()
			if end := r.Deploy.Time.Add(r.File.Analysis.Window); at.After(end) {
				at = end
			}
		}
		ks, err := analysis.Series(ctx, p.s.src, r.File, r.Deploy, at)
		if err == nil {
			series = map[string]analysis.KPISeries{}
			for _, k := range ks {
				series[k.Name] = k
			}
		}
		for i := range r.File.KPIs {
			rk := &r.File.KPIs[i]
			kr := web.KPIReport{Name: rk.Name, Bad: rk.Bad.String(), Query: rk.Query, Verdict: web.VerdictPending,
				P: math.NaN(), Threshold: math.NaN(), CanaryMedian: math.NaN(), BaselineMedian: math.NaN(),
				Effect: math.NaN(), EffectLow: math.NaN(), EffectHigh: math.NaN(), MDE: math.NaN()}
			if rk.IsRatio() {
				kr.Query = rk.Events + " / " + rk.Trials
			}
			if k, ok := byName[rk.Name]; ok {
				kr.Verdict, kr.Sentence = k.Verdict.String(), k.Explanation
				kr.P, kr.Threshold = k.PValue.Float(), k.Threshold.Float()
				kr.CanaryMedian, kr.BaselineMedian = k.Canary.Float(), k.Baseline.Float()
				kr.Effect, kr.EffectLow, kr.EffectHigh, kr.MDE = k.Estimate.Float(), k.CILow.Float(), k.CIHigh.Float(), k.MDE.Float()
			}
			if ks, ok := series[rk.Name]; ok {
				kr.Canary, kr.Baseline = points(ks.Canary), points(ks.Baseline)
			}
			rep.KPIs = append(rep.KPIs, kr)
		}
	}
	return rep, true, nil
}

func points(ss []collector.Sample) []web.Point {
	out := make([]web.Point, len(ss))
	for i, s := range ss {
		out[i] = web.Point{T: s.T, V: s.V}
	}
	return out
}

func timeline(r analysis.Record) []web.TimelineEvent {
	ev := []web.TimelineEvent{{At: r.Deploy.Time, What: fmt.Sprintf("deploy %s → %s started", orNone(r.Deploy.PreviousVersion), r.Deploy.Version)}}
	for _, g := range r.Groups {
		ev = append(ev, web.TimelineEvent{At: g.StartedAt, What: fmt.Sprintf("rollout group %d started (%d instances)", g.Group, len(g.Instances))})
	}
	for _, st := range r.SelfTests {
		res := "passed"
		if !st.Passed {
			res = "FAILED: " + st.Detail
		}
		ev = append(ev, web.TimelineEvent{At: st.At, What: fmt.Sprintf("self test on %s %s", st.Instance, res)})
	}
	for _, g := range r.Gates {
		ev = append(ev, web.TimelineEvent{At: g.At, What: fmt.Sprintf("gate of group %d: %s (%s)", g.Group, g.Decision, g.Verdict)})
	}
	if r.State == analysis.StateDecided {
		at := r.DecidedAt
		if at.IsZero() {
			at = r.Decision.At
		}
		ev = append(ev, web.TimelineEvent{At: at, What: "verdict: " + r.Verdict})
	}
	if rv := r.Revert; rv != nil {
		what := "revert pulled through " + rv.Trigger
		switch {
		case rv.Error != "":
			what = "revert FAILED: " + rv.Error
		case !rv.Reverted:
			what = "shadow mode: would have reverted"
		}
		ev = append(ev, web.TimelineEvent{At: rv.At, What: what})
	}
	sort.SliceStable(ev, func(i, j int) bool { return ev[i].At.Before(ev[j].At) }) // oldest first
	return ev
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// status answers the HTTP deploy API's GET endpoints from the supervisor.
func (s *server) status(_ context.Context, id string) (httpapi.Status, bool) {
	r, ok := s.sup.Lookup(id)
	if !ok {
		return httpapi.Status{}, false
	}
	var st httpapi.Status
	verdict := r.Verdict
	if verdict == "" {
		verdict = "pending"
	}
	v := &deploy.VerdictRecord{DeployID: id, Verdict: verdict, Reason: r.Reason, Instance: s.cfg.Instance, Groups: r.Gates,
		Decision: deploy.GateWait, At: r.DecidedAt}
	if n := len(r.Gates); n > 0 {
		last := r.Gates[n-1]
		v.Group, v.Decision, v.At = last.Group, last.Decision, last.At
	}
	st.Verdict = v
	if rv := r.Revert; rv != nil && rv.Reverted {
		st.Revert = &deploy.RevertRecord{DeployID: id, Service: r.Deploy.Service, Version: r.Deploy.Version,
			Reason: rv.Reason, At: rv.At, Instance: s.cfg.Instance}
	}
	return st, true
}
