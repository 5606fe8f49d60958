package rules

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/*.bad.golden from the errors the parser reports")

// TestGoodFiles parses every testdata/*.good.yaml and the examples:
// none may have an error.
func TestGoodFiles(t *testing.T) {
	files := glob(t, "testdata/*.good.yaml")
	files = append(files, glob(t, "../examples/*.yaml")...)
	files = append(files, glob(t, "../examples/*/*.yaml")...)
	for _, path := range files {
		if strings.HasSuffix(path, ".test.yaml") {
			continue // unit tests of rule files (rules/ruletest), not rule files
		}
		if filepath.Base(filepath.Dir(path)) == "config" {
			continue // configs of immune run (internal/config's tests)
		}
		t.Run(filepath.Base(path), func(t *testing.T) {
			f, errs := ParseFile(path)
			for _, err := range errs {
				t.Error(err)
			}
			if len(errs) == 0 && f == nil {
				t.Fatal("no file and no errors")
			}
		})
	}
}

// TestBadFiles parses every testdata/*.bad.yaml and compares the errors,
// one per line, with testdata/*.bad.golden (go test -update rewrites them).
func TestBadFiles(t *testing.T) {
	for _, path := range glob(t, "testdata/*.bad.yaml") {
		t.Run(filepath.Base(path), func(t *testing.T) {
			f, errs := ParseFile(path)
			if f != nil {
				t.Error("got a file along with errors")
			}
			if len(errs) == 0 {
				t.Fatal("no errors")
			}
			var b strings.Builder
			for _, err := range errs {
				var e *Error
				if !errors.As(err, &e) {
					t.Errorf("%v: not an *Error", err)
				}
				b.WriteString(err.Error())
				b.WriteByte('\n')
			}
			got := b.String()
			golden := strings.TrimSuffix(path, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (go test ./rules/ -run TestBadFiles -update writes it)", err)
			}
			if got != string(want) {
				t.Errorf("errors differ from %s\ngot:\n%s\nwant:\n%s", golden, got, want)
			}
		})
	}
}

