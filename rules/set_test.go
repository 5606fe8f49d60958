package rules

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const setRule = "service: %s\nkpis:\n  - name: errors\n    query: sum(rate(errors_total[5m]))\n    bad: increase\n"

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestSet(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	write(t, a, strings.ReplaceAll(setRule, "%s", "checkout"))
	write(t, b, strings.ReplaceAll(setRule, "%s", "search"))
	write(t, filepath.Join(dir, "a.test.yaml"), "not a rule file")
	s, errs := LoadSet([]string{filepath.Join(dir, "*.yaml")})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if s.For("checkout") == nil || s.For("search") == nil || s.For("other") != nil || len(s.Files()) != 2 {
		t.Fatalf("files: %v", s.Files())
	}
	if s.Changed() {
		t.Fatal("changed without a change")
	}

	// A broken file: the reload fails, naming it, and the rules in force stay.
	write(t, b, "service: search\nkpis: []\nbogus: 1\n")
	if !s.Changed() {
		// The modification time may be the same on a coarse clock: make it differ.
		future := time.Now().Add(time.Minute)
		_ = os.Chtimes(b, future, future)
	}
	if !s.Changed() {
		t.Fatal("a rewritten file is not seen as changed")
	}
	errs = s.Reload()
	if len(errs) == 0 || !strings.Contains(errs[0].Error(), "b.yaml:") {
		t.Fatalf("reload of a broken file: %v", errs)
	}
	if s.For("search") == nil {
		t.Fatal("a failed reload dropped the rules in force")
	}
	if s.Changed() {
		t.Fatal("a failed reload is retried (and logged again) until the file changes again")
	}

	// Two files for one service.
	write(t, b, strings.ReplaceAll(setRule, "%s", "checkout"))
	errs = s.Reload()
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), `service "checkout": already watched by`) {
		t.Fatalf("two files for a service: %v", errs)
	}

	// Fixed: the reload takes.
	write(t, b, strings.ReplaceAll(setRule, "%s", "payments"))
	if errs := s.Reload(); len(errs) > 0 {
		t.Fatal(errs)
	}
	if s.For("payments") == nil || s.For("search") != nil {
		t.Fatal("the reload did not take")
	}
}

func TestLoadSetNoMatch(t *testing.T) {
	_, errs := LoadSet([]string{filepath.Join(t.TempDir(), "*.yaml")})
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "no such file") {
		t.Fatalf("errors: %v", errs)
	}
}
