package httpapi

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse: no request body makes a parser panic, and what a parser
// accepts is valid.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"id":"d1","service":"checkout","version":"v2","groups":[1,2,4]}`,
		`{"group":0,"instances":["a"]}`,
		`{"instance":"a","passed":true,"at":"2026-11-25T12:00:00Z"}`,
		`{"service":"s","version":"v","started_at":"x"}`,
		`{"state":"done"}`, `[]`, `null`, `{"groups":[-1]}`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if rec, err := ParseDeploy(body); err == nil {
			if rec.Service == "" || rec.Version == "" {
				t.Fatalf("accepted %q without service or version", body)
			}
		}
		if g, err := ParseGroup(body, 3); err == nil && (g.Group < 0 || g.Group > 2) {
			t.Fatalf("accepted group %d of 3", g.Group)
		}
		if st, err := ParseSelfTest(body); err == nil && st.Instance == "" {
			t.Fatalf("accepted %q without instance", body)
		}
		if st, err := ParseState(body); err == nil && !validState(st) {
			t.Fatalf("accepted state %q", st)
		}
	})
}

// FuzzReadLog: no log content makes reading it panic.
func FuzzReadLog(f *testing.F) {
	f.Add([]byte(`{"op":"deploy","deploy":{"id":"d1","service":"s","version":"v","started_at":"2026-11-25T12:00:00Z"}}` + "\n"))
	f.Add([]byte(`{"op":"group","deploy_id":"d1","group":{"group":0}}` + "\n{"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), LogFile)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		entries, _, err := readLog(p)
		if err != nil {
			return
		}
		for _, e := range entries {
			if e.check() != nil {
				t.Fatalf("accepted an entry that does not check: %+v", e)
			}
		}
	})
}
