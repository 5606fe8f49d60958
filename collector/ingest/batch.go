package ingest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"

	"github.com/immune-project/immune/collector"
)

// fsample is a float sample of series s.
type fsample struct {
	s int
	t int64
	v float64
}

// hsample is a native histogram sample of series s (h or fh).
type hsample struct {
	s  int
	t  int64
	h  *histogram.Histogram
	fh *histogram.FloatHistogram
}

// batch is a decoded, checked request: what one transaction appends.
type batch struct {
	series []labels.Labels
	refs   []storage.SeriesRef // per series: the store's reference when known (the series cache), else 0
	keys   []string            // per series: the series cache key to remember it under after the commit, or ""
	floats []fsample
	hists  []hsample
	// skipped counts the samples of a refused request that were not
	// decoded, for the rejected-samples metric.
	skipped int
}

// add appends a series and returns its index.
func (b *batch) add(ls labels.Labels) int {
	b.series = append(b.series, ls)
	b.refs = append(b.refs, 0)
	b.keys = append(b.keys, "")
	return len(b.series) - 1
}

func (b *batch) samples() int { return len(b.floats) + len(b.hists) + b.skipped }

func (b *batch) reset() {
	clear(b.series)
	b.series = b.series[:0]
	b.refs = b.refs[:0]
	clear(b.keys)
	b.keys = b.keys[:0]
	b.floats = b.floats[:0]
	clear(b.hists)
	b.hists = b.hists[:0]
	b.skipped = 0
}

// check applies the per-request limits and the time bound.
func (b *batch) check(l *Limits, maxT int64) error {
	if n := b.samples(); n > l.MaxSamplesPerRequest {
		return fmt.Errorf("%w: %d, at most %d", ErrTooManySamples, n, l.MaxSamplesPerRequest)
	}
	if n := len(b.series); n > l.MaxSeriesPerRequest {
		return fmt.Errorf("%w: %d, at most %d", ErrTooManySeries, n, l.MaxSeriesPerRequest)
	}
	for _, f := range b.floats {
		if f.t > maxT {
			return tooFar(b.series[f.s], f.t, maxT)
		}
	}
	for _, h := range b.hists {
		if h.t > maxT {
			return tooFar(b.series[h.s], h.t, maxT)
		}
	}
	return nil
}

func tooFar(ls labels.Labels, t, maxT int64) error {
	return fmt.Errorf("%s @%s: %w (the latest accepted is %s)", seriesString(ls), formatMillis(t), ErrTooFarAhead, formatMillis(maxT))
}

// appendTo appends the batch, keeping the references of its series; the
// first error stops it (the caller's transaction then rolls everything
// back).
func (b *batch) appendTo(app storage.AppenderV2) error {
	refs := b.refs
	for _, f := range b.floats {
		ref, err := app.Append(refs[f.s], b.series[f.s], 0, f.t, f.v, nil, nil, storage.AOptions{})
		if err != nil {
			return fmt.Errorf("%s @%s: %w", seriesString(b.series[f.s]), formatMillis(f.t), err)
		}
		refs[f.s] = ref
	}
	for _, h := range b.hists {
		ref, err := app.Append(refs[h.s], b.series[h.s], 0, h.t, 0, h.h, h.fh, storage.AOptions{})
		if err != nil {
			return fmt.Errorf("%s @%s: %w", seriesString(b.series[h.s]), formatMillis(h.t), err)
		}
		refs[h.s] = ref
	}
	return nil
}

// sortAndDedupe orders each series' float samples by time (series in
// order of first appearance) and drops repeated samples (same time, same
// value); two values at one time are an error.
func (b *batch) sortAndDedupe() error {
	slices.SortStableFunc(b.floats, func(x, y fsample) int {
		if c := cmp.Compare(x.s, y.s); c != 0 {
			return c
		}
		return cmp.Compare(x.t, y.t)
	})
	out := b.floats[:0]
	for i, f := range b.floats {
		if i > 0 {
			if p := b.floats[i-1]; p.s == f.s && p.t == f.t {
				if math.Float64bits(p.v) != math.Float64bits(f.v) {
					return fmt.Errorf("%s @%s: %w: %s and %s", seriesString(b.series[f.s]), formatMillis(f.t), ErrDuplicateSample,
						strconv.FormatFloat(p.v, 'g', -1, 64), strconv.FormatFloat(f.v, 'g', -1, 64))
				}
				continue
			}
		}
		out = append(out, f)
	}
	b.floats = out
	return nil
}

// labelChecker builds a series' label set and checks it against the
// limits: labels with empty values are dropped (Prometheus semantics).
type labelChecker struct {
	l  *Limits
	sb labels.ScratchBuilder
	n  int // labels added, for the limit before sorting
}

func (c *labelChecker) reset() { c.sb.Reset(); c.n = 0 }

func (c *labelChecker) add(name, value string) {
	if value == "" {
		return
	}
	c.sb.Add(name, value)
	c.n++
}

