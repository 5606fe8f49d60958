package rules

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Set is the rule files of a running immune, one per service, loaded from
// files and glob patterns and reloaded as a whole: a reload that finds any
// error keeps the rules in force and reports every error.
type Set struct {
	patterns []string
	mu       sync.RWMutex
	files    map[string]*File // by service
	stamp    string           // the files' names, sizes and times at the last reload, for Changed
}

// LoadSet loads the rule files named by patterns (files or globs such as
// rules/*.yaml). A pattern that matches nothing is an error, as are two
// files for one service; every error of every file is returned.
func LoadSet(patterns []string) (*Set, []error) {
	s := &Set{patterns: patterns}
	if errs := s.Reload(); len(errs) > 0 {
		return nil, errs
	}
	return s, nil
}

// For returns the rule file of a service, nil when there is none.
func (s *Set) For(service string) *File {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.files[service]
}

// Files returns the rule files in force, by service name order.
func (s *Set) Files() []*File {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*File, 0, len(s.files))
	for _, f := range s.files {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Service < out[j].Service })
	return out
}

// Reload reads every file again. On any error the rules in force stay,
// and the errors are returned.
func (s *Set) Reload() []error {
	paths, stamp, errs := expandPatterns(s.patterns)
	files := map[string]*File{}
	from := map[string]string{}
	for _, p := range paths {
		f, ferrs := ParseFile(p)
		if len(ferrs) > 0 {
			errs = append(errs, ferrs...)
			continue
		}
		if prev, ok := from[f.Service]; ok {
			errs = append(errs, fmt.Errorf("%s: service %q: already watched by %s: one rule file per service", p, f.Service, prev))
			continue
		}
		files[f.Service], from[f.Service] = f, p
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// The stamp is of the last attempt, failed or not: a broken file is
	// reported once, not at every check until it is fixed.
	s.stamp = stamp
	if len(errs) > 0 {
		return errs
	}
	s.files = files
	return nil
}

// Changed reports whether the files matched by the patterns differ, in
// names, sizes or modification times, from those of the last reload
// (whether it took or not).
func (s *Set) Changed() bool {
	_, stamp, _ := expandPatterns(s.patterns)
	s.mu.RLock()
	defer s.mu.RUnlock()
	return stamp != s.stamp
}

func expandPatterns(patterns []string) (paths []string, stamp string, errs []error) {
	seen := map[string]bool{}
	var b strings.Builder
	for _, pat := range patterns {
		matches, err := filepath.Glob(pat)
		if err != nil {
			errs = append(errs, fmt.Errorf("rules %q: %w", pat, err))
			continue
		}
		if len(matches) == 0 {
			errs = append(errs, fmt.Errorf("rules %q: no such file", pat))
			continue
		}
		sort.Strings(matches)
		for _, m := range matches {
			if seen[m] || strings.HasSuffix(m, ".test.yaml") {
				continue
			}
			fi, err := os.Stat(m)
			if err != nil {
				errs = append(errs, fmt.Errorf("rules: %w", err))
				continue
			}
			if fi.IsDir() {
				continue
			}
			seen[m] = true
			paths = append(paths, m)
			fmt.Fprintf(&b, "%s\x00%d\x00%d\n", m, fi.Size(), fi.ModTime().UnixNano())
		}
	}
	if len(paths) == 0 && len(errs) == 0 && len(patterns) > 0 {
		errs = append(errs, errors.New("rules: the patterns match no rule file"))
	}
	return paths, b.String(), errs
}

// ReloadInterval is how often a running immune looks for changed rule files.
const ReloadInterval = 5 * time.Second
