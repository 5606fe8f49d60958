package rules

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse feeds the parser arbitrary files, seeded with every testdata
// and example file: it must never panic, must return either a file or
// errors, every error must be an *Error naming the file, and a file it
// accepts must be usable (its queries build for both roles).
func FuzzParse(f *testing.F) {
	for _, pattern := range []string{"testdata/*.yaml", "../examples/*.yaml"} {
		files, _ := filepath.Glob(pattern)
		for _, path := range files {
			data, err := os.ReadFile(path)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	// Odd shapes, run as plain tests too (go test without -fuzz).
	for _, s := range []string{
		"", "---", "--- |\n  x\n", "~", "[]", "{}", "- - -", "? [a]\n: b\n", "service: !!binary aGk=\n",
		strings.Repeat("[", 10001), strings.Repeat("a: &a [*a, *a]\n", 3),
		"a: &a [x]\nb: &b [*a, *a, *a]\nc: &c [*b, *b, *b]\nkpis: [*c, *c]\n",
		"service: s\nkpis:\n- name: k\n  query: \"\\u00e9(\"\n  bad: increase\n",
		"service: s\nkpis:\n- name: k\n  query: |2-\n     sum(\n  bad: increase\n",
		"service: s\r\nkpis:\r\n- name: k\r\n  query: sum(x)\r\n    / sum(y\r\n  bad: increase\r\n",
		"\ufeffservice: s\nkpis: [{name: k, query: 'sum(x', bad: increase}]\n",
		"service: s\nanalysis: {baseline: concurrent}\nselectors: {canary: '{a=\"$version\"}', baseline: '{a=~\"[$version\"}'}\nkpis: [{name: k, query: sum(x), bad: increase}]\n",
	} {
		f.Add([]byte(s))
	}
	vars := Vars{Service: "s", Version: "v2", PreviousVersion: "v1", Deploy: "d"}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, errs := Parse("fuzz.yaml", data)
		if (file == nil) == (len(errs) == 0) {
			t.Fatalf("file %v with %d errors", file, len(errs))
		}
		for _, err := range errs {
			e, ok := err.(*Error)
			if !ok {
				t.Fatalf("%T is not an *Error", err)
			}
			if !strings.HasPrefix(e.Error(), "fuzz.yaml") || e.Msg == "" {
				t.Fatalf("malformed error %q", e.Error())
			}
		}
		if file == nil {
			return
		}
		if len(file.KPIs) == 0 || file.Service == "" {
			t.Fatalf("accepted a file without KPIs or service: %+v", file)
		}
		for i := range file.KPIs {
			k := &file.KPIs[i]
			if k.Bad < Increase || k.Bad > Either || !(k.Weight > 0) {
				t.Fatalf("accepted kpi %+v", k)
			}
			for _, role := range []Role{RoleCanary, RoleBaseline} {
				if _, err := file.Queries(k, role, vars); err != nil {
					t.Fatalf("accepted kpi %q, but its %v queries fail: %v", k.Name, role, err)
				}
			}
		}
	})
}
