package ingest

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/storage"
)

// pushProtocol reads the format off the Content-Type: Prometheus text
// without one, as a Pushgateway does.
func pushProtocol(contentType string) (string, expfmt.Format, error) {
	if contentType == "" {
		return protoPushText, expfmt.FmtText, nil
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return protoPush, "", fmt.Errorf("%w: Content-Type %q: %w", ErrUnsupportedMediaType, contentType, err)
	}
	switch mt {
	case "application/json":
		return protoPushJSON, "", nil
	case "application/x-www-form-urlencoded":
		// curl --data-binary's default: text, as a Pushgateway takes it.
		return protoPushText, expfmt.FmtText, nil
	case "text/plain":
		if v, ok := params["version"]; ok && v != expfmt.TextVersion {
			return protoPush, "", fmt.Errorf("%w: text format version %q, want %s", ErrUnsupportedMediaType, v, expfmt.TextVersion)
		}
		return protoPushText, expfmt.FmtText, nil
	case expfmt.OpenMetricsType, expfmt.ProtoType:
		h := http.Header{}
		h.Set("Content-Type", contentType)
		f := expfmt.ResponseFormat(h)
		switch f.FormatType() {
		case expfmt.TypeOpenMetrics:
			return protoPushOpenMetrics, f, nil
		case expfmt.TypeProtoDelim:
			return protoPushProtobuf, f, nil
		}
	}
	return protoPush, "", fmt.Errorf("%w: Content-Type %q; push takes text/plain (Prometheus text format), application/openmetrics-text, "+
		"application/vnd.google.protobuf (delimited MetricFamily) or application/json", ErrUnsupportedMediaType, contentType)
}

// servePush takes pushed samples.
func (r *Receiver) servePush(w http.ResponseWriter, req *http.Request) {
	o := outcome{start: r.now()}
	b := batchPool.Get().(*batch)
	defer func() { b.reset(); batchPool.Put(b) }()
	defer func() {
		if o.err != nil {
			drain(req)
		}
		r.finish(w, req, o)
	}()
	var format expfmt.Format
	o.protocol, format, o.err = pushProtocol(req.Header.Get("Content-Type"))
	if o.err != nil {
		return
	}
	if o.err = r.authorize(req); o.err != nil {
		return
	}
	buf := getBuf()
	defer putBuf(buf)
	if o.err = r.readBody(w, req, buf); o.err != nil {
		return
	}
	o.bytes = buf.Len()
	body := buf.Bytes()
	switch enc := req.Header.Get("Content-Encoding"); enc {
	case "", "identity":
	case "gzip":
		dec := getBuf()
		defer putBuf(dec)
		if o.err = r.gunzip(body, dec); o.err != nil {
			return
		}
		body = dec.Bytes()
	default:
		o.err = fmt.Errorf("%w: Content-Encoding %q, want gzip or none", ErrUnsupportedMediaType, enc)
		return
	}
	now := r.now()
	p := pushParser{b: b, c: labelChecker{l: &r.limits}, now: timestamp.FromTime(now), index: map[uint64][]int{}}
	if o.protocol == protoPushJSON {
		o.err = p.parseJSON(body)
	} else {
		o.err = p.parseExposition(body, format)
	}
	o.samples = b.samples()
	if o.err != nil {
		return
	}
	if o.err = b.sortAndDedupe(); o.err != nil {
		return
	}
	o.samples = b.samples()
	if o.err = b.check(&r.limits, timestamp.FromTime(now.Add(r.limits.MaxAhead))); o.err != nil {
		return
	}
	o.err = r.st.Update(req.Context(), func(app storage.AppenderV2) error { return b.appendTo(app) })
}

// gunzip decompresses body into dst, up to the body limit.
func (r *Receiver) gunzip(body []byte, dst *bytes.Buffer) error {
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: gzip: %w", ErrParse, err)
	}
	n, err := dst.ReadFrom(io.LimitReader(zr, r.limits.MaxBodyBytes+1))
	if err != nil {
		return fmt.Errorf("%w: gzip: %w", ErrParse, err)
	}
	if n > r.limits.MaxBodyBytes {
		return fmt.Errorf("%w: more than %d bytes decompressed", ErrBodyTooLarge, r.limits.MaxBodyBytes)
	}
	return nil
}

// pushParser turns pushed samples into a batch, one series per distinct
// label set.
type pushParser struct {
	b     *batch
	c     labelChecker
	now   int64            // milliseconds: the time of samples without one
	index map[uint64][]int // label set hash → series
}

// series returns the index of the series of the checker's labels.
func (p *pushParser) series() (int, error) {
	ls, err := p.c.labels()
	if err != nil {
		return 0, err
	}
	h := ls.Hash()
	for _, s := range p.index[h] {
		if labels.Equal(p.b.series[s], ls) {
			return s, nil
		}
	}
	s := p.b.add(ls)
	p.index[h] = append(p.index[h], s)
	return s, nil
}

// sample adds a sample to the series of the checker's labels.
func (p *pushParser) sample(t int64, v float64) error {
	s, err := p.series()
	if err != nil {
		return err
	}
	p.b.floats = append(p.b.floats, fsample{s: s, t: t, v: v})
	return nil
}

