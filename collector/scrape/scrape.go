// Package scrape pulls metrics from the targets that expose them over
// HTTP (Prometheus text and OpenMetrics) into a store, labelling every
// series with its target's labels (service, instance, version, …), so
// that the canary and baseline selectors of rule files work on live data.
//
// Targets come from static lists and from ZooKeeper ServerSets
// (deploy.ServerSetDiscovery, through ServerSetTargets). A Manager runs one
// loop per target; each scrape is all or nothing: a body that does not
// parse, is too large or holds too many series stores none of its samples
// and reports up 0. Series that disappear, and all the series of a target
// that goes away or fails, get staleness markers, as in Prometheus.
package scrape

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"

	"github.com/immune-project/immune/collector/embedded"
)

// Appender is what a scrape appends to: collector/embedded's Appender.
type Appender interface {
	Append(ref storage.SeriesRef, ls labels.Labels, t int64, v float64) (storage.SeriesRef, error)
	Commit() error
	Rollback() error
}

// Appendable gives an Appender per scrape.
type Appendable interface {
	Appender(ctx context.Context) Appender
}

// Embedded appends to the embedded store.
type Embedded struct{ Store *embedded.Store }

var (
	_ Appendable = Embedded{}
	_ Appender   = (*embedded.Appender)(nil)
)

// Appender returns one of the store's Appenders.
func (e Embedded) Appender(ctx context.Context) Appender { return e.Store.Appender(ctx) }

// Target is one HTTP endpoint to scrape.
type Target struct {
	// Scheme is http (default) or https.
	Scheme string
	// Address is host:port.
	Address string
	// Path is the metrics path, default /metrics.
	Path string
	// Labels are added to every scraped series (a scraped label of the
	// same name is kept as exported_<name>) and to up and the other
	// report series. An empty value removes the label (a scraped one is
	// still kept as exported_<name>).
	Labels map[string]string
}

// Target label names every discovered series carries.
const (
	LabelService  = "service"
	LabelInstance = "instance"
	LabelVersion  = "version"
	LabelShard    = "shard"
)

// URL is the target's address to scrape.
func (t Target) URL() string {
	u := url.URL{Scheme: t.Scheme, Host: t.Address, Path: t.Path}
	if u.Scheme == "" {
		u.Scheme = "http"
	}
	if u.Path == "" {
		u.Path = "/metrics"
	}
	return u.String()
}

// key identifies a target: its URL and labels. A target whose labels
// change (a new version) is a new target.
func (t Target) key() string {
	var b strings.Builder
	b.WriteString(t.URL())
	b.WriteString(t.labels().String())
	return b.String()
}

// labels are the target's labels, without empty values.
func (t Target) labels() labels.Labels {
	b := labels.NewScratchBuilder(len(t.Labels))
	for k, v := range t.Labels {
		if v != "" {
			b.Add(k, v)
		}
	}
	b.Sort()
	return b.Labels()
}

// The report series appended with every scrape.
const (
	seriesUp       = "up"
	seriesDuration = "scrape_duration_seconds"
	seriesSamples  = "scrape_samples_scraped"
)

// acceptHeader asks for OpenMetrics first, then the text format.
const acceptHeader = "application/openmetrics-text;version=1.0.0;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5," +
	"text/plain;version=1.0.0;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.1"

// Failure reasons, the reason label of immune_scrape_failures_total.
const (
	reasonHTTP        = "http"
	reasonTimeout     = "timeout"
	reasonStatus      = "status"
	reasonBodySize    = "body_size"
	reasonParse       = "parse"
	reasonSeriesLimit = "series_limit"
	reasonStore       = "store"
)

// Report is the outcome of one scrape.
type Report struct {
	At       time.Time
	Duration time.Duration
	// Samples is the number of samples in the body (scrape_samples_scraped).
	Samples int
	// Appended is the number of samples stored (0 when the scrape failed).
	Appended int
	// Err is why the scrape failed (up 0), nil when it did not.
	Err error
	// Reason is the failure reason of immune_scrape_failures_total.
	Reason string
}

