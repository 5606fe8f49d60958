package analysis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/value"

	"github.com/immune-project/immune/collector"
	"github.com/immune-project/immune/collector/embedded"
	"github.com/immune-project/immune/collector/load"
	"github.com/immune-project/immune/collector/promtest"
	"github.com/immune-project/immune/collector/remote"
	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/detector"
)

const nabCPU = "../../shared/bench/nab/data/realAWSCloudwatch/ec2_cpu_utilization_5f5533.csv"

// TestRealPrometheusSameVerdicts: a NAB series, loaded into the embedded
// store and written into a real Prometheus (Debian's package, started by
// scripts/prometheus.sh), gives the same decisions through both sources:
// same verdicts, same looks, same p-values, for harmless deploys and for
// deploys whose window was shifted up.
func TestRealPrometheusSameVerdicts(t *testing.T) {
	url := promtest.URL(t)
	ctx := context.Background()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	run := "analysis-" + hex.EncodeToString(b)
	f, err := os.Open(nabCPU)
	if err != nil {
		t.Fatal(err)
	}
	series, _, err := load.CSV(nabCPU, f, load.Options{Labels: map[string]string{"immune_test": run}})
	f.Close()
	if err != nil || len(series) != 1 {
		t.Fatalf("load: %d series, %v", len(series), err)
	}
	// Deploys every 72 samples from sample 48, as the benchmark places
	// them; every other one gets its window raised by 15 (about 3 sd of
	// this series), so both verdicts occur.
	s := series[0]
	var deploys []deploy.Deploy
	for i, n := 48, 0; i+24 <= len(s.Samples); i, n = i+72, n+1 {
		deploys = append(deploys, deploy.Deploy{ID: fmt.Sprintf("d%02d", n), Time: s.Samples[i-1].T})
		if n%2 == 1 {
			for j := i; j < i+24; j++ {
				s.Samples[j].V += 15
			}
		}
	}
	store, err := embedded.Open(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if err := store.Write(ctx, series); err != nil {
		t.Fatal(err)
	}
	if err := promtest.RemoteWrite(ctx, url, series); err != nil {
		t.Fatal(err)
	}
	prom, err := remote.New(remote.Options{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer prom.Close()

	rf := parseRules(t, fmt.Sprintf(`
service: ec2
analysis: {baseline: before, lookback: 4h, window: 2h, step: 5m, alpha: 0.01}
kpis:
  - name: cpu
    query: value{immune_test=%q}
    bad: increase
`, run))
	fails := 0
	for _, d := range deploys {
		want, err := Replay(ctx, store, rf, d, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Replay(ctx, prom, rf, d, nil)
		if err != nil {
			t.Fatal(err)
		}
		w, g := want.Verdict.KPIs[0], got.Verdict.KPIs[0]
		if got.Verdict.Outcome != want.Verdict.Outcome || got.Looks != want.Looks ||
			math.Abs(g.PValue-w.PValue) > 1e-12 || g.Decision.NCanary != w.Decision.NCanary || g.Decision.NBaseline != w.Decision.NBaseline {
			t.Errorf("deploy %s: Prometheus %v after %d looks (%s); embedded %v after %d looks (%s)",
				d.ID, got.Verdict.Outcome, got.Looks, g.Sentence, want.Verdict.Outcome, want.Looks, w.Sentence)
		}
		if want.Verdict.Outcome == detector.Fail {
			fails++
		}
	}
	if fails == 0 || fails == len(deploys) {
		t.Errorf("%d of %d deploys failed: the comparison needs both verdicts", fails, len(deploys))
	}
	t.Logf("%d deploys, %d failed, the same through both sources", len(deploys), fails)
}

// TestRealPrometheusConcurrent: concurrent KPIs calibrated across
// instances read the same through a real Prometheus as through the
// embedded store (the instance sets' range query of group by over every
// selector, the regular-expression matchers on the instance label, the
// history of each side): same verdicts, looks and p-values. For a
// continuous KPI: a harmless canary on a host that runs above the others,
// the same canary risen by 2 sd, and a new instance; for an events/trials
// KPI: a harmless canary on the instance with the highest error rate, its
// rate 1.3 times, and a new instance.
func TestRealPrometheusConcurrent(t *testing.T) {
	url := promtest.URL(t)
	ctx := context.Background()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	prom, err := remote.New(remote.Options{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer prom.Close()
	latency := func(shift float64) []collector.Series {
		return fleetSeries([]float64{2, -1, 0.5, -2, 1, -0.5}, 500, 12, shift, t0.Add(12*step))
	}
	errorRate := func(factor float64) []collector.Series {
		return countsFleet([]float64{0.013, 0.01, 0.009, 0.011, 0.01}, 400, factor, false)
	}
	const latencyRules = "avg(latency{immune_test=%[1]q})"
	const errorRules = `
service: checkout
analysis: {baseline: concurrent, window: 1h, step: 5m, alpha: 0.01}
selectors:
  canary: '{version="$version"}'
  baseline: '{version="$previous_version"}'
  instance: instance
kpis:
  - name: errors
    events: sum(errors{immune_test=%[1]q})
    trials: sum(requests{immune_test=%[1]q})
    bad: increase
`
	for i, tc := range []struct {
		name    string
		series  []collector.Series
		rules   string // with the run's label for %[1]q
		renamed bool
		want    detector.Outcome
	}{
		{"latency, harmless", latency(0), strings.Replace(concurrentRules, "avg(latency)", latencyRules, 1), false, detector.Pass},
		{"latency, risen by 2 sd", latency(2), strings.Replace(concurrentRules, "avg(latency)", latencyRules, 1), false, detector.Fail},
		{"latency, new instance", latency(10), strings.Replace(concurrentRules, "avg(latency)", latencyRules, 1), true, detector.Fail},
		{"errors, harmless", errorRate(1), errorRules, false, detector.Pass},
		{"errors, 1.3 times", errorRate(1.3), errorRules, false, detector.Fail},
		{"errors, new instance", errorRate(1), errorRules, true, detector.Pass},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run := fmt.Sprintf("concurrent-%s-%d", hex.EncodeToString(b), i)
			ss := tc.series
			for i, s := range ss {
				s.Labels["immune_test"] = run
				if tc.renamed && s.Labels["version"] == "v2" {
					s.Labels["instance"] = "host-new:8080"
				}
				if s.Labels["instance"] == "host-0:8080" && s.Labels["version"] == "v1" {
					// The canary's old series ends at the deploy, as a
					// scrape ends a series that is gone: with a staleness
					// marker (else Prometheus 2's lookback, closed at its
					// start, still sees it a step later and the embedded
					// engine's does not).
					ss[i].Samples = append(s.Samples, collector.Sample{T: t0.Add(time.Second), V: math.Float64frombits(value.StaleNaN)})
				}
			}
			ss = oldEra(ss)
			embeddedStore := store(t, ss...)
			if err := promtest.RemoteWrite(ctx, url, ss); err != nil {
				t.Fatal(err)
			}
			rf := parseRules(t, fmt.Sprintf(tc.rules, run))
			d := deploy.Deploy{ID: "d1", Time: t0.Add(eraShift), Version: "v2", PreviousVersion: "v1", Groups: []int{1}}
			want, err := Replay(ctx, embeddedStore, rf, d, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Replay(ctx, prom, rf, d, nil)
			if err != nil {
				t.Fatal(err)
			}
			w, g := want.Verdict.KPIs[0], got.Verdict.KPIs[0]
			if want.Verdict.Outcome != tc.want || got.Verdict.Outcome != want.Verdict.Outcome || got.Looks != want.Looks ||
				math.Abs(g.PValue-w.PValue) > 1e-12 || g.Placebos != w.Placebos || g.Placebos == 0 {
				t.Errorf("Prometheus %v after %d looks (%s); embedded %v after %d looks (%s); want %v",
					got.Verdict.Outcome, got.Looks, g.Sentence, want.Verdict.Outcome, want.Looks, w.Sentence, tc.want)
			}
			if own := strings.Contains(g.Sentence, "own past"); own == tc.renamed {
				t.Errorf("judged on the canary's own past: %v, want %v: %s", own, !tc.renamed, g.Sentence)
			}
		})
	}
}

// eraShift moves the concurrent integration tests' series from t0 to
// before any NAB series (2011 on), the data other packages write into the
// same Prometheus: data newer than theirs would raise the head's max time
// above them, making their later writes out of order (Prometheus 2.42 then
// lost a series' first sample in collector/remote's test).
var eraShift = time.Date(2010, 1, 4, 12, 0, 0, 0, time.UTC).Sub(t0)

// oldEra shifts the series by eraShift and gives each a first sample ten
// days before its others, outside every span the tests read: written
// after newer data, a new series is out of order, and if Prometheus loses
// its first sample it is that one.
func oldEra(ss []collector.Series) []collector.Series {
	for i := range ss {
		for j := range ss[i].Samples {
			ss[i].Samples[j].T = ss[i].Samples[j].T.Add(eraShift)
		}
		if len(ss[i].Samples) > 0 {
			first := ss[i].Samples[0]
			ss[i].Samples = append([]collector.Sample{{T: first.T.Add(-10 * 24 * time.Hour), V: first.V}}, ss[i].Samples...)
		}
	}
	return ss
}
