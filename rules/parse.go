package rules

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"
)

// ParseFile reads and parses the rule file at path. A file that cannot be
// read is reported as one error naming it.
func ParseFile(path string) (*File, []error) {
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, []error{&Error{File: path, Msg: "cannot read: " + err.Error()}}
	}
	return Parse(path, data)
}

// Parse parses a rule file; filename is used in errors and File.Filename.
// It returns the file with its defaults filled in, or nil and every error
// found (each an *Error), sorted by position.
func Parse(filename string, data []byte) (*File, []error) {
	p := &fileParser{filename: filename, src: data}
	f := p.parse()
	if len(p.errs) > 0 {
		sortErrors(p.errs)
		errs := make([]error, len(p.errs))
		for i, e := range p.errs {
			errs[i] = e
		}
		return nil, errs
	}
	return f, nil
}

// fileParser walks the YAML node tree of one file, collecting errors.
type fileParser struct {
	filename   string
	src        []byte
	lineStarts []int // byte offset of each line's start; built on demand
	errs       []*Error
}

// scope says where a field lives: in a KPI (by name, or by index when it
// has no usable name) or at file level under a path prefix.
type scope struct {
	kpi    string // KPI name; empty at file level or for an unnamed KPI
	prefix string // field path prefix: "", "analysis.", "kpis[3]."
}

func (s scope) field(name string) string {
	if name == "" {
		return strings.TrimSuffix(s.prefix, ".")
	}
	return s.prefix + name
}

func (p *fileParser) errorAt(line, col int, s scope, field, format string, args ...any) {
	p.errs = append(p.errs, &Error{
		File: p.filename, Line: line, Column: col,
		KPI: s.kpi, Field: s.field(field), Msg: fmt.Sprintf(format, args...),
	})
}

func (p *fileParser) errorf(n *yaml.Node, s scope, field, format string, args ...any) {
	line, col := 0, 0
	if n != nil {
		line, col = n.Line, n.Column
	}
	p.errorAt(line, col, s, field, format, args...)
}

var yamlLineErr = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlError reports an error of the YAML decoder, with its line if it
// gives one (it never gives a column).
func (p *fileParser) yamlError(err error) {
	msg := err.Error()
	if m := yamlLineErr.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		p.errorAt(line, 0, scope{}, "", "invalid YAML: %s", m[2])
		return
	}
	p.errorAt(0, 0, scope{}, "", "invalid YAML: %s", strings.TrimPrefix(msg, "yaml: "))
}

// decode decodes the next document into n. The YAML library is not ours:
// a panic in it is reported as an error rather than passed on.
func decode(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: %v", r)
		}
	}()
	return dec.Decode(n)
}

func (p *fileParser) parse() *File {
	dec := yaml.NewDecoder(bytes.NewReader(p.src))
	var doc yaml.Node
	if err := decode(dec, &doc); err != nil {
		if err == io.EOF {
			p.errorAt(0, 0, scope{}, "", "empty rule file: want a mapping with service and kpis")
		} else {
			p.yamlError(err)
		}
		return nil
	}
	// More documents: an error, unless empty (a trailing ---).
	for {
		var next yaml.Node
		err := decode(dec, &next)
		if err == io.EOF {
			break
		}
		if err != nil {
			p.yamlError(err)
			return nil
		}
		if len(next.Content) == 1 && next.Content[0].Kind == yaml.ScalarNode && next.Content[0].Tag == "!!null" && next.Content[0].Value == "" {
			continue
		}
		line, col := next.Line, next.Column
		if len(next.Content) > 0 {
			line, col = next.Content[0].Line, next.Content[0].Column
		}
		p.errorAt(line, col, scope{}, "", "more than one YAML document: a rule file holds one")
		break
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		p.errorAt(0, 0, scope{}, "", "empty rule file: want a mapping with service and kpis")
		return nil
	}
	root := doc.Content[0]
	switch {
	case root.Kind == yaml.ScalarNode && root.Tag == "!!null":
		p.errorf(root, scope{}, "", "empty rule file: want a mapping with service and kpis")
		return nil
	case root.Kind != yaml.MappingNode:
		p.errorf(root, scope{}, "", "a rule file must be a mapping with service and kpis, not %s", describe(root))
		return nil
	}
	return p.file(root)
}

