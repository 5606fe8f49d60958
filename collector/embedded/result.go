package embedded

import (
	"fmt"
	"slices"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/immune-project/immune/collector"
)

// maxWarnings bounds the warnings (and, separately, infos) of one query.
const maxWarnings = 10

func warningsOf(res *promql.Result, query string) collector.Warnings {
	if len(res.Warnings) == 0 {
		return nil
	}
	warnings, infos := res.Warnings.AsStrings(query, maxWarnings, maxWarnings)
	return append(warnings, infos...)
}

func toLabels(ls labels.Labels) collector.Labels {
	m := make(collector.Labels, ls.Len())
	ls.Range(func(l labels.Label) { m[l.Name] = l.Value })
	return m
}

func toMatrix(v parser.Value) (collector.Matrix, error) {
	switch v := v.(type) {
	case promql.Matrix:
		m := make(collector.Matrix, 0, len(v))
		for _, s := range v {
			if len(s.Histograms) > 0 {
				return nil, fmt.Errorf("%w: %s has native histogram samples", collector.ErrUnsupported, s.Metric)
			}
			samples := make([]collector.Sample, len(s.Floats))
			for i, p := range s.Floats {
				samples[i] = collector.Sample{T: collector.Time(p.T), V: p.F}
			}
			m = append(m, collector.Series{Labels: toLabels(s.Metric), Samples: samples})
		}
		// The engine sorts already; this keeps the contract whatever it does.
		slices.SortStableFunc(m, func(a, b collector.Series) int { return a.Labels.Compare(b.Labels) })
		return m, nil
	default:
		// A range query's result is always a matrix (a scalar
		// expression gives one series without labels).
		return nil, fmt.Errorf("%w: range query returned %s", collector.ErrUnsupported, v.Type())
	}
}

func toVector(v parser.Value) (collector.Vector, error) {
	switch v := v.(type) {
	case promql.Vector:
		out := make(collector.Vector, 0, len(v))
		for _, s := range v {
			if s.H != nil {
				return nil, fmt.Errorf("%w: %s is a native histogram sample", collector.ErrUnsupported, s.Metric)
			}
			out = append(out, collector.Element{Labels: toLabels(s.Metric), Sample: collector.Sample{T: collector.Time(s.T), V: s.F}})
		}
		return out, nil
	case promql.Scalar:
		return collector.Vector{{Labels: collector.Labels{}, Sample: collector.Sample{T: collector.Time(v.T), V: v.V}}}, nil
	case promql.Matrix:
		return nil, fmt.Errorf("%w: an instant query must give an instant vector or a scalar, not a range vector (wrap it in a function such as avg_over_time)", collector.ErrBadQuery)
	default:
		return nil, fmt.Errorf("%w: an instant query must give an instant vector or a scalar, not a %s", collector.ErrBadQuery, v.Type())
	}
}
