package load

import (
	"bufio"
	"encoding/csv"
	"errors"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/prometheus/common/model"

	"github.com/immune-project/immune/collector"
	"github.com/immune-project/immune/internal/timestamp"
)

// CSV reads a CSV file: a header "timestamp,<metric>[,<metric>…]", then
// one row per time. Each metric column is a series named by its header
// (a Prometheus metric name), with Options.Labels. name is the file's name
// in errors.
//
// A timestamp is "2006-01-02 15:04:05" (UTC, optional fraction), RFC 3339
// ("2006-01-02T15:04:05Z", "…+02:00"), or Unix seconds, integer or
// fractional ("1396310400", "1396310400.250"); it is rounded to the
// millisecond. An empty cell is no sample (a gap); NaN and infinities are
// refused, as a KPI value they would spoil every statistic of its window.
// Lines starting with # are comments.
func CSV(name string, r io.Reader, opts Options) ([]collector.Series, Stats, error) {
	if err := checkExtraLabels(opts.Labels); err != nil {
		return nil, Stats{}, err
	}
	pr := newProblems(name, opts.MaxErrors)
	br := bufio.NewReader(r)
	if b, err := br.Peek(3); err == nil && string(b) == "\ufeff" {
		br.Discard(3)
	}
	cr := csv.NewReader(br)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	cr.Comment = '#'

	header, err := cr.Read()
	switch {
	case errors.Is(err, io.EOF):
		pr.add(0, "empty file: want a header timestamp,<metric>[,<metric>…]")
		return nil, Stats{}, pr.err()
	case err != nil:
		pr.add(csvLine(err, 1), "header: %s", csvMsg(err))
		return nil, Stats{}, pr.err()
	}
	metrics, ok := csvHeader(pr, header)
	if !ok {
		return nil, Stats{}, pr.err()
	}
	columns := make([]collector.Labels, len(metrics))
	for i, m := range metrics {
		l := collector.Labels{collector.MetricName: m}
		for k, v := range opts.Labels {
			l[k] = v
		}
		columns[i] = l
	}

	b := newBuilder()
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if !errors.As(err, &pe) {
				pr.add(0, "read: %v", err)
				break
			}
			pr.add(csvLine(err, 0), "%s", csvMsg(err))
			continue
		}
		line, _ := cr.FieldPos(0)
		if len(rec) != len(header) {
			pr.add(line, "%d columns, want %d (%s)", len(rec), len(header), strings.Join(append([]string{"timestamp"}, metrics...), ","))
			continue
		}
		t, err := timestamp.ParseMillis(strings.TrimSpace(rec[0]))
		if err != nil {
			pr.add(line, "%v", err)
			continue
		}
		for i, cell := range rec[1:] {
			cell = strings.TrimSpace(cell)
			if cell == "" {
				continue
			}
			v, err := strconv.ParseFloat(cell, 64)
			switch {
			case err != nil:
				pr.add(line, "column %s: %q is not a number", metrics[i], cell)
				continue
			case math.IsNaN(v) || math.IsInf(v, 0):
				pr.add(line, "column %s: %s is refused: leave the cell empty for a missing value", metrics[i], cell)
				continue
			}
			b.add(metrics[i], columns[i], point{t: t, v: v, line: line})
		}
	}
	series, stats := b.finish(pr, opts.Duplicates)
	if err := pr.err(); err != nil {
		return nil, Stats{}, err
	}
	return series, stats, nil
}

// csvHeader checks the header and returns the metric names.
func csvHeader(pr *problems, header []string) ([]string, bool) {
	before := len(pr.errs) + pr.more
	if len(header) < 2 {
		pr.add(1, "header %q: want timestamp,<metric>[,<metric>…]", strings.Join(header, ","))
		return nil, false
	}
	if h := strings.TrimSpace(header[0]); !strings.EqualFold(h, "timestamp") {
		pr.add(1, "header: first column is %q, want timestamp", h)
	}
	metrics := make([]string, 0, len(header)-1)
	seen := map[string]bool{}
	for i, h := range header[1:] {
		h = strings.TrimSpace(h)
		switch {
		case !model.LegacyValidation.IsValidMetricName(h):
			pr.add(1, "header: column %d: %q is not a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)", i+2, h)
		case seen[h]:
			pr.add(1, "header: column %d: %s appears twice", i+2, h)
		}
		seen[h] = true
		metrics = append(metrics, h)
	}
	return metrics, len(pr.errs)+pr.more == before
}

func csvLine(err error, def int) int {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return pe.Line
	}
	return def
}

// csvMsg is a csv.ParseError's message without its position, which
// LineError gives.
func csvMsg(err error) string {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}
