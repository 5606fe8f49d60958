// Package queryapi serves the embedded store over Prometheus's HTTP query
// API: /api/v1/query, /api/v1/query_range, /api/v1/series,
// /api/v1/labels, /api/v1/label/<name>/values (GET and POST forms), and
// /api/v1/status/buildinfo, with Prometheus's parameters, JSON and error
// codes, so that Grafana (or any Prometheus API client) can use immune as
// a Prometheus data source.
package queryapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/immune-project/immune/collector"
	"github.com/immune-project/immune/internal/bearer"
)

// Storage is what the API reads: *embedded.Store.
type Storage interface {
	// View runs fn with a PromQL engine and the queryable it reads,
	// keeping both usable until fn returns.
	View(ctx context.Context, fn func(engine promql.QueryEngine, q storage.Queryable) error) error
}

// PrometheusVersion is the Prometheus release whose PromQL engine and TSDB
// the store embeds (module github.com/prometheus/prometheus v0.316.0):
// the version /api/v1/status/buildinfo reports, so that clients such as
// Grafana enable the features of that release.
const PrometheusVersion = "3.16.0"

// Options configure an API. The zero value works.
type Options struct {
	// TokenFile, when set, holds a bearer token every request must
	// present; empty: the API is open.
	TokenFile string
	// Now is the time of an instant query without a time parameter.
	// Default time.Now.
	Now func() time.Time
	// Revision is reported by /api/v1/status/buildinfo (immune's
	// version), beside PrometheusVersion.
	Revision string
	// Logger receives a line per failed request; nil discards.
	Logger *slog.Logger
	// Registerer receives immune_query_api_requests_total and
	// immune_query_api_request_duration_seconds; nil registers nothing.
	Registerer prometheus.Registerer
}

// API serves the query endpoints. It is safe for concurrent use.
type API struct {
	st       Storage
	token    *bearer.Token
	now      func() time.Time
	revision string
	log      *slog.Logger

	requests *prometheus.CounterVec   // endpoint, code
	duration *prometheus.HistogramVec // endpoint
}

// New returns an API over st.
func New(st Storage, opts Options) (*API, error) {
	if st == nil {
		return nil, errors.New("queryapi: no storage")
	}
	token, err := bearer.Load(opts.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("queryapi: %w", err)
	}
	a := &API{st: st, token: token, now: opts.Now, revision: opts.Revision, log: opts.Logger}
	if a.now == nil {
		a.now = time.Now
	}
	if a.log == nil {
		a.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	a.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "immune_query_api_requests_total",
		Help: "Requests to the Prometheus-compatible query API, by endpoint and HTTP status code.",
	}, []string{"endpoint", "code"})
	a.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "immune_query_api_request_duration_seconds",
		Help:    "Time to answer a request to the query API, by endpoint.",
		Buckets: prometheus.DefBuckets,
	}, []string{"endpoint"})
	if reg := opts.Registerer; reg != nil {
		if err := reg.Register(a.requests); err != nil {
			return nil, fmt.Errorf("queryapi: register metrics: %w", err)
		}
		if err := reg.Register(a.duration); err != nil {
			reg.Unregister(a.requests)
			return nil, fmt.Errorf("queryapi: register metrics: %w", err)
		}
	}
	return a, nil
}

// Endpoints, the endpoint label of the metrics.
const (
	epQuery       = "query"
	epQueryRange  = "query_range"
	epSeries      = "series"
	epLabels      = "labels"
	epLabelValues = "label_values"
	epBuildInfo   = "buildinfo"
)

// Register adds the endpoints to mux.
func (a *API) Register(mux *http.ServeMux) {
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		mux.HandleFunc(m+" /api/v1/query", a.wrap(epQuery, a.query))
		mux.HandleFunc(m+" /api/v1/query_range", a.wrap(epQueryRange, a.queryRange))
		mux.HandleFunc(m+" /api/v1/series", a.wrap(epSeries, a.series))
		mux.HandleFunc(m+" /api/v1/labels", a.wrap(epLabels, a.labelNames))
		mux.HandleFunc(m+" /api/v1/label/{name}/values", a.wrap(epLabelValues, a.labelValues))
	}
	mux.HandleFunc("GET /api/v1/status/buildinfo", a.wrap(epBuildInfo, a.buildInfo))
}

// Error types of Prometheus's API.
const (
	errBadData      = "bad_data"
	errExec         = "execution"
	errTimeout      = "timeout"
	errCanceled     = "canceled"
	errInternal     = "internal"
	errUnavailable  = "unavailable"
	errUnauthorized = "unauthorized"
)

