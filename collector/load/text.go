package load

import (
	"bytes"
	"errors"
	"io"
	"strconv"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"

	"github.com/immune-project/immune/collector"
)

// Text reads the Prometheus text exposition format (0.0.4) or, when the
// file ends with "# EOF", OpenMetrics 1.0, with Prometheus's own parser
// (model/textparse). Every sample needs a timestamp (milliseconds in the
// Prometheus format, seconds in OpenMetrics):
//
//	# TYPE checkout_started_total counter
//	checkout_started_total{region="eu"} 1027 1396310400000
//
// Values keep Prometheus's meaning: NaN and ±Inf are values. Names must be
// classic Prometheus names ([a-zA-Z_:][a-zA-Z0-9_:]*), as every server
// takes. name is the file's name in errors.
func Text(name string, r io.Reader, opts Options) ([]collector.Series, Stats, error) {
	if err := checkExtraLabels(opts.Labels); err != nil {
		return nil, Stats{}, err
	}
	pr := newProblems(name, opts.MaxErrors)
	buf, err := io.ReadAll(r)
	if err != nil {
		pr.add(0, "read: %v", err)
		return nil, Stats{}, pr.err()
	}
	buf = stripBOM(buf)
	contentType := "text/plain; version=0.0.4"
	openMetrics := bytes.HasSuffix(bytes.TrimRight(buf, " \t\r\n"), []byte("# EOF"))
	if openMetrics {
		contentType = "application/openmetrics-text; version=1.0.0"
	}
	p, err := textparse.New(buf, contentType, labels.NewSymbolTable(), textparse.ParserOptions{})
	if err != nil {
		pr.add(0, "%v", err)
		return nil, Stats{}, pr.err()
	}

	lines := lineCounter{buf: buf, strict: openMetrics}
	b := newBuilder()
	var ls labels.Labels
	lastLine := 0
	for {
		entry, err := p.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			pr.add(lines.errorLine(lastLine), "%v", err)
			break // the parser cannot go on
		}
		var ref []byte
		switch entry {
		case textparse.EntryType:
			ref, _ = p.Type()
		case textparse.EntryHelp:
			ref, _ = p.Help()
		case textparse.EntryUnit:
			ref, _ = p.Unit()
		case textparse.EntryComment:
			ref = p.Comment()
		case textparse.EntryHistogram:
			ref, _, _, _ = p.Histogram()
		case textparse.EntrySeries:
			ref, _, _ = p.Series()
		}
		line := lines.lineOf(ref, lastLine+1)
		lastLine = line
		switch entry {
		case textparse.EntryHistogram:
			pr.add(line, "native histogram samples are not supported")
			continue
		case textparse.EntrySeries:
		default:
			continue
		}
		_, ts, v := p.Series()
		p.Labels(&ls)
		if ts == nil {
			pr.add(line, "%s has no timestamp", ls)
			continue
		}
		l, ok := textLabels(pr, line, ls, opts.Labels)
		if !ok {
			continue
		}
		b.add(l.String(), l, point{t: *ts, v: v, line: line})
	}
	series, stats := b.finish(pr, opts.Duplicates)
	if err := pr.err(); err != nil {
		return nil, Stats{}, err
	}
	return series, stats, nil
}

// textLabels checks a parsed series and adds the extra labels.
func textLabels(pr *problems, line int, ls labels.Labels, extra map[string]string) (collector.Labels, bool) {
	l := make(collector.Labels, ls.Len()+len(extra))
	ok := true
	ls.Range(func(lb labels.Label) {
		switch {
		case lb.Name == model.MetricNameLabel && !model.LegacyValidation.IsValidMetricName(lb.Value):
			pr.add(line, "%q is not a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)", lb.Value)
			ok = false
		case lb.Name != model.MetricNameLabel && !model.LegacyValidation.IsValidLabelName(lb.Name):
			pr.add(line, "%q is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)", lb.Name)
			ok = false
		}
		if lb.Value != "" {
			l[lb.Name] = lb.Value
		}
	})
	if l[model.MetricNameLabel] == "" {
		pr.add(line, "%s has no metric name", ls)
		return nil, false
	}
	for k, v := range extra {
		if have, clash := l[k]; clash && have != v {
			pr.add(line, "%s: label %s=%s clashes with the extra label %s=%s", ls, k, strconv.Quote(have), k, strconv.Quote(v))
			ok = false
		}
		l[k] = v
	}
	return l, ok
}

// lineCounter turns positions in buf into line numbers, moving forward.
type lineCounter struct {
	buf    []byte
	strict bool // OpenMetrics: no line is skipped
	off    int  // position counted up to
	line   int  // 0-based line at off
}

// lineOf returns the 1-based line of ref, a slice of buf that the parser
// returned, or def when ref is not one.
func (c *lineCounter) lineOf(ref []byte, def int) int {
	off, ok := offsetIn(c.buf, ref)
	if !ok || off < c.off {
		return def
	}
	c.line += bytes.Count(c.buf[c.off:off], []byte{'\n'})
	c.off = off
	return c.line + 1
}

// offsetIn finds where sub starts in buf, if sub is a slice of buf.
func offsetIn(buf, sub []byte) (int, bool) {
	if len(sub) == 0 {
		return 0, false
	}
	off := cap(buf) - cap(sub)
	if off < 0 || off+len(sub) > len(buf) || &buf[off] != &sub[0] {
		return 0, false
	}
	return off, true
}

// errorLine guesses the line of a syntax error: the parser stops on the
// line after the last good entry; the Prometheus format's parser skips
// blank lines and plain comments first.
func (c *lineCounter) errorLine(last int) int {
	lines := bytes.Split(c.buf, []byte{'\n'})
	for i := last; i < len(lines); i++ { // lines[last] is line last+1
		l := bytes.TrimSpace(lines[i])
		if c.strict {
			return i + 1
		}
		if len(l) == 0 {
			continue
		}
		if l[0] == '#' && !isDirective(l) {
			continue
		}
		return i + 1
	}
	return max(last, 1)
}

func isDirective(l []byte) bool {
	for _, d := range []string{"# HELP", "# TYPE", "# UNIT", "# EOF"} {
		if bytes.HasPrefix(l, []byte(d)) {
			return true
		}
	}
	return false
}
