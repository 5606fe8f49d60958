package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runArgs(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestUsage(t *testing.T) {
	tests := []struct {
		args     []string
		code     int
		inStdout string
		inStderr string
	}{
		{nil, exitUsage, "", "Usage: immune <command>"},
		{[]string{"help"}, exitOK, "backtest", ""},
		{[]string{"nope"}, exitUsage, "", `unknown command "nope"`},
		{[]string{"version"}, exitOK, "immune dev", ""},
		{[]string{"version", "x"}, exitUsage, "", "Usage: immune version"},
	}
	for _, tt := range tests {
		code, out, errs := runArgs(tt.args...)
		if code != tt.code || !strings.Contains(out, tt.inStdout) || !strings.Contains(errs, tt.inStderr) {
			t.Errorf("immune %v: exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
				tt.args, code, out, errs, tt.code, tt.inStdout, tt.inStderr)
		}
	}
}

func write(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCompareJSON checks the command's JSON against R's numbers for the
// example files (R 4.2.2):
//
//	b <- scan("examples/compare/latency-baseline.txt", comment.char="#")
//	c <- scan("examples/compare/latency-canary.txt", comment.char="#")
//	wilcox.test(c, b, conf.int=TRUE)                     # W = 2343, p-value = 0.01081
//	t.test(c, b, alternative="greater")
//	ks.test(c, b)
func TestCompareJSON(t *testing.T) {
	b, c := "../../examples/compare/latency-baseline.txt", "../../examples/compare/latency-canary.txt"
	tests := []struct {
		args  []string
		check func(m map[string]any) bool
	}{
		{[]string{"--format", "json", b, c}, func(m map[string]any) bool {
			return m["test"] == "mann-whitney" && m["statistic"] == 2343.0 && math.Abs(m["p_value"].(float64)-0.01081) < 5e-6 &&
				m["n_baseline"] == 120.0 && m["n_canary"] == 30.0 && m["alternative"] == "two-sided"
		}},
		{[]string{"--test", "welch", "--alternative", "greater", b, c, "--format", "json"}, func(m map[string]any) bool {
			return m["test"] == "welch" && m["ci_high"] == nil && m["ci_low"] != nil && m["df"] != nil
		}},
		{[]string{"--test", "ks", "--format=json", b, c}, func(m map[string]any) bool {
			return m["test"] == "ks" && m["estimate"] == nil && m["ci_low"] == nil && m["ci_high"] == nil
		}},
		{[]string{"--test", "proportion", "--format", "json", "../../examples/compare/errors-baseline.txt", "../../examples/compare/errors-canary.txt"}, func(m map[string]any) bool {
			return m["test"] == "proportion" && m["statistic_name"] == "X-squared" && m["ci_low"].(float64) > 0
		}},
	}
	for _, tt := range tests {
		code, out, errs := runArgs(append([]string{"compare"}, tt.args...)...)
		if code != exitOK {
			t.Fatalf("compare %v: exit %d: %s", tt.args, code, errs)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatalf("compare %v: %v: %s", tt.args, err, out)
		}
		if !tt.check(m) {
			t.Errorf("compare %v: unexpected %s", tt.args, out)
		}
	}
}

func TestCompareText(t *testing.T) {
	code, out, _ := runArgs("compare", "../../examples/compare/latency-baseline.txt", "../../examples/compare/latency-canary.txt")
	for _, want := range []string{"Wilcoxon rank sum test with continuity correction", "baseline  120", "canary   30",
		"difference in location (canary − baseline): 16.9, 95% CI 4.2 to 30.7", "W = 2343, p-value = 0.01081"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if code != exitOK {
		t.Errorf("exit %d", code)
	}
}

func TestCompareBadInput(t *testing.T) {
	good := write(t, "good.txt", "1\n2\n3\n")
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"one file", []string{good}, "want two files"},
		{"missing file", []string{good, "/nonexistent/x.txt"}, "/nonexistent/x.txt"},
		{"not a number", []string{good, write(t, "bad.txt", "1\nabc\n")}, `bad.txt:2: "abc" is not a number`},
		{"NaN", []string{good, write(t, "nan.txt", "# x\nNaN\n")}, `nan.txt:2: "NaN" is not a finite number`},
		{"Inf", []string{write(t, "inf.txt", "Inf\n"), good}, `inf.txt:1: "Inf" is not a finite number`},
		{"empty", []string{good, write(t, "empty.txt", "")}, "empty.txt: no numbers"},
		{"events > trials", []string{"--test", "proportion", write(t, "c1.txt", "1 10\n"), write(t, "c2.txt", "11 10\n")}, "c2.txt:1: events 11 exceed trials 10"},
		{"bad test", []string{"--test", "anova", good, good}, `--test "anova"`},
		{"auto is not a test here", []string{"--test", "auto", good, good}, `--test "auto"`},
		{"bad alternative", []string{"--alternative", "up", good, good}, "--alternative"},
		{"bad confidence", []string{"--confidence", "95", good, good}, "--confidence 95"},
		{"bad format", []string{"--format", "xml", good, good}, `--format "xml"`},
		{"welch on one value", []string{"--test", "welch", write(t, "one.txt", "1\n"), good}, "too few samples"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errs := runArgs(append([]string{"compare"}, tt.args...)...)
			if code != exitUsage || !strings.Contains(errs, tt.wantErr) {
				t.Errorf("exit %d, stderr %q; want exit 2 and %q", code, errs, tt.wantErr)
			}
		})
	}
}

