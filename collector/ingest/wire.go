package ingest

import (
	"errors"
	"fmt"
	"math"
	"unsafe"

	"github.com/prometheus/prometheus/prompb"
	"google.golang.org/protobuf/encoding/protowire"
)

// errFallback: the request holds what the wire decoder leaves to the
// generated one: native histograms, or protobuf groups (deprecated, written
// by no sender, and skipped by the generated code in ways of its own).
var errFallback = errors.New("request for the generated decoder")

// decodeV1Wire decodes a prometheus.WriteRequest straight into b, without
// the generated code's intermediate structs: no allocation per label or
// sample, which is most of the cost of a request. Label strings point into
// data while they are checked and built into a label set (which copies
// them: labels.ScratchBuilder.Labels, TestDecodedLabelsOwnTheirMemory).
// Exemplars and metadata are skipped; a request with native histograms
// gives errFallback (the generated decoder handles those).
func (r *Receiver) decodeV1Wire(data []byte, b *batch) error {
	c := labelChecker{l: &r.limits}
	var cache map[string]cached
	if r.cache != nil {
		r.cache.mu.RLock()
		defer r.cache.mu.RUnlock()
		cache = r.cache.m
	}
	var firstErr error
	for i := 0; len(data) > 0; {
		num, typ, n := protowire.ConsumeTag(data)
		if n < 0 {
			return wireErr(protowire.ParseError(n))
		}
		if group(typ) {
			return errFallback
		}
		data = data[n:]
		if (num == 1 || num == 3) && typ != protowire.BytesType {
			return wrongType(num, typ)
		}
		if num != 1 {
			n = protowire.ConsumeFieldValue(num, typ, data)
			if n < 0 {
				return wireErr(protowire.ParseError(n))
			}
			if num == 3 {
				// Metadata is dropped, but a request with broken
				// metadata is refused, as the generated decoder does.
				v, _ := protowire.ConsumeBytes(data)
				var md prompb.MetricMetadata
				if err := md.Unmarshal(v); err != nil {
					return wireErr(err)
				}
			}
			data = data[n:]
			continue
		}
		ts, n := protowire.ConsumeBytes(data)
		if n < 0 {
			return wireErr(protowire.ParseError(n))
		}
		data = data[n:]
		if err := r.decodeSeries(ts, &c, b, cache); err != nil {
			if errors.Is(err, errFallback) || errors.Is(err, ErrParse) {
				return err
			}
			if firstErr == nil {
				// The rest is still decoded: a parse error there
				// is the answer, else this one.
				firstErr = fmt.Errorf("series %d: %w", i, err)
			}
		}
		i++
	}
	return firstErr
}

// decodeSeries decodes one TimeSeries message. A series whose label
// fields come first and are in the cache (the same bytes as a series
// stored before) takes the cached label set and reference: its labels are
// neither decoded nor checked again.
func (r *Receiver) decodeSeries(data []byte, c *labelChecker, b *batch, cache map[string]cached) error {
	s := len(b.series)
	first := len(b.floats)
	span := labelSpan(data)
	var hit cached
	rest := data
	if cache != nil && span > 0 {
		var ok bool
		if hit, ok = cache[string(data[:span])]; ok {
			rest = data[span:]
		}
	}
	hitting := len(rest) < len(data)
	if !hitting {
		c.reset()
	}
	others := false // a field other than a label seen
	contiguous := true
	for len(rest) > 0 {
		num, typ, n := protowire.ConsumeTag(rest)
		if n < 0 {
			return wireErr(protowire.ParseError(n))
		}
		if group(typ) {
			return errFallback // the caller resets b
		}
		rest = rest[n:]
		if num >= 1 && num <= 4 && typ != protowire.BytesType {
			return wrongType(num, typ)
		}
		if num != 1 {
			others = true
		}
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, rest)
			if n < 0 {
				return wireErr(protowire.ParseError(n))
			}
			rest = rest[n:]
			continue
		}
		msg, n := protowire.ConsumeBytes(rest)
		if n < 0 {
			return wireErr(protowire.ParseError(n))
		}
		rest = rest[n:]
		switch num {
		case 1: // Label
			if hitting {
				// More labels after the samples: the cached set is
				// not the whole of them.
				b.floats = b.floats[:first]
				return r.decodeSeries(data, c, b, nil)
			}
			if others {
				contiguous = false
			}
			name, value, err := decodeLabel(msg)
			if err != nil {
				return err
			}
			c.add(name, value)
		case 2: // Sample
			t, v, err := decodeSample(msg)
			if err != nil {
				return err
			}
			b.floats = append(b.floats, fsample{s: s, t: t, v: v})
		case 3: // Exemplar: dropped, but checked as the generated decoder does
			var ex prompb.Exemplar
			if err := ex.Unmarshal(msg); err != nil {
				return wireErr(err)
			}
		case 4: // native histogram
			return errFallback
		}
	}
	if hitting {
		b.add(hit.ls)
		b.refs[s] = hit.ref
		return nil
	}
	ls, err := c.labels()
	b.add(ls)
	if err == nil && cache != nil && contiguous && span > 0 {
		b.keys[s] = string(data[:span])
	}
	return err
}

