package rules

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"
)

// promql parses stable PromQL only: experimental functions and syntax are
// rejected, since the store a rule file meets may not enable them.
var promql = parser.NewParser(parser.Options{})

// parseExpr parses a query. The parser recovers its own panics; this
// guards against any it does not.
func parseExpr(q string) (expr parser.Expr, err error) {
	defer func() {
		if r := recover(); r != nil {
			expr, err = nil, fmt.Errorf("parser panic: %v", r)
		}
	}()
	return promql.ParseExpr(q)
}

func parseMatchers(s string) (ms []*labels.Matcher, err error) {
	defer func() {
		if r := recover(); r != nil {
			ms, err = nil, fmt.Errorf("parser panic: %v", r)
		}
	}()
	return promql.ParseMetricSelector(s)
}

// firstParseErr returns the position (a byte offset in the query, or -1)
// and message of the first of the parser's errors.
func firstParseErr(err error) (int, string) {
	var pes parser.ParseErrors
	if errors.As(err, &pes) && len(pes) > 0 {
		return int(pes[0].PositionRange.Start), pes[0].Err.Error()
	}
	var pe *parser.ParseErr
	if errors.As(err, &pe) {
		return int(pe.PositionRange.Start), pe.Err.Error()
	}
	return -1, err.Error()
}

// checkQuery reports what is wrong with a KPI's PromQL q, written at n:
// a parse error, a result that is not an instant vector or scalar, no
// metric selector, or a matcher that the selectors would conflict with.
func (p *fileParser) checkQuery(q string, n *yaml.Node, s scope, field string, sel *Selectors) bool {
	expr, err := parseExpr(q)
	if err != nil {
		off, msg := firstParseErr(err)
		if strings.Contains(msg, "'$'") {
			msg += " (placeholders such as $version belong in selectors; Grafana variables such as $__rate_interval are not PromQL)"
		}
		line, col := p.valuePos(n, q, off)
		p.errorAt(line, col, s, field, "invalid PromQL: %s", msg)
		return false
	}
	switch expr.Type() {
	case parser.ValueTypeMatrix:
		p.errorf(n, s, field, "returns a range vector: wrap it in a function such as rate() or avg_over_time()")
		return false
	case parser.ValueTypeString:
		p.errorf(n, s, field, "returns a string: want an instant vector or a scalar")
		return false
	}
	var vss []*parser.VectorSelector
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		if vs, ok := node.(*parser.VectorSelector); ok {
			vss = append(vss, vs)
		}
		return nil
	})
	if len(vss) == 0 {
		p.errorf(n, s, field, "selects no series: a KPI's query needs a metric selector")
		return false
	}
	if sel == nil {
		return true
	}
	for _, vs := range vss {
		for _, x := range vs.LabelMatchers {
			if x != nil && sel.Instance != "" && x.Name == sel.Instance {
				line, col := p.valuePos(n, q, int(vs.PosRange.Start))
				p.errorAt(line, col, s, field, "%s matches on label %q, which selectors.instance names: immune adds its own matchers on it to compare instances; leave it out",
					vs.String(), x.Name)
				return false
			}
		}
	}
	for _, vs := range vss {
		for _, role := range []Role{RoleCanary, RoleBaseline} {
			ms, err := parseMatchers(sel.text(role))
			if err != nil {
				continue // reported with the selectors
			}
			if m, x := conflict(vs, ms); m != nil {
				line, col := p.valuePos(n, q, int(vs.PosRange.Start))
				p.errorAt(line, col, s, field, "%s already matches on label %q (%s), which selectors.%s sets (%s): leave it to the selectors",
					vs.String(), m.Name, x.String(), role, m.String())
				return false
			}
		}
	}
	return true
}

// conflict returns the first of ms that vs already matches on with a
// different matcher, and vs's matcher.
func conflict(vs *parser.VectorSelector, ms []*labels.Matcher) (injected, existing *labels.Matcher) {
	for _, m := range ms {
		for _, x := range vs.LabelMatchers {
			if x != nil && x.Name == m.Name && (x.Type != m.Type || x.Value != m.Value) {
				return m, x
			}
		}
	}
	return nil, nil
}

// Inject adds matchers to every vector selector of the PromQL expression
// expr (inside range selectors, subqueries and functions too) and returns
// the expression printed back. A selector that already has a matcher on
// the same label is an ErrMatcherConflict, unless the matcher is the same.
// The output is the parser's canonical form of expr: the same query, not
// necessarily the same text.
func Inject(expr string, matchers []*labels.Matcher) (string, error) {
	e, err := parseExpr(expr)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrQuery, err)
	}
	var cerr error
	parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
		vs, ok := node.(*parser.VectorSelector)
		if !ok || cerr != nil {
			return nil
		}
		if m, x := conflict(vs, matchers); m != nil {
			cerr = fmt.Errorf("%w: %s already has %s, cannot add %s", ErrMatcherConflict, vs, x, m)
			return nil
		}
	next:
		for _, m := range matchers {
			for _, x := range vs.LabelMatchers {
				if x != nil && x.Name == m.Name {
					continue next // the same matcher: already there
				}
			}
			vs.LabelMatchers = append(vs.LabelMatchers, m)
		}
		return nil
	})
	if cerr != nil {
		return "", cerr
	}
	return e.String(), nil
}