type apiError struct {
	typ string
	err error
}

func (e *apiError) code() int {
	switch e.typ {
	case errBadData:
		return http.StatusBadRequest
	case errExec:
		return http.StatusUnprocessableEntity
	case errTimeout, errCanceled, errUnavailable:
		return http.StatusServiceUnavailable
	case errUnauthorized:
		return http.StatusUnauthorized
	default:
		return http.StatusInternalServerError
	}
}

// result is an endpoint's answer: data already encoded as JSON.
type result struct {
	data     []byte
	warnings annotations.Annotations
	query    string // for the positions of the warnings
	err      *apiError
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

func (a *API) wrap(endpoint string, f func(r *http.Request, buf []byte) result) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := a.now()
		code := http.StatusOK
		defer func() {
			a.requests.WithLabelValues(endpoint, strconv.Itoa(code)).Inc()
			a.duration.WithLabelValues(endpoint).Observe(a.now().Sub(start).Seconds())
		}()
		if !a.token.Check(r) {
			bearer.Challenge(w, r)
			code = a.writeError(w, r, endpoint, &apiError{errUnauthorized, errors.New("missing or wrong bearer token")})
			return
		}
		if err := r.ParseForm(); err != nil {
			code = a.writeError(w, r, endpoint, &apiError{errBadData, fmt.Errorf("error parsing form values: %w", err)})
			return
		}
		bp := bufPool.Get().(*[]byte)
		defer func() {
			if cap(*bp) <= 16<<20 {
				*bp = (*bp)[:0]
				bufPool.Put(bp)
			}
		}()
		res := f(r, *bp)
		if res.err != nil {
			code = a.writeError(w, r, endpoint, res.err)
			return
		}
		var tail []byte
		warnings, infos := res.warnings.AsStrings(res.query, 10, 10)
		if len(warnings) > 0 {
			tail = append(tail, `,"warnings":`...)
			tail = appendStrings(tail, warnings)
		}
		if len(infos) > 0 {
			tail = append(tail, `,"infos":`...)
			tail = appendStrings(tail, infos)
		}
		tail = append(tail, '}')
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = io.WriteString(w, `{"status":"success","data":`)
		_, _ = w.Write(res.data)
		_, _ = w.Write(tail)
		*bp = res.data[:0]
	}
}

func (a *API) writeError(w http.ResponseWriter, r *http.Request, endpoint string, e *apiError) int {
	code := e.code()
	level := a.log.Debug
	if code >= 500 {
		level = a.log.Warn
	}
	level("query api request failed", "endpoint", endpoint, "code", code, "remote", r.RemoteAddr, "err", e.err)
	b := append([]byte(nil), `{"status":"error","errorType":`...)
	b = appendString(b, e.typ)
	b = append(b, `,"error":`...)
	b = appendString(b, e.err.Error())
	b = append(b, '}')
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b)
	return code
}

func invalidParam(err error, name string) result {
	return result{err: &apiError{errBadData, fmt.Errorf("invalid parameter %q: %w", name, err)}}
}

// storeError maps an error of the store (not of a query) to the API's.
func storeError(err error) *apiError {
	switch {
	case errors.Is(err, collector.ErrClosed):
		return &apiError{errUnavailable, err}
	case errors.Is(err, context.DeadlineExceeded):
		return &apiError{errTimeout, err}
	case errors.Is(err, context.Canceled):
		return &apiError{errCanceled, err}
	}
	return &apiError{errInternal, err}
}

// execError maps an error of a query's evaluation as Prometheus does.
func execError(err error) *apiError {
	var (
		canceled promql.ErrQueryCanceled
		timeout  promql.ErrQueryTimeout
		stErr    promql.ErrStorage
	)
	switch {
	case errors.As(err, &canceled):
		return &apiError{errCanceled, err}
	case errors.As(err, &timeout), errors.Is(err, context.DeadlineExceeded):
		return &apiError{errTimeout, err}
	case errors.As(err, &stErr):
		return &apiError{errInternal, err}
	case errors.Is(err, context.Canceled):
		return &apiError{errCanceled, err}
	}
	return &apiError{errExec, err}
}

// constructionError maps an error of preparing a query (parsing, mostly).
func constructionError(err error) *apiError {
	var (
		canceled promql.ErrQueryCanceled
		timeout  promql.ErrQueryTimeout
	)
	if errors.As(err, &canceled) || errors.As(err, &timeout) {
		return execError(err)
	}
	return &apiError{errBadData, fmt.Errorf("invalid parameter %q: %w", "query", err)}
}

