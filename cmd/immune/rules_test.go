package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runRulesArgs(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = runRules(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestRulesUsage(t *testing.T) {
	tests := []struct {
		args       []string
		code       int
		wantStderr string
	}{
		{nil, exitUsage, "Usage: immune rules <command>"},
		{[]string{"lint"}, exitUsage, `unknown command "lint"`},
		{[]string{"check"}, exitUsage, "no files given"},
		{[]string{"check", "-x", "a.yaml"}, exitUsage, "flag provided but not defined: -x"},
		{[]string{"check", "-h"}, exitOK, "Usage: immune rules check"},
	}
	for _, tt := range tests {
		code, stdout, stderr := runRulesArgs(tt.args...)
		if code != tt.code || !strings.Contains(stderr, tt.wantStderr) {
			t.Errorf("rules %q: exit %d, stderr %q; want exit %d, stderr containing %q", tt.args, code, stderr, tt.code, tt.wantStderr)
		}
		if stdout != "" {
			t.Errorf("rules %q: stdout %q, want nothing", tt.args, stdout)
		}
	}
	code, stdout, _ := runRulesArgs("help")
	if code != exitOK || !strings.Contains(stdout, "check") {
		t.Errorf("rules help: exit %d, stdout %q", code, stdout)
	}
	// Through the top-level dispatch too.
	var out, errb bytes.Buffer
	if code := run([]string{"rules"}, &out, &errb); code != exitUsage {
		t.Errorf("immune rules: exit %d, want %d", code, exitUsage)
	}
}

func TestRulesCheckValid(t *testing.T) {
	all, _ := filepath.Glob("../../examples/*.yaml")
	var files []string
	for _, f := range all {
		if !strings.HasSuffix(f, ".test.yaml") { // rule unit tests, not rule files
			files = append(files, f)
		}
	}
	if len(files) == 0 {
		t.Fatal("no examples")
	}
	files = append(files, "../../rules/testdata/minimal.good.yaml")
	code, stdout, stderr := runRulesArgs(append([]string{"check"}, files...)...)
	if code != exitOK || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != len(files) {
		t.Fatalf("%d lines for %d files:\n%s", len(lines), len(files), stdout)
	}
	want := "../../rules/testdata/minimal.good.yaml: ok (service checkout, 1 KPI, baseline before)"
	if lines[len(lines)-1] != want {
		t.Errorf("got  %s\nwant %s", lines[len(lines)-1], want)
	}

	// A concurrent baseline calibrated across instances says so.
	dir := t.TempDir()
	conc := filepath.Join(dir, "gw.yaml")
	if err := os.WriteFile(conc, []byte(`service: gw
analysis: {baseline: concurrent}
selectors: {canary: '{version="$version"}', baseline: '{version="$previous_version"}', instance: pod}
kpis: [{name: l, query: avg(l), bad: increase}]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stdout, _ = runRulesArgs("check", conc)
	if want := conc + ": ok (service gw, 1 KPI, baseline concurrent calibrated across instances (label pod))\n"; stdout != want {
		t.Errorf("got  %swant %s", stdout, want)
	}

	// -q, anywhere on the line: nothing to say.
	code, stdout, stderr = runRulesArgs("check", files[0], "-q")
	if code != exitOK || stdout != "" || stderr != "" {
		t.Errorf("-q: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

func TestRulesCheckInvalid(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	code, stdout, stderr := runRulesArgs("check",
		"../../rules/testdata/minimal.good.yaml",
		"../../rules/testdata/relations.bad.yaml",
		missing,
	)
	if code != exitFail {
		t.Errorf("exit %d, want %d", code, exitFail)
	}
	want := "../../rules/testdata/minimal.good.yaml: ok (service checkout, 1 KPI, baseline before)\n" +
		"../../rules/testdata/relations.bad.yaml:3:13: analysis.lookback: lookback (10m) must not be shorter than step (15m)\n" +
		"../../rules/testdata/relations.bad.yaml:5:9: analysis.step: step (15m) must not be longer than window (10m)\n" +
		"../../rules/testdata/relations.bad.yaml:6:10: analysis.alpha: must be in (0, 0.5], not 0.51\n" +
		missing + ": cannot read: no such file or directory\n"
	if stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", stdout, want)
	}
	if wantErr := "immune rules check: 2 of 3 files invalid, 4 problems\n"; stderr != wantErr {
		t.Errorf("stderr %q, want %q", stderr, wantErr)
	}
}

// TestRulesCheckAllErrors: a file with many mistakes prints every one.
func TestRulesCheckAllErrors(t *testing.T) {
	code, stdout, _ := runRulesArgs("check", "-q", "../../rules/testdata/many.bad.yaml")
	if code != exitFail {
		t.Errorf("exit %d, want %d", code, exitFail)
	}
	if n := strings.Count(stdout, "\n"); n < 20 {
		t.Errorf("%d problems reported, want every one (over 20):\n%s", n, stdout)
	}
	if !strings.Contains(stdout, `many.bad.yaml:15:10: kpi "conversion": bad: must be one of increase, decrease, either, not "down"`) {
		t.Errorf("missing the bad direction's error:\n%s", stdout)
	}
}