// entry is one key and its value in a mapping.
type entry struct{ key, val *yaml.Node }

// fields reads mapping n, reporting keys that are not strings, not in
// known, or repeated; it returns the known fields by name (the first of
// repeated keys).
func (p *fileParser) fields(n *yaml.Node, s scope, known []string) map[string]entry {
	m := map[string]entry{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" {
			if k.Tag == "!!merge" {
				p.errorf(k, s, "", "merge keys (<<) are not supported")
			} else {
				p.errorf(k, s, "", "a key must be a field name, not %s", describe(k))
			}
			continue
		}
		name := k.Value
		if !contains(known, name) {
			msg := fmt.Sprintf("unknown field %q", name)
			if sug := suggest(name, known); sug != "" {
				msg += fmt.Sprintf(" (did you mean %s?)", sug)
			} else {
				msg += fmt.Sprintf(" (known: %s)", strings.Join(known, ", "))
			}
			p.errorf(k, s, "", "%s", msg)
			continue
		}
		if first, dup := m[name]; dup {
			p.errorf(k, s, name, "duplicate key (first at line %d)", first.key.Line)
			continue
		}
		m[name] = entry{k, v}
	}
	return m
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

// suggest returns the known name closest to name, if it is a likely typo.
func suggest(name string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := editDistance(strings.ToLower(name), k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance, in bytes, capped for long input.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		if a == b {
			return 0
		}
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// describe names what a node is, for "got …" in messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	switch n.Tag {
	case "!!null":
		return "an empty value"
	case "!!str":
		return strconv.Quote(clip(n.Value))
	case "!!int", "!!float":
		return "the number " + clip(n.Value)
	case "!!bool":
		return clip(n.Value)
	}
	return strconv.Quote(clip(n.Value))
}

// clip shortens s for an error message.
func clip(s string) string {
	const max = 60
	if len(s) <= max {
		return s
	}
	i := max
	for i > 0 && !isRuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// scalar returns e's value node if it is a scalar with a value, reporting
// why not otherwise.
func (p *fileParser) scalar(e entry, s scope, field string) (*yaml.Node, bool) {
	v := e.val
	switch {
	case v.Kind == yaml.AliasNode:
		p.errorf(v, s, field, "YAML aliases are not supported")
		return nil, false
	case v.Kind != yaml.ScalarNode:
		p.errorf(v, s, field, "must be a single value, not %s", describe(v))
		return nil, false
	case v.Tag == "!!null":
		p.errorf(e.key, s, field, "has no value")
		return nil, false
	}
	return v, true
}

// str reads a text field. Any scalar counts: owner: 42 is the text 42.
func (p *fileParser) str(e entry, s scope, field string) (string, *yaml.Node, bool) {
	v, ok := p.scalar(e, s, field)
	if !ok {
		return "", nil, false
	}
	return v.Value, v, true
}

func (p *fileParser) number(e entry, s scope, field string) (float64, *yaml.Node, bool) {
	v, ok := p.scalar(e, s, field)
	if !ok {
		return 0, nil, false
	}
	if v.Tag != "!!int" && v.Tag != "!!float" {
		p.errorf(v, s, field, "must be a number, not %s", describe(v))
		return 0, nil, false
	}
	var x float64
	if err := v.Decode(&x); err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
		p.errorf(v, s, field, "must be a finite number, not %s", describe(v))
		return 0, nil, false
	}
	return x, v, true
}

func (p *fileParser) integer(e entry, s scope, field string) (int, *yaml.Node, bool) {
	v, ok := p.scalar(e, s, field)
	if !ok {
		return 0, nil, false
	}
	var x int
	if v.Tag != "!!int" || v.Decode(&x) != nil {
		p.errorf(v, s, field, "must be a whole number, not %s", describe(v))
		return 0, nil, false
	}
	return x, v, true
}

