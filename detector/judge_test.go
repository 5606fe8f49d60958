package detector

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// normals returns n draws from N(mu, sd²), the same on every run.
func normals(seed uint64, n int, mu, sd float64) []float64 {
	r := rand.New(rand.NewPCG(seed, 42))
	xs := make([]float64, n)
	for i := range xs {
		xs[i] = mu + sd*r.NormFloat64()
	}
	return xs
}

func TestJudgeSingleKPI(t *testing.T) {
	base := normals(1, 48, 100, 5)
	lower := normals(2, 24, 90, 5)  // a fall of 2 sd
	same := normals(3, 24, 100, 5)  // nothing changed
	slight := normals(4, 24, 97, 1) // a small but clear fall
	tests := []struct {
		name       string
		kpi        KPI
		want       Outcome
		wantReason string
		wantIn     []string // substrings of the KPI's sentence
	}{
		{"fall, bad decrease", KPI{Name: "conversion", Bad: Decrease, Canary: lower, Baseline: base}, Fail,
			"significant change in the bad direction", []string{"conversion fell ", "% CI ", "p=", " < 0.01"}},
		{"fall, bad increase", KPI{Name: "latency", Bad: Increase, Canary: lower, Baseline: base}, Pass,
			"change in the harmless direction", []string{"latency fell ", " > 0.01", "harmless"}},
		{"fall, bad either", KPI{Name: "x", Bad: Either, Canary: lower, Baseline: base}, Fail,
			"significant change in the bad direction", []string{"x fell "}},
		{"no change", KPI{Name: "x", Bad: Either, Canary: same, Baseline: base}, Pass,
			"no significant change", []string{" > 0.01"}},
		{"below relative min effect", KPI{Name: "x", Bad: Decrease, MinEffect: MinEffect{Value: 0.05, Relative: true}, Canary: slight, Baseline: base}, Pass,
			"significant, but smaller than min_effect 5.0%", []string{"x fell ", "min_effect"}},
		{"above relative min effect", KPI{Name: "x", Bad: Decrease, MinEffect: MinEffect{Value: 0.05, Relative: true}, Canary: lower, Baseline: base}, Fail,
			"significant change in the bad direction", nil},
		{"below absolute min effect", KPI{Name: "x", Bad: Decrease, MinEffect: MinEffect{Value: 20}, Canary: lower, Baseline: base}, Pass,
			"significant, but smaller than min_effect 20", nil},
		{"welch", KPI{Name: "x", Bad: Decrease, Test: WelchTest, Canary: lower, Baseline: base}, Fail,
			"significant change in the bad direction", []string{"x fell "}},
		{"ks", KPI{Name: "x", Bad: Decrease, Test: KSTest, Canary: lower, Baseline: base}, Fail,
			"significant change in the bad direction", []string{"x median fell "}},
		{"ks harmless", KPI{Name: "x", Bad: Increase, Test: KSTest, Canary: lower, Baseline: base}, Pass,
			"change in the harmless direction", nil},
		{"no canary data", KPI{Name: "x", Bad: Decrease, Canary: nil, Baseline: base}, Inconclusive,
			"mann-whitney: too few samples", []string{"x: inconclusive: mann-whitney: too few samples"}},
		{"same constant", KPI{Name: "x", Bad: Decrease, Test: WelchTest, Canary: []float64{3, 3, 3}, Baseline: []float64{3, 3}}, Pass,
			"no change", nil},
		{"errors up", KPI{Name: "errors", Bad: Increase, HasCounts: true,
			CanaryCounts: Counts{Events: 150, Trials: 10000}, BaselineCounts: Counts{Events: 100, Trials: 10000}}, Fail,
			"significant change in the bad direction", []string{"errors rose 50% (95% CI ", "from 0.01 to 0.015"}},
		{"errors down", KPI{Name: "errors", Bad: Increase, HasCounts: true,
			CanaryCounts: Counts{Events: 50, Trials: 10000}, BaselineCounts: Counts{Events: 100, Trials: 10000}}, Pass,
			"change in the harmless direction", nil},
		{"no errors anywhere", KPI{Name: "errors", Bad: Increase, HasCounts: true,
			CanaryCounts: Counts{Events: 0, Trials: 10000}, BaselineCounts: Counts{Events: 0, Trials: 10000}}, Pass,
			"no change", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := Judge([]KPI{tt.kpi}, JudgeOptions{Alpha: 0.01})
			if err != nil {
				t.Fatal(err)
			}
			k := v.KPIs[0]
			if v.Outcome != tt.want || k.Outcome != tt.want {
				t.Errorf("verdict %v, kpi %v, want %v\n%s", v.Outcome, k.Outcome, tt.want, strings.Join(v.Explanation(), "\n"))
			}
			if !strings.HasPrefix(k.Reason, tt.wantReason) {
				t.Errorf("reason %q, want prefix %q", k.Reason, tt.wantReason)
			}
			for _, s := range tt.wantIn {
				if !strings.Contains(k.Sentence, s) {
					t.Errorf("sentence %q lacks %q", k.Sentence, s)
				}
			}
		})
	}
}