// Default bounds of the optional time ranges (Prometheus's).
var (
	minTime = time.Unix(math.MinInt64/1000+62135596801, 0).UTC()
	maxTime = time.Unix(math.MaxInt64/1000-62135596801, 999999999).UTC()

	minTimeFormatted = minTime.Format(time.RFC3339Nano)
	maxTimeFormatted = maxTime.Format(time.RFC3339Nano)
)

// parseTime reads Unix seconds (with decimals) or RFC 3339.
func parseTime(s string) (time.Time, error) {
	if t, err := strconv.ParseFloat(s, 64); err == nil {
		s, ns := math.Modf(t)
		ns = math.Round(ns*1000) / 1000
		return time.Unix(int64(s), int64(ns*float64(time.Second))).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	switch s {
	case minTimeFormatted:
		return minTime, nil
	case maxTimeFormatted:
		return maxTime, nil
	}
	return time.Time{}, fmt.Errorf("cannot parse %q to a valid timestamp", s)
}

func parseTimeParam(r *http.Request, name string, def time.Time) (time.Time, error) {
	v := r.FormValue(name)
	if v == "" {
		return def, nil
	}
	t, err := parseTime(v)
	if err != nil {
		return time.Time{}, fmt.Errorf("invalid time value for '%s': %w", name, err)
	}
	return t, nil
}

// parseDuration reads seconds (with decimals) or a Prometheus duration.
func parseDuration(s string) (time.Duration, error) {
	if d, err := strconv.ParseFloat(s, 64); err == nil {
		ts := d * float64(time.Second)
		if math.IsNaN(ts) || ts >= float64(math.MaxInt64) || ts < float64(math.MinInt64) {
			return 0, fmt.Errorf("cannot parse %q to a valid duration. It overflows int64", s)
		}
		return time.Duration(ts), nil
	}
	if d, err := model.ParseDuration(s); err == nil {
		return time.Duration(d), nil
	}
	return 0, fmt.Errorf("cannot parse %q to a valid duration", s)
}

func parseLimit(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, err
	}
	if n < 0 {
		return 0, errors.New("limit must be non-negative")
	}
	return n, nil
}

// queryContext applies the timeout parameter.
func queryContext(r *http.Request) (context.Context, context.CancelFunc, *apiError) {
	ctx := r.Context()
	if v := r.FormValue("timeout"); v != "" {
		d, err := parseDuration(v)
		if err != nil {
			return nil, nil, &apiError{errBadData, fmt.Errorf("invalid parameter %q: %w", "timeout", err)}
		}
		if d > 0 {
			ctx, cancel := context.WithTimeout(ctx, d)
			return ctx, cancel, nil
		}
	}
	return ctx, func() {}, nil
}

func queryOpts(r *http.Request) (promql.QueryOpts, error) {
	var lookback time.Duration
	if v := r.FormValue("lookback_delta"); v != "" {
		d, err := parseDuration(v)
		if err != nil {
			return nil, fmt.Errorf("error parsing lookback delta duration: %w", err)
		}
		lookback = d
	}
	return promql.NewPrometheusQueryOpts(false, lookback, nil), nil
}

func (a *API) query(r *http.Request, buf []byte) result {
	limit, err := parseLimit(r.FormValue("limit"))
	if err != nil {
		return invalidParam(err, "limit")
	}
	ts, err := parseTimeParam(r, "time", a.now())
	if err != nil {
		return invalidParam(err, "time")
	}
	ctx, cancel, aerr := queryContext(r)
	if aerr != nil {
		return result{err: aerr}
	}
	defer cancel()
	opts, err := queryOpts(r)
	if err != nil {
		return result{err: &apiError{errBadData, err}}
	}
	qs := r.FormValue("query")
	return a.run(ctx, qs, limit, buf, func(e promql.QueryEngine, q storage.Queryable) (promql.Query, error) {
		return e.NewInstantQuery(ctx, q, opts, qs, ts)
	})
}

func (a *API) queryRange(r *http.Request, buf []byte) result {
	limit, err := parseLimit(r.FormValue("limit"))
	if err != nil {
		return invalidParam(err, "limit")
	}
	start, err := parseTime(r.FormValue("start"))
	if err != nil {
		return invalidParam(err, "start")
	}
	end, err := parseTime(r.FormValue("end"))
	if err != nil {
		return invalidParam(err, "end")
	}
	if end.Before(start) {
		return invalidParam(errors.New("end timestamp must not be before start time"), "end")
	}
	step, err := parseDuration(r.FormValue("step"))
	if err != nil {
		return invalidParam(err, "step")
	}
	if step <= 0 {
		return invalidParam(errors.New("zero or negative query resolution step widths are not accepted. Try a positive integer"), "step")
	}
	if end.Sub(start)/step > 11000 {
		return result{err: &apiError{errBadData, errors.New("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)")}}
	}
	ctx, cancel, aerr := queryContext(r)
	if aerr != nil {
		return result{err: aerr}
	}
	defer cancel()
	opts, err := queryOpts(r)
	if err != nil {
		return result{err: &apiError{errBadData, err}}
	}
	qs := r.FormValue("query")
	return a.run(ctx, qs, limit, buf, func(e promql.QueryEngine, q storage.Queryable) (promql.Query, error) {
		return e.NewRangeQuery(ctx, q, opts, qs, start, end, step)
	})
}

