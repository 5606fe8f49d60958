package store

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
)

// Register serves GET /api/v1/annotations on mux.
func (s *Store) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/annotations", s.serveFind)
}

func (s *Store) serveFind(w http.ResponseWriter, r *http.Request) {
	q, err := ParseQuery(r.URL.Query())
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"status": "error", "error": err.Error()})
		return
	}
	out := s.Find(r.Context(), q)
	if out == nil {
		out = []Annotation{}
	}
	writeJSON(w, http.StatusOK, out)
}

// MaxLimit is the largest limit a request may ask for.
const MaxLimit = 10000

// ParseQuery reads Grafana's filters: from and to in epoch milliseconds,
// tags (repeated; all must match unless matchAny=true), limit (default
// 100), and type (annotation, or alert, of which immune writes none).
func ParseQuery(v url.Values) (Query, error) {
	var q Query
	num := func(name string) (int64, error) {
		s := v.Get(name)
		if s == "" {
			return 0, nil
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%s: %q is not a time in epoch milliseconds", name, s)
		}
		return n, nil
	}
	var err error
	if q.From, err = num("from"); err != nil {
		return Query{}, err
	}
	if q.To, err = num("to"); err != nil {
		return Query{}, err
	}
	if q.To != 0 && q.To < q.From {
		return Query{}, fmt.Errorf("to: %d is before from %d", q.To, q.From)
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 || n > MaxLimit {
			return Query{}, fmt.Errorf("limit: %q is not a number from 1 to %d", s, MaxLimit)
		}
		q.Limit = n
	}
	for _, t := range v["tags"] {
		if t != "" {
			q.Tags = append(q.Tags, t)
		}
	}
	switch s := v.Get("matchAny"); s {
	case "", "false":
	case "true":
		q.MatchAny = true
	default:
		return Query{}, fmt.Errorf("matchAny: %q is not true or false", s)
	}
	switch s := v.Get("type"); s {
	case "", "annotation":
	case "alert":
		q.AlertsOnly = true
	default:
		return Query{}, fmt.Errorf("type: %q is not annotation or alert", s)
	}
	return q, nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