func TestHolm(t *testing.T) {
	tests := []struct {
		name    string
		p, w    []float64
		wantSig []bool
		wantThr []float64
	}{
		// Plain Holm at alpha 0.05 with 4 hypotheses: thresholds
		// 0.0125, 0.0167, 0.025, 0.05 in order of p.
		{"step down", []float64{0.01, 0.04, 0.012, 0.3}, []float64{1, 1, 1, 1},
			[]bool{true, false, true, false}, []float64{0.0125, 0.025, 0.05 / 3, 0.05}},
		{"stops at first miss", []float64{0.06, 0.001, 0.0001, 0.001}, []float64{1, 1, 1, 1},
			[]bool{false, true, true, true}, []float64{0.05, 0.05 / 3, 0.0125, 0.025}},
		{"missing p is 1", []float64{math.NaN(), 0.001}, []float64{1, 1},
			[]bool{false, true}, []float64{0.05, 0.025}},
		// Weighted: weights 3 and 1 share alpha 3:1 at the first step;
		// with equal weights 0.035 would have to beat 0.025.
		{"weighted", []float64{0.035, 0.3}, []float64{3, 1},
			[]bool{true, false}, []float64{0.0375, 0.05}},
		{"single", []float64{0.05}, []float64{1}, []bool{true}, []float64{0.05}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kv := make([]KPIVerdict, len(tt.p))
			for i := range kv {
				kv[i] = KPIVerdict{PValue: tt.p[i], Weight: tt.w[i]}
			}
			holm(kv, 0.05)
			for i := range kv {
				if kv[i].Significant != tt.wantSig[i] || math.Abs(kv[i].Threshold-tt.wantThr[i]) > 1e-15 {
					t.Errorf("kpi %d: significant %v threshold %v, want %v %v", i, kv[i].Significant, kv[i].Threshold, tt.wantSig[i], tt.wantThr[i])
				}
			}
		})
	}
}

// TestJudgeFamilyWise: twenty unchanged KPIs, each with a p-value that
// would fail alone, do not fail the deploy together.
func TestJudgeFamilyWise(t *testing.T) {
	// 112 vs 100 events in 10 000 trials: one-sided p ≈ 0.2; 130 vs 100:
	// p ≈ 0.03, under alpha 0.05 alone, above 0.05/20 with the others.
	var kpis []KPI
	for i := range 20 {
		kpis = append(kpis, KPI{Name: "k" + string(rune('a'+i)), Bad: Increase, HasCounts: true,
			CanaryCounts: Counts{Events: 112, Trials: 10000}, BaselineCounts: Counts{Events: 100, Trials: 10000}})
	}
	kpis[0].CanaryCounts.Events = 130
	alone, err := Judge(kpis[:1], JudgeOptions{Alpha: 0.05})
	if err != nil {
		t.Fatal(err)
	}
	if alone.Outcome != Fail {
		t.Fatalf("alone: %v, want fail (%s)", alone.Outcome, alone.KPIs[0].Sentence)
	}
	all, err := Judge(kpis, JudgeOptions{Alpha: 0.05})
	if err != nil {
		t.Fatal(err)
	}
	if all.Outcome != Pass {
		t.Fatalf("with 20 KPIs: %v, want pass\n%s", all.Outcome, strings.Join(all.Explanation(), "\n"))
	}
	if !strings.Contains(all.KPIs[0].Sentence, "(Holm, 20 KPIs)") {
		t.Errorf("sentence %q does not name the correction", all.KPIs[0].Sentence)
	}
}