// scraper scrapes one target, from one goroutine.
type scraper struct {
	t      Target
	url    string
	store  Appendable
	o      *settings
	tls    labels.Labels  // target labels
	claim  []labels.Label // every target label, empty values too, by name
	report [3]reportSeries

	cache    map[string]*entry // by the series' bytes in the exposition
	iter     uint64            // scrapes so far
	prevIter uint64            // the scrape whose series are stored and not stale; 0: none
	lastTs   int64             // the newest timestamp appended
	reported bool              // report series appended and not stale
	buf      bytes.Buffer
	pending  []pendingSample
	builder  *labels.Builder
	symbols  *labels.SymbolTable
	parsed   labels.Labels

	mu   sync.Mutex // guards last
	last Report
}

type reportSeries struct {
	ls  labels.Labels
	ref storage.SeriesRef
}

// entry is a series of the target, as last scraped.
type entry struct {
	ls   labels.Labels
	ref  storage.SeriesRef
	seen uint64 // the scrape that last appended it
	pend uint64 // the scrape that last parsed it
}

type pendingSample struct {
	e *entry
	v float64
}

func newScraper(t Target, store Appendable, o *settings) *scraper {
	s := &scraper{
		t: t, url: t.URL(), store: store, o: o, tls: t.labels(),
		cache:   map[string]*entry{},
		builder: labels.NewBuilder(labels.EmptyLabels()),
		symbols: labels.NewSymbolTable(),
	}
	for k, v := range t.Labels {
		s.claim = append(s.claim, labels.Label{Name: k, Value: v})
	}
	slices.SortFunc(s.claim, func(a, b labels.Label) int { return strings.Compare(a.Name, b.Name) })
	for i, name := range []string{seriesUp, seriesDuration, seriesSamples} {
		b := labels.NewBuilder(s.tls)
		b.Set(model.MetricNameLabel, name)
		s.report[i].ls = b.Labels()
	}
	return s
}

// lastReport is the latest scrape's report.
func (s *scraper) lastReport() Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// scrape scrapes the target once; its samples are stamped at.
func (s *scraper) scrape(ctx context.Context, at time.Time) Report {
	start := s.o.now()
	rep := Report{At: at}
	s.iter++
	s.pending = s.pending[:0]
	ct, err := s.fetch(ctx)
	if err != nil {
		rep.Err, rep.Reason = err, failureReason(err)
	} else {
		rep.Samples, err = s.parse(ct)
		if err != nil {
			rep.Err, rep.Reason = err, failureReason(err)
		}
	}
	rep.Duration = s.o.now().Sub(start)
	if ctx.Err() != nil {
		// Shutting down or removed: no verdict on the target.
		rep.Err, rep.Reason = fmt.Errorf("scrape %s: %w", s.url, ctx.Err()), ""
		s.setLast(rep)
		return rep
	}
	if err := s.append(ctx, at, &rep); err != nil {
		rep.Err, rep.Reason = err, reasonStore
	}
	s.o.metrics.observe(rep)
	if rep.Err != nil {
		s.o.log.Debug("scrape failed", logKeyURL, s.url, logKeyErr, rep.Err)
	}
	s.setLast(rep)
	return rep
}

func (s *scraper) setLast(rep Report) {
	s.mu.Lock()
	s.last = rep
	s.mu.Unlock()
}

func failureReason(err error) string {
	for _, r := range []struct {
		err    error
		reason string
	}{
		{ErrTimeout, reasonTimeout}, {ErrStatus, reasonStatus}, {ErrBodySizeLimit, reasonBodySize},
		{ErrParse, reasonParse}, {ErrSeriesLimit, reasonSeriesLimit}, {ErrStore, reasonStore},
	} {
		if errors.Is(err, r.err) {
			return r.reason
		}
	}
	return reasonHTTP
}

// fetch reads the body into s.buf and returns its content type.
func (s *scraper) fetch(ctx context.Context) (string, error) {
	tctx, cancel := context.WithTimeout(ctx, s.o.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(tctx, http.MethodGet, s.url, nil)
	if err != nil {
		return "", fmt.Errorf("scrape %s: %w", s.url, err)
	}
	req.Header.Set("Accept", acceptHeader)
	req.Header.Set("User-Agent", "immune-scraper")
	req.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", strconv.FormatFloat(s.o.timeout.Seconds(), 'f', -1, 64))
	resp, err := s.o.client.Do(req)
	if err != nil {
		return "", s.transportError(ctx, tctx, err)
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		_ = resp.Body.Close()
	}()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("scrape %s: %w: %s", s.url, ErrStatus, resp.Status)
	}
	s.buf.Reset()
	n, err := s.buf.ReadFrom(io.LimitReader(resp.Body, s.o.bodyLimit+1))
	if err != nil {
		return "", s.transportError(ctx, tctx, err)
	}
	if n > s.o.bodyLimit {
		return "", fmt.Errorf("scrape %s: %w: more than %d bytes", s.url, ErrBodySizeLimit, s.o.bodyLimit)
	}
	return resp.Header.Get("Content-Type"), nil
}

