package main

import (
	"context"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/immune-project/immune/analysis"
	"github.com/immune-project/immune/collector"
	"github.com/immune-project/immune/collector/embedded"
	"github.com/immune-project/immune/collector/load"
	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/rules"
)

// noiseSeries is a small synthetic series: N(100, 1), 5-minute samples.
func noiseSeries(name string, seed uint64, n int) *series {
	r := rand.New(rand.NewPCG(seed, 1))
	s := &series{Name: name, Start: time.Date(2024, 3, 4, 0, 0, 0, 0, time.UTC), Step: 5 * time.Minute, Values: make([]float64, n)}
	for i := range s.Values {
		s.Values[i] = 100 + r.NormFloat64()
	}
	return s
}

func TestRuleFile(t *testing.T) {
	p := params{L: 48, W: 24, Alpha: 0.01}
	for _, step := range []time.Duration{5 * time.Minute, time.Hour, 10 * time.Minute} {
		id := `real/it's "odd"/48/shift-1`
		f, errs := rules.Parse("x.yaml", []byte(ruleFile(id, p, step)))
		if len(errs) > 0 {
			t.Fatalf("step %v: %v", step, errs)
		}
		a := f.Analysis
		if a.Baseline != rules.BaselineBefore || a.Lookback != 48*step || a.Window != 24*step || a.Step != step || a.Alpha != 0.01 {
			t.Errorf("step %v: analysis %+v, want before, lookback 48 steps, window 24 steps, alpha 0.01", step, a)
		}
		if analysis.Looks(a) != 24 {
			t.Errorf("step %v: %d looks, want 24", step, analysis.Looks(a))
		}
		k := f.KPIs[0]
		if k.Bad != rules.Increase || k.Query != `value{copy="real/it's \"odd\"/48/shift-1"}` {
			t.Errorf("step %v: kpi bad %v query %s", step, k.Bad, k.Query)
		}
	}
}

