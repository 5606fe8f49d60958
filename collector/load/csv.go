package load

import (
	"bufio"
	"encoding/csv"
	"errors"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"

	"github.com/immune-project/immune/collector"
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
		t, err := parseTimestamp(strings.TrimSpace(rec[0]))
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

const dateTimeLayout = "2006-01-02 15:04:05"

// maxUnixSeconds is 9999-12-31T23:59:59Z.
const maxUnixSeconds = 253402300799

// parseTimestamp returns milliseconds since the Unix epoch.
func parseTimestamp(s string) (int64, error) {
	if s == "" {
		return 0, errors.New("empty timestamp")
	}
	if isUnixSeconds(s) {
		return parseUnixSeconds(s)
	}
	if ms, ok := parseDateTime(s); ok {
		return ms, nil
	}
	for _, layout := range []string{dateTimeLayout, time.RFC3339Nano} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.Round(time.Millisecond).UnixMilli(), nil
		}
	}
	return 0, errors.New("timestamp " + strconv.Quote(s) + ": want 2006-01-02 15:04:05 (UTC), RFC 3339 or Unix seconds")
}

// parseDateTime is time.Parse(dateTimeLayout, s) for the common case
// (no fraction), three times faster; ok is false for anything else.
func parseDateTime(s string) (int64, bool) {
	if len(s) != len(dateTimeLayout) || s[4] != '-' || s[7] != '-' || s[10] != ' ' || s[13] != ':' || s[16] != ':' {
		return 0, false
	}
	num := func(i, j int) int {
		n := 0
		for ; i < j; i++ {
			c := s[i]
			if c < '0' || c > '9' {
				return -1
			}
			n = n*10 + int(c-'0')
		}
		return n
	}
	year, month, day := num(0, 4), num(5, 7), num(8, 10)
	hour, minute, sec := num(11, 13), num(14, 16), num(17, 19)
	if year < 0 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 || minute < 0 || minute > 59 || sec < 0 || sec > 59 {
		return 0, false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, 0, time.UTC)
	if t.Day() != day { // February 30th
		return 0, false
	}
	return t.UnixMilli(), true
}

// isUnixSeconds: digits, optionally a point and more digits.
func isUnixSeconds(s string) bool {
	intPart, frac, hasPoint := strings.Cut(s, ".")
	if intPart == "" || hasPoint && frac == "" {
		return false
	}
	for _, part := range []string{intPart, frac} {
		for i := 0; i < len(part); i++ {
			if part[i] < '0' || part[i] > '9' {
				return false
			}
		}
	}
	return true
}

// parseUnixSeconds converts decimal seconds to milliseconds exactly,
// rounding half up at the fourth decimal.
func parseUnixSeconds(s string) (int64, error) {
	intPart, frac, _ := strings.Cut(s, ".")
	intPart = strings.TrimLeft(intPart, "0")
	if intPart == "" {
		intPart = "0"
	}
	if len(intPart) > 12 {
		return 0, unixRangeError(s, intPart)
	}
	sec, err := strconv.ParseInt(intPart, 10, 64)
	if err != nil || sec > maxUnixSeconds {
		return 0, unixRangeError(s, intPart)
	}
	ms := sec * 1000
	digits := (frac + "000")[:3]
	m, _ := strconv.ParseInt(digits, 10, 64)
	ms += m
	if len(frac) > 3 && frac[3] >= '5' {
		ms++
	}
	return ms, nil
}

func unixRangeError(s, intPart string) error {
	msg := "timestamp " + strconv.Quote(s) + ": Unix seconds beyond the year 9999"
	if len(intPart) >= 13 && len(intPart) <= 16 {
		msg += " (milliseconds? divide by 1000)"
	}
	return errors.New(msg)
}
