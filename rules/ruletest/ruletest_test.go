package ruletest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRunFile(t *testing.T) {
	tests := []struct {
		file         string
		tests, pass  int
		wantFailures []string
	}{
		{"pass.test.yaml", 2, 2, nil},
		{"fail.test.yaml", 2, 0, []string{
			`testdata/fail.test.yaml:12: test "wrong expectations": deploy "slow": verdict: got fail, want pass`,
			`testdata/fail.test.yaml:12: test "wrong expectations": deploy "slow": kpi "latency": got fail, want pass`,
			`testdata/fail.test.yaml:12: test "wrong expectations": deploy "slow": kpi "nonexistent": no such KPI in testdata/latency.yaml`,
			`testdata/fail.test.yaml:26: test "too slow a decision": deploy "errors-up": decided 10m0s after the deploy, want within 1m0s`,
		}},
		{"badseries.test.yaml", 1, 0, []string{
			`testdata/badseries.test.yaml:5: test "bad series": input series "latency_seconds{": 1:18: parse error: unexpected character inside braces: '1'`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			res, err := RunFile(context.Background(), filepath.Join("testdata", tt.file), Options{})
			if err != nil {
				t.Fatal(err)
			}
			if res.Tests != tt.tests || res.Passed != tt.pass {
				t.Errorf("tests %d passed %d, want %d %d", res.Tests, res.Passed, tt.tests, tt.pass)
			}
			var got []string
			for _, f := range res.Failures {
				got = append(got, f.Error())
			}
			if strings.Join(got, "\n") != strings.Join(tt.wantFailures, "\n") {
				t.Errorf("failures:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.wantFailures, "\n"))
			}
			for _, f := range res.Failures {
				if f.Deploy != "" && len(f.Explanation) == 0 {
					t.Errorf("failure %q has no explanation", f.Error())
				}
			}
		})
	}
}

func TestRunFileInvalid(t *testing.T) {
	tests := []struct {
		file string
		want string
	}{
		{"bad.test.yaml", `testdata/bad.test.yaml:8: test "broken": deploy without an id
testdata/bad.test.yaml:8: test "broken": deploy "": verdict "maybe": must be one of pass, fail, inconclusive
testdata/bad.test.yaml:10: test "broken": deploy "x": at is required
testdata/bad.test.yaml:10: test "broken": deploy "x": decided_within needs verdict: fail`},
		{"unknown.test.yaml", "testdata/unknown.test.yaml:4: unknown field input_seris"},
		{"badrules.test.yaml", "testdata/missing.yaml: cannot read"},
		{"nonexistent.test.yaml", "open testdata/nonexistent.test.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			_, err := RunFile(context.Background(), filepath.Join("testdata", tt.file), Options{})
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("err %v, want prefix %q", err, tt.want)
			}
		})
	}
}

// TestExamples runs the tests of the example rule files, as make test does
// through the binary.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob("../../examples/*.test.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example tests: %v", err)
	}
	for _, f := range files {
		res, err := RunFile(context.Background(), f, Options{})
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, fl := range res.Failures {
			t.Errorf("%s\n    %s", fl.Error(), strings.Join(fl.Explanation, "\n    "))
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"pass.test.yaml", "fail.test.yaml", "bad.test.yaml", "unknown.test.yaml"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tf, err := Parse("fuzz.yaml", data)
		if err == nil && (len(tf.RuleFiles) == 0 || len(tf.Tests) == 0) {
			t.Fatal("accepted a file without rule files or tests")
		}
	})
}
