// Package ruletest runs unit tests of KPI rule files, in the spirit of
// promtool test rules: a test file names rule files, gives input series in
// Prometheus' expanding notation, places deploys in time and says what
// verdict each deploy, and each KPI, must get. The deploys are judged by the
// same code as a backtest (analysis.Replay) on an embedded store that holds
// the input series only, so a run is deterministic and needs no server.
//
// The format is in docs/rules-testing.md.
package ruletest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"

	"github.com/immune-project/immune/analysis"
	"github.com/immune-project/immune/collector"
	"github.com/immune-project/immune/collector/embedded"
	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/detector"
	"github.com/immune-project/immune/rules"
)

// File is a parsed test file.
type File struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []Test   `yaml:"tests"`
}

// Test is one test: input series and the deploys judged on them.
type Test struct {
	Name string `yaml:"name"`
	// Interval is the spacing of the input series' values (default 1m).
	Interval    durationValue `yaml:"interval"`
	Start       string        `yaml:"start"`
	InputSeries []struct {
		Series string `yaml:"series"`
		Values string `yaml:"values"`
		line   int
	} `yaml:"input_series"`
	Deploys []Deploy `yaml:"deploys"`
	line    int
}

// Deploy is a deploy of a test and what it must come to.
type Deploy struct {
	ID              string `yaml:"id"`
	At              string `yaml:"at"`
	Service         string `yaml:"service"`
	Version         string `yaml:"version"`
	PreviousVersion string `yaml:"previous_version"`
	// Verdict is the expected verdict of the deploy.
	Verdict string `yaml:"verdict"`
	// DecidedWithin bounds how long after the deploy a fail must come.
	DecidedWithin durationValue `yaml:"decided_within"`
	// KPIs are the expected verdicts of some or all KPIs.
	KPIs map[string]string `yaml:"kpis"`
	line int
}

// Failure is an expectation that did not hold, or a test that could not run.
type Failure struct {
	File string
	Line int
	Test string
	// Deploy is empty for a problem of the test as a whole.
	Deploy string
	Msg    string
	// Explanation is the verdict's explanation, when a deploy was judged.
	Explanation []string
}

func (f Failure) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s:%d: test %q: ", f.File, f.Line, f.Test)
	if f.Deploy != "" {
		fmt.Fprintf(&b, "deploy %q: ", f.Deploy)
	}
	b.WriteString(f.Msg)
	return b.String()
}

// Result is the outcome of one test file.
type Result struct {
	File string
	// Tests and Passed count tests; a test passes when every expectation
	// of every one of its deploys holds.
	Tests, Passed int
	Failures      []Failure
}

// Options of a run.
type Options struct {
	// Progress, when set, hears of every deploy judged, with its verdict's
	// explanation.
	Progress func(test, deployID string, explanation []string)
}

// RunFile parses and runs the test file at path. Rule files are resolved
// relative to the test file. The error is for a test file that cannot be
// read or parsed, or a rule file that is invalid; failed expectations are
// in the Result.
func RunFile(ctx context.Context, path string, opts Options) (Result, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Result{}, err
	}
	tf, err := Parse(path, data)
	if err != nil {
		return Result{}, err
	}
	var rfs []*rules.File
	var errs []error
	for _, rf := range tf.RuleFiles {
		p := rf
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(path), p)
		}
		f, es := rules.ParseFile(p)
		errs = append(errs, es...)
		if f != nil && len(es) == 0 {
			rfs = append(rfs, f)
		}
	}
	if len(errs) > 0 {
		return Result{}, errors.Join(errs...)
	}
	res := Result{File: path}
	for i := range tf.Tests {
		fails, err := runTest(ctx, path, &tf.Tests[i], rfs, opts)
		if err != nil {
			return res, err
		}
		res.Tests++
		if len(fails) == 0 {
			res.Passed++
		}
		res.Failures = append(res.Failures, fails...)
	}
	return res, nil
}

