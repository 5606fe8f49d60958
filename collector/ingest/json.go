package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"

	"github.com/prometheus/common/model"
)

// jsonSample is one element of a JSON push:
//
//	{"name": "jobs_done_total", "labels": {"job": "nightly"}, "value": 42, "timestamp": 1700000000000}
//
// value is a JSON number or a string holding one (also "NaN", "+Inf",
// "-Inf", which JSON numbers cannot say); timestamp, optional, is a number
// of milliseconds since the Unix epoch or an RFC 3339 string; without it
// the sample is at the receiver's time. The name may also be given as the
// label __name__.
type jsonSample struct {
	Name      string            `json:"name"`
	Labels    map[string]string `json:"labels"`
	Value     json.RawMessage   `json:"value"`
	Timestamp json.RawMessage   `json:"timestamp"`
}

// parseJSON reads a JSON array of samples. Errors name the sample (from
// 1) and its line.
func (p *pushParser) parseJSON(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	tok, err := dec.Token()
	if err != nil {
		return jsonErr(body, dec, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return fmt.Errorf("%w: line 1: want a JSON array of samples", ErrParse)
	}
	for i := 1; dec.More(); i++ {
		at := skipSpace(body, int(dec.InputOffset()))
		var js jsonSample
		if err := dec.Decode(&js); err != nil {
			return fmt.Errorf("sample %d: %w", i, jsonErr(body, dec, err))
		}
		if err := p.jsonSample(&js); err != nil {
			return fmt.Errorf("sample %d (line %d): %w", i, lineOf(body, at), err)
		}
	}
	if _, err := dec.Token(); err != nil { // ']'
		return jsonErr(body, dec, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: line %d: data after the array", ErrParse, lineOf(body, int(dec.InputOffset())))
	}
	return nil
}

func (p *pushParser) jsonSample(js *jsonSample) error {
	name := js.Name
	if n, ok := js.Labels[model.MetricNameLabel]; ok {
		if name != "" && n != name {
			return fmt.Errorf("%w: name %q and label __name__ %q differ", ErrInvalidLabels, shorten(name), shorten(n))
		}
		name = n
	}
	if name == "" {
		return fmt.Errorf("%w: no name", ErrInvalidLabels)
	}
	v, err := jsonValue(js.Value)
	if err != nil {
		return err
	}
	t, err := p.jsonTime(js.Timestamp)
	if err != nil {
		return err
	}
	p.c.reset()
	p.c.add(model.MetricNameLabel, name)
	for k, lv := range js.Labels {
		if k != model.MetricNameLabel {
			p.c.add(k, lv)
		}
	}
	return p.sample(t, v)
}

func jsonValue(raw json.RawMessage) (float64, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, fmt.Errorf("%w: no value", ErrParse)
	}
	s := string(raw)
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, fmt.Errorf("%w: value: %w", ErrParse, err)
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: value %s is not a number", ErrParse, shorten(string(raw)))
	}
	return v, nil
}

func (p *pushParser) jsonTime(raw json.RawMessage) (int64, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return p.now, nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, fmt.Errorf("%w: timestamp: %w", ErrParse, err)
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return 0, fmt.Errorf("%w: timestamp %q is not RFC 3339 (2006-01-02T15:04:05Z)", ErrParse, shorten(s))
		}
		return t.UnixMilli(), nil
	}
	ms, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(string(raw), 64)
		if ferr != nil || f != math.Trunc(f) || math.Abs(f) > 1<<62 {
			return 0, fmt.Errorf("%w: timestamp %s is not a whole number of milliseconds since 1970 or an RFC 3339 string", ErrParse, shorten(string(raw)))
		}
		ms = int64(f)
	}
	return ms, nil
}

// jsonErr adds the line to a decoding error.
func jsonErr(body []byte, dec *json.Decoder, err error) error {
	off := int(dec.InputOffset())
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		off = int(syn.Offset)
	case errors.As(err, &typ):
		off = int(typ.Offset)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%w: line %d: unexpected end of JSON", ErrParse, lineOf(body, len(body)))
	}
	return fmt.Errorf("%w: line %d: %w", ErrParse, lineOf(body, off), err)
}

func lineOf(body []byte, off int) int {
	off = min(max(off, 0), len(body))
	return bytes.Count(body[:off], []byte("\n")) + 1
}

func skipSpace(body []byte, off int) int {
	for off < len(body) {
		switch body[off] {
		case ' ', '\t', '\r', '\n', ',':
			off++
		default:
			return off
		}
	}
	return off
}