// parseExposition reads text, OpenMetrics or delimited protobuf.
func (p *pushParser) parseExposition(body []byte, format expfmt.Format) error {
	var dec expfmt.Decoder
	if format.FormatType() == expfmt.TypeTextPlain {
		// Names as Prometheus 3 takes them (UTF-8), whatever the
		// escaping of the format.
		tp := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := tp.TextToMetricFamilies(bytes.NewReader(body))
		if err != nil {
			return fmt.Errorf("%w: %w", ErrParse, err)
		}
		for _, mf := range fams {
			if err := p.family(mf); err != nil {
				return err
			}
		}
		return nil
	}
	if format.FormatType() == expfmt.TypeOpenMetrics {
		return p.parseOpenMetrics(body)
	}
	dec = expfmt.NewDecoder(bytes.NewReader(body), format)
	for {
		var mf dto.MetricFamily
		err := dec.Decode(&mf)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %w", ErrParse, err)
		}
		if err := p.family(&mf); err != nil {
			return err
		}
	}
}

// family adds the samples of a metric family as Prometheus scrapes them:
// summaries as quantiles, _sum and _count; histograms as _bucket series
// (with le="+Inf" when missing), _sum and _count; native histogram parts
// are not taken.
func (p *pushParser) family(mf *dto.MetricFamily) error {
	name := mf.GetName()
	for _, m := range mf.GetMetric() {
		t := p.now
		if m.TimestampMs != nil {
			t = m.GetTimestampMs()
		}
		add := func(suffix, extraName, extraValue string, v float64) error {
			p.c.reset()
			p.c.add(model.MetricNameLabel, name+suffix)
			for _, l := range m.GetLabel() {
				p.c.add(l.GetName(), l.GetValue())
			}
			if extraName != "" {
				p.c.add(extraName, extraValue)
			}
			if err := p.sample(t, v); err != nil {
				return fmt.Errorf("metric family %s: %w", shorten(name), err)
			}
			return nil
		}
		var err error
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			err = add("", "", "", m.GetCounter().GetValue())
		case dto.MetricType_GAUGE:
			err = add("", "", "", m.GetGauge().GetValue())
		case dto.MetricType_UNTYPED:
			err = add("", "", "", m.GetUntyped().GetValue())
		case dto.MetricType_SUMMARY:
			s := m.GetSummary()
			for _, q := range s.GetQuantile() {
				if err = add("", model.QuantileLabel, labels.FormatOpenMetricsFloat(q.GetQuantile()), q.GetValue()); err != nil {
					break
				}
			}
			if err == nil {
				err = add("_sum", "", "", s.GetSampleSum())
			}
			if err == nil {
				err = add("_count", "", "", float64(s.GetSampleCount()))
			}
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			err = p.histogram(m.GetHistogram(), mf.GetType() == dto.MetricType_GAUGE_HISTOGRAM, add)
		default:
			err = fmt.Errorf("%w: metric family %s: type %s", ErrParse, shorten(name), mf.GetType())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (p *pushParser) histogram(h *dto.Histogram, gauge bool, add func(suffix, extraName, extraValue string, v float64) error) error {
	count := func() float64 {
		if h.SampleCountFloat != nil {
			return h.GetSampleCountFloat()
		}
		return float64(h.GetSampleCount())
	}()
	inf := false
	for _, bk := range h.GetBucket() {
		v := float64(bk.GetCumulativeCount())
		if bk.CumulativeCountFloat != nil {
			v = bk.GetCumulativeCountFloat()
		}
		if math.IsInf(bk.GetUpperBound(), +1) {
			inf = true
		}
		if err := add("_bucket", model.BucketLabel, labels.FormatOpenMetricsFloat(bk.GetUpperBound()), v); err != nil {
			return err
		}
	}
	if !inf {
		if err := add("_bucket", model.BucketLabel, "+Inf", count); err != nil {
			return err
		}
	}
	sum, cnt := "_sum", "_count"
	if gauge {
		sum, cnt = "_gsum", "_gcount"
	}
	if err := add(sum, "", "", h.GetSampleSum()); err != nil {
		return err
	}
	return add(cnt, "", "", count)
}

// parseOpenMetrics reads OpenMetrics 1.0 text with Prometheus's own parser
// (model/textparse), as a scrape does: expfmt's OpenMetrics decoder takes
// seconds and hundreds of megabytes for a thousand series. Samples are
// stored as written (a histogram's buckets, _sum and _count as they come);
// _created series are skipped, as Prometheus skips them.
func (p *pushParser) parseOpenMetrics(body []byte) error {
	tp, err := textparse.New(body, expfmt.OpenMetricsType, labels.NewSymbolTable(), textparse.ParserOptions{OpenMetricsSkipSTSeries: true})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrParse, err)
	}
	var ls labels.Labels
	for {
		et, err := tp.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %w", ErrParse, err)
		}
		if et != textparse.EntrySeries {
			continue // metadata; native histograms are not in OpenMetrics 1.0
		}
		_, ts, v := tp.Series()
		tp.Labels(&ls)
		t := p.now
		if ts != nil {
			t = *ts
		}
		p.c.reset()
		ls.Range(func(l labels.Label) { p.c.add(l.Name, l.Value) })
		if err := p.sample(t, v); err != nil {
			return err
		}
	}
}