// matcherSet parses and checks a selector of the selectors section, text
// written at n.
func (p *fileParser) matcherSet(text string, n *yaml.Node, s scope, field string) ([]*labels.Matcher, bool) {
	const hint = `want a label-matcher set such as {version="$version"}`
	if !strings.HasPrefix(strings.TrimSpace(text), "{") {
		p.errorf(n, s, field, "%s, not %s", hint, describe(n))
		return nil, false
	}
	ms, err := parseMatchers(text)
	if err != nil {
		off, msg := firstParseErr(err)
		line, col := p.valuePos(n, text, off)
		p.errorAt(line, col, s, field, "invalid label matchers: %s (%s)", msg, hint)
		return nil, false
	}
	ok := true
	for _, m := range ms {
		if m.Name == model.MetricNameLabel {
			p.errorf(n, s, field, "must not match on %s: the selectors are added to every selector of every query", model.MetricNameLabel)
			ok = false
			continue
		}
		if err := checkPlaceholders(m.Value); err != nil {
			p.errorf(n, s, field, "%v", err)
			ok = false
		}
	}
	if len(ms) == 0 {
		p.errorf(n, s, field, "%s, not an empty set", hint)
		ok = false
	}
	return ms, ok
}

// matchersString is a canonical text of a matcher set, to compare sets.
func matchersString(ms []*labels.Matcher) string {
	ss := make([]string, len(ms))
	for i, m := range ms {
		ss[i] = m.String()
	}
	sort.Strings(ss)
	return strings.Join(ss, ",")
}

// valuePos maps a byte offset in the value of scalar n (which is q) to a
// line and column of the file. It is exact for plain and quoted scalars
// without escape sequences and for block scalars (| and >), line folding
// included; where the value cannot be aligned with the source (escapes
// such as \n or \t before the offset) it falls back to the scalar's
// own position.
func (p *fileParser) valuePos(n *yaml.Node, q string, off int) (line, col int) {
	if off < 0 || off > len(q) {
		return n.Line, n.Column
	}
	if p.lineStarts == nil {
		p.lineStarts = []int{0}
		for i, b := range p.src {
			if b == '\n' {
				p.lineStarts = append(p.lineStarts, i+1)
			}
		}
	}
	if n.Line < 1 || n.Line > len(p.lineStarts) {
		return n.Line, n.Column
	}
	// Where the scalar's text starts in the source.
	var j int
	if n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
		if n.Line >= len(p.lineStarts) {
			return n.Line, n.Column
		}
		j = p.lineStarts[n.Line] // the line after the | or > header
	} else {
		j = p.lineStarts[n.Line-1]
		for c := 1; c < n.Column; c++ {
			if j >= len(p.src) || p.src[j] == '\n' {
				return n.Line, n.Column
			}
			_, w := utf8.DecodeRune(p.src[j:])
			j += w
		}
	}
	// Align the value with the source up to off: every character of the
	// value must be found in order, skipping only what a YAML scalar adds
	// around it (indentation, line breaks, quotes, backslashes).
	find := func(r rune) (int, bool) {
		for k := j; k < len(p.src); {
			sr, w := utf8.DecodeRune(p.src[k:])
			if sr == r || (r == ' ' && sr == '\n') {
				return k, true
			}
			switch sr {
			case ' ', '\t', '\r', '\n', '"', '\'', '\\':
				k += w
			default:
				return 0, false
			}
		}
		return 0, false
	}
	for i := 0; i < off; {
		r, w := utf8.DecodeRuneInString(q[i:])
		k, ok := find(r)
		if !ok {
			return n.Line, n.Column
		}
		_, sw := utf8.DecodeRune(p.src[k:])
		j = k + sw
		i += w
	}
	if off < len(q) {
		r, _ := utf8.DecodeRuneInString(q[off:])
		k, ok := find(r)
		if !ok {
			return n.Line, n.Column
		}
		j = k
	}
	// j to line and column (columns count characters, as YAML's do).
	l := sort.Search(len(p.lineStarts), func(i int) bool { return p.lineStarts[i] > j }) - 1
	if l < 0 {
		return n.Line, n.Column
	}
	return l + 1, utf8.RuneCount(p.src[p.lineStarts[l]:j]) + 1
}

// VectorSelectors returns the vector selectors of the PromQL expression
// expr, each printed without its offset and @ modifiers: the series the
// expression reads, to ask which label values they have.
func VectorSelectors(expr string) ([]string, error) {
	e, err := parseExpr(expr)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrQuery, err)
	}
	var out []string
	parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
		if vs, ok := node.(*parser.VectorSelector); ok {
			c := *vs
			c.OriginalOffset, c.Offset, c.Timestamp, c.StartOrEnd = 0, 0, nil, 0
			out = append(out, c.String())
		}
		return nil
	})
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: %s selects no series", ErrQuery, expr)
	}
	return out, nil
}
