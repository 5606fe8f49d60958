// Package load reads metric history from files into the embedded store:
// CSV (timestamp,<metric>[,<metric>…]) and the Prometheus or OpenMetrics
// text exposition format with a timestamp on every sample.
//
// A file is checked whole before anything is stored, and then stored in one
// transaction: all of it or none of it. Every problem of a file is reported
// at once (up to Options.MaxErrors), each as file:line: message.
//
// Within a file, rows may come in any order; two rows of a series at the
// same time keep the later row by default (NAB's files repeat the hour
// that daylight saving time skips). Files may be loaded in any order: the
// embedded store takes history of any age (its out-of-order window).
package load

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/common/model"

	"github.com/immune-project/immune/collector"
)

// Writer stores series, all or none; *embedded.Store is one.
type Writer interface {
	Write(ctx context.Context, series []collector.Series) error
}

// Duplicates says what to do with two samples of a series at the same
// time and with different values. Equal values are always stored once.
type Duplicates int

const (
	// KeepLast keeps the sample of the later row and counts the others
	// in Stats.Duplicates.
	KeepLast Duplicates = iota
	// Reject makes them an error.
	Reject
)

// DefaultMaxErrors is how many problems of one file are reported.
const DefaultMaxErrors = 20

// Options configure the loaders. The zero value is ready to use.
type Options struct {
	// Labels are added to every series of the file, e.g.
	// {"service": "checkout"}. A series of a text file that has one of
	// them with another value is an error.
	Labels map[string]string
	// Duplicates says what to do with rows of a series at the same time
	// with different values; default KeepLast.
	Duplicates Duplicates
	// MaxErrors bounds the problems reported per file, default
	// DefaultMaxErrors.
	MaxErrors int
}

// Stats describe what a file held.
type Stats struct {
	Series     int // series with at least one sample
	Samples    int // samples stored
	Duplicates int // rows dropped: another row had the same series and time (the later one is kept)
	// First and Last are the times of the oldest and newest samples.
	First, Last time.Time
}

// LineError is one problem of a file.
type LineError struct {
	File string
	Line int // 1-based; 0 when the problem is the file's as a whole
	Msg  string
}

