package main

import (
	"bufio"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/immune-project/immune/analysis"
	"github.com/immune-project/immune/detector"
	"github.com/immune-project/immune/rules"
)

func testCountsSpec() countsSpec {
	return countsSpec{Levels: defaultCountsLevels, Series: 1, Steps: 10 * countsDay, MinHistory: countsWeek,
		Rate: countsRate, Trials: countsTrials, Seed: 1}
}

// TestCountsSeries: the generator is deterministic, its counts are
// whole numbers of events out of the trials, and its per-step rate has the
// daily cycle's mean and the level's coefficient of variation.
func TestCountsSeries(t *testing.T) {
	spec := testCountsSpec()
	for li, cv := range spec.Levels {
		s := makeCountsSeries(spec, li, 0)
		if again := makeCountsSeries(spec, li, 0); !reflect.DeepEqual(s, again) {
			t.Fatalf("cv %v: two series from the same arguments differ", cv)
		}
		if other := makeCountsSeries(spec, li, 1); reflect.DeepEqual(s.Events, other.Events) {
			t.Errorf("cv %v: series 0 and 1 have the same events", cv)
		}
		spec2 := spec
		spec2.Seed = 2
		if other := makeCountsSeries(spec2, li, 0); reflect.DeepEqual(s.Events, other.Events) {
			t.Errorf("cv %v: seeds 1 and 2 give the same events", cv)
		}
		if want := "counts/" + countsLevelName(cv) + "/000"; s.Name != want || countsGroup(s.Name) != countsLevelName(cv) {
			t.Errorf("name %s (group %s), want %s", s.Name, countsGroup(s.Name), want)
		}
		if len(s.Events) != spec.Steps || len(s.Trials) != spec.Steps || len(s.Rate) != spec.Steps {
			t.Fatalf("cv %v: %d events, %d trials, %d rates, want %d", cv, len(s.Events), len(s.Trials), len(s.Rate), spec.Steps)
		}
		var events, trials float64
		for i := range s.Events {
			e, n, p := s.Events[i], s.Trials[i], s.Rate[i]
			if n != countsTrials || e != math.Round(e) || e < 0 || e > n || !(p > 0 && p < 1) {
				t.Fatalf("cv %v step %d: %v events of %v trials at rate %v", cv, i, e, n, p)
			}
			events += e
			trials += n
		}
		if got := events / trials; math.Abs(got-countsRate) > 0.001 {
			t.Errorf("cv %v: error rate %v over the series, want about %v", cv, got, countsRate)
		}
		// The per-step rate against its cycle: mean 1, sd cv; and the
		// cycle's ±20 % around 1 %.
		lo, hi := math.Inf(1), math.Inf(-1)
		var ratios []float64
		for i := range s.Rate {
			m := s.cycle(i)
			lo, hi = math.Min(lo, m), math.Max(hi, m)
			ratios = append(ratios, s.Rate[i]/m)
		}
		mean, sd := meanSD(ratios)
		if math.Abs(mean-1) > 0.01 || math.Abs(sd-cv) > 0.01+0.05*cv {
			t.Errorf("cv %v: rate / cycle has mean %.4f and sd %.4f, want 1 and %v", cv, mean, sd, cv)
		}
		if lo < 0.008-1e-9 || lo > 0.00801 || hi > 0.012+1e-9 || hi < 0.01199 {
			t.Errorf("cv %v: cycle from %v to %v, want 0.008 to 0.012", cv, lo, hi)
		}
	}
}

