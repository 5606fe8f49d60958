package rules

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
)

// Role is the side of a comparison a query is made for.
type Role int

const (
	// RoleCanary: the new version.
	RoleCanary Role = iota
	// RoleBaseline: what the new version is compared with.
	RoleBaseline
)

func (r Role) String() string { return enumString([]string{"canary", "baseline"}, "Role", int(r)) }

// Selectors are the label matchers that tell a concurrent baseline's
// series from the canary's: each is a PromQL label-matcher set such as
// {version="$version"}, as written in the file, placeholders unexpanded.
type Selectors struct {
	Canary   string
	Baseline string
	// Instance, when set, is the label that names an instance (instance,
	// pod): the KPIs are then calibrated on A/A comparisons among the
	// baseline's instances before the deploy (analysis.Calibrate).
	Instance string
}

func (s *Selectors) text(role Role) string {
	if role == RoleCanary {
		return s.Canary
	}
	return s.Baseline
}

// Vars are the values of the placeholders of selectors: $service,
// $version, $previous_version and $deploy.
type Vars struct {
	Service         string
	Version         string
	PreviousVersion string
	// Deploy is the deploy's id.
	Deploy string
}

func (v Vars) lookup(name string) (string, bool) {
	switch name {
	case "service":
		return v.Service, true
	case "version":
		return v.Version, true
	case "previous_version":
		return v.PreviousVersion, true
	case "deploy":
		return v.Deploy, true
	}
	return "", false
}

// placeholderNames lists the placeholders, for messages.
const placeholderNames = "$service, $version, $previous_version, $deploy"

// Matchers returns the role's label matchers with the placeholders
// replaced by vars. In a regular-expression matcher (=~, !~) a value is
// inserted quoted, so that it matches literally: 1.2.3 matches 1.2.3 only.
// A placeholder without a value is an ErrPlaceholder.
func (s *Selectors) Matchers(role Role, vars Vars) ([]*labels.Matcher, error) {
	text := s.text(role)
	ms, err := parseMatchers(text)
	if err != nil {
		return nil, fmt.Errorf("selectors.%s: %w: %v", role, ErrQuery, err)
	}
	out := make([]*labels.Matcher, 0, len(ms))
	for _, m := range ms {
		quote := func(v string) string { return v }
		if m.Type == labels.MatchRegexp || m.Type == labels.MatchNotRegexp {
			quote = regexp.QuoteMeta
		}
		v, err := expand(m.Value, vars, quote)
		if err != nil {
			return nil, fmt.Errorf("selectors.%s: %w", role, err)
		}
		nm, err := labels.NewMatcher(m.Type, m.Name, v)
		if err != nil {
			return nil, fmt.Errorf("selectors.%s: %w: %v", role, ErrQuery, err)
		}
		out = append(out, nm)
	}
	return out, nil
}

// Queries is the PromQL of one KPI for one role: Query, or Events and
// Trials, as the KPI has them.
type Queries struct {
	Query, Events, Trials string
}

// Queries returns the PromQL that measures KPI k for role. With a
// concurrent baseline, the role's selectors (placeholders replaced by
// vars) are injected into every vector selector of each query; with the
// other baselines the queries are returned as written, the same for both
// roles, since the roles then differ in time range only. An empty
// vars.Service stands for the file's service.
func (f *File) Queries(k *KPI, role Role, vars Vars) (Queries, error) {
	q := Queries{Query: k.Query, Events: k.Events, Trials: k.Trials}
	if f.Selectors == nil {
		return q, nil
	}
	if vars.Service == "" {
		vars.Service = f.Service
	}
	ms, err := f.Selectors.Matchers(role, vars)
	if err != nil {
		return Queries{}, fmt.Errorf("kpi %q: %w", k.Name, err)
	}
	for _, x := range []struct {
		field string
		s     *string
	}{{"query", &q.Query}, {"events", &q.Events}, {"trials", &q.Trials}} {
		if *x.s == "" {
			continue
		}
		if *x.s, err = Inject(*x.s, ms); err != nil {
			return Queries{}, fmt.Errorf("kpi %q: %s: %w", k.Name, x.field, err)
		}
	}
	return q, nil
}

// expand replaces the placeholders of s: $name or ${name}, where $$ is a
// literal $ and a $ followed by anything else than a name or { is itself
// (so a regular expression's trailing $ needs no escape). Each value goes
// through quote.
func expand(s string, vars Vars, quote func(string) string) (string, error) {
	var b strings.Builder
	err := scanPlaceholders(s, func(lit string) { b.WriteString(lit) }, func(name string) error {
		v, known := vars.lookup(name)
		if !known {
			return fmt.Errorf("%w: unknown placeholder $%s (known: %s)", ErrPlaceholder, name, placeholderNames)
		}
		if v == "" {
			return fmt.Errorf("%w: $%s has no value", ErrPlaceholder, name)
		}
		b.WriteString(quote(v))
		return nil
	})
	if err != nil && !errors.Is(err, ErrPlaceholder) {
		err = fmt.Errorf("%w: %v", ErrPlaceholder, err)
	}
	return b.String(), err
}

// checkPlaceholders reports an unknown or malformed placeholder in s.
func checkPlaceholders(s string) error {
	return scanPlaceholders(s, func(string) {}, func(name string) error {
		if _, known := (Vars{}).lookup(name); !known {
			return fmt.Errorf("unknown placeholder $%s (known: %s)", name, placeholderNames)
		}
		return nil
	})
}

// scanPlaceholders splits s into literal text and placeholder names.
func scanPlaceholders(s string, lit func(string), ph func(string) error) error {
	for {
		i := strings.IndexByte(s, '$')
		if i < 0 {
			lit(s)
			return nil
		}
		lit(s[:i])
		s = s[i+1:]
		switch {
		case s == "":
			lit("$")
			return nil
		case s[0] == '$':
			lit("$")
			s = s[1:]
		case s[0] == '{':
			end := strings.IndexByte(s, '}')
			if end < 0 {
				return errors.New("unclosed ${ (write $$ for a literal $)")
			}
			name := s[1:end]
			if !isName(name) {
				return fmt.Errorf("${%s} is not a placeholder (write $$ for a literal $)", name)
			}
			if err := ph(name); err != nil {
				return err
			}
			s = s[end+1:]
		case isNameStart(s[0]):
			n := 1
			for n < len(s) && (isNameStart(s[n]) || s[n] >= '0' && s[n] <= '9') {
				n++
			}
			if err := ph(s[:n]); err != nil {
				return err
			}
			s = s[n:]
		default:
			lit("$")
		}
	}
}

func isNameStart(c byte) bool { return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func isName(s string) bool {
	if s == "" || !isNameStart(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !isNameStart(s[i]) && (s[i] < '0' || s[i] > '9') {
			return false
		}
	}
	return true
}