func (e *LineError) Error() string {
	if e.Line <= 0 {
		return e.File + ": " + e.Msg
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// FileError is every problem found in a file, in the order found: one line
// each.
type FileError struct {
	File    string
	Errors  []*LineError
	Omitted int // problems beyond Options.MaxErrors, not listed
}

func (e *FileError) Error() string {
	var b strings.Builder
	for i, le := range e.Errors {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(le.Error())
	}
	if e.Omitted > 0 {
		fmt.Fprintf(&b, "\n%s: %d more problems", e.File, e.Omitted)
	}
	return b.String()
}

// Unwrap gives the LineErrors, for errors.As.
func (e *FileError) Unwrap() []error {
	errs := make([]error, len(e.Errors))
	for i, le := range e.Errors {
		errs[i] = le
	}
	return errs
}

// File reads the file at path (CSV for .csv; text exposition for .prom,
// .txt, .om, .openmetrics) and writes its series to w in one Write.
func File(ctx context.Context, w Writer, path string, opts Options) (Stats, error) {
	read, err := readerFor(path)
	if err != nil {
		return Stats{}, err
	}
	f, err := os.Open(path)
	if err != nil {
		return Stats{}, fmt.Errorf("load: %w", err)
	}
	defer f.Close()
	series, stats, err := read(path, f, opts)
	if err != nil {
		return Stats{}, err
	}
	if err := w.Write(ctx, series); err != nil {
		return Stats{}, fmt.Errorf("load %s: %w", path, err)
	}
	return stats, nil
}

func readerFor(path string) (func(string, io.Reader, Options) ([]collector.Series, Stats, error), error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".csv":
		return CSV, nil
	case ".prom", ".txt", ".om", ".openmetrics":
		return Text, nil
	}
	return nil, fmt.Errorf("load %s: unknown format: want .csv, or .prom, .txt, .om, .openmetrics for the text exposition format", path)
}

// problems collects a file's errors up to a limit.
type problems struct {
	file string
	max  int
	errs []*LineError
	more int
}

func newProblems(file string, max int) *problems {
	if max <= 0 {
		max = DefaultMaxErrors
	}
	return &problems{file: file, max: max}
}

func (p *problems) add(line int, format string, args ...any) {
	if len(p.errs) >= p.max {
		p.more++
		return
	}
	p.errs = append(p.errs, &LineError{File: p.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

func (p *problems) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	return &FileError{File: p.file, Errors: p.errs, Omitted: p.more}
}

// point is a sample with the line it came from.
type point struct {
	t    int64
	v    float64
	line int
}

// builder gathers the samples of a file's series.
type builder struct {
	keys   []string // in order of appearance
	labels map[string]collector.Labels
	points map[string][]point
}

func newBuilder() *builder {
	return &builder{labels: map[string]collector.Labels{}, points: map[string][]point{}}
}

// add appends p to the series of key, recording the series and its
// labels l the first time key is seen.
func (b *builder) add(key string, l collector.Labels, p point) {
	if _, ok := b.labels[key]; !ok {
		b.keys = append(b.keys, key)
		b.labels[key] = l
	}
	b.points[key] = append(b.points[key], p)
}

// finish sorts every series by time, resolves samples at the same time,
// and returns the series with the file's stats.
func (b *builder) finish(pr *problems, dup Duplicates) ([]collector.Series, Stats) {
	var st Stats
	first, last := int64(math.MaxInt64), int64(math.MinInt64)
	out := make([]collector.Series, 0, len(b.keys))
	for _, key := range b.keys {
		pts := b.points[key]
		slices.SortStableFunc(pts, func(a, b point) int { return cmp.Compare(a.t, b.t) })
		kept := pts[:0]
		for _, p := range pts {
			if n := len(kept); n > 0 && kept[n-1].t == p.t {
				prev := kept[n-1]
				if math.Float64bits(prev.v) == math.Float64bits(p.v) {
					st.Duplicates++ // the same sample twice
					continue
				}
				if dup == Reject {
					pr.add(p.line, "%s at %s: value %v, but line %d has %v", b.labels[key], collector.Time(p.t).Format(time.RFC3339Nano), p.v, prev.line, prev.v)
					continue
				}
				kept[n-1] = p // lines in order: p is the later row
				st.Duplicates++
				continue
			}
			kept = append(kept, p)
		}
		if len(kept) == 0 {
			continue
		}
		samples := make([]collector.Sample, len(kept))
		for i, p := range kept {
			samples[i] = collector.Sample{T: collector.Time(p.t), V: p.v}
		}
		first, last = min(first, kept[0].t), max(last, kept[len(kept)-1].t)
		st.Series++
		st.Samples += len(samples)
		out = append(out, collector.Series{Labels: b.labels[key], Samples: samples})
	}
	if st.Samples > 0 {
		st.First, st.Last = collector.Time(first), collector.Time(last)
	}
	return out, st
}

// checkExtraLabels validates Options.Labels.
func checkExtraLabels(extra map[string]string) error {
	for _, k := range slices.Sorted(maps.Keys(extra)) {
		switch {
		case k == model.MetricNameLabel:
			return fmt.Errorf("load: extra label %s: the metric name comes from the file", k)
		case !model.LegacyValidation.IsValidLabelName(k):
			return fmt.Errorf("load: extra label %q: not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*)", k)
		case strings.HasPrefix(k, "__"):
			return fmt.Errorf("load: extra label %s: names starting with __ are reserved", k)
		case extra[k] == "":
			return fmt.Errorf("load: extra label %s: empty value", k)
		}
	}
	return nil
}

// stripBOM drops a UTF-8 byte order mark.
func stripBOM(b []byte) []byte { return bytes.TrimPrefix(b, []byte("\ufeff")) }
