package rules

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Sentinel errors of Inject and File.Queries.
var (
	// ErrMatcherConflict: a query already matches on a label that the
	// injected matchers set, with a different matcher.
	ErrMatcherConflict = errors.New("matcher conflict")
	// ErrPlaceholder: a selector uses an unknown placeholder, or a known one
	// that has no value.
	ErrPlaceholder = errors.New("placeholder")
	// ErrQuery: a query is not valid PromQL.
	ErrQuery = errors.New("invalid query")
)

// Error is one problem in a rule file, at a position.
//
// It prints as "file:line:col: kpi "name": field: msg" for a problem in a
// named KPI, and as "file:line:col: field: msg" otherwise, where field is
// a path such as analysis.alpha or kpis[2].bad (a KPI without a usable
// name is named by its index, from 0). Column is 0 when unknown (YAML
// syntax errors), and then left out; so are Line, Field and KPI when not
// known.
type Error struct {
	File   string
	Line   int // 1-based; 0 when unknown
	Column int // 1-based, in characters; 0 when unknown
	// KPI is the name of the KPI the problem is in, empty for file-level
	// problems.
	KPI string
	// Field is the field's path: "bad" inside a KPI, "analysis.alpha" at
	// file level.
	Field string
	Msg   string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
		if e.Column > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(e.Column))
		}
	}
	b.WriteString(": ")
	if e.KPI != "" {
		fmt.Fprintf(&b, "kpi %q: ", e.KPI)
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// sortErrors orders errors by position; errors without one come first.
func sortErrors(errs []*Error) {
	sort.SliceStable(errs, func(i, j int) bool {
		if errs[i].Line != errs[j].Line {
			return errs[i].Line < errs[j].Line
		}
		return errs[i].Column < errs[j].Column
	})
}