// TestEndToEnd runs a small series through the harness: immune through
// analysis.Replay on a real embedded store, and the reference detectors.
func TestEndToEnd(t *testing.T) {
	s := noiseSeries("test/noise", 3, 150) // deploys at 48 and 120
	cases := []benchCase{{"null", 0, 1}, {"shift-4", 4, 1}, {"shift-1000", 1000, 1}}
	u := &unit{Bench: "nab", Params: params{L: 48, W: 24, Alpha: 0.01, Cases: cases, MADUnit: true, References: true},
		Series: []*series{s}}
	recs, err := u.run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2*3*3 {
		t.Fatalf("%d records, want 18 (2 deploys × 3 cases × 3 detectors)", len(recs))
	}
	// The reference detectors are the benchmark's own: their verdicts are
	// known. immune's depend on the detector of the day, so only what
	// holds for any sound detector is checked: a shift of 1000 s is never
	// passed, and a verdict is pass, fail or inconclusive with a delay
	// exactly when it fails, within the window.
	type want struct {
		verdict string
		delay   int // 0: none
	}
	wants := map[[2]string]want{
		{"null", detKayenta}: {"pass", 0}, {"null", detThreshold}: {"pass", 0},
		{"shift-1000", detKayenta}: {"fail", 24}, {"shift-1000", detThreshold}: {"fail", 3},
		{"shift-4", detKayenta}: {"fail", 24}, {"shift-4", detThreshold}: {"pass", 0},
	}
	for _, r := range recs {
		if r.Bench != "nab" || r.Series != "test/noise" {
			t.Errorf("record %+v: wrong bench or series", r)
		}
		if wantT := s.time(r.Deploy - 1); !r.Time.Equal(wantT) {
			t.Errorf("%d/%s: time %v, want sample t−1's %v", r.Deploy, r.Case, r.Time, wantT)
		}
		var delay int
		if r.Delay != nil {
			delay = *r.Delay
		}
		if r.Detector == detImmune {
			switch {
			case r.Verdict != "pass" && r.Verdict != "fail" && r.Verdict != "inconclusive":
				t.Errorf("%d/%s/immune: verdict %q", r.Deploy, r.Case, r.Verdict)
			case (r.Verdict == "fail") != (r.Delay != nil), r.Delay != nil && (delay < 1 || delay > 24):
				t.Errorf("%d/%s/immune: %s after %v", r.Deploy, r.Case, r.Verdict, r.Delay)
			case r.Case == "shift-1000" && r.Verdict == "pass":
				t.Errorf("%d/shift-1000/immune: pass: %s", r.Deploy, r.Reason)
			case r.Reason == "":
				t.Errorf("%d/%s/immune: no reason", r.Deploy, r.Case)
			}
			continue
		}
		w := wants[[2]string{r.Case, r.Detector}]
		if r.Verdict != w.verdict || delay != w.delay {
			t.Errorf("%d/%s/%s: %s after %d, want %s after %d", r.Deploy, r.Case, r.Detector, r.Verdict, delay, w.verdict, w.delay)
		}
	}

	// The same work twice, and on two workers, gives the same records.
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

// TestCopiesIsolated checks what the store holds: each copy is its own
// series, built from the original, ending with its window.
func TestCopiesIsolated(t *testing.T) {
	s := noiseSeries("test/noise", 4, 150)
	orig := append([]float64(nil), s.Values...)
	u := &unit{Bench: "nab", Params: params{L: 48, W: 24, Alpha: 0.01, Cases: nabCases, MADUnit: true}, Series: []*series{s}}
	cps, _ := u.copies()
	if len(cps) != 2*len(nabCases) {
		t.Fatalf("%d copies, want %d", len(cps), 2*len(nabCases))
	}
	store, err := embedded.Open(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for i := range cps {
		if err := store.Write(context.Background(), []collector.Series{cps[i].storeSeries()}); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	query := func(id string, from, to int) []float64 {
		t.Helper()
		m, _, err := store.QueryRange(ctx, `value{copy="`+id+`"}`, s.time(from), s.time(to), s.Step)
		if err != nil {
			t.Fatal(err)
		}
		if len(m) == 0 {
			return nil
		}
		var vs []float64
		for _, p := range m[0].Samples {
			vs = append(vs, p.V)
		}
		return vs
	}
	// The second deploy's copies hold the first deploy's window unchanged.
	for _, c := range nabCases {
		if got := query(copyID("test/noise", 120, c.Name), 48, 71); !reflect.DeepEqual(got, orig[48:72]) {
			t.Errorf("copy 120/%s over the first window: %v, want the original %v", c.Name, got, orig[48:72])
		}
	}
	// A shifted copy: shifted in its window only, nothing after it.
	d := cps[2].Deploy // the first deploy's shift-1
	if cps[2].ID != "test/noise/48/shift-1" {
		t.Fatalf("copy 2 is %s", cps[2].ID)
	}
	got := query(cps[2].ID, 0, 149)
	if len(got) != 72 {
		t.Fatalf("copy %s holds %d samples, want 72 (up to the window's end)", cps[2].ID, len(got))
	}
	for i, v := range got {
		want := orig[i]
		if i >= 48 {
			want += d.S
		}
		if v != want {
			t.Errorf("copy %s sample %d = %v, want %v", cps[2].ID, i, v, want)
		}
	}
	if !reflect.DeepEqual(s.Values, orig) {
		t.Error("building the copies changed the series")
	}
}

// TestNullCopiesMatchBacktest: for a NAB file on a regular clock, the null
// copies get exactly the decisions that `immune backtest` gives with the
// file loaded as is (examples/backtest: the same series, rule and deploy
// times): the copies, their labels and their truncation change nothing.
func TestNullCopiesMatchBacktest(t *testing.T) {
	const nabDir = "../../../shared/bench/nab/data"
	path := filepath.Join(nabDir, "realAWSCloudwatch/ec2_cpu_utilization_5f5533.csv")
	if _, err := os.Stat(path); err != nil {
		t.Skipf("NAB data not here: %v", err)
	}
	if testing.Short() {
		t.Skip("-short")
	}
	ctx := context.Background()
	s, _, err := readNAB(nabDir, path)
	if err != nil {
		t.Fatal(err)
	}
	u := &unit{Bench: "nab", Params: params{L: 48, W: 24, Alpha: 0.01, Cases: nabCases[:1], MADUnit: true}, Series: []*series{s}}
	recs, err := u.run(ctx)
	if err != nil {
		t.Fatal(err)
	}

	rf, errs := rules.ParseFile("../../examples/backtest/cpu.yaml")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	data, err := os.ReadFile("../../examples/backtest/deploys.csv")
	if err != nil {
		t.Fatal(err)
	}
	deploys, err := deploy.ParseCSV("deploys.csv", data)
	if err != nil {
		t.Fatal(err)
	}
	store, err := embedded.Open(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, err := load.File(ctx, store, path, load.Options{}); err != nil {
		t.Fatal(err)
	}
	if len(recs) < len(deploys) {
		t.Fatalf("%d records, %d deploys", len(recs), len(deploys))
	}
	for i, d := range deploys {
		dec, err := analysis.Replay(ctx, store, rf, d, nil)
		if err != nil {
			t.Fatal(err)
		}
		r := recs[i]
		if !r.Time.Equal(d.Time) {
			t.Fatalf("deploy %d at %v, backtest's %s at %v", r.Deploy, r.Time, d.ID, d.Time)
		}
		var delay *int
		if !dec.DecidedAt.IsZero() {
			k := delaySamples(d.Time, dec.DecidedAt, s.Step)
			delay = &k
		}
		if r.Verdict != dec.Verdict.Outcome.String() || !reflect.DeepEqual(r.Delay, delay) {
			t.Errorf("%s: benchmark %s after %v, backtest %s after %v", d.ID, r.Verdict, r.Delay, dec.Verdict.Outcome, delay)
		}
		// The same numbers, to the last digit.
		k := dec.Verdict.KPIs[0]
		got := math.NaN()
		if r.PValue != nil {
			got = *r.PValue
		}
		if got != k.PValue && !(math.IsNaN(got) && math.IsNaN(k.PValue)) {
			t.Errorf("%s: benchmark p-value %v, backtest %v (%s)", d.ID, r.PValue, k.PValue, k.Sentence)
		}
	}
}
