// Package collector is the seam between the analysis and the metrics: a
// Source evaluates a KPI's PromQL expression over a time range, or at an
// instant, and hands back plain numbers.
//
// Implementations live in subpackages, one per backend:
//
//   - embedded: Prometheus's own TSDB and PromQL engine used as a library,
//     with an Appender for loaders and live ingestion;
//   - remote: any Prometheus-compatible HTTP API (Prometheus, Thanos, Mimir,
//     VictoriaMetrics) through client_golang's api/v1;
//   - load: history loaders (CSV, Prometheus/OpenMetrics text with
//     timestamps) that write into the embedded store.
//
// Live ingestion into the embedded store: scrape (targets, static or
// announced in ZooKeeper), ingest (remote-write and push over HTTP); and
// queryapi serves the embedded store through Prometheus's HTTP query API.
//
// sourcetest holds the acceptance suite every Source passes. The package
// decides nothing: it neither judges numbers nor retries a failed analysis.
package collector

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Source evaluates PromQL. Implementations are safe for concurrent use.
//
// Both methods return the server's or engine's warnings (for example "metric
// might not be a counter") alongside a result; warnings never replace an
// error. Errors wrap the sentinels of errors.go: ErrBadQuery for a query the
// source rejects, ErrTimeout, ErrTooManySamples, ErrUnavailable, and the
// context's error when ctx ends first.
type Source interface {
	// QueryRange evaluates query at start, start+step, … up to end
	// (inclusive) and returns one Series per label set, sorted by labels.
	// The query must produce an instant vector or a scalar; a scalar comes
	// back as one Series without labels.
	QueryRange(ctx context.Context, query string, start, end time.Time, step time.Duration) (Matrix, Warnings, error)
	// Query evaluates query at ts. The query must produce an instant vector
	// or a scalar; a scalar comes back as one Element without labels. The
	// elements keep the engine's order (so sort() and topk() mean what
	// they say).
	Query(ctx context.Context, query string, ts time.Time) (Vector, Warnings, error)
}

// Sample is one value of a series at a time. PromQL timestamps have
// millisecond resolution; T is in UTC.
type Sample struct {
	T time.Time
	V float64
}

// Series is a label set and its samples in time order.
type Series struct {
	Labels  Labels
	Samples []Sample
}

// Matrix is the result of a range query.
type Matrix []Series

// Element is one series' value at the instant of a query.
type Element struct {
	Labels Labels
	Sample Sample
}

// Vector is the result of an instant query.
type Vector []Element

// Warnings are the non-fatal messages of a query, as the engine or server
// wrote them (warnings and infos alike).
type Warnings []string

// Labels is a series' label set, the metric name under "__name__".
// A label with an empty value is the same as no label (Prometheus
// semantics).
type Labels map[string]string

// MetricName is the label that holds a series' metric name.
const MetricName = "__name__"

// String formats l as PromQL writes a series: name{a="1", b="2"}, labels
// sorted, values quoted.
func (l Labels) String() string {
	var b strings.Builder
	b.WriteString(l[MetricName])
	keys := slices.Sorted(maps.Keys(l))
	b.WriteByte('{')
	first := true
	for _, k := range keys {
		if k == MetricName {
			continue
		}
		if !first {
			b.WriteString(", ")
		}
		first = false
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(strconv.Quote(l[k]))
	}
	b.WriteByte('}')
	return b.String()
}

// Equal reports whether l and o hold the same labels, ignoring labels with
// empty values.
func (l Labels) Equal(o Labels) bool {
	for k, v := range l {
		if v != "" && o[k] != v {
			return false
		}
	}
	for k, v := range o {
		if v != "" && l[k] != v {
			return false
		}
	}
	return true
}

// Compare orders label sets as Prometheus does (labels.Compare): by the
// sorted (name, value) pairs, then by length. Labels with empty values
// count as absent.
func (l Labels) Compare(o Labels) int {
	a, b := l.pairs(), o.pairs()
	for i := 0; i < len(a) && i < len(b); i++ {
		if c := strings.Compare(a[i][0], b[i][0]); c != 0 {
			return c
		}
		if c := strings.Compare(a[i][1], b[i][1]); c != 0 {
			return c
		}
	}
	return len(a) - len(b)
}

func (l Labels) pairs() [][2]string {
	p := make([][2]string, 0, len(l))
	for k, v := range l {
		if v != "" {
			p = append(p, [2]string{k, v})
		}
	}
	slices.SortFunc(p, func(x, y [2]string) int { return strings.Compare(x[0], y[0]) })
	return p
}

// Time converts a Prometheus timestamp (milliseconds since the Unix epoch)
// to a time in UTC.
func Time(ms int64) time.Time {
	return time.UnixMilli(ms).UTC()
}

// CheckRange returns an ErrBadQuery error when a range query's bounds or
// step cannot be evaluated: both sources check the same way, before any
// work.
func CheckRange(start, end time.Time, step time.Duration) error {
	switch {
	case step <= 0:
		return fmt.Errorf("%w: step %v must be positive", ErrBadQuery, step)
	case end.Before(start):
		return fmt.Errorf("%w: end %s is before start %s", ErrBadQuery, end.UTC().Format(time.RFC3339), start.UTC().Format(time.RFC3339))
	case end.Sub(start)/step > maxResolution:
		// Prometheus's HTTP API limit, checked here so that every
		// source refuses the same ranges.
		return fmt.Errorf("%w: range %v at step %v exceeds %d points per series; use a larger step", ErrBadQuery, end.Sub(start), step, maxResolution)
	}
	return nil
}

const maxResolution = 11000
