package deploy

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/immune-project/immune/internal/timestamp"
)

// CSVError is a bad line of a deploys file.
type CSVError struct {
	File string
	Line int
	Msg  string
}

func (e *CSVError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// ParseCSV reads deploys from CSV with a header naming at least the
// columns id and time, and optionally service, version and
// previous_version, in any order; other columns are ignored. Times are
// RFC 3339, "2006-01-02 15:04:05" (UTC) or Unix seconds. Ids must be
// unique. Every bad line is reported, each as file:line: message.
func ParseCSV(file string, data []byte) ([]Deploy, error) {
	r := csv.NewReader(bytes.NewReader(data))
	r.FieldsPerRecord = -1
	r.TrimLeadingSpace = true
	r.Comment = '#'
	header, err := r.Read()
	if err == io.EOF {
		return nil, &CSVError{file, 1, "empty file: want a header with at least id,time"}
	}
	if err != nil {
		return nil, csvErr(file, err)
	}
	col := map[string]int{}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
		if _, dup := col[h]; dup && h != "" {
			line, _ := r.FieldPos(i)
			return nil, &CSVError{file, line, fmt.Sprintf("column %q appears twice in the header", h)}
		}
		col[h] = i
	}
	for _, need := range []string{"id", "time"} {
		if _, ok := col[need]; !ok {
			line, _ := r.FieldPos(0)
			return nil, &CSVError{file, line, fmt.Sprintf("header has no %q column: want at least id,time", need)}
		}
	}
	var (
		deploys []Deploy
		errs    []error
		seen    = map[string]int{}
	)
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			errs = append(errs, csvErr(file, err))
			if len(errs) >= 20 {
				break
			}
			continue
		}
		line, _ := r.FieldPos(0)
		get := func(name string) string {
			if i, ok := col[name]; ok && i < len(rec) {
				return strings.TrimSpace(rec[i])
			}
			return ""
		}
		if len(rec) != len(header) {
			errs = append(errs, &CSVError{file, line, fmt.Sprintf("%d fields, the header has %d", len(rec), len(header))})
			continue
		}
		d := Deploy{ID: get("id"), Service: get("service"), Version: get("version"), PreviousVersion: get("previous_version")}
		if d.ID == "" {
			errs = append(errs, &CSVError{file, line, "id is empty"})
			continue
		}
		if first, dup := seen[d.ID]; dup {
			errs = append(errs, &CSVError{file, line, fmt.Sprintf("id %q already used on line %d", d.ID, first)})
			continue
		}
		seen[d.ID] = line
		t, err := ParseTime(get("time"))
		if err != nil {
			errs = append(errs, &CSVError{file, line, fmt.Sprintf("deploy %q: %v", d.ID, err)})
			continue
		}
		d.Time = t
		deploys = append(deploys, d)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(deploys) == 0 {
		return nil, &CSVError{file, 2, "no deploys after the header"}
	}
	return deploys, nil
}

func csvErr(file string, err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return &CSVError{file, pe.Line, pe.Err.Error()}
	}
	return fmt.Errorf("%s: %w", file, err)
}

// ParseTime reads RFC 3339, "2006-01-02 15:04:05" (taken as UTC) or Unix
// seconds, integer or fractional, to the millisecond: the timestamps of
// history files (internal/timestamp).
func ParseTime(s string) (time.Time, error) {
	return timestamp.Parse(s)
}