// run prepares, executes and encodes a query inside the store's view.
func (a *API) run(ctx context.Context, qs string, limit int, buf []byte, prepare func(promql.QueryEngine, storage.Queryable) (promql.Query, error)) result {
	res := result{query: qs}
	err := a.st.View(ctx, func(e promql.QueryEngine, q storage.Queryable) error {
		qry, err := prepare(e, q)
		if err != nil {
			res.err = constructionError(err)
			return nil
		}
		defer qry.Close()
		out := qry.Exec(ctx)
		res.warnings = out.Warnings
		if out.Err != nil {
			res.err = execError(out.Err)
			return nil
		}
		v := out.Value
		if limit > 0 {
			var truncated bool
			v, truncated = truncate(v, limit)
			if truncated {
				res.warnings = res.warnings.Add(errors.New("results truncated due to limit"))
			}
		}
		buf = append(buf, `{"resultType":`...)
		buf = appendString(buf, string(v.Type()))
		buf = append(buf, `,"result":`...)
		buf = appendValue(buf, v)
		res.data = append(buf, '}')
		return nil
	})
	if err != nil {
		return result{err: storeError(err)}
	}
	return res
}

func truncate(v parser.Value, limit int) (parser.Value, bool) {
	switch v := v.(type) {
	case promql.Vector:
		if len(v) > limit {
			return v[:limit], true
		}
	case promql.Matrix:
		if len(v) > limit {
			return v[:limit], true
		}
	}
	return v, false
}

// metricParser reads the match[] selectors, with Prometheus's default
// options, as its API does.
var metricParser = parser.NewParser(parser.Options{})

// parseMatchers reads the match[] parameters; every selector needs a
// matcher that does not match the empty string.
func parseMatchers(ss []string) ([][]*labels.Matcher, error) {
	sets := make([][]*labels.Matcher, 0, len(ss))
	for _, s := range ss {
		ms, err := metricParser.ParseMetricSelector(s)
		if err != nil {
			return nil, err
		}
		if !slices.ContainsFunc(ms, func(m *labels.Matcher) bool { return !m.Matches("") }) {
			return nil, errors.New("match[] must contain at least one non-empty matcher")
		}
		sets = append(sets, ms)
	}
	return sets, nil
}

// seriesRange reads start, end, limit and match[].
func seriesRange(r *http.Request) (start, end time.Time, limit int, sets [][]*labels.Matcher, res *result) {
	fail := func(rr result) (time.Time, time.Time, int, [][]*labels.Matcher, *result) {
		return time.Time{}, time.Time{}, 0, nil, &rr
	}
	limit, err := parseLimit(r.FormValue("limit"))
	if err != nil {
		return fail(invalidParam(err, "limit"))
	}
	if start, err = parseTimeParam(r, "start", minTime); err != nil {
		return fail(invalidParam(err, "start"))
	}
	if end, err = parseTimeParam(r, "end", maxTime); err != nil {
		return fail(invalidParam(err, "end"))
	}
	if sets, err = parseMatchers(r.Form["match[]"]); err != nil {
		return fail(invalidParam(err, "match[]"))
	}
	return start, end, limit, sets, nil
}

func hintLimit(limit int) int {
	if limit > 0 && limit < math.MaxInt {
		return limit + 1
	}
	return limit
}