func (p *fileParser) boolean(e entry, s scope, field string) (bool, bool) {
	v, ok := p.scalar(e, s, field)
	if !ok {
		return false, false
	}
	var x bool
	if v.Tag != "!!bool" || v.Decode(&x) != nil {
		p.errorf(v, s, field, "must be true or false, not %s", describe(v))
		return false, false
	}
	return x, true
}

// enum reads one of names (the index), names' empty entries excluded.
func (p *fileParser) enum(e entry, s scope, field string, names []string) (int, *yaml.Node, bool) {
	v, ok := p.scalar(e, s, field)
	if !ok {
		return 0, nil, false
	}
	for i, n := range names {
		if n != "" && v.Value == n && v.Tag == "!!str" {
			return i, v, true
		}
	}
	p.errorf(v, s, field, "must be one of %s, not %s", oneOf(names), describe(v))
	return 0, nil, false
}

func (p *fileParser) duration(e entry, s scope, field string) (time.Duration, *yaml.Node, bool) {
	v, ok := p.scalar(e, s, field)
	if !ok {
		return 0, nil, false
	}
	if v.Tag == "!!int" || v.Tag == "!!float" {
		p.errorf(v, s, field, "must be a duration with a unit, such as 30s, 5m, 2h, 1d or 1w, not %s", describe(v))
		return 0, nil, false
	}
	d, err := model.ParseDuration(v.Value)
	if err != nil || v.Tag != "!!str" {
		p.errorf(v, s, field, "must be a duration such as 30s, 5m, 2h, 1d or 1w, not %s", describe(v))
		return 0, nil, false
	}
	if d <= 0 {
		p.errorf(v, s, field, "must be positive, not %s", v.Value)
		return 0, nil, false
	}
	return time.Duration(d), v, true
}

// fmtDur writes a duration as Prometheus does: 1w, 2h, 1h30m.
func fmtDur(d time.Duration) string { return model.Duration(d).String() }

