package queryapi

import (
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
)

// The encoders write what Prometheus's API writes (web/api/v1's jsoniter
// codec, which is compatible with encoding/json): timestamps as seconds
// with up to three decimals, values as strings, labels as objects.

func appendValue(b []byte, v parser.Value) []byte {
	switch v := v.(type) {
	case promql.Matrix:
		b = append(b, '[')
		for i, s := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"metric":`...)
			b = appendLabels(b, s.Metric)
			if len(s.Floats) > 0 {
				b = append(b, `,"values":[`...)
				for j, p := range s.Floats {
					if j > 0 {
						b = append(b, ',')
					}
					b = appendPoint(b, p.T, p.F)
				}
				b = append(b, ']')
			}
			if len(s.Histograms) > 0 {
				b = append(b, `,"histograms":[`...)
				for j, p := range s.Histograms {
					if j > 0 {
						b = append(b, ',')
					}
					b = appendHPoint(b, p.T, p.H)
				}
				b = append(b, ']')
			}
			b = append(b, '}')
		}
		return append(b, ']')
	case promql.Vector:
		b = append(b, '[')
		for i, s := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"metric":`...)
			b = appendLabels(b, s.Metric)
			if s.H == nil {
				b = append(b, `,"value":`...)
				b = appendPoint(b, s.T, s.F)
			} else {
				b = append(b, `,"histogram":`...)
				b = appendHPoint(b, s.T, s.H)
			}
			b = append(b, '}')
		}
		return append(b, ']')
	case promql.Scalar:
		return appendPoint(b, v.T, v.V)
	case promql.String:
		b = append(b, '[')
		b = appendTimestamp(b, v.T)
		b = append(b, ',')
		b = appendString(b, v.V)
		return append(b, ']')
	}
	return append(b, "null"...)
}

func appendPoint(b []byte, t int64, f float64) []byte {
	b = append(b, '[')
	b = appendTimestamp(b, t)
	b = append(b, ',')
	b = appendFloat(b, f)
	return append(b, ']')
}

func appendHPoint(b []byte, t int64, h *histogram.FloatHistogram) []byte {
	b = append(b, '[')
	b = appendTimestamp(b, t)
	b = append(b, `,{"count":`...)
	b = appendFloat(b, h.Count)
	b = append(b, `,"sum":`...)
	b = appendFloat(b, h.Sum)
	found := false
	it := h.AllBucketIterator()
	for it.Next() {
		bk := it.At()
		if bk.Count == 0 {
			continue
		}
		if !found {
			b = append(b, `,"buckets":[`...)
		} else {
			b = append(b, ',')
		}
		found = true
		boundaries := 2 // open
		switch {
		case bk.LowerInclusive && bk.UpperInclusive:
			boundaries = 3
		case bk.LowerInclusive:
			boundaries = 1
		case bk.UpperInclusive:
			boundaries = 0
		}
		b = append(b, '[')
		b = strconv.AppendInt(b, int64(boundaries), 10)
		b = append(b, ',')
		b = appendFloat(b, bk.Lower)
		b = append(b, ',')
		b = appendFloat(b, bk.Upper)
		b = append(b, ',')
		b = appendFloat(b, bk.Count)
		b = append(b, ']')
	}
	if found {
		b = append(b, ']')
	}
	return append(b, "}]"...)
}

// appendTimestamp writes milliseconds as seconds: 1435781451.781.
func appendTimestamp(b []byte, t int64) []byte {
	if t < 0 {
		b = append(b, '-')
		t = -t
	}
	b = strconv.AppendInt(b, t/1000, 10)
	if f := t % 1000; f != 0 {
		b = append(b, '.')
		if f < 100 {
			b = append(b, '0')
		}
		if f < 10 {
			b = append(b, '0')
		}
		b = strconv.AppendInt(b, f, 10)
	}
	return b
}

// appendFloat writes a value as a JSON string: "1.5", "NaN", "+Inf".
func appendFloat(b []byte, f float64) []byte {
	b = append(b, '"')
	abs := math.Abs(f)
	fmt := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		fmt = 'e'
	}
	b = strconv.AppendFloat(b, f, fmt, -1, 64)
	return append(b, '"')
}

func appendLabels(b []byte, ls labels.Labels) []byte {
	b = append(b, '{')
	first := true
	ls.Range(func(l labels.Label) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendString(b, l.Name)
		b = append(b, ':')
		b = appendString(b, l.Value)
	})
	return append(b, '}')
}

func appendStrings(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}

const hex = "0123456789abcdef"

// appendString writes s as encoding/json does: HTML characters, control
// characters, U+2028 and U+2029 escaped, invalid UTF-8 as U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
