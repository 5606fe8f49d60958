package detector

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// SampleError is a bad line of a sample file.
type SampleError struct {
	File string
	Line int // 0 when the error is about the whole file
	Msg  string
}

func (e *SampleError) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// ParseSample reads one number per line. Blank lines and lines starting
// with # are skipped. NaN, infinities, anything that is not a number and a
// file without a number are errors naming the file and line.
func ParseSample(file string, data []byte) ([]float64, error) {
	var xs []float64
	err := eachLine(data, func(line int, fields []string) error {
		if len(fields) != 1 {
			return &SampleError{file, line, fmt.Sprintf("want one number, got %d fields", len(fields))}
		}
		x, err := parseNumber(fields[0])
		if err != nil {
			return &SampleError{file, line, err.Error()}
		}
		xs = append(xs, x)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(xs) == 0 {
		return nil, &SampleError{File: file, Msg: "no numbers"}
	}
	return xs, nil
}

// ParseCounts reads lines of "events trials" and sums them. Counts must be
// non-negative, finite, with events ≤ trials on every line.
func ParseCounts(file string, data []byte) (Counts, error) {
	var c Counts
	n := 0
	err := eachLine(data, func(line int, fields []string) error {
		if len(fields) != 2 {
			return &SampleError{file, line, fmt.Sprintf("want two numbers (events trials), got %d fields", len(fields))}
		}
		var v [2]float64
		for i, f := range fields {
			x, err := parseNumber(f)
			if err != nil {
				return &SampleError{file, line, err.Error()}
			}
			if x < 0 {
				return &SampleError{file, line, fmt.Sprintf("%s must not be negative", [2]string{"events", "trials"}[i])}
			}
			v[i] = x
		}
		if v[0] > v[1] {
			return &SampleError{file, line, fmt.Sprintf("events %s exceed trials %s", fields[0], fields[1])}
		}
		c.Events += v[0]
		c.Trials += v[1]
		n++
		return nil
	})
	if err != nil {
		return Counts{}, err
	}
	if n == 0 {
		return Counts{}, &SampleError{File: file, Msg: "no counts"}
	}
	if math.IsInf(c.Trials, 0) {
		return Counts{}, &SampleError{File: file, Msg: "trials overflow"}
	}
	return c, nil
}

func eachLine(data []byte, f func(line int, fields []string) error) error {
	for i, raw := range bytes.Split(data, []byte("\n")) {
		s := strings.TrimSpace(string(raw))
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		if err := f(i+1, strings.Fields(s)); err != nil {
			return err
		}
	}
	return nil
}

func parseNumber(s string) (float64, error) {
	x, err := strconv.ParseFloat(s, 64)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			return 0, fmt.Errorf("%q is out of range", truncate(s))
		}
		return 0, fmt.Errorf("%q is not a number", truncate(s))
	}
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return 0, fmt.Errorf("%q is not a finite number", truncate(s))
	}
	return x, nil
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