const nabCPU = "../../../shared/bench/nab/data/realAWSCloudwatch/ec2_cpu_utilization_5f5533.csv"

func TestBacktest(t *testing.T) {
	if _, err := os.Stat(nabCPU); err != nil {
		t.Skipf("NAB data not beside the repository: %v", err)
	}
	args := []string{"backtest", "--rules", "../../examples/backtest/cpu.yaml", "--deploys", "../../examples/backtest/deploys.csv", "--data", nabCPU}
	code, out, errs := runArgs(append(args, "--format", "json")...)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	n := 0
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r struct {
			ID        string  `json:"id"`
			Verdict   string  `json:"verdict"`
			DecidedAt *string `json:"decided_at"`
			KPIs      []struct {
				Name        string   `json:"name"`
				PValue      *float64 `json:"p_value"`
				Explanation string   `json:"explanation"`
			} `json:"kpis"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %d: %v", n+1, err)
		}
		n++
		if r.ID == "" || len(r.KPIs) != 1 || r.KPIs[0].Name != "cpu" || r.KPIs[0].Explanation == "" {
			t.Errorf("line %d: %s", n, sc.Text())
		}
		if (r.Verdict == "fail") != (r.DecidedAt != nil) {
			t.Errorf("line %d: verdict %s with decided_at %v", n, r.Verdict, r.DecidedAt)
		}
	}
	if n != 55 {
		t.Errorf("%d deploys in the output, want 55", n)
	}
	code, out, _ = runArgs(args...)
	if code != exitOK || !strings.Contains(out, "55 deploys: ") || !strings.Contains(out, "DEPLOY") {
		t.Errorf("text: exit %d:\n%s", code, out)
	}
}

func TestBacktestErrors(t *testing.T) {
	rulesFile := "../../examples/backtest/cpu.yaml"
	deploys := "../../examples/backtest/deploys.csv"
	data := write(t, "data.csv", "timestamp,value\n2024-01-01 00:00:00,1\n")
	tests := []struct {
		name    string
		args    []string
		code    int
		wantErr string
	}{
		{"no rules", []string{"--deploys", deploys, "--data", data}, exitUsage, "--rules is required"},
		{"no deploys", []string{"--rules", rulesFile, "--data", data}, exitUsage, "--deploys is required"},
		{"no history", []string{"--rules", rulesFile, "--deploys", deploys}, exitUsage, "give history"},
		{"both histories", []string{"--rules", rulesFile, "--deploys", deploys, "--data", data, "--prometheus", "http://127.0.0.1:1"}, exitUsage, "exclude each other"},
		{"bad label", []string{"--rules", rulesFile, "--deploys", deploys, "--data", data, "--label", "x"}, exitUsage, `--label "x"`},
		{"invalid rules", []string{"--rules", write(t, "r.yaml", "service: x\n"), "--deploys", deploys, "--data", data}, exitFail, "r.yaml"},
		{"bad deploys", []string{"--rules", rulesFile, "--deploys", write(t, "d.csv", "id,time\nx,never\n"), "--data", data}, exitFail, `d.csv:2: deploy "x": timestamp "never"`},
		{"other service", []string{"--rules", rulesFile, "--deploys", write(t, "d2.csv", "id,time,service\nx,0,checkout\n"), "--data", data}, exitFail, `deploy "x" is of service "checkout"`},
		{"bad data", []string{"--rules", rulesFile, "--deploys", deploys, "--data", write(t, "bad.csv", "timestamp,value\nyesterday,1\n")}, exitFail, "bad.csv:2:"},
		{"unreachable prometheus", []string{"--rules", rulesFile, "--deploys", deploys, "--prometheus", "http://127.0.0.1:1"}, exitFail, "prometheus http://127.0.0.1:1: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errs := runArgs(append([]string{"backtest", "-q"}, tt.args...)...)
			if code != tt.code || !strings.Contains(errs, tt.wantErr) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, errs, tt.code, tt.wantErr)
			}
		})
	}
}

func TestRulesTestExamples(t *testing.T) {
	files, _ := filepath.Glob("../../examples/*.test.yaml")
	code, out, errs := runArgs(append([]string{"rules", "test"}, files...)...)
	if code != exitOK || !strings.HasSuffix(out, " passed, 0 failed\n") {
		t.Errorf("exit %d\n%s%s", code, out, errs)
	}
	code, out, _ = runArgs("rules", "test", "../../rules/ruletest/testdata/fail.test.yaml")
	if code != exitFail || !strings.Contains(out, "0 passed, 2 failed") || !strings.Contains(out, "    fail: ") {
		t.Errorf("failing tests: exit %d\n%s", code, out)
	}
	if code, _, _ := runArgs("rules", "test"); code != exitUsage {
		t.Errorf("no files: exit %d, want 2", code)
	}
	if code, out, _ := runArgs("rules", "test", "../../rules/ruletest/testdata/bad.test.yaml"); code != exitFail || !strings.Contains(out, "could not be run") {
		t.Errorf("invalid test file: exit %d\n%s", code, out)
	}
}