func (s *scraper) transportError(ctx, tctx context.Context, err error) error {
	var nerr net.Error
	if ctx.Err() == nil && (errors.Is(tctx.Err(), context.DeadlineExceeded) || errors.As(err, &nerr) && nerr.Timeout()) {
		return fmt.Errorf("scrape %s: %w after %v", s.url, ErrTimeout, s.o.timeout)
	}
	return fmt.Errorf("scrape %s: %w", s.url, err)
}

// parse reads s.buf into s.pending, with the target's labels, and
// returns the number of samples in the body.
func (s *scraper) parse(contentType string) (int, error) {
	p, err := textparse.New(s.buf.Bytes(), contentType, s.symbols, textparse.ParserOptions{
		FallbackContentType:     "text/plain",
		OpenMetricsSkipSTSeries: true,
	})
	if p == nil {
		return 0, fmt.Errorf("scrape %s: %w: content type %q: %w", s.url, ErrParse, contentType, err)
	}
	samples := 0
	for {
		et, err := p.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return samples, fmt.Errorf("scrape %s: %w: %w", s.url, ErrParse, err)
		}
		switch et {
		case textparse.EntrySeries:
		case textparse.EntryHistogram:
			// Native histograms come in protobuf and OpenMetrics 2.0
			// only, which the Accept header does not ask for.
			samples++
			continue
		default:
			continue
		}
		samples++
		raw, _, v := p.Series()
		e, ok := s.cache[string(raw)]
		if !ok {
			p.Labels(&s.parsed)
			if s.parsed.Get(model.MetricNameLabel) == "" {
				return samples, fmt.Errorf("scrape %s: %w: series %s has no metric name", s.url, ErrParse, s.parsed)
			}
			e = &entry{ls: s.targetLabels(s.parsed)}
			s.cache[string(raw)] = e
		}
		if e.pend == s.iter {
			s.o.metrics.rejected.WithLabelValues("duplicate").Inc()
			continue
		}
		e.pend = s.iter
		s.pending = append(s.pending, pendingSample{e, v})
		if s.o.seriesLimit > 0 && len(s.pending) > s.o.seriesLimit {
			// Stop here: the rest of a runaway body costs memory.
			return samples, fmt.Errorf("scrape %s: %w: more than %d series", s.url, ErrSeriesLimit, s.o.seriesLimit)
		}
	}
	return samples, nil
}

// targetLabels adds the target's labels to scraped ones; a scraped label
// of the same name becomes exported_<name> (Prometheus' honor_labels:
// false), also when the target's value is empty: a member without a
// version does not take the version its metrics expose.
func (s *scraper) targetLabels(scraped labels.Labels) labels.Labels {
	b := s.builder
	b.Reset(scraped)
	var conflicts []labels.Label
	for _, l := range s.claim {
		if v := scraped.Get(l.Name); v != "" {
			conflicts = append(conflicts, labels.Label{Name: l.Name, Value: v})
		}
		b.Set(l.Name, l.Value)
	}
	for _, c := range conflicts {
		name := "exported_" + c.Name
		for b.Get(name) != "" {
			name = "exported_" + name
		}
		b.Set(name, c.Value)
	}
	return b.Labels()
}

