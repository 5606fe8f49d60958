package rules

import (
	"errors"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
)

func TestInject(t *testing.T) {
	version := labels.MustNewMatcher(labels.MatchEqual, "version", "1.2.3")
	track := labels.MustNewMatcher(labels.MatchNotRegexp, "track", "canary|shadow")
	tests := []struct {
		name string
		expr string
		ms   []*labels.Matcher
		want string
	}{
		{"ratio", `sum(rate(a_total[5m])) / sum(rate(b_total{code="500"}[5m]))`, []*labels.Matcher{version},
			`sum(rate(a_total{version="1.2.3"}[5m])) / sum(rate(b_total{code="500",version="1.2.3"}[5m]))`},
		{"histogram", `histogram_quantile(0.99, sum by (le) (rate(h_bucket{job="api"}[1m])))`, []*labels.Matcher{version, track},
			`histogram_quantile(0.99, sum by (le) (rate(h_bucket{job="api",track!~"canary|shadow",version="1.2.3"}[1m])))`},
		{"subquery and offset", `max_over_time(rate(x[1m])[30m:1m] offset 5m)`, []*labels.Matcher{version},
			`max_over_time(rate(x{version="1.2.3"}[1m])[30m:1m] offset 5m)`},
		{"at modifier", `sum(x @ 100)`, []*labels.Matcher{version},
			`sum(x{version="1.2.3"} @ 100.000)`},
		{"vector matching", `x / on (instance) group_left y`, []*labels.Matcher{version},
			`x{version="1.2.3"} / on (instance) group_left () y{version="1.2.3"}`},
		{"name only in braces", `{__name__="up"}`, []*labels.Matcher{version},
			`{__name__="up",version="1.2.3"}`},
		{"same matcher already there", `x{version="1.2.3"}`, []*labels.Matcher{version},
			`x{version="1.2.3"}`},
		{"no matchers", `sum(x)`, nil, `sum(x)`},
		{"no selectors", `vector(1)`, []*labels.Matcher{version}, `vector(1)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Inject(tt.expr, tt.ms)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			if _, err := parseExpr(got); err != nil {
				t.Errorf("result does not parse: %v", err)
			}
		})
	}
}

func TestInjectErrors(t *testing.T) {
	version := labels.MustNewMatcher(labels.MatchEqual, "version", "1.2.3")
	if _, err := Inject(`x{version="2"}`, []*labels.Matcher{version}); !errors.Is(err, ErrMatcherConflict) {
		t.Errorf("conflict: got %v", err)
	}
	if _, err := Inject(`x{version=~"1.*"}`, []*labels.Matcher{version}); !errors.Is(err, ErrMatcherConflict) {
		t.Errorf("conflict on type: got %v", err)
	}
	if _, err := Inject(`sum(x`, []*labels.Matcher{version}); !errors.Is(err, ErrQuery) {
		t.Errorf("bad query: got %v", err)
	}
}

func TestMatchers(t *testing.T) {
	vars := Vars{Service: "checkout", Version: "1.2.3", PreviousVersion: "1.2.2", Deploy: "d-42"}
	tests := []struct {
		sel  string
		want string
	}{
		{`{version="$version"}`, `version="1.2.3"`},
		{`{version="${previous_version}", svc="$service"}`, `version="1.2.2",svc="checkout"`},
		{`{deploy!="$deploy"}`, `deploy!="d-42"`},
		{`{version=~"$version|${previous_version}"}`, `version=~"1\\.2\\.3|1\\.2\\.2"`},
		{`{pod=~".*-canary$"}`, `pod=~".*-canary$"`},
		{`{cost="$$5 $1"}`, `cost="$5 $1"`},
		{`{v="${version}x"}`, `v="1.2.3x"`},
	}
	for _, tt := range tests {
		s := &Selectors{Canary: tt.sel, Baseline: `{x="y"}`}
		ms, err := s.Matchers(RoleCanary, vars)
		if err != nil {
			t.Errorf("%s: %v", tt.sel, err)
			continue
		}
		got := ""
		for i, m := range ms {
			if i > 0 {
				got += ","
			}
			got += m.String()
		}
		if got != tt.want {
			t.Errorf("%s: got %s, want %s", tt.sel, got, tt.want)
		}
	}

	for _, sel := range []string{`{version="$version"}`, `{v="$nope"}`, `{v="${version"}`, `{v="${1}"}`} {
		s := &Selectors{Baseline: sel}
		if _, err := s.Matchers(RoleBaseline, Vars{}); !errors.Is(err, ErrPlaceholder) {
			t.Errorf("%s: got %v, want a placeholder error", sel, err)
		}
	}
}

func TestQueries(t *testing.T) {
	f, errs := ParseFile("testdata/concurrent.good.yaml")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	vars := Vars{Service: "api-gateway", Version: "v2", PreviousVersion: "v1", Deploy: "d7"}
	got, err := f.Queries(f.KPI("errors"), RoleCanary, vars)
	if err != nil {
		t.Fatal(err)
	}
	want := Queries{
		Events: `sum(rate(http_requests_total{code=~"5..",service="api-gateway",version="v2"}[1m]))`,
		Trials: `sum(rate(http_requests_total{service="api-gateway",version="v2"}[1m]))`,
	}
	if got != want {
		t.Errorf("canary:\ngot  %+v\nwant %+v", got, want)
	}
	got, err = f.Queries(f.KPI("latency"), RoleBaseline, vars)
	if err != nil {
		t.Fatal(err)
	}
	want = Queries{Query: `histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{deploy!="d7",service="api-gateway",version="v1"}[1m])))`}
	if got != want {
		t.Errorf("baseline:\ngot  %+v\nwant %+v", got, want)
	}
	// $service defaults to the file's service.
	got, err = f.Queries(f.KPI("errors"), RoleCanary, Vars{Version: "v2"})
	if err != nil || got.Trials != `sum(rate(http_requests_total{service="api-gateway",version="v2"}[1m]))` {
		t.Errorf("default service: got %+v, %v", got, err)
	}
	if _, err := f.Queries(f.KPI("latency"), RoleBaseline, Vars{Service: "x", Version: "v2"}); !errors.Is(err, ErrPlaceholder) {
		t.Errorf("missing previous version: got %v", err)
	}

	// Other baselines: the queries as written, for both roles.
	f, errs = ParseFile("testdata/minimal.good.yaml")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	k := &f.KPIs[0]
	for _, role := range []Role{RoleCanary, RoleBaseline} {
		got, err := f.Queries(k, role, Vars{})
		if err != nil || got != (Queries{Query: k.Query}) {
			t.Errorf("%v: got %+v, %v", role, got, err)
		}
	}
}

func TestRoleString(t *testing.T) {
	if RoleCanary.String() != "canary" || RoleBaseline.String() != "baseline" || Role(5).String() != "Role(5)" {
		t.Error(RoleCanary, RoleBaseline, Role(5))
	}
}
