// Package apitest serves a collector.Source over the query endpoints of
// Prometheus's HTTP API (/api/v1/query, /api/v1/query_range), in
// Prometheus's JSON, so that the remote source can be tested against the
// embedded store without a server.
package apitest

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/common/model"

	"github.com/immune-project/immune/collector"
)

// Handler serves src.
func Handler(src collector.Source) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/query", func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			writeError(w, http.StatusBadRequest, "bad_data", err.Error())
			return
		}
		ts, err := parseTime(r.Form.Get("time"))
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_data", "invalid parameter \"time\": "+err.Error())
			return
		}
		ctx, cancel := withTimeout(r)
		defer cancel()
		v, warnings, err := src.Query(ctx, r.Form.Get("query"), ts)
		if err != nil {
			writeQueryError(w, err)
			return
		}
		result := make([]any, 0, len(v))
		for _, e := range v {
			result = append(result, map[string]any{"metric": metric(e.Labels), "value": pair(e.Sample)})
		}
		writeData(w, "vector", result, warnings)
	})
	mux.HandleFunc("/api/v1/query_range", func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			writeError(w, http.StatusBadRequest, "bad_data", err.Error())
			return
		}
		start, err := parseTime(r.Form.Get("start"))
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_data", "invalid parameter \"start\": "+err.Error())
			return
		}
		end, err := parseTime(r.Form.Get("end"))
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_data", "invalid parameter \"end\": "+err.Error())
			return
		}
		step, err := parseDuration(r.Form.Get("step"))
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_data", "invalid parameter \"step\": "+err.Error())
			return
		}
		ctx, cancel := withTimeout(r)
		defer cancel()
		m, warnings, err := src.QueryRange(ctx, r.Form.Get("query"), start, end, step)
		if err != nil {
			writeQueryError(w, err)
			return
		}
		result := make([]any, 0, len(m))
		for _, s := range m {
			values := make([]any, len(s.Samples))
			for i, p := range s.Samples {
				values[i] = pair(p)
			}
			result = append(result, map[string]any{"metric": metric(s.Labels), "values": values})
		}
		writeData(w, "matrix", result, warnings)
	})
	return mux
}

func withTimeout(r *http.Request) (context.Context, context.CancelFunc) {
	if d, err := parseDuration(r.Form.Get("timeout")); err == nil && d > 0 {
		return context.WithTimeout(r.Context(), d)
	}
	return context.WithCancel(r.Context())
}

func metric(l collector.Labels) map[string]string {
	m := make(map[string]string, len(l))
	for k, v := range l {
		if v != "" {
			m[k] = v
		}
	}
	return m
}

// pair is Prometheus's [seconds, "value"].
func pair(s collector.Sample) []any {
	return []any{json.Number(strconv.FormatFloat(float64(s.T.UnixMilli())/1000, 'f', -1, 64)), formatValue(s.V)}
}

func formatValue(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

func parseTime(s string) (time.Time, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return time.UnixMilli(int64(math.Round(f * 1000))).UTC(), nil
	}
	return time.Parse(time.RFC3339Nano, s)
}

func parseDuration(s string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return time.Duration(f * float64(time.Second)), nil
	}
	d, err := model.ParseDuration(s)
	return time.Duration(d), err
}

func writeData(w http.ResponseWriter, resultType string, result []any, warnings collector.Warnings) {
	body := map[string]any{
		"status": "success",
		"data":   map[string]any{"resultType": resultType, "result": result},
	}
	if len(warnings) > 0 {
		body["warnings"] = warnings
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(body)
}

// writeQueryError answers as Prometheus's API does.
func writeQueryError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, collector.ErrTooManySamples):
		writeError(w, http.StatusUnprocessableEntity, "execution", err.Error())
	case errors.Is(err, collector.ErrBadQuery):
		writeError(w, http.StatusBadRequest, "bad_data", err.Error())
	case errors.Is(err, collector.ErrTimeout):
		writeError(w, http.StatusServiceUnavailable, "timeout", err.Error())
	case errors.Is(err, context.Canceled):
		writeError(w, http.StatusServiceUnavailable, "canceled", err.Error())
	default:
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
	}
}

func writeError(w http.ResponseWriter, code int, errorType, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"status": "error", "errorType": errorType, "error": msg})
}