func meanSD(xs []float64) (mean, sd float64) {
	for _, x := range xs {
		mean += x
	}
	mean /= float64(len(xs))
	for _, x := range xs {
		sd += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(sd / float64(len(xs)-1))
}

// TestCountsCopy: the null copy holds the series' own counts; a raised
// rate redraws the window's events only, the same on every build, and
// building copies leaves the series as it was.
func TestCountsCopy(t *testing.T) {
	spec := testCountsSpec()
	s := makeCountsSeries(spec, 2, 0)
	orig := slices.Clone(s.Events)
	const tt, w, hist = 2136, 24, 500
	null := makeCountsCopy(s, tt, w, hist, 0, countsCases[0])
	if null.From != tt-hist || !reflect.DeepEqual(null.Events, s.Events[tt-hist:tt+w]) || !reflect.DeepEqual(null.Trials, s.Trials[tt-hist:tt+w]) {
		t.Fatalf("null copy from %d differs from the series", null.From)
	}
	if all := makeCountsCopy(s, tt, w, 0, 0, countsCases[0]); all.From != 0 || len(all.Events) != tt+w {
		t.Errorf("history 0: copy from %d of %d samples, want all %d", all.From, len(all.Events), tt+w)
	}
	for ci, c := range countsCases[1:] {
		ci++
		cp := makeCountsCopy(s, tt, w, hist, ci, c)
		if again := makeCountsCopy(s, tt, w, hist, ci, c); !reflect.DeepEqual(cp, again) {
			t.Errorf("%s: two builds differ", c.Name)
		}
		if cp.ID != "counts/cv0.25/000/2136/"+c.Name {
			t.Errorf("copy id %s", cp.ID)
		}
		if !reflect.DeepEqual(cp.Events[:hist], null.Events[:hist]) || !reflect.DeepEqual(cp.Trials, null.Trials) {
			t.Errorf("%s: changed outside the window's events", c.Name)
		}
		win, base := sum(cp.Events[hist:], cp.Trials[hist:]), 0.0
		for i := tt; i < tt+w; i++ {
			base += c.Factor * s.Rate[i] * s.Trials[i]
		}
		// The redrawn events are binomial around Factor × the rate.
		if math.Abs(win.Events-base) > 4*math.Sqrt(base) {
			t.Errorf("%s: %v events in the window, want about %.0f", c.Name, win.Events, base)
		}
	}
	if !reflect.DeepEqual(s.Events, orig) {
		t.Error("building the copies changed the series")
	}
	if got := countsDeployPoints(10*countsDay, 48, 24, countsWeek); got[0] != 2064 || got[len(got)-1] != 2856 || len(got) != 12 {
		t.Errorf("deploy points %v", got)
	}
}

func TestCountsRuleFile(t *testing.T) {
	id := `counts/it's "odd"/2064/null`
	f, errs := rules.Parse("x.yaml", []byte(countsRuleFile(id, params{L: 48, W: 24, Alpha: 0.01}, 5*time.Minute)))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	a := f.Analysis
	if a.Baseline != rules.BaselineBefore || a.Lookback != 4*time.Hour || a.Window != 2*time.Hour || a.Step != 5*time.Minute || a.Alpha != 0.01 {
		t.Errorf("analysis %+v", a)
	}
	k := f.KPIs[0]
	if !k.IsRatio() || k.ResolvedTest() != rules.ProportionTest || k.Bad != rules.Increase ||
		k.Events != `errors{copy="counts/it's \"odd\"/2064/null"}` || k.Trials != `requests{copy="counts/it's \"odd\"/2064/null"}` {
		t.Errorf("kpi %+v", k)
	}
	if analysis.Looks(a) != 24 {
		t.Errorf("%d looks", analysis.Looks(a))
	}
}

func TestBinomialLooks(t *testing.T) {
	mk := func(base, win float64) *countsCopy {
		c := &countsCopy{T: 48, Events: make([]float64, 72), Trials: make([]float64, 72)}
		for i := range c.Events {
			c.Trials[i] = 5000
			c.Events[i] = base
			if i >= 48 {
				c.Events[i] = win
			}
		}
		return c
	}
	for _, tc := range []struct {
		base, win float64
		want      refVerdict
	}{
		{50, 50, refVerdict{}},
		{50, 40, refVerdict{}},
		{50, 100, refVerdict{Fail: true, Delay: 1}}, // z ≈ 5.6 at the first look
		{0, 0, refVerdict{}},                        // no events: undefined, never a fail
	} {
		got, err := binomialLooks(mk(tc.base, tc.win), 48, 24, 0.01)
		if err != nil || got != tc.want {
			t.Errorf("%v then %v: %+v (%v), want %+v", tc.base, tc.win, got, err, tc.want)
		}
	}
	// 60 of 5000 a step against 50: p × 24 ≤ 0.01 at the look where the
	// test alone gets there.
	c := mk(50, 60)
	got, err := binomialLooks(c, 48, 24, 0.01)
	if err != nil || !got.Fail {
		t.Fatalf("60 against 50: %+v (%v)", got, err)
	}
	for k := 1; k <= 24; k++ {
		r, _ := detector.Proportion(detector.Counts{Events: 60 * float64(k), Trials: 5000 * float64(k)},
			detector.Counts{Events: 50 * 48, Trials: 5000 * 48}, detector.Options{Alternative: detector.Greater})
		if r.PValue*24 <= 0.01 {
			if got.Delay != k {
				t.Errorf("failed at look %d, the test reaches 0.01/24 at %d", got.Delay, k)
			}
			break
		}
	}
}

// TestCountsEndToEnd runs a tiny events/trials unit through the harness:
// immune through analysis.Replay on a real embedded store, and the
// binomial reference.
func TestCountsEndToEnd(t *testing.T) {
	spec := testCountsSpec()
	spec.Steps = 400
	s := makeCountsSeries(spec, 1, 0)
	// L = 12, W = 6; alpha 0.2 needs 4 placebos, which 200 steps hold.
	u := &unit{Bench: benchCounts, Params: params{L: 12, W: 6, Alpha: 0.2}, MinHistory: 200, Counts: []*countsSeries{s}}
	recs, err := u.run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	deploys := countsDeployPoints(400, 12, 6, 200)
	if len(deploys) != 11 || deploys[0] != 210 {
		t.Fatalf("deploys %v", deploys)
	}
	if len(recs) != len(deploys)*len(countsCases)*2 {
		t.Fatalf("%d records, want %d", len(recs), len(deploys)*len(countsCases)*2)
	}
	for _, r := range recs {
		var delay int
		if r.Delay != nil {
			delay = *r.Delay
		}
		switch {
		case r.Bench != benchCounts || r.Series != s.Name || !slices.Contains(deploys, r.Deploy):
			t.Errorf("record %+v: wrong bench, series or deploy", r)
		case !r.Time.Equal(s.time(r.Deploy - 1)):
			t.Errorf("%d/%s: time %v, want sample t−1's", r.Deploy, r.Case, r.Time)
		case r.Verdict != "pass" && r.Verdict != "fail" && r.Verdict != "inconclusive":
			t.Errorf("%d/%s/%s: verdict %q", r.Deploy, r.Case, r.Detector, r.Verdict)
		case (r.Verdict == "fail") != (r.Delay != nil), r.Delay != nil && (delay < 1 || delay > 6):
			t.Errorf("%d/%s/%s: %s after %v", r.Deploy, r.Case, r.Detector, r.Verdict, r.Delay)
		case r.Case == "rate-x2" && r.Verdict != "fail":
			// 2 % of 30 000 requests against 1 %: beyond any doubt.
			t.Errorf("%d/rate-x2/%s: %s: %s", r.Deploy, r.Detector, r.Verdict, r.Reason)
		case r.Detector == detImmune && (r.Reason == "" || r.PValue == nil):
			t.Errorf("%d/%s/immune: no reason or p-value", r.Deploy, r.Case)
		case r.Detector == detImmune && !strings.Contains(r.Reason, "placebo deploys"):
			t.Errorf("%d/%s/immune: not calibrated: %s", r.Deploy, r.Case, r.Reason)
		}
	}
	again, err := runAll(context.Background(), []*unit{u, u}, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, rs := range again {
		if !reflect.DeepEqual(rs, recs) {
			t.Errorf("run %d differs from the first", i)
		}
	}
}

// TestOnlyCounts runs the command with -only counts on one short series
// per level: the table has every level and case, the JSON its records.
func TestOnlyCounts(t *testing.T) {
	js := filepath.Join(t.TempDir(), "out.jsonl")
	var out, errb strings.Builder
	if code := run([]string{"-only", "counts", "-counts-series", "1", "-counts-days", "8", "-q", "-json", js}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"### Synthetic events/trials", "| 0 | null (false rollbacks) | 4 |", "| 0.1 | rate-x1.5 | 4 |", "| 0.25 | rate-x2 | 4 | 100.0% |"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	for _, other := range []string{"NAB", "Gaussian"} {
		if strings.Contains(out.String(), other) {
			t.Errorf("-only counts printed the %s table", other)
		}
	}
	f, err := os.Open(js)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	for sc := bufio.NewScanner(f); sc.Scan(); n++ {
		var r record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil || r.Bench != benchCounts {
			t.Fatalf("line %d: %v %+v", n+1, err, r)
		}
	}
	if n != 3*4*4*2 {
		t.Errorf("%d JSON lines, want 96 (3 levels × 4 deploys × 4 cases × 2 detectors)", n)
	}
}

func TestOnlyUsage(t *testing.T) {
	var out, errb strings.Builder
	if code := run([]string{"-only", "x"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "must be nab, gauss, counts or concurrent") {
		t.Errorf("exit %d: %s", code, errb.String())
	}
}
