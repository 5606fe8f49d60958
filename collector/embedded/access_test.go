package embedded_test

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"

	"github.com/immune-project/immune/collector"
	"github.com/immune-project/immune/collector/embedded"
)

func TestUpdate(t *testing.T) {
	s := open(t, embedded.Options{})
	ctx := context.Background()
	ls := labels.FromStrings("__name__", "m", "a", "1")
	at := t0.UnixMilli()
	err := s.Update(ctx, func(app storage.AppenderV2) error {
		_, err := app.Append(0, ls, 0, at, 1, nil, nil, storage.AOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// An error of fn rolls back everything it appended.
	boom := errors.New("boom")
	err = s.Update(ctx, func(app storage.AppenderV2) error {
		if _, err := app.Append(0, ls, 0, at+1000, 2, nil, nil, storage.AOptions{}); err != nil {
			return err
		}
		if _, err := app.Append(0, labels.FromStrings("__name__", "other"), 0, at, 3, nil, nil, storage.AOptions{}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("got %v, want boom", err)
	}
	m, _, err := s.QueryRange(ctx, `{__name__=~".+"}`, t0, t0.Add(2e9), 1e9)
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 1 || m[0].Samples[len(m[0].Samples)-1].V != 1 {
		t.Errorf("got %v, want m at 1 only", m)
	}
	// A stored time with another value: the TSDB's sentinel comes through.
	err = s.Update(ctx, func(app storage.AppenderV2) error {
		_, err := app.Append(0, ls, 0, at, 5, nil, nil, storage.AOptions{})
		return err
	})
	if !errors.Is(err, storage.ErrDuplicateSampleForTimestamp) {
		t.Errorf("got %v, want a duplicate sample error", err)
	}
}

func TestViewAndUpdateAfterClose(t *testing.T) {
	s, err := embedded.Open(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(context.Background(), []collector.Series{gauge("g", t0, 3, 1e9, func(i int) float64 { return float64(i) })}); err != nil {
		t.Fatal(err)
	}
	err = s.View(context.Background(), func(e promql.QueryEngine, q storage.Queryable) error {
		qry, err := e.NewInstantQuery(context.Background(), q, nil, "g", t0.Add(2e9))
		if err != nil {
			return err
		}
		defer qry.Close()
		res := qry.Exec(context.Background())
		if res.Err != nil {
			return res.Err
		}
		if v := res.Value.(promql.Vector); len(v) != 1 || v[0].F != 2 {
			t.Errorf("got %v", v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.View(context.Background(), func(promql.QueryEngine, storage.Queryable) error { return nil }); !errors.Is(err, collector.ErrClosed) {
		t.Errorf("View after Close: %v", err)
	}
	if err := s.Update(context.Background(), func(storage.AppenderV2) error { return nil }); !errors.Is(err, collector.ErrClosed) {
		t.Errorf("Update after Close: %v", err)
	}
}