var (
	serviceRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	nameRE    = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_:-]*$`)
	percentRE = regexp.MustCompile(`^([0-9]+(\.[0-9]*)?|\.[0-9]+)%$`)
)

var (
	fileFields      = []string{"version", "service", "owner", "analysis", "selectors", "kpis"}
	analysisFields  = []string{"baseline", "lookback", "window", "step", "alpha", "mode", "season", "seasons"}
	selectorsFields = []string{"canary", "baseline", "instance"}
	kpiFields       = []string{"name", "description", "query", "events", "trials", "bad", "test", "min_effect", "critical", "weight", "kind"}
)

func (p *fileParser) file(root *yaml.Node) *File {
	f := &File{Filename: p.filename, Version: Version}
	top := scope{}
	m := p.fields(root, top, fileFields)

	if e, ok := m["version"]; ok {
		if v, n, ok := p.integer(e, top, "version"); ok && v != Version {
			p.errorf(n, top, "version", "unsupported version %d: this immune reads version %d", v, Version)
		}
	}
	if e, ok := m["service"]; ok {
		if v, n, ok := p.str(e, top, "service"); ok {
			if len(v) > MaxServiceLen || !serviceRE.MatchString(v) {
				p.errorf(n, top, "service", "%s is not a DNS label: lowercase letters, digits and '-', starting and ending with a letter or digit, at most %d characters", describe(n), MaxServiceLen)
			}
			f.Service = v
		}
	} else {
		p.errorf(root, top, "service", "missing: the service the rules are for")
	}
	if e, ok := m["owner"]; ok {
		f.Owner, _, _ = p.str(e, top, "owner")
	}

	sets := p.analysis(m["analysis"], &f.Analysis)

	if e, ok := m["selectors"]; ok {
		f.Selectors = p.selectors(e)
	}
	switch base := f.Analysis.Baseline; {
	case !sets.baselineOK:
	case base == BaselineConcurrent:
		if _, ok := m["selectors"]; !ok {
			p.errorf(sets.baseline, scope{prefix: "analysis."}, "baseline", "concurrent needs selectors (canary and baseline) to tell the canary's series from the baseline's")
		}
	default:
		if e, ok := m["selectors"]; ok {
			p.errorf(e.key, top, "selectors", "only used with baseline: concurrent (baseline is %s)", base)
			f.Selectors = nil
		}
	}

	e, ok := m["kpis"]
	switch {
	case !ok:
		p.errorf(root, top, "kpis", "missing: the KPIs to watch")
	case e.val.Kind == yaml.AliasNode:
		p.errorf(e.val, top, "kpis", "YAML aliases are not supported")
	case e.val.Kind == yaml.ScalarNode && e.val.Tag == "!!null":
		p.errorf(e.key, top, "kpis", "must list at least one KPI")
	case e.val.Kind != yaml.SequenceNode:
		p.errorf(e.val, top, "kpis", "must be a list of KPIs, not %s", describe(e.val))
	case len(e.val.Content) == 0:
		p.errorf(e.val, top, "kpis", "must list at least one KPI")
	default:
		firstLine := map[string]int{}
		for i, item := range e.val.Content {
			k, nameNode := p.kpi(item, i, f.Selectors)
			if k == nil {
				continue
			}
			if nameNode != nil {
				if l, dup := firstLine[k.Name]; dup {
					p.errorf(nameNode, scope{kpi: k.Name}, "name", "duplicate KPI name (first at line %d)", l)
				} else {
					firstLine[k.Name] = nameNode.Line
				}
			}
			f.KPIs = append(f.KPIs, *k)
		}
	}
	return f
}

// analysisSet records which analysis fields the file sets, and where.
type analysisSet struct {
	baseline                       *yaml.Node
	baselineOK                     bool
	lookback, window, step, season *yaml.Node
	lookbackOK, windowOK, stepOK   bool
	seasonOK, seasonsOK            bool
}

func (p *fileParser) analysis(e entry, a *Analysis) analysisSet {
	*a = Analysis{
		Baseline: BaselineBefore, Lookback: DefaultLookback, Window: DefaultWindow,
		Step: DefaultStep, Alpha: DefaultAlpha, Mode: ModeEnforce,
	}
	set := analysisSet{baselineOK: true, lookbackOK: true, windowOK: true, stepOK: true, seasonOK: true, seasonsOK: true}
	if e.val == nil {
		return set
	}
	s := scope{prefix: "analysis."}
	switch {
	case e.val.Kind == yaml.AliasNode:
		p.errorf(e.val, scope{}, "analysis", "YAML aliases are not supported")
		set.baselineOK = false
		return set
	case e.val.Kind == yaml.ScalarNode && e.val.Tag == "!!null":
		p.errorf(e.key, scope{}, "analysis", "missing value (leave the field out to use its defaults)")
		set.baselineOK = false
		return set
	case e.val.Kind != yaml.MappingNode:
		p.errorf(e.val, scope{}, "analysis", "must be a mapping, not %s", describe(e.val))
		set.baselineOK = false
		return set
	}
	m := p.fields(e.val, s, analysisFields)

	if e, ok := m["baseline"]; ok {
		var i int
		i, set.baseline, set.baselineOK = p.enum(e, s, "baseline", baselineNames)
		a.Baseline = Baseline(i)
		if set.baseline == nil {
			set.baseline = e.key
		}
	}
	if e, ok := m["lookback"]; ok {
		a.Lookback, set.lookback, set.lookbackOK = p.duration(e, s, "lookback")
		if set.lookbackOK && a.Lookback > MaxLookback {
			p.errorf(set.lookback, s, "lookback", "must be at most %s, not %s", fmtDur(MaxLookback), set.lookback.Value)
			set.lookbackOK = false
		}
	}
	if e, ok := m["window"]; ok {
		a.Window, set.window, set.windowOK = p.duration(e, s, "window")
		if set.windowOK && a.Window > MaxWindow {
			p.errorf(set.window, s, "window", "must be at most %s, not %s", fmtDur(MaxWindow), set.window.Value)
			set.windowOK = false
		}
	}
	if e, ok := m["step"]; ok {
		a.Step, set.step, set.stepOK = p.duration(e, s, "step")
		if set.stepOK && a.Step < MinStep {
			p.errorf(set.step, s, "step", "must be at least %s, not %s", fmtDur(MinStep), set.step.Value)
			set.stepOK = false
		}
	}
	if e, ok := m["alpha"]; ok {
		if x, n, ok := p.number(e, s, "alpha"); ok {
			if x <= 0 || x > MaxAlpha {
				p.errorf(n, s, "alpha", "must be in (0, %g], not %s", MaxAlpha, n.Value)
			}
			a.Alpha = x
		}
	}
	if e, ok := m["mode"]; ok {
		i, _, _ := p.enum(e, s, "mode", modeNames)
		a.Mode = Mode(i)
	}
	seasonal := set.baselineOK && a.Baseline == BaselineSeasonal
	if e, ok := m["season"]; ok {
		a.Season, set.season, set.seasonOK = p.duration(e, s, "season")
		if set.seasonOK && a.Season > MaxSeason {
			p.errorf(set.season, s, "season", "must be at most %s, not %s", fmtDur(MaxSeason), set.season.Value)
			set.seasonOK = false
		}
		if set.baselineOK && !seasonal {
			p.errorf(e.key, s, "season", "only used with baseline: seasonal (baseline is %s)", a.Baseline)
		}
	} else if seasonal {
		a.Season = DefaultSeason
	}
	if e, ok := m["seasons"]; ok {
		var n *yaml.Node
		a.Seasons, n, set.seasonsOK = p.integer(e, s, "seasons")
		if set.seasonsOK && (a.Seasons < 1 || a.Seasons > MaxSeasons) {
			p.errorf(n, s, "seasons", "must be from 1 to %d, not %d", MaxSeasons, a.Seasons)
		}
		if set.baselineOK && !seasonal {
			p.errorf(e.key, s, "seasons", "only used with baseline: seasonal (baseline is %s)", a.Baseline)
		}
	} else if seasonal {
		a.Seasons = DefaultSeasons
	}
	if !seasonal {
		a.Season, a.Seasons = 0, 0
	}

	// Relations between fields, reported at a field the file sets.
	pick := func(first *yaml.Node, firstName string, second *yaml.Node, secondName string) (*yaml.Node, string) {
		if first != nil {
			return first, firstName
		}
		return second, secondName
	}
	if set.stepOK && set.windowOK && a.Step > a.Window {
		if n, field := pick(set.step, "step", set.window, "window"); n != nil {
			p.errorf(n, s, field, "step (%s) must not be longer than window (%s)", fmtDur(a.Step), fmtDur(a.Window))
		}
	}
	if set.lookbackOK && set.stepOK && a.Lookback < a.Step {
		if n, field := pick(set.lookback, "lookback", set.step, "step"); n != nil {
			p.errorf(n, s, field, "lookback (%s) must not be shorter than step (%s)", fmtDur(a.Lookback), fmtDur(a.Step))
		}
	}
	if seasonal && set.seasonOK && set.windowOK && a.Season < a.Window {
		if n, field := pick(set.season, "season", set.window, "window"); n != nil {
			p.errorf(n, s, field, "season (%s) must not be shorter than window (%s): the baseline would overlap the deploy", fmtDur(a.Season), fmtDur(a.Window))
		}
	}
	return set
}

func (p *fileParser) selectors(e entry) *Selectors {
	s := scope{prefix: "selectors."}
	switch {
	case e.val.Kind == yaml.AliasNode:
		p.errorf(e.val, scope{}, "selectors", "YAML aliases are not supported")
		return nil
	case e.val.Kind == yaml.ScalarNode && e.val.Tag == "!!null":
		p.errorf(e.key, scope{}, "selectors", "missing value: want canary and baseline")
		return nil
	case e.val.Kind != yaml.MappingNode:
		p.errorf(e.val, scope{}, "selectors", "must be a mapping with canary and baseline, not %s", describe(e.val))
		return nil
	}
	mapping := e.val
	m := p.fields(mapping, s, selectorsFields)
	sel := &Selectors{}
	ok := true
	var texts [2]string
	for i, role := range []Role{RoleCanary, RoleBaseline} {
		name := role.String()
		e, found := m[name]
		if !found {
			p.errorf(mapping, s, name, "missing: want a label-matcher set such as {version=\"$version\"}")
			ok = false
			continue
		}
		text, n, good := p.str(e, s, name)
		if !good {
			ok = false
			continue
		}
		ms, good := p.matcherSet(text, n, s, name)
		if !good {
			ok = false
			continue
		}
		texts[i] = matchersString(ms)
		if role == RoleCanary {
			sel.Canary = text
		} else {
			sel.Baseline = text
			if ok && texts[0] == texts[1] {
				p.errorf(n, s, name, "selects the same series as canary: the two must tell canary from baseline")
				ok = false
			}
		}
	}
	if e, found := m["instance"]; found {
		if text, n, good := p.str(e, s, "instance"); good {
			if !instanceLabel.MatchString(text) {
				p.errorf(n, s, "instance", "%q is not a label name: want the label that names an instance, such as instance or pod", text)
				ok = false
			}
			for _, role := range []Role{RoleCanary, RoleBaseline} {
				ms, err := parseMatchers(sel.text(role))
				if err != nil {
					continue // reported above
				}
				for _, x := range ms {
					if x.Name == text {
						p.errorf(n, s, "instance", "selectors.%s matches on %q (%s): the instance label is for immune to compare instances with; tell canary from baseline by another label, such as version", role, text, x)
						ok = false
					}
				}
			}
			sel.Instance = text
		} else {
			ok = false
		}
	}
	if !ok {
		return nil
	}
	return sel
}

// instanceLabel is what a label name may be (Prometheus' classic names):
// selectors.instance is one.
var instanceLabel = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

func (p *fileParser) kpi(n *yaml.Node, i int, sel *Selectors) (*KPI, *yaml.Node) {
	s := scope{prefix: fmt.Sprintf("kpis[%d].", i)}
	switch {
	case n.Kind == yaml.AliasNode:
		p.errorf(n, s, "", "YAML aliases are not supported")
		return nil, nil
	case n.Kind != yaml.MappingNode:
		p.errorf(n, s, "", "a KPI must be a mapping with name, query and bad, not %s", describe(n))
		return nil, nil
	}
	k := &KPI{Line: n.Line, Weight: DefaultWeight, Test: AutoTest, Kind: KindBusiness}
	// Name the scope first, so that every error of the KPI carries it.
	var nameNode *yaml.Node
	for j := 0; j+1 < len(n.Content); j += 2 {
		if key, v := n.Content[j], n.Content[j+1]; key.Kind == yaml.ScalarNode && key.Value == "name" && key.Tag != "!!merge" {
			if v.Kind == yaml.ScalarNode && v.Tag != "!!null" && v.Value != "" {
				s = scope{kpi: v.Value}
			}
			break
		}
	}
	m := p.fields(n, s, kpiFields)

	if e, ok := m["name"]; ok {
		if v, vn, ok := p.str(e, s, "name"); ok {
			switch {
			case v == "":
				p.errorf(vn, s, "name", "must not be empty")
			case len(v) > MaxNameLen || !nameRE.MatchString(v):
				p.errorf(vn, s, "name", "must match [a-zA-Z_][a-zA-Z0-9_:-]* and be at most %d characters", MaxNameLen)
			}
			k.Name, nameNode = v, vn
		}
	} else {
		p.errorf(n, s, "name", "missing: every KPI needs a name")
	}
	if e, ok := m["description"]; ok {
		k.Description, _, _ = p.str(e, s, "description")
	}

	// The query, or events and trials.
	_, hasQ := m["query"]
	_, hasE := m["events"]
	_, hasT := m["trials"]
	formOK := true
	switch {
	case hasQ && (hasE || hasT):
		e := m["events"]
		field := "events"
		if !hasE {
			e, field = m["trials"], "trials"
		}
		p.errorf(e.key, s, field, "not allowed with query: a KPI has either query, or events and trials")
		formOK = false
	case hasE != hasT:
		if hasE {
			p.errorf(m["events"].key, s, "events", "needs trials: events and trials go together")
		} else {
			p.errorf(m["trials"].key, s, "trials", "needs events: events and trials go together")
		}
		formOK = false
	case !hasQ && !hasE:
		p.errorf(n, s, "query", "missing: a KPI needs query, or events and trials")
		formOK = false
	}
	for _, q := range []struct {
		field string
		dst   *string
	}{{"query", &k.Query}, {"events", &k.Events}, {"trials", &k.Trials}} {
		e, ok := m[q.field]
		if !ok {
			continue
		}
		v, vn, ok := p.str(e, s, q.field)
		if !ok {
			continue
		}
		if strings.TrimSpace(v) == "" {
			p.errorf(vn, s, q.field, "must not be empty")
			continue
		}
		if p.checkQuery(v, vn, s, q.field, sel) {
			*q.dst = v
		}
	}

	if e, ok := m["bad"]; ok {
		i, _, _ := p.enum(e, s, "bad", directionNames)
		k.Bad = Direction(i)
	} else {
		p.errorf(n, s, "bad", "missing: the direction in which a change hurts, one of %s", oneOf(directionNames))
	}
	if e, ok := m["test"]; ok {
		i, tn, ok := p.enum(e, s, "test", testNames)
		k.Test = TestKind(i)
		if ok && formOK {
			ratio := hasE
			switch t := k.Test; {
			case ratio && t != AutoTest && t != ProportionTest:
				p.errorf(tn, s, "test", "%s does not apply to events and trials: use proportion (or auto)", t)
			case !ratio && t == ProportionTest:
				p.errorf(tn, s, "test", "proportion needs events and trials instead of query")
			}
		}
	}
	if e, ok := m["min_effect"]; ok {
		k.MinEffect = p.minEffect(e, s)
	}
	if e, ok := m["critical"]; ok {
		k.Critical, _ = p.boolean(e, s, "critical")
	}
	if e, ok := m["weight"]; ok {
		if w, wn, ok := p.number(e, s, "weight"); ok {
			if w <= 0 {
				p.errorf(wn, s, "weight", "must be positive, not %s", wn.Value)
			}
			k.Weight = w
		}
	}
	if e, ok := m["kind"]; ok {
		i, _, _ := p.enum(e, s, "kind", kindNames)
		k.Kind = Kind(i)
	}
	if nameNode == nil || s.kpi == "" {
		nameNode = nil // no name to compare for duplicates
	}
	return k, nameNode
}

func (p *fileParser) minEffect(e entry, s scope) MinEffect {
	const field = "min_effect"
	v, ok := p.scalar(e, s, field)
	if !ok {
		return MinEffect{}
	}
	switch v.Tag {
	case "!!int", "!!float":
		x, n, ok := p.number(e, s, field)
		if !ok {
			return MinEffect{}
		}
		if x < 0 {
			p.errorf(n, s, field, "must not be negative, not %s", n.Value)
		}
		return MinEffect{Value: x, Set: true}
	case "!!str":
		if strings.HasPrefix(v.Value, "-") && percentRE.MatchString(v.Value[1:]) {
			p.errorf(v, s, field, "must not be negative, not %s", v.Value)
			return MinEffect{}
		}
		if !percentRE.MatchString(v.Value) {
			break
		}
		x, err := strconv.ParseFloat(strings.TrimSuffix(v.Value, "%"), 64)
		if err != nil {
			break
		}
		if x/100 >= MaxRelativeMinEffect {
			p.errorf(v, s, field, "must be below %g%%, not %s", MaxRelativeMinEffect*100, v.Value)
		}
		return MinEffect{Value: x / 100, Relative: true, Set: true}
	}
	p.errorf(v, s, field, "must be a percentage of the baseline such as 5%%, or a number in the KPI's unit such as 0.02, not %s", describe(v))
	return MinEffect{}
}