// append stores the pending samples (none when the scrape failed),
// staleness markers for the series gone since the last scrape, and the
// report series, in one appender.
func (s *scraper) append(ctx context.Context, at time.Time, rep *Report) (err error) {
	ts := at.UnixMilli()
	if ts <= s.lastTs {
		ts = s.lastTs + 1
	}
	app := s.store.Appender(ctx)
	defer func() {
		if err != nil {
			err = errors.Join(err, app.Rollback())
		}
	}()
	appended := 0
	if rep.Err == nil {
		for _, p := range s.pending {
			ref, err := app.Append(p.e.ref, p.e.ls, ts, p.v)
			if err != nil {
				if r := rejectReason(err); r != "" {
					s.o.metrics.rejected.WithLabelValues(r).Inc()
					continue
				}
				return fmt.Errorf("scrape %s: %w: %w", s.url, ErrStore, err)
			}
			p.e.ref, p.e.seen = ref, s.iter
			appended++
		}
	}
	// Staleness: the series of the previous scrape not in this one.
	stale := 0
	if len(s.cache) != appended { // else every cached series was appended now

		for k, e := range s.cache {
			prev := s.prevIter != 0 && e.seen == s.prevIter
			if prev {
				if _, err := app.Append(e.ref, e.ls, ts, math.Float64frombits(value.StaleNaN)); err != nil && rejectReason(err) == "" {
					return fmt.Errorf("scrape %s: staleness marker: %w: %w", s.url, ErrStore, err)
				}
				stale++
			}
			// Keep the series stored now; after a failure, the series of
			// the last good scrape (they may well come back).
			if rep.Err == nil && e.seen != s.iter || rep.Err != nil && !prev {
				delete(s.cache, k)
			}
		}
	}
	up := 1.0
	if rep.Err != nil {
		up = 0
	}
	for i, v := range []float64{up, rep.Duration.Seconds(), float64(rep.Samples)} {
		ref, err := app.Append(s.report[i].ref, s.report[i].ls, ts, v)
		if err != nil {
			return fmt.Errorf("scrape %s: %s: %w: %w", s.url, s.report[i].ls.Get(model.MetricNameLabel), ErrStore, err)
		}
		s.report[i].ref = ref
	}
	if err := app.Commit(); err != nil {
		return fmt.Errorf("scrape %s: %w: %w", s.url, ErrStore, err)
	}
	s.lastTs, s.reported = ts, true
	if rep.Err == nil {
		s.prevIter = s.iter
	} else {
		s.prevIter = 0
	}
	rep.Appended = appended
	s.o.metrics.appended.Add(float64(appended))
	s.o.metrics.stale.Add(float64(stale))
	return nil
}

// markStale appends staleness markers to every series of the target,
// the report series included: the target is gone.
func (s *scraper) markStale(ctx context.Context, at time.Time) error {
	if s.prevIter == 0 && !s.reported {
		return nil
	}
	ts := at.UnixMilli()
	if ts <= s.lastTs {
		ts = s.lastTs + 1
	}
	app := s.store.Appender(ctx)
	stale := 0
	nan := math.Float64frombits(value.StaleNaN)
	for _, e := range s.cache {
		if s.prevIter != 0 && e.seen == s.prevIter {
			if _, err := app.Append(e.ref, e.ls, ts, nan); err != nil && rejectReason(err) == "" {
				return errors.Join(fmt.Errorf("scrape %s: staleness marker: %w: %w", s.url, ErrStore, err), app.Rollback())
			}
			stale++
		}
	}
	if s.reported {
		for _, r := range s.report {
			if _, err := app.Append(r.ref, r.ls, ts, nan); err != nil && rejectReason(err) == "" {
				return errors.Join(fmt.Errorf("scrape %s: staleness marker: %w: %w", s.url, ErrStore, err), app.Rollback())
			}
			stale++
		}
	}
	if err := app.Commit(); err != nil {
		return fmt.Errorf("scrape %s: staleness markers: %w: %w", s.url, ErrStore, err)
	}
	s.o.metrics.stale.Add(float64(stale))
	s.prevIter, s.reported, s.lastTs = 0, false, ts
	clear(s.cache)
	return nil
}

// rejectReason names a sample the store refuses on its own (the scrape
// goes on), or "" for an error of the store as a whole.
func rejectReason(err error) string {
	switch {
	case errors.Is(err, storage.ErrOutOfOrderSample):
		return "out_of_order"
	case errors.Is(err, storage.ErrOutOfBounds):
		return "out_of_bounds"
	case errors.Is(err, storage.ErrTooOldSample):
		return "too_old"
	case errors.Is(err, storage.ErrDuplicateSampleForTimestamp):
		return "duplicate"
	}
	return ""
}
