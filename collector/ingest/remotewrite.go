package ingest

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"sync"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/prometheus/prometheus/storage"
)

// The protobuf messages of the remote-write protocols, as the proto
// parameter of the Content-Type names them.
const (
	protoMsgV1 = "prometheus.WriteRequest"
	protoMsgV2 = "io.prometheus.write.v2.Request"
)

// Response headers of remote write 2.0: what the receiver stored.
const (
	headerSamplesWritten    = "X-Prometheus-Remote-Write-Samples-Written"
	headerHistogramsWritten = "X-Prometheus-Remote-Write-Histograms-Written"
	headerExemplarsWritten  = "X-Prometheus-Remote-Write-Exemplars-Written"
)

// writeProtocol reads the protocol off the Content-Type: protocol 1.0
// without a proto parameter (or without a Content-Type), as the 1.0
// specification and Prometheus's receiver have it.
func writeProtocol(contentType string) (string, error) {
	if contentType == "" {
		return protoRemoteWrite1, nil
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return protoRemoteWrite, fmt.Errorf("%w: Content-Type %q: %w", ErrUnsupportedMediaType, contentType, err)
	}
	if mt != "application/x-protobuf" {
		return protoRemoteWrite, fmt.Errorf("%w: Content-Type %q, want application/x-protobuf", ErrUnsupportedMediaType, contentType)
	}
	switch params["proto"] {
	case "", protoMsgV1:
		return protoRemoteWrite1, nil
	case protoMsgV2:
		return protoRemoteWrite2, nil
	default:
		return protoRemoteWrite, fmt.Errorf("%w: protobuf message %q, want %s or %s", ErrUnsupportedMediaType, params["proto"], protoMsgV1, protoMsgV2)
	}
}

var (
	batchPool = sync.Pool{New: func() any { return new(batch) }}
	v1Pool    = sync.Pool{New: func() any { return new(prompb.WriteRequest) }}
	v2Pool    = sync.Pool{New: func() any { return new(writev2.Request) }}
)

// serveWrite is the remote-write receiver.
func (r *Receiver) serveWrite(w http.ResponseWriter, req *http.Request) {
	o := outcome{start: r.now()}
	b := batchPool.Get().(*batch)
	defer func() { b.reset(); batchPool.Put(b) }()
	var stats [2]int // floats, histograms stored: the 2.0 response headers
	defer func() {
		if o.protocol == protoRemoteWrite2 {
			h := w.Header()
			h.Set(headerSamplesWritten, strconv.Itoa(stats[0]))
			h.Set(headerHistogramsWritten, strconv.Itoa(stats[1]))
			h.Set(headerExemplarsWritten, "0")
		}
		if o.err != nil {
			drain(req)
		}
		r.finish(w, req, o)
	}()
	o.protocol, o.err = writeProtocol(req.Header.Get("Content-Type"))
	if o.err != nil {
		return
	}
	if o.err = r.authorize(req); o.err != nil {
		return
	}
	if enc := req.Header.Get("Content-Encoding"); enc != "" && enc != "snappy" {
		o.err = fmt.Errorf("%w: Content-Encoding %q, want snappy", ErrUnsupportedMediaType, enc)
		return
	}
	raw := getBuf()
	defer putBuf(raw)
	if o.err = r.readBody(w, req, raw); o.err != nil {
		return
	}
	o.bytes = raw.Len()
	n, err := snappy.DecodedLen(raw.Bytes())
	if err != nil {
		o.err = fmt.Errorf("%w: snappy: %w", ErrParse, err)
		return
	}
	if int64(n) > r.limits.MaxBodyBytes {
		o.err = fmt.Errorf("%w: %d bytes decoded, at most %d", ErrBodyTooLarge, n, r.limits.MaxBodyBytes)
		return
	}
	dec := getBuf()
	defer putBuf(dec)
	dec.Grow(n)
	data, err := snappy.Decode(dec.AvailableBuffer()[:n], raw.Bytes())
	if err != nil {
		o.err = fmt.Errorf("%w: snappy: %w", ErrParse, err)
		return
	}
	if o.protocol == protoRemoteWrite1 {
		o.err = r.decodeV1Wire(data, b)
		// What the wire decoder refuses or leaves, the generated one
		// decides: the answer is always the generated decoder's.
		if errors.Is(o.err, errFallback) || errors.Is(o.err, ErrParse) {
			b.reset()
			o.err = r.decodeV1(data, b)
		}
	} else {
		o.err = r.decodeV2(data, b)
	}
	o.samples = b.samples()
	if o.err != nil {
		return
	}
	if o.err = b.check(&r.limits, timestamp.FromTime(r.now().Add(r.limits.MaxAhead))); o.err != nil {
		return
	}
	o.err = r.st.Update(req.Context(), func(app storage.AppenderV2) error { return b.appendTo(app) })
	if o.err == nil {
		stats = [2]int{len(b.floats), len(b.hists)}
		if r.cache != nil {
			r.cache.put(b)
		}
	}
}