func (a *API) series(r *http.Request, buf []byte) result {
	if len(r.Form["match[]"]) == 0 {
		return result{err: &apiError{errBadData, errors.New("no match[] parameter provided")}}
	}
	start, end, limit, sets, bad := seriesRange(r)
	if bad != nil {
		return *bad
	}
	ctx := r.Context()
	var res result
	err := a.st.View(ctx, func(_ promql.QueryEngine, qa storage.Queryable) error {
		q, err := qa.Querier(timestamp.FromTime(start), timestamp.FromTime(end))
		if err != nil {
			res.err = execError(err)
			return nil
		}
		defer q.Close()
		hints := &storage.SelectHints{
			Start: timestamp.FromTime(start),
			End:   timestamp.FromTime(end),
			Func:  "series",
			Limit: hintLimit(limit),
		}
		var set storage.SeriesSet
		if len(sets) > 1 {
			var ss []storage.SeriesSet
			for _, ms := range sets {
				ss = append(ss, q.Select(ctx, true, hints, ms...))
			}
			set = storage.NewMergeSeriesSet(ss, 0, storage.ChainedSeriesMerge)
		} else {
			set = q.Select(ctx, false, hints, sets[0]...)
		}
		buf = append(buf, '[')
		n := 0
		for set.Next() {
			if n%1000 == 999 {
				if err := ctx.Err(); err != nil {
					res.err = execError(err)
					return nil
				}
			}
			if limit > 0 && n == limit {
				res.warnings = res.warnings.Add(errors.New("results truncated due to limit"))
				break
			}
			if n > 0 {
				buf = append(buf, ',')
			}
			buf = appendLabels(buf, set.At().Labels())
			n++
		}
		res.warnings.Merge(set.Warnings())
		if err := set.Err(); err != nil {
			res.err = execError(err)
			return nil
		}
		res.data = append(buf, ']')
		return nil
	})
	if err != nil {
		return result{err: storeError(err)}
	}
	return res
}

func (a *API) labelNames(r *http.Request, buf []byte) result {
	start, end, limit, sets, bad := seriesRange(r)
	if bad != nil {
		return *bad
	}
	return a.labelQuery(r.Context(), start, end, limit, sets, buf, func(ctx context.Context, q storage.Querier, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
		return q.LabelNames(ctx, hints, ms...)
	})
}

func (a *API) labelValues(r *http.Request, buf []byte) result {
	name := r.PathValue("name")
	if strings.HasPrefix(name, "U__") {
		name = model.UnescapeName(name, model.ValueEncodingEscaping)
	}
	if !model.UTF8Validation.IsValidLabelName(name) {
		return result{err: &apiError{errBadData, fmt.Errorf("invalid label name: %q", name)}}
	}
	start, end, limit, sets, bad := seriesRange(r)
	if bad != nil {
		return *bad
	}
	return a.labelQuery(r.Context(), start, end, limit, sets, buf, func(ctx context.Context, q storage.Querier, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
		return q.LabelValues(ctx, name, hints, ms...)
	})
}

// labelQuery runs a label names or values lookup for each matcher set and
// writes the sorted union.
func (a *API) labelQuery(ctx context.Context, start, end time.Time, limit int, sets [][]*labels.Matcher, buf []byte,
	get func(context.Context, storage.Querier, *storage.LabelHints, ...*labels.Matcher) ([]string, annotations.Annotations, error),
) result {
	var res result
	err := a.st.View(ctx, func(_ promql.QueryEngine, qa storage.Queryable) error {
		q, err := qa.Querier(timestamp.FromTime(start), timestamp.FromTime(end))
		if err != nil {
			res.err = execError(err)
			return nil
		}
		defer q.Close()
		hints := &storage.LabelHints{Limit: hintLimit(limit)}
		var vals []string
		if len(sets) <= 1 {
			var ms []*labels.Matcher
			if len(sets) == 1 {
				ms = sets[0]
			}
			vals, res.warnings, err = get(ctx, q, hints, ms...)
			if err != nil {
				res.err = execError(err)
				return nil
			}
		} else {
			seen := map[string]struct{}{}
			for _, ms := range sets {
				vs, w, err := get(ctx, q, hints, ms...)
				if err != nil {
					res.err = execError(err)
					return nil
				}
				res.warnings.Merge(w)
				for _, v := range vs {
					seen[v] = struct{}{}
				}
			}
			for v := range seen {
				vals = append(vals, v)
			}
		}
		slices.Sort(vals)
		if limit > 0 && len(vals) > limit {
			vals = vals[:limit]
			res.warnings = res.warnings.Add(errors.New("results truncated due to limit"))
		}
		res.data = appendStrings(buf, vals)
		return nil
	})
	if err != nil {
		return result{err: storeError(err)}
	}
	return res
}

func (a *API) buildInfo(_ *http.Request, buf []byte) result {
	buf = append(buf, `{"version":`...)
	buf = appendString(buf, PrometheusVersion)
	buf = append(buf, `,"revision":`...)
	buf = appendString(buf, a.revision)
	buf = append(buf, `,"branch":"","buildUser":"","buildDate":"","goVersion":`...)
	buf = appendString(buf, runtime.Version())
	return result{data: append(buf, '}')}
}
