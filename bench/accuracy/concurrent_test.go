package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/immune-project/immune/analysis"
	"github.com/immune-project/immune/collector"
	"github.com/immune-project/immune/collector/embedded"
	"github.com/immune-project/immune/rules"
)

var fleetT0 = time.Date(2014, 2, 14, 14, 30, 0, 0, time.UTC)

// writeCSV writes a NAB-style file of rows at the given times.
func writeCSV(t *testing.T, path string, times []time.Time, values []float64) {
	t.Helper()
	var b strings.Builder
	b.WriteString("timestamp,value\n")
	for i, ts := range times {
		fmt.Fprintf(&b, "%s,%v\n", ts.Format(time.DateTime), values[i])
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// rowTimes are n rows every 5 minutes from start, skip[k] extra steps
// missing after row k.
func rowTimes(start time.Time, n int, skip map[int]int) []time.Time {
	out := make([]time.Time, n)
	j := 0
	for k := range out {
		out[k] = start.Add(time.Duration(j) * fleetStep)
		j += 1 + skip[k]
	}
	return out
}

// rowValues is 1000·file + row: which file and row a grid value came from.
func rowValues(file, n int) []float64 {
	vs := make([]float64, n)
	for k := range vs {
		vs[k] = float64(1000*file + k)
	}
	return vs
}

// TestReadFleet: files at other minutes are aligned row by row on the
// first file's grid; a file that skips intervals leaves those steps
// without a value and its later rows on their own steps; rows beyond the
// steps every file covers are left out.
func TestReadFleet(t *testing.T) {
	dir := t.TempDir()
	spec := fleetSpec{Name: "f", Dir: "d", Prefix: "m_", IDs: []string{"a", "b", "c"}}
	path := func(id string) string { return filepath.Join(dir, "d", "m_"+id+".csv") }
	writeCSV(t, path("a"), rowTimes(fleetT0, 20, nil), rowValues(0, 20))
	writeCSV(t, path("b"), rowTimes(fleetT0.Add(-3*time.Minute), 20, nil), rowValues(1, 20))
	// c: 4 minutes late, a 15-minute interval after row 5 (steps 6 and 7
	// missing), 20 rows that reach 2 steps beyond the others.
	writeCSV(t, path("c"), rowTimes(fleetT0.Add(4*time.Minute), 20, map[int]int{5: 2}), rowValues(2, 20))
	f, err := readFleet(dir, spec)
	if err != nil {
		t.Fatal(err)
	}
	if f.Name != "f" || !slices.Equal(f.Instances, spec.IDs) || !f.Start.Equal(fleetT0) || f.Step != fleetStep || f.steps() != 20 {
		t.Fatalf("fleet %s %v from %v, step %v, %d steps", f.Name, f.Instances, f.Start, f.Step, f.steps())
	}
	if f.Skew != 4*time.Minute || !slices.Equal(f.Missing, []int{0, 0, 2}) || f.Dropped != 2 {
		t.Errorf("skew %v, missing %v, dropped %d; want 4m, [0 0 2], 2", f.Skew, f.Missing, f.Dropped)
	}
	for j := range 20 {
		if f.Values[0][j] != float64(j) || f.Values[1][j] != float64(1000+j) {
			t.Fatalf("step %d: a %v, b %v: not row %d of each", j, f.Values[0][j], f.Values[1][j], j)
		}
		want := float64(2000 + j)
		switch {
		case j == 6 || j == 7:
			want = math.NaN()
		case j > 7:
			want = float64(2000 + j - 2)
		}
		if got := f.Values[2][j]; got != want && !(math.IsNaN(got) && math.IsNaN(want)) {
			t.Errorf("step %d: c %v, want %v", j, got, want)
		}
	}

	// A file that starts a step later does not line up.
	writeCSV(t, path("c"), rowTimes(fleetT0.Add(5*time.Minute), 20, nil), rowValues(2, 20))
	if _, err := readFleet(dir, spec); err == nil || !strings.Contains(err.Error(), "do not line up") {
		t.Errorf("a file a step late: %v", err)
	}
	// Nor does one whose rows leave its own 5-minute clock.
	ts := rowTimes(fleetT0, 20, nil)
	ts[10] = ts[10].Add(time.Minute)
	writeCSV(t, path("c"), ts, rowValues(2, 20))
	if _, err := readFleet(dir, spec); err == nil || !strings.Contains(err.Error(), "not on the file's 5m clock") {
		t.Errorf("a row off the clock: %v", err)
	}
	if _, err := readFleet(dir, fleetSpec{Name: "one", Dir: "d", Prefix: "m_", IDs: []string{"a"}}); err == nil {
		t.Error("a fleet of one machine was read")
	}
}

// TestReadFleetsNAB: the table's fleets from the NAB files: 4 032 steps
// each, the rows of a step 3 minutes apart in February, 4 in April, and
// ac20cd's two long intervals as missing steps, the rows after them on
// the steps of their times.
func TestReadFleetsNAB(t *testing.T) {
	const nabDir = "../../../shared/bench/nab/data"
	if _, err := os.Stat(nabDir); err != nil {
		t.Skipf("NAB data not here: %v", err)
	}
	feb, err := readFleet(nabDir, concurrentFleets[0])
	if err != nil {
		t.Fatal(err)
	}
	apr, err := readFleet(nabDir, concurrentFleets[1])
	if err != nil {
		t.Fatal(err)
	}
	if feb.steps() != 4032 || feb.Skew != 3*time.Minute || feb.Dropped != 0 || slices.Max(feb.Missing) != 0 {
		t.Errorf("ec2-feb: %d steps, skew %v, %d dropped, missing %v", feb.steps(), feb.Skew, feb.Dropped, feb.Missing)
	}
	if apr.steps() != 4032 || apr.Skew != 4*time.Minute || apr.Dropped != 5 || !slices.Equal(apr.Missing, []int{0, 5, 0}) {
		t.Errorf("ec2-apr: %d steps, skew %v, %d dropped, missing %v", apr.steps(), apr.Skew, apr.Dropped, apr.Missing)
	}
	// ac20cd: 13:34 then 13:49 on 2014-04-07, 23:44 then 00:04 on the 14th.
	ac := apr.Values[1]
	for _, j := range []int{1430, 1431, 3568, 3569, 3570} {
		if !math.IsNaN(ac[j]) {
			t.Errorf("ac20cd step %d (%v): %v, want no value", j, apr.time(j), ac[j])
		}
	}
	if ac[1429] != 35.61 || ac[1432] != 28.225 || ac[3567] != 52.6125 || ac[3571] != 55.394 {
		t.Errorf("ac20cd around its gaps: %v %v %v %v", ac[1429], ac[1432], ac[3567], ac[3571])
	}
	if got := apr.time(3571); !got.Equal(time.Date(2014, 4, 15, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("step 3571 at %v: ac20cd's 00:04 row is 4 minutes after it", got)
	}
	if n := len(fleetDeployPoints(4032, 24, concurrentMinHistory)); n != 144 {
		t.Errorf("%d deploy points per canary, want 144", n)
	}
}

// testFleet is a fleet of machines at 100 + offsets[i] + N(0, 1) noise.
func testFleet(offsets []float64, n int) *fleet {
	f := &fleet{Name: "test", Start: fleetT0, Step: fleetStep, Missing: make([]int, len(offsets))}
	for i, off := range offsets {
		r := rand.New(rand.NewPCG(uint64(i), 7))
		vs := make([]float64, n)
		for j := range vs {
			vs[j] = 100 + off + r.NormFloat64()
		}
		f.Instances = append(f.Instances, fmt.Sprintf("m%d", i))
		f.Values = append(f.Values, vs)
	}
	return f
}

// TestFleetCopy: the copy keeps the history before its window, shifts
// the canary's window only, and the store holds the canary as v1 up to
// the deploy's instant and v2 after it, the other machines as v1
// throughout, so that at each look the baseline is the other machines.
func TestFleetCopy(t *testing.T) {
	f := testFleet([]float64{2, -1, 0}, 400)
	f.Values[2][305] = math.NaN() // a missing row in a window
	orig := make([][]float64, len(f.Values))
	for i := range orig {
		orig[i] = slices.Clone(f.Values[i])
	}
	p := params{L: 48, W: 24, Alpha: 0.01}
	d, skip := fleetDeployment(f, 0, 300, p)
	if skip != "" || d.T != 300 || !d.Irregular || !(d.S > 0) {
		t.Fatalf("deployment %+v, skip %q", d, skip)
	}
	if d2, _ := fleetDeployment(f, 0, 200, p); d2.Irregular {
		t.Error("deploy at 200 marked irregular")
	}
	const hist = 100
	c := makeFleetCopy(f, 0, d, concurrentCases[4], p.W, hist) // shift-4
	if c.ID != "test/m0/300/shift-4" || c.From != 200 || len(c.Values) != 3 || len(c.Values[1]) != 124 {
		t.Fatalf("copy %s from %d, %d machines of %d values", c.ID, c.From, len(c.Values), len(c.Values[1]))
	}
	for i := range c.Values {
		for j, v := range c.Values[i] {
			want := orig[i][200+j]
			if i == 0 && 200+j >= 300 {
				want += 4 * d.S
			}
			if v != want && !(math.IsNaN(v) && math.IsNaN(want)) {
				t.Fatalf("machine %d step %d: %v, want %v", i, 200+j, v, want)
			}
		}
	}
	for i := range orig {
		if !slices.EqualFunc(f.Values[i], orig[i], func(a, b float64) bool { return a == b || math.IsNaN(a) && math.IsNaN(b) }) {
			t.Errorf("building the copy changed machine %d of the fleet", i)
		}
	}
	if r := c.record(detImmune); r.Series != "test/m0" || r.Deploy != 300 || !r.Time.Equal(f.time(299)) || r.Case != "shift-4" || !r.Irregular {
		t.Errorf("record %+v", r)
	}
	dep := c.deploy()
	if dep.ID != c.ID || !dep.Time.Equal(f.time(299)) || dep.Version != "v2" || dep.PreviousVersion != "v1" || !slices.Equal(dep.Groups, []int{1, 2}) {
		t.Errorf("deploy %+v", dep)
	}

	ss := c.storeSeries()
	type span struct {
		from, to time.Time
		n        int
	}
	got := map[string]span{}
	for _, s := range ss {
		if s.Labels[collector.MetricName] != cpuMetric || s.Labels[copyLabel] != c.ID || len(s.Labels) != 4 {
			t.Errorf("labels %v", s.Labels)
		}
		got[s.Labels[instanceLabel]+"/"+s.Labels[versionLabel]] = span{s.Samples[0].T, s.Samples[len(s.Samples)-1].T, len(s.Samples)}
	}
	want := map[string]span{
		"m0/v1": {f.time(200), f.time(299), 100},
		"m0/v2": {f.time(300), f.time(323), 24},
		"m1/v1": {f.time(200), f.time(323), 124},
		"m2/v1": {f.time(200), f.time(323), 123}, // no sample at step 305
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("store series %v, want %v", got, want)
	}

	// What the rule file's queries see in the store.
	store, err := embedded.Open(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx := context.Background()
	if err := store.Write(ctx, ss); err != nil {
		t.Fatal(err)
	}
	query := func(q string, at int) []float64 {
		t.Helper()
		m, _, err := store.QueryRange(ctx, q, f.time(at), f.time(at), f.Step)
		if err != nil {
			t.Fatal(err)
		}
		var vs []float64
		for _, s := range m {
			for _, p := range s.Samples {
				vs = append(vs, p.V)
			}
		}
		return vs
	}
	sel := func(version string) string {
		return fmt.Sprintf(`avg(cpu{copy=%q, version=%q})`, c.ID, version)
	}
	// At the deploy's instant the canary is v1 and there is no v2; at the
	// first look (sample t) the v1 baseline is the two other machines (the
	// canary's last v1 sample, one step back, is not seen), and v2 is the
	// shifted canary.
	if v := query(sel("v1"), 299); len(v) != 1 || math.Abs(v[0]-(orig[0][299]+orig[1][299]+orig[2][299])/3) > 1e-9 {
		t.Errorf("v1 at the deploy: %v", v)
	}
	if v := query(sel("v2"), 299); len(v) != 0 {
		t.Errorf("v2 at the deploy: %v", v)
	}
	if v := query(sel("v1"), 300); len(v) != 1 || math.Abs(v[0]-(orig[1][300]+orig[2][300])/2) > 1e-9 {
		t.Errorf("v1 at the first look: %v, want the mean of m1 and m2 %v", v, (orig[1][300]+orig[2][300])/2)
	}
	if v := query(sel("v2"), 300); len(v) != 1 || v[0] != orig[0][300]+4*d.S {
		t.Errorf("v2 at the first look: %v", v)
	}
	if v := query(sel("v1"), 305); len(v) != 1 || v[0] != orig[1][305] {
		t.Errorf("v1 where m2 has no row: %v, want m1's %v", v, orig[1][305])
	}

	b, cn := c.sides()
	if len(b) != 24 || len(cn) != 24 || b[0] != (orig[1][300]+orig[2][300])/2 || b[5] != orig[1][305] || cn[0] != orig[0][300]+4*d.S {
		t.Errorf("Kayenta-style sides: %d baseline, %d canary values", len(b), len(cn))
	}

	// A flat lookback is skipped.
	for j := 252; j < 300; j++ {
		f.Values[1][j] = 7
	}
	if _, skip := fleetDeployment(f, 1, 300, p); !strings.HasPrefix(skip, "flat lookback") {
		t.Errorf("flat lookback: skip %q", skip)
	}
}

func TestConcurrentRuleFile(t *testing.T) {
	id := `ec2-feb/it's "odd"/576/null`
	for _, calibrated := range []bool{true, false} {
		f, errs := rules.Parse("x.yaml", []byte(concurrentRuleFile(id, params{L: 48, W: 24, Alpha: 0.01}, 5*time.Minute, calibrated)))
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		a := f.Analysis
		if a.Baseline != rules.BaselineConcurrent || a.Lookback != 4*time.Hour || a.Window != 2*time.Hour || a.Step != 5*time.Minute || a.Alpha != 0.01 || analysis.Looks(a) != 24 {
			t.Errorf("analysis %+v", a)
		}
		s := f.Selectors
		if s == nil || s.Canary != `{version="$version"}` || s.Baseline != `{version="$previous_version"}` || (s.Instance == "instance") != calibrated ||
			(!calibrated && s.Instance != "") {
			t.Errorf("calibrated %v: selectors %+v", calibrated, s)
		}
		k := f.KPIs[0]
		if k.Bad != rules.Increase || k.Query != `avg(cpu{copy="ec2-feb/it's \"odd\"/576/null"})` {
			t.Errorf("kpi %+v", k)
		}
	}
	if got := concurrentHistory(0.01, 48, 24); got != 2071 {
		t.Errorf("history %d, want 2071 (2000 placebos + L + W − 1)", got)
	}
}

func TestFleetDeployPoints(t *testing.T) {
	for _, tc := range []struct {
		n, w, h int
		want    []int
	}{
		{100, 10, 50, []int{50, 60, 70, 80, 90}},
		{99, 10, 50, []int{50, 60, 70, 80}},
		{59, 10, 50, nil},
	} {
		if got := fleetDeployPoints(tc.n, tc.w, tc.h); !slices.Equal(got, tc.want) {
			t.Errorf("fleetDeployPoints(%d, %d, %d) = %v, want %v", tc.n, tc.w, tc.h, got, tc.want)
		}
	}
	f := testFleet([]float64{0, 1, 2}, 700)
	us := fleetUnits(f, params{L: 48, W: 24}, 200)
	// 20 deploy points (200 … 656) per canary, 24 to a unit.
	if len(us) != 3 || len(us[0].Deploys) != 20 || us[2].Canary != 2 || us[0].Bench != benchConcurrent {
		t.Errorf("%d units, the first with %d deploys", len(us), len(us[0].Deploys))
	}
	if first, last := us[1].names(); first != "test/m1/200" || last != "test/m1/656" {
		t.Errorf("names %s … %s", first, last)
	}
}

// TestConcurrentEndToEnd runs a cut-down fleet through the harness:
// immune calibrated and uncalibrated through analysis.Replay on a real
// embedded store, and the Kayenta-style reference. One machine runs 3 sd
// above the others: as a harmless canary it fails the uncalibrated test
// and the Kayenta-style judge, and passes the calibrated one (but for
// chance: at most one of six at alpha 5 %).
func TestConcurrentEndToEnd(t *testing.T) {
	f := testFleet([]float64{3, 0, -0.5, 0.5}, 380)
	cases := []benchCase{{"null", 0, 1}, {"shift-1000", 1000, 1}}
	p := params{L: 48, W: 12, History: 300, Alpha: 0.05, Cases: cases, MADUnit: true}
	units := fleetUnits(f, p, 300) // deploys at 300 … 360
	if len(units) != 4 || !slices.Equal(units[0].Deploys, []int{300, 312, 324, 336, 348, 360}) {
		t.Fatalf("%d units, deploys %v", len(units), units[0].Deploys)
	}
	recs, err := units[0].run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 6*2*3 {
		t.Fatalf("%d records, want 36 (6 deploys × 2 cases × 3 detectors)", len(recs))
	}
	fails := map[[2]string]int{}
	for _, r := range recs {
		var delay int
		if r.Delay != nil {
			delay = *r.Delay
		}
		switch {
		case r.Bench != benchConcurrent || r.Series != "test/m0" || !r.Time.Equal(f.time(r.Deploy-1)):
			t.Errorf("record %+v: wrong bench, series or time", r)
		case r.Verdict != "pass" && r.Verdict != "fail":
			t.Errorf("%d/%s/%s: verdict %q: %s", r.Deploy, r.Case, r.Detector, r.Verdict, r.Reason)
		case (r.Verdict == "fail") != (r.Delay != nil), r.Delay != nil && (delay < 1 || delay > 12):
			t.Errorf("%d/%s/%s: %s after %v", r.Deploy, r.Case, r.Detector, r.Verdict, r.Delay)
		case r.Detector == detKayenta && r.Delay != nil && delay != 12:
			t.Errorf("%d/%s/kayenta: delay %d, want the window's 12", r.Deploy, r.Case, delay)
		case r.Detector == detImmune && !strings.Contains(r.Reason, "the canary's instances' own past against the other instances"):
			t.Errorf("%d/%s/immune: not calibrated across instances: %s", r.Deploy, r.Case, r.Reason)
		case r.Detector == detUncalibrated && !strings.Contains(r.Reason, "×12 looks"):
			t.Errorf("%d/%s/%s: not p × the looks: %s", r.Deploy, r.Case, r.Detector, r.Reason)
		}
		if r.Verdict == "fail" {
			fails[[2]string{r.Case, r.Detector}]++
		}
	}
	// At alpha 5 % a harmless deploy of six may fail by chance (its
	// placebos are its own past): at most one, where the others fail all.
	if n := fails[[2]string{"null", detImmune}]; n > 1 {
		t.Errorf("null/immune: %d of 6 failed, want at most 1", n)
	}
	for k, want := range map[[2]string]int{
		{"null", detUncalibrated}: 6, {"null", detKayenta}: 6,
		{"shift-1000", detImmune}: 6, {"shift-1000", detUncalibrated}: 6, {"shift-1000", detKayenta}: 6,
	} {
		if fails[k] != want {
			t.Errorf("%s/%s: %d of 6 failed, want %d", k[0], k[1], fails[k], want)
		}
	}
	again, err := runAll(context.Background(), []*unit{units[0], units[0]}, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, rs := range again {
		if !reflect.DeepEqual(rs, recs) {
			t.Errorf("run %d differs from the first", i)
		}
	}
}

// TestOnlyConcurrent runs the command with -only concurrent on short
// fleets written as NAB files: the table has both fleets and every case,
// the JSON its records.
func TestOnlyConcurrent(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	dir := t.TempDir()
	const rows = concurrentMinHistory + 48 // two deploys per canary
	for _, spec := range concurrentFleets {
		for i, id := range spec.IDs {
			r := rand.New(rand.NewPCG(uint64(i), 3))
			vs := make([]float64, rows)
			for j := range vs {
				vs[j] = math.Round((10+float64(i)+r.NormFloat64())*1000) / 1000
			}
			writeCSV(t, filepath.Join(dir, spec.Dir, spec.Prefix+id+".csv"), rowTimes(fleetT0.Add(time.Duration(i)*time.Minute), rows, nil), vs)
		}
	}
	js := filepath.Join(t.TempDir(), "out.jsonl")
	var out, errb strings.Builder
	if code := run([]string{"-only", "concurrent", "-nab", dir, "-q", "-json", js}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"### Concurrent baseline", "| ec2-feb | null (false rollbacks) | 8 |", "| ec2-apr | shift-4 | 6 |",
		"| all | shift-0.5 | 14 |", "rows of one step within 3m of each other"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	for _, other := range []string{"NAB series", "Gaussian", "events/trials"} {
		if strings.Contains(out.String(), other) {
			t.Errorf("-only concurrent printed the %s table", other)
		}
	}
	// One row per canary: 2 deploys judged, none skipped.
	for _, spec := range concurrentFleets {
		for _, id := range spec.IDs {
			i := strings.Index(out.String(), "\n| "+spec.Name+"/"+id+" | ")
			if i < 0 {
				t.Errorf("no row for canary %s/%s", spec.Name, id)
				continue
			}
			row, _, _ := strings.Cut(out.String()[i+1:], "\n")
			if cells := strings.Split(row, " | "); len(cells) < 5 || cells[3] != "2" || cells[4] != "0" {
				t.Errorf("canary row %q: want 2 deploys, 0 skipped", row)
			}
		}
	}
	fl, err := os.Open(js)
	if err != nil {
		t.Fatal(err)
	}
	defer fl.Close()
	n := 0
	for sc := bufio.NewScanner(fl); sc.Scan(); n++ {
		var r record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil || r.Bench != benchConcurrent {
			t.Fatalf("line %d: %v %+v", n+1, err, r)
		}
	}
	if n != 7*2*5*3 {
		t.Errorf("%d JSON lines, want 210 (7 canaries × 2 deploys × 5 cases × 3 detectors)", n)
	}
}