// Parse reads a test file strictly: unknown fields, wrong types and
// missing required fields are errors with the file and line.
func Parse(path string, data []byte) (*File, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var tf File
	if err := dec.Decode(&tf); err != nil {
		return nil, yamlError(path, err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	setLines(&doc, &tf)
	var errs []error
	bad := func(line int, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s:%d: %s", path, line, fmt.Sprintf(format, a...)))
	}
	if len(tf.RuleFiles) == 0 {
		bad(1, "rule_files: at least one rule file is required")
	}
	if len(tf.Tests) == 0 {
		bad(1, "tests: at least one test is required")
	}
	for _, t := range tf.Tests {
		if t.Name == "" {
			bad(t.line, "test without a name")
		}
		if len(t.Deploys) == 0 {
			bad(t.line, "test %q: deploys: at least one deploy is required", t.Name)
		}
		seen := map[string]bool{}
		for _, d := range t.Deploys {
			if d.ID == "" {
				bad(d.line, "test %q: deploy without an id", t.Name)
			} else if seen[d.ID] {
				bad(d.line, "test %q: deploy %q appears twice", t.Name, d.ID)
			}
			seen[d.ID] = true
			if d.At == "" {
				bad(d.line, "test %q: deploy %q: at is required", t.Name, d.ID)
			}
			if d.Verdict == "" && len(d.KPIs) == 0 {
				bad(d.line, "test %q: deploy %q: expects nothing: give a verdict, kpis or both", t.Name, d.ID)
			}
			if d.Verdict != "" {
				var o detector.Outcome
				if err := o.UnmarshalText([]byte(d.Verdict)); err != nil {
					bad(d.line, "test %q: deploy %q: %v", t.Name, d.ID, err)
				}
			}
			if d.DecidedWithin.set && d.Verdict != "fail" {
				bad(d.line, "test %q: deploy %q: decided_within needs verdict: fail", t.Name, d.ID)
			}
			for name, v := range d.KPIs {
				var o detector.Outcome
				if err := o.UnmarshalText([]byte(v)); err != nil {
					bad(d.line, "test %q: deploy %q: kpi %q: %v", t.Name, d.ID, name, err)
				}
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &tf, nil
}

// setLines records the line of each test, input series and deploy, for
// messages: the decoder above checked the shape, so the node tree follows
// the struct.
func setLines(doc *yaml.Node, tf *File) {
	if len(doc.Content) == 0 {
		return
	}
	tests := mapValue(doc.Content[0], "tests")
	if tests == nil {
		return
	}
	for i, tn := range tests.Content {
		if i >= len(tf.Tests) {
			break
		}
		t := &tf.Tests[i]
		t.line = tn.Line
		if in := mapValue(tn, "input_series"); in != nil {
			for j, sn := range in.Content {
				if j < len(t.InputSeries) {
					t.InputSeries[j].line = sn.Line
				}
			}
		}
		if ds := mapValue(tn, "deploys"); ds != nil {
			for j, dn := range ds.Content {
				if j < len(t.Deploys) {
					t.Deploys[j].line = dn.Line
				}
			}
		}
	}
}

func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

var (
	epoch      = time.Unix(0, 0).UTC()
	yamlLine   = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	yamlInType = regexp.MustCompile(` in type [\w.]+$`)
)

// yamlError rewrites the YAML library's errors as file:line: message.
func yamlError(path string, err error) error {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	if len(msgs) == 1 && msgs[0] == "EOF" {
		return fmt.Errorf("%s: empty file: want rule_files and tests", path)
	}
	var errs []error
	for _, m := range msgs {
		m = strings.ReplaceAll(yamlInType.ReplaceAllString(m, ""), "ruletest.", "")
		m = strings.Replace(m, "field ", "unknown field ", 1)
		m = strings.Replace(m, " not found", "", 1)
		if sm := yamlLine.FindStringSubmatch(m); sm != nil {
			errs = append(errs, fmt.Errorf("%s:%s: %s", path, sm[1], sm[2]))
		} else {
			errs = append(errs, fmt.Errorf("%s: %s", path, m))
		}
	}
	return errors.Join(errs...)
}

func runTest(ctx context.Context, path string, t *Test, rfs []*rules.File, opts Options) ([]Failure, error) {
	fail := func(line int, deployID, format string, a ...any) Failure {
		return Failure{File: path, Line: line, Test: t.Name, Deploy: deployID, Msg: fmt.Sprintf(format, a...)}
	}
	start := epoch
	if t.Start != "" {
		s, err := deploy.ParseTime(t.Start)
		if err != nil {
			return []Failure{fail(t.line, "", "start: %v", err)}, nil
		}
		start = s
	}
	interval := time.Minute
	if t.Interval.set {
		interval = t.Interval.d
	}
	var series []collector.Series
	p := parser.NewParser(parser.Options{})
	for _, in := range t.InputSeries {
		ls, vals, err := p.ParseSeriesDesc(in.Series + " " + in.Values)
		if err != nil {
			return []Failure{fail(in.line, "", "input series %q: %v", in.Series, err)}, nil
		}
		s := collector.Series{Labels: collector.Labels{}}
		ls.Range(func(l labels.Label) { s.Labels[l.Name] = l.Value })
		for i, v := range vals {
			if v.Omitted {
				continue
			}
			if v.Histogram != nil {
				return []Failure{fail(in.line, "", "input series %q: histograms are not supported", in.Series)}, nil
			}
			s.Samples = append(s.Samples, collector.Sample{T: start.Add(time.Duration(i) * interval), V: v.Value})
		}
		series = append(series, s)
	}
	store, err := embedded.Open(embedded.Options{})
	if err != nil {
		return nil, err
	}
	defer store.Close()
	if err := store.Write(ctx, series); err != nil {
		return []Failure{fail(t.line, "", "input series: %v", err)}, nil
	}

	var fails []Failure
	for _, d := range t.Deploys {
		at, err := parseAt(d.At, start)
		if err != nil {
			fails = append(fails, fail(d.line, d.ID, "at: %v", err))
			continue
		}
		rf, err := ruleFileFor(d, rfs)
		if err != nil {
			fails = append(fails, fail(d.line, d.ID, "%v", err))
			continue
		}
		dep := deploy.Deploy{ID: d.ID, Service: rf.Service, Version: d.Version, PreviousVersion: d.PreviousVersion, Time: at}
		dec, err := analysis.Replay(ctx, store, rf, dep, nil)
		if err != nil {
			return nil, err
		}
		expl := dec.Explanation()
		if opts.Progress != nil {
			opts.Progress(t.Name, d.ID, expl)
		}
		check := func(format string, a ...any) {
			f := fail(d.line, d.ID, format, a...)
			f.Explanation = expl
			fails = append(fails, f)
		}
		if d.Verdict != "" && d.Verdict != dec.Verdict.Outcome.String() {
			check("verdict: got %s, want %s", dec.Verdict.Outcome, d.Verdict)
		}
		if d.DecidedWithin.set && dec.Verdict.Outcome == detector.Fail {
			if took := dec.DecidedAt.Sub(at); took > d.DecidedWithin.d {
				check("decided %s after the deploy, want within %s", took, d.DecidedWithin.d)
			}
		}
		names := make([]string, 0, len(d.KPIs))
		for n := range d.KPIs {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			var got *detector.KPIVerdict
			for i := range dec.Verdict.KPIs {
				if dec.Verdict.KPIs[i].Name == n {
					got = &dec.Verdict.KPIs[i]
				}
			}
			switch {
			case got == nil:
				check("kpi %q: no such KPI in %s", n, rf.Filename)
			case got.Outcome.String() != d.KPIs[n]:
				check("kpi %q: got %s, want %s", n, got.Outcome, d.KPIs[n])
			}
		}
	}
	return fails, nil
}

// parseAt reads a deploy time: a duration after the test's start (3h,
// 90m) or an absolute time.
func parseAt(s string, start time.Time) (time.Time, error) {
	if d, err := parseDuration(s); err == nil {
		return start.Add(d), nil
	}
	t, err := deploy.ParseTime(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: want a duration after start (3h) or a time", s)
	}
	return t, nil
}

func ruleFileFor(d Deploy, rfs []*rules.File) (*rules.File, error) {
	if d.Service == "" {
		if len(rfs) == 1 {
			return rfs[0], nil
		}
		return nil, errors.New("service: required when the test names several rule files")
	}
	for _, rf := range rfs {
		if rf.Service == d.Service {
			return rf, nil
		}
	}
	return nil, fmt.Errorf("service %q: no rule file for it", d.Service)
}
