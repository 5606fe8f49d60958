package scrape

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// handlerTransport serves requests with a handler in memory: inside a
// synctest bubble, where a network connection would keep the fake clock
// from advancing. The real-network paths have their own tests.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

// TestLoopSchedule: a target is scraped at its fixed phase of the
// interval, then every interval exactly, each sample stamped with the
// time of its scrape; removing the target ends its series.
func TestLoopSchedule(t *testing.T) {
	store := openStore(t) // outside the bubble: its goroutines are not part of the test's time
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var scrapes []time.Time
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			scrapes = append(scrapes, time.Now())
			n := len(scrapes)
			mu.Unlock()
			fmt.Fprintf(w, "x_total %d\n", n)
		})
		const interval = 15 * time.Second
		mgr, err := NewManager(Embedded{store}, Options{Interval: interval, Client: &http.Client{Transport: handlerTransport{h}}})
		if err != nil {
			t.Fatal(err)
		}
		target := Target{Address: "10.0.0.1:8080", Labels: map[string]string{"instance": "a"}}
		mgr.SetTargets(SourceStatic, []Target{target})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		start := time.Now()
		go func() { done <- mgr.Run(ctx) }()
		time.Sleep(4*interval - time.Millisecond)
		synctest.Wait()

		first := start.Add(offset(target.key(), interval, start))
		mu.Lock()
		got := append([]time.Time(nil), scrapes...)
		mu.Unlock()
		if len(got) < 3 || len(got) > 4 {
			t.Fatalf("%d scrapes in 4 intervals: %v", len(got), got)
		}
		for i, at := range got {
			if want := first.Add(time.Duration(i) * interval); !at.Equal(want) {
				t.Errorf("scrape %d at %v, want %v", i, at.Sub(start), want.Sub(start))
			}
		}
		last := got[len(got)-1]
		wantLines(t, "stamped at the scrape", series(t, store, `timestamp(x_total)`, last),
			fmt.Sprintf(`{instance="a"} %g`, float64(last.UnixMilli())/1000))
		wantLines(t, "value", series(t, store, `x_total`, last), fmt.Sprintf(`x_total{instance="a"} %d`, len(got)))

		mgr.SetTargets(SourceStatic, nil)
		synctest.Wait()
		wantLines(t, "removed", series(t, store, `{instance="a"}`, time.Now()))
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}
