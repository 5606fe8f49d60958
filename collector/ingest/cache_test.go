package ingest

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
)

// tsdbStorage is a Storage over a bare TSDB (this package's tests cannot
// import embedded, which imports this package).
type tsdbStorage struct{ db *tsdb.DB }

func (s tsdbStorage) Update(ctx context.Context, fn func(storage.AppenderV2) error) error {
	app := s.db.AppenderV2(ctx)
	if err := fn(app); err != nil {
		app.Rollback()
		return err
	}
	return app.Commit()
}

func TestSeriesCache(t *testing.T) {
	db, err := tsdb.Open(t.TempDir(), nil, nil, tsdb.DefaultOptions(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Now()
	r, err := New(tsdbStorage{db}, Options{SeriesCacheSize: 3, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	r.Register(mux)
	send := func(at int64, names ...string) {
		t.Helper()
		var req prompb.WriteRequest
		for i, n := range names {
			req.Timeseries = append(req.Timeseries, prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: n}},
				Samples: []prompb.Sample{{Value: float64(i), Timestamp: at}}})
		}
		data, err := req.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		hr := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(snappy.Encode(nil, data)))
		hr.Header.Set("Content-Type", "application/x-protobuf")
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, hr)
		if w.Code != http.StatusNoContent {
			t.Fatalf("HTTP %d: %s", w.Code, w.Body)
		}
	}
	t0 := now.UnixMilli() - 60_000
	send(t0, "a", "b")
	if n := r.cache.len(); n != 2 {
		t.Fatalf("%d series cached, want 2", n)
	}
	// A reference the store does not know: the series is found by its
	// labels.
	r.cache.mu.Lock()
	for k, c := range r.cache.m {
		c.ref = 1 << 40
		r.cache.m[k] = c
	}
	r.cache.mu.Unlock()
	send(t0+1000, "a", "b")
	// Two more series overflow the cache (3): it starts again.
	send(t0+2000, "c", "d")
	if n := r.cache.len(); n != 2 {
		t.Errorf("%d series cached after overflowing, want 2", n)
	}
	q, err := db.Querier(0, t0+3000)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	set := q.Select(context.Background(), true, nil, labels.MustNewMatcher(labels.MatchRegexp, "__name__", ".+"))
	got := map[string]int{}
	for set.Next() {
		it := set.At().Iterator(nil)
		for it.Next() != 0 {
			got[set.At().Labels().Get("__name__")]++
		}
	}
	if want := map[string]int{"a": 2, "b": 2, "c": 1, "d": 1}; len(got) != len(want) || got["a"] != 2 || got["b"] != 2 || got["c"] != 1 || got["d"] != 1 {
		t.Errorf("stored %v, want %v", got, want)
	}
}