func glob(t *testing.T, pattern string) []string {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func mustParse(t *testing.T, src string) *File {
	t.Helper()
	f, errs := Parse("test.yaml", []byte(src))
	for _, err := range errs {
		t.Error(err)
	}
	if f == nil {
		t.FailNow()
	}
	return f
}

func TestMinimalFileMeansWhatItSays(t *testing.T) {
	f, errs := ParseFile("testdata/minimal.good.yaml")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	want := Analysis{
		Baseline: BaselineBefore, Lookback: 2 * time.Hour, Window: time.Hour,
		Step: 5 * time.Minute, Alpha: 0.01, Mode: ModeEnforce,
	}
	if f.Analysis != want {
		t.Errorf("analysis = %+v, want %+v", f.Analysis, want)
	}
	if f.Service != "checkout" || f.Version != 1 || f.Selectors != nil || f.Filename != "testdata/minimal.good.yaml" {
		t.Errorf("file = %+v", f)
	}
	if len(f.KPIs) != 1 {
		t.Fatalf("%d KPIs, want 1", len(f.KPIs))
	}
	k := f.KPIs[0]
	wantK := KPI{
		Name:  "conversion",
		Query: "sum(rate(checkout_completed_total[5m])) / sum(rate(checkout_started_total[5m]))",
		Bad:   Decrease, Test: AutoTest, Weight: 1, Kind: KindBusiness, Line: 10,
	}
	if k != wantK {
		t.Errorf("kpi = %+v\nwant %+v", k, wantK)
	}
	if got := k.ResolvedTest(); got != MannWhitneyTest {
		t.Errorf("resolved test = %v, want mann-whitney", got)
	}
}

func TestDefaults(t *testing.T) {
	f := mustParse(t, "service: s\nkpis:\n- name: k\n  query: sum(x)\n  bad: either\n")
	want := Analysis{
		Baseline: BaselineBefore, Lookback: DefaultLookback, Window: DefaultWindow,
		Step: DefaultStep, Alpha: DefaultAlpha, Mode: ModeEnforce,
	}
	if f.Analysis != want {
		t.Errorf("analysis = %+v, want %+v", f.Analysis, want)
	}
	k := f.KPIs[0]
	if k.Weight != 1 || k.Kind != KindBusiness || k.Test != AutoTest || k.Critical || k.MinEffect != (MinEffect{}) || k.Line != 3 {
		t.Errorf("kpi defaults = %+v", k)
	}

	f = mustParse(t, "service: s\nanalysis: {baseline: seasonal}\nkpis:\n- name: k\n  query: sum(x)\n  bad: either\n")
	if f.Analysis.Season != 7*24*time.Hour || f.Analysis.Seasons != 1 {
		t.Errorf("seasonal defaults: season %v, seasons %d", f.Analysis.Season, f.Analysis.Seasons)
	}
}

func TestFullFile(t *testing.T) {
	f, errs := ParseFile("testdata/full.good.yaml")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if f.Owner != "Team Payments <payments@example.com>" || f.Service != "payments-api" {
		t.Errorf("owner %q, service %q", f.Owner, f.Service)
	}
	wantA := Analysis{Baseline: BaselineBefore, Lookback: 3 * time.Hour, Window: 30 * time.Minute, Step: time.Minute, Alpha: 0.05, Mode: ModeShadow}
	if f.Analysis != wantA {
		t.Errorf("analysis = %+v, want %+v", f.Analysis, wantA)
	}
	tests := []struct {
		name      string
		test      TestKind
		resolved  TestKind
		minEffect MinEffect
		critical  bool
		weight    float64
		kind      Kind
		bad       Direction
		ratio     bool
	}{
		{"authorised_ratio", ProportionTest, ProportionTest, MinEffect{0.005, true, true}, true, 2, KindBusiness, Decrease, true},
		{"error:ratio-5xx", AutoTest, ProportionTest, MinEffect{0.001, false, true}, false, 1, KindSystem, Increase, true},
		{"p99_latency", WelchTest, WelchTest, MinEffect{0.1, true, true}, false, 0.5, KindSystem, Increase, false},
		{"_queue_depth", KSTest, KSTest, MinEffect{0, false, true}, false, 1, KindBusiness, Either, false},
		{"refunds", MannWhitneyTest, MannWhitneyTest, MinEffect{12, false, true}, false, 1, KindBusiness, Increase, false},
		{"scalar_kpi", AutoTest, MannWhitneyTest, MinEffect{}, false, 1, KindBusiness, Decrease, false},
	}
	if len(f.KPIs) != len(tests) {
		t.Fatalf("%d KPIs, want %d", len(f.KPIs), len(tests))
	}
	for i, tt := range tests {
		k := f.KPIs[i]
		if k.Name != tt.name || k.Test != tt.test || k.ResolvedTest() != tt.resolved || k.MinEffect != tt.minEffect ||
			k.Critical != tt.critical || k.Weight != tt.weight || k.Kind != tt.kind || k.Bad != tt.bad || k.IsRatio() != tt.ratio {
			t.Errorf("kpi %d = %+v, want %+v", i, k, tt)
		}
	}
	if k := f.KPI("p99_latency"); k == nil || !strings.HasPrefix(k.Query, "histogram_quantile(0.99,\n  sum by (le)") {
		t.Errorf("literal block query = %q", k.Query)
	}
	if k := f.KPI("_queue_depth"); k == nil || k.Query != "max(payments_queue_depth)\n" {
		t.Errorf("folded query = %q", k.Query)
	}
	if f.KPI("nope") != nil {
		t.Error("KPI(nope) != nil")
	}
}

func TestSeasonal(t *testing.T) {
	f, errs := ParseFile("testdata/seasonal.good.yaml")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if a := f.Analysis; a.Baseline != BaselineSeasonal || a.Season != 24*time.Hour || a.Seasons != 7 || a.Window != 4*time.Hour {
		t.Errorf("analysis = %+v", a)
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		err  Error
		want string
	}{
		{Error{File: "c.yaml", Line: 14, Column: 5, KPI: "conversion", Field: "bad", Msg: "must be one of increase, decrease, either"},
			`c.yaml:14:5: kpi "conversion": bad: must be one of increase, decrease, either`},
		{Error{File: "c.yaml", Line: 6, Column: 10, Field: "analysis.alpha", Msg: "must be in (0, 0.5]"},
			`c.yaml:6:10: analysis.alpha: must be in (0, 0.5]`},
		{Error{File: "c.yaml", Line: 3, Msg: "invalid YAML: x"}, `c.yaml:3: invalid YAML: x`},
		{Error{File: "c.yaml", Msg: "cannot read: no such file or directory"}, `c.yaml: cannot read: no such file or directory`},
		{Error{File: "c.yaml", Line: 1, Column: 1, KPI: `a"b`, Msg: "m"}, `c.yaml:1:1: kpi "a\"b": m`},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("got  %s\nwant %s", got, tt.want)
		}
	}
}