// decodeV1 decodes a prometheus.WriteRequest into b, checking labels.
// Exemplars and metadata are dropped.
func (r *Receiver) decodeV1(data []byte, b *batch) error {
	req := v1Pool.Get().(*prompb.WriteRequest)
	defer func() {
		clear(req.Timeseries)
		req.Timeseries = req.Timeseries[:0]
		req.Metadata = req.Metadata[:0]
		v1Pool.Put(req)
	}()
	if err := req.Unmarshal(data); err != nil {
		return fmt.Errorf("%w: protobuf %s: %w", ErrParse, protoMsgV1, err)
	}
	c := labelChecker{l: &r.limits}
	for i := range req.Timeseries {
		ts := &req.Timeseries[i]
		c.reset()
		for _, l := range ts.Labels {
			c.add(l.Name, l.Value)
		}
		ls, err := c.labels()
		s := b.add(ls)
		for _, p := range ts.Samples {
			b.floats = append(b.floats, fsample{s: s, t: p.Timestamp, v: p.Value})
		}
		for j := range ts.Histograms {
			hp := &ts.Histograms[j]
			h := hsample{s: s, t: hp.Timestamp}
			if hp.IsFloatHistogram() {
				h.fh = hp.ToFloatHistogram()
			} else {
				h.h = hp.ToIntHistogram()
			}
			b.hists = append(b.hists, h)
		}
		if err != nil {
			for _, rest := range req.Timeseries[i+1:] {
				b.skipped += len(rest.Samples) + len(rest.Histograms)
			}
			return fmt.Errorf("series %d: %w", i, err)
		}
	}
	return nil
}

// decodeV2 decodes an io.prometheus.write.v2.Request into b, checking
// labels. Exemplars and metadata are dropped.
func (r *Receiver) decodeV2(data []byte, b *batch) error {
	req := v2Pool.Get().(*writev2.Request)
	defer func() {
		clear(req.Symbols)
		req.Symbols = req.Symbols[:0]
		clear(req.Timeseries)
		req.Timeseries = req.Timeseries[:0]
		v2Pool.Put(req)
	}()
	if err := req.Unmarshal(data); err != nil {
		return fmt.Errorf("%w: protobuf %s: %w", ErrParse, protoMsgV2, err)
	}
	if len(req.Symbols) > 0 && req.Symbols[0] != "" {
		return fmt.Errorf("%w: symbols must start with the empty string", ErrParse)
	}
	c := labelChecker{l: &r.limits}
	for i := range req.Timeseries {
		ts := &req.Timeseries[i]
		refs := ts.LabelsRefs
		if len(refs)%2 != 0 {
			return fmt.Errorf("%w: series %d: odd number of label references", ErrParse, i)
		}
		c.reset()
		for j := 0; j < len(refs); j += 2 {
			n, v := refs[j], refs[j+1]
			if int(n) >= len(req.Symbols) || int(v) >= len(req.Symbols) {
				return fmt.Errorf("%w: series %d: label reference past the %d symbols", ErrParse, i, len(req.Symbols))
			}
			c.add(req.Symbols[n], req.Symbols[v])
		}
		ls, err := c.labels()
		s := b.add(ls)
		for _, p := range ts.Samples {
			b.floats = append(b.floats, fsample{s: s, t: p.Timestamp, v: p.Value})
		}
		for j := range ts.Histograms {
			hp := &ts.Histograms[j]
			h := hsample{s: s, t: hp.Timestamp}
			if hp.IsFloatHistogram() {
				h.fh = hp.ToFloatHistogram()
			} else {
				h.h = hp.ToIntHistogram()
			}
			b.hists = append(b.hists, h)
		}
		if err != nil {
			for _, rest := range req.Timeseries[i+1:] {
				b.skipped += len(rest.Samples) + len(rest.Histograms)
			}
			return fmt.Errorf("series %d: %w", i, err)
		}
	}
	return nil
}