// labelSpan is the length of the label fields at the start of a
// TimeSeries message (0 when it cannot tell).
func labelSpan(data []byte) int {
	off := 0
	for off < len(data) {
		num, typ, n := protowire.ConsumeTag(data[off:])
		if n < 0 || num != 1 || typ != protowire.BytesType {
			break
		}
		m := protowire.ConsumeFieldValue(num, typ, data[off+n:])
		if m < 0 {
			return 0
		}
		off += n + m
	}
	return off
}

func decodeLabel(data []byte) (name, value string, err error) {
	for len(data) > 0 {
		num, typ, n := protowire.ConsumeTag(data)
		if n < 0 {
			return "", "", wireErr(protowire.ParseError(n))
		}
		if group(typ) {
			return "", "", errFallback
		}
		data = data[n:]
		if (num == 1 || num == 2) && typ != protowire.BytesType {
			return "", "", wrongType(num, typ)
		}
		if num == 1 || num == 2 {
			v, n := protowire.ConsumeBytes(data)
			if n < 0 {
				return "", "", wireErr(protowire.ParseError(n))
			}
			data = data[n:]
			if num == 1 {
				name = unsafeString(v)
			} else {
				value = unsafeString(v)
			}
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, data)
		if n < 0 {
			return "", "", wireErr(protowire.ParseError(n))
		}
		data = data[n:]
	}
	return name, value, nil
}

func decodeSample(data []byte) (t int64, v float64, err error) {
	for len(data) > 0 {
		num, typ, n := protowire.ConsumeTag(data)
		if n < 0 {
			return 0, 0, wireErr(protowire.ParseError(n))
		}
		if group(typ) {
			return 0, 0, errFallback
		}
		data = data[n:]
		switch {
		case num == 1 && typ == protowire.Fixed64Type:
			u, n := protowire.ConsumeFixed64(data)
			if n < 0 {
				return 0, 0, wireErr(protowire.ParseError(n))
			}
			v = math.Float64frombits(u)
			data = data[n:]
		case num == 2 && typ == protowire.VarintType:
			u, n := protowire.ConsumeVarint(data)
			if n < 0 {
				return 0, 0, wireErr(protowire.ParseError(n))
			}
			t = int64(u)
			data = data[n:]
		case num == 1 || num == 2:
			return 0, 0, wrongType(num, typ)
		default:
			n = protowire.ConsumeFieldValue(num, typ, data)
			if n < 0 {
				return 0, 0, wireErr(protowire.ParseError(n))
			}
			data = data[n:]
		}
	}
	return t, v, nil
}

func group(typ protowire.Type) bool {
	return typ == protowire.StartGroupType || typ == protowire.EndGroupType
}

func wrongType(num protowire.Number, typ protowire.Type) error {
	return fmt.Errorf("%w: protobuf %s: field %d has wire type %d", ErrParse, protoMsgV1, num, typ)
}

func wireErr(err error) error {
	return fmt.Errorf("%w: protobuf %s: %w", ErrParse, protoMsgV1, err)
}

func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