func TestJudgeCriticalAndWeights(t *testing.T) {
	base := normals(1, 48, 100, 5)
	bad := normals(2, 24, 80, 5)
	same := normals(3, 24, 100, 5)
	kpi := func(name string, canary []float64, w float64, critical bool) KPI {
		return KPI{Name: name, Bad: Decrease, Canary: canary, Baseline: base, Weight: w, Critical: critical}
	}
	tests := []struct {
		name string
		kpis []KPI
		want Outcome
		why  string
	}{
		{"light failure alone passes", []KPI{kpi("a", bad, 0.5, false), kpi("b", same, 1, false)}, Pass, "pass: a failing with weight 0.5"},
		{"two light failures fail", []KPI{kpi("a", bad, 0.5, false), kpi("b", bad, 0.5, false)}, Fail, "fail: 2 of 2 KPIs failing: a, b"},
		{"critical light failure fails", []KPI{kpi("a", bad, 0.5, true), kpi("b", same, 1, false)}, Fail, "fail: critical KPI a"},
		{"failure beats missing data", []KPI{kpi("a", bad, 1, false), kpi("b", nil, 1, false)}, Fail, "fail: 1 of 2 KPIs failing: a"},
		{"missing data is never a pass", []KPI{kpi("a", same, 1, false), kpi("b", nil, 1, false)}, Inconclusive, "inconclusive: 1 of 2 KPIs could not be judged: b"},
		{"all fine", []KPI{kpi("a", same, 1, false), kpi("b", same, 1, true)}, Pass, "pass: none of 2 KPIs changed for the worse"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := Judge(tt.kpis, JudgeOptions{Alpha: 0.01})
			if err != nil {
				t.Fatal(err)
			}
			if v.Outcome != tt.want || !strings.HasPrefix(v.Reason, tt.why) {
				t.Errorf("got %v %q, want %v %q\n%s", v.Outcome, v.Reason, tt.want, tt.why, strings.Join(v.Explanation(), "\n"))
			}
		})
	}
}

func TestJudgeInvalid(t *testing.T) {
	ok := KPI{Name: "a", Bad: Decrease, Canary: []float64{1, 2}, Baseline: []float64{1, 2}}
	tests := []struct {
		name string
		kpis []KPI
		opt  JudgeOptions
		want error
	}{
		{"no kpis", nil, JudgeOptions{Alpha: 0.01}, ErrNoKPIs},
		{"alpha zero", []KPI{ok}, JudgeOptions{}, ErrInvalidOption},
		{"alpha too big", []KPI{ok}, JudgeOptions{Alpha: 0.6}, ErrInvalidOption},
		{"alpha NaN", []KPI{ok}, JudgeOptions{Alpha: math.NaN()}, ErrInvalidOption},
		{"confidence", []KPI{ok}, JudgeOptions{Alpha: 0.01, Confidence: 1}, ErrInvalidOption},
		{"duplicate", []KPI{ok, ok}, JudgeOptions{Alpha: 0.01}, ErrInvalidOption},
		{"no direction", []KPI{{Name: "a"}}, JudgeOptions{Alpha: 0.01}, ErrInvalidOption},
		{"negative weight", []KPI{{Name: "a", Bad: Increase, Weight: -1}}, JudgeOptions{Alpha: 0.01}, ErrInvalidOption},
		{"proportion without counts", []KPI{{Name: "a", Bad: Increase, Test: ProportionTest}}, JudgeOptions{Alpha: 0.01}, ErrInvalidOption},
		{"counts with welch", []KPI{{Name: "a", Bad: Increase, Test: WelchTest, HasCounts: true}}, JudgeOptions{Alpha: 0.01}, ErrInvalidOption},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Judge(tt.kpis, tt.opt)
			if !errors.Is(err, tt.want) {
				t.Errorf("err %v, want %v", err, tt.want)
			}
		})
	}
}

func TestOutcomeZeroIsNotPass(t *testing.T) {
	var o Outcome
	if o != Inconclusive {
		t.Fatalf("zero Outcome is %v", o)
	}
	for _, want := range []Outcome{Pass, Fail, Inconclusive} {
		b, _ := want.MarshalText()
		var got Outcome
		if err := got.UnmarshalText(b); err != nil || got != want {
			t.Errorf("round trip %v: %v %v", want, got, err)
		}
	}
	if err := o.UnmarshalText([]byte("ok")); err == nil {
		t.Error("UnmarshalText(ok) succeeded")
	}
}

func TestFormatPair(t *testing.T) {
	tests := []struct {
		p, t   float64
		ps, ts string
	}{
		{0.0004, 0.0025, "0.0004", "0.0025"},
		{0.21, 0.0125, "0.21", "0.0125"},
		{0.00251, 0.0025, "0.00251", "0.0025"},
		{0.002501, 0.0025, "0.002501", "0.0025"},
		{0.0033, 0.01 / 3, "0.0033", "0.00333"},
		{4.2e-7, 0.01, "4.2e-07", "0.01"},
		{1, 0.05, "1", "0.05"},
	}
	for _, tt := range tests {
		ps, ts := FormatPair(tt.p, tt.t)
		if ps != tt.ps || ts != tt.ts {
			t.Errorf("formatPair(%v, %v) = %s, %s, want %s, %s", tt.p, tt.t, ps, ts, tt.ps, tt.ts)
		}
	}
}