// labels sorts, checks and returns the label set.
func (c *labelChecker) labels() (labels.Labels, error) {
	c.sb.Sort()
	ls := c.sb.Labels()
	if c.n > c.l.MaxLabelsPerSeries {
		return ls, fmt.Errorf("%s: %w: %d, at most %d", seriesString(ls), ErrTooManyLabels, c.n, c.l.MaxLabelsPerSeries)
	}
	var err error
	prev := ""
	hasName := false
	ls.Range(func(l labels.Label) {
		if err != nil {
			return
		}
		switch {
		case len(l.Name) > c.l.MaxLabelNameLength:
			err = fmt.Errorf("%s: %w: %d bytes, at most %d", seriesString(ls), ErrLabelNameTooLong, len(l.Name), c.l.MaxLabelNameLength)
		case len(l.Value) > c.l.MaxLabelValueLength:
			err = fmt.Errorf("%s: %w: label %s has %d bytes, at most %d", seriesString(ls), ErrLabelValueTooLong, shorten(l.Name), len(l.Value), c.l.MaxLabelValueLength)
		case !model.UTF8Validation.IsValidLabelName(l.Name):
			err = fmt.Errorf("%s: %w: label name %q", seriesString(ls), ErrInvalidLabels, shorten(l.Name))
		case !utf8.ValidString(l.Value):
			err = fmt.Errorf("%s: %w: the value of %s is not valid UTF-8", seriesString(ls), ErrInvalidLabels, shorten(l.Name))
		case l.Name == prev:
			err = fmt.Errorf("%s: %w: label %s twice", seriesString(ls), ErrInvalidLabels, shorten(l.Name))
		}
		if l.Name == model.MetricNameLabel {
			hasName = true
		}
		prev = l.Name
	})
	if err == nil && !hasName {
		err = fmt.Errorf("%s: %w: no metric name", seriesString(ls), ErrInvalidLabels)
	}
	return ls, err
}

// seriesString writes a label set for an error message, cut short when
// long (values may be up to the limit, or over it).
func seriesString(ls labels.Labels) string {
	var b strings.Builder
	b.WriteString(shorten(ls.Get(model.MetricNameLabel)))
	b.WriteByte('{')
	first := true
	ls.Range(func(l labels.Label) {
		if l.Name == model.MetricNameLabel || b.Len() > 300 {
			return
		}
		if !first {
			b.WriteString(", ")
		}
		first = false
		b.WriteString(shorten(l.Name))
		b.WriteByte('=')
		b.WriteString(strconv.Quote(shorten(l.Value)))
	})
	if b.Len() > 300 {
		b.WriteString(", …")
	}
	b.WriteByte('}')
	return b.String()
}

func shorten(s string) string {
	const max = 100
	if len(s) <= max {
		return s
	}
	i := max
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

func formatMillis(t int64) string {
	return collector.Time(t).Format("2006-01-02T15:04:05.000Z")
}

// Reasons of refused requests, the reason label of
// immune_rejected_samples_total.
const (
	reasonUnauthorized     = "unauthorized"
	reasonBodyTooLarge     = "body_too_large"
	reasonUnsupported      = "unsupported_media_type"
	reasonParse            = "parse_error"
	reasonTooManySamples   = "too_many_samples"
	reasonTooManySeries    = "too_many_series"
	reasonTooManyLabels    = "too_many_labels"
	reasonNameTooLong      = "label_name_too_long"
	reasonValueTooLong     = "label_value_too_long"
	reasonInvalidLabels    = "invalid_labels"
	reasonOutOfBounds      = "out_of_bounds"
	reasonOutOfOrder       = "out_of_order"
	reasonTooOld           = "too_old"
	reasonDuplicate        = "duplicate_timestamp"
	reasonInvalidHistogram = "invalid_histogram"
	reasonUnavailable      = "unavailable"
	reasonCanceled         = "canceled"
	reasonStorage          = "storage_error"
)

// classify maps an error to the reason and the HTTP status: 4xx when
// sending the same request again cannot succeed, 5xx when it can.
func classify(err error) (reason string, code int) {
	var herr histogram.Error
	switch {
	case errors.Is(err, ErrUnauthorized):
		return reasonUnauthorized, http.StatusUnauthorized
	case errors.Is(err, ErrBodyTooLarge):
		return reasonBodyTooLarge, http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrUnsupportedMediaType):
		return reasonUnsupported, http.StatusUnsupportedMediaType
	case errors.Is(err, ErrParse):
		return reasonParse, http.StatusBadRequest
	case errors.Is(err, ErrTooManySamples):
		return reasonTooManySamples, http.StatusBadRequest
	case errors.Is(err, ErrTooManySeries):
		return reasonTooManySeries, http.StatusBadRequest
	case errors.Is(err, ErrTooManyLabels):
		return reasonTooManyLabels, http.StatusBadRequest
	case errors.Is(err, ErrLabelNameTooLong):
		return reasonNameTooLong, http.StatusBadRequest
	case errors.Is(err, ErrLabelValueTooLong):
		return reasonValueTooLong, http.StatusBadRequest
	case errors.Is(err, ErrInvalidLabels):
		return reasonInvalidLabels, http.StatusBadRequest
	case errors.Is(err, ErrTooFarAhead), errors.Is(err, storage.ErrOutOfBounds):
		return reasonOutOfBounds, http.StatusBadRequest
	case errors.Is(err, storage.ErrOutOfOrderSample):
		return reasonOutOfOrder, http.StatusBadRequest
	case errors.Is(err, storage.ErrTooOldSample):
		return reasonTooOld, http.StatusBadRequest
	case errors.Is(err, ErrDuplicateSample), errors.Is(err, storage.ErrDuplicateSampleForTimestamp):
		return reasonDuplicate, http.StatusBadRequest
	case errors.As(err, &herr):
		return reasonInvalidHistogram, http.StatusBadRequest
	case errors.Is(err, collector.ErrClosed):
		return reasonUnavailable, http.StatusServiceUnavailable
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return reasonCanceled, http.StatusServiceUnavailable
	default:
		return reasonStorage, http.StatusInternalServerError
	}
}