func TestParseFileUnreadable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing.yaml")
	f, errs := ParseFile(path)
	if f != nil || len(errs) != 1 {
		t.Fatalf("got %v, %v", f, errs)
	}
	want := path + ": cannot read: no such file or directory"
	if errs[0].Error() != want {
		t.Errorf("got %q, want %q", errs[0], want)
	}
}

func TestEnums(t *testing.T) {
	for _, s := range baselineNames {
		if b, err := ParseBaseline(s); err != nil || b.String() != s {
			t.Errorf("baseline %q: %v, %v", s, b, err)
		}
	}
	for _, s := range testNames {
		var k TestKind
		if err := k.UnmarshalText([]byte(s)); err != nil || k.String() != s {
			t.Errorf("test %q: %v, %v", s, k, err)
		}
		if b, _ := k.MarshalText(); string(b) != s {
			t.Errorf("marshal %v = %s", k, b)
		}
	}
	d := Increase
	if err := d.UnmarshalText([]byte("up")); err == nil || d != Increase {
		t.Errorf("UnmarshalText(up): %v, left %v", err, d)
	}
	if got := Direction(0).String(); got != "Direction(0)" {
		t.Errorf("zero direction = %q", got)
	}
	if _, err := ParseDirection(""); err == nil {
		t.Error(`ParseDirection("") succeeded`)
	}
	if got := Mode(7).String(); got != "Mode(7)" {
		t.Errorf("Mode(7) = %q", got)
	}
	if m, err := ParseMode("shadow"); err != nil || m != ModeShadow {
		t.Errorf("shadow: %v %v", m, err)
	}
	if k, err := ParseKind("system"); err != nil || k != KindSystem {
		t.Errorf("system: %v %v", k, err)
	}
}

func TestMinEffectString(t *testing.T) {
	for _, tt := range []struct {
		m    MinEffect
		want string
	}{
		{MinEffect{Value: 0.05, Relative: true, Set: true}, "5%"},
		{MinEffect{Value: 0.005, Relative: true, Set: true}, "0.5%"},
		{MinEffect{Value: 0.02, Set: true}, "0.02"},
		{MinEffect{}, "0"},
	} {
		if got := tt.m.String(); got != tt.want {
			t.Errorf("%+v: got %q, want %q", tt.m, got, tt.want)
		}
	}
}

// TestDocExamples parses every yaml block of docs/rules.md: the reference
// shows only files that pass.
func TestDocExamples(t *testing.T) {
	data, err := os.ReadFile("../docs/rules.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(string(data), "```yaml\n")[1:]
	if len(blocks) < 3 {
		t.Fatalf("%d yaml blocks in docs/rules.md, want at least 3", len(blocks))
	}
	for i, b := range blocks {
		end := strings.Index(b, "```")
		if end < 0 {
			t.Fatalf("block %d is not closed", i)
		}
		if _, errs := Parse(fmt.Sprintf("docs/rules.md block %d", i), []byte(b[:end])); len(errs) > 0 {
			for _, err := range errs {
				t.Error(err)
			}
		}
	}
}
