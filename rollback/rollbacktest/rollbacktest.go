// Package rollbacktest is the acceptance suite of rollback.Trigger: every
// implementation runs Run against itself, and passes.
//
//	func TestTrigger(t *testing.T) {
//		rollbacktest.Run(t, func(t *testing.T) rollbacktest.Harness {
//			… a trigger over a backend that counts the reverts it receives …
//		})
//	}
package rollbacktest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/rollback"
)

// Harness is a trigger under test and its backend.
type Harness struct {
	Trigger rollback.Trigger
	// Name is the Result.Trigger the trigger reports.
	Name string
	// Shadow: the trigger only records (Result.Shadow, never Reverted).
	Shadow bool
	// Prepare, when set, makes the trigger able to revert d (acquire
	// its ownership, create its deploy znode); called before each use
	// of a deploy.
	Prepare func(t *testing.T, d deploy.Deploy)
	// Reverts counts what the backend received for a deploy: the
	// reverts it performed (or, for a shadow trigger, the decisions it
	// recorded). The suite wants at most one per deploy.
	Reverts func(t *testing.T, deployID string) int
	// Break, when set, makes the backend refuse or fail every revert
	// until the returned function restores it.
	Break func(t *testing.T) (restore func())
	// Restart, when set, returns a new trigger over the same durable
	// state (audit log, znodes), as after a restart of the process.
	Restart func(t *testing.T) rollback.Trigger
}

// Deploy returns a deploy for the suite with a unique id.
func Deploy(t *testing.T, n int) deploy.Deploy {
	return deploy.Deploy{
		ID:      fmt.Sprintf("suite-%d-%d", time.Now().UnixNano()%1e9, n),
		Service: "checkout", Version: "v2", PreviousVersion: "v1",
		Time: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC), Commit: "abc123", Author: "ann",
	}
}

// Request returns a revert request for d.
func Request(d deploy.Deploy) rollback.Request {
	return rollback.Request{
		Deploy: d, Reason: "conversion decreased by 12% (p=0.0004 < 0.01)",
		At: d.Time.Add(10 * time.Minute), Instance: "immune-a", RuleFile: "checkout.yaml",
		Evidence: json.RawMessage(`{"kpis":[{"name":"conversion","p":0.0004}]}`),
	}
}

// Run runs the suite; newHarness is called once per subtest.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	t.Helper()
	ctx := func(t *testing.T) context.Context {
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		t.Cleanup(cancel)
		return c
	}
	prepare := func(t *testing.T, h Harness, d deploy.Deploy) {
		if h.Prepare != nil {
			h.Prepare(t, d)
		}
	}
	checkDone := func(t *testing.T, h Harness, res rollback.Result, err error, wantAlready bool) {
		t.Helper()
		if err != nil {
			t.Fatalf("Revert: %v", err)
		}
		if res.Trigger != h.Name {
			t.Errorf("Result.Trigger %q, want %q", res.Trigger, h.Name)
		}
		if h.Shadow {
			if !res.Shadow || res.Reverted {
				t.Errorf("shadow trigger: Shadow %v Reverted %v, want true, false", res.Shadow, res.Reverted)
			}
		} else if !res.Reverted || res.Shadow {
			t.Errorf("Reverted %v Shadow %v, want true, false", res.Reverted, res.Shadow)
		}
		if res.Already != wantAlready {
			t.Errorf("Already %v, want %v (%s)", res.Already, wantAlready, res.Detail)
		}
	}
	wantReverts := func(t *testing.T, h Harness, id string, want int) {
		t.Helper()
		if got := h.Reverts(t, id); got != want {
			t.Errorf("backend saw %d reverts of %s, want %d", got, id, want)
		}
	}

	t.Run("reverts once", func(t *testing.T) {
		h := newHarness(t)
		d := Deploy(t, 1)
		prepare(t, h, d)
		res, err := h.Trigger.Revert(ctx(t), Request(d))
		checkDone(t, h, res, err, false)
		if !h.Shadow && res.Attempts < 1 {
			t.Errorf("Attempts %d, want at least 1", res.Attempts)
		}
		wantReverts(t, h, d.ID, 1)
	})

	t.Run("duplicate decision", func(t *testing.T) {
		h := newHarness(t)
		d := Deploy(t, 2)
		prepare(t, h, d)
		res, err := h.Trigger.Revert(ctx(t), Request(d))
		checkDone(t, h, res, err, false)
		res, err = h.Trigger.Revert(ctx(t), Request(d))
		checkDone(t, h, res, err, true)
		wantReverts(t, h, d.ID, 1)
	})

	t.Run("concurrent duplicates", func(t *testing.T) {
		h := newHarness(t)
		d := Deploy(t, 3)
		prepare(t, h, d)
		const n = 6
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			fresh   int
			results []error
		)
		c := ctx(t)
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := h.Trigger.Revert(c, Request(d))
				mu.Lock()
				defer mu.Unlock()
				results = append(results, err)
				if err == nil && !res.Already {
					fresh++
				}
			}()
		}
		wg.Wait()
		for _, err := range results {
			if err != nil {
				t.Errorf("Revert: %v", err)
			}
		}
		if fresh != 1 {
			t.Errorf("%d of %d concurrent calls say they reverted, want 1 (the others Already)", fresh, n)
		}
		wantReverts(t, h, d.ID, 1)
	})

	t.Run("deploys are independent", func(t *testing.T) {
		h := newHarness(t)
		d1, d2 := Deploy(t, 4), Deploy(t, 5)
		prepare(t, h, d1)
		prepare(t, h, d2)
		for _, d := range []deploy.Deploy{d1, d2} {
			res, err := h.Trigger.Revert(ctx(t), Request(d))
			checkDone(t, h, res, err, false)
		}
		wantReverts(t, h, d1.ID, 1)
		wantReverts(t, h, d2.ID, 1)
	})

	t.Run("canceled context", func(t *testing.T) {
		h := newHarness(t)
		d := Deploy(t, 6)
		prepare(t, h, d)
		c, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := h.Trigger.Revert(c, Request(d))
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Revert with a canceled context: %v, want an error wrapping context.Canceled", err)
		}
		wantReverts(t, h, d.ID, 0)
		res, err := h.Trigger.Revert(ctx(t), Request(d))
		checkDone(t, h, res, err, false)
		wantReverts(t, h, d.ID, 1)
	})

	t.Run("bad request", func(t *testing.T) {
		h := newHarness(t)
		_, err := h.Trigger.Revert(ctx(t), rollback.Request{Reason: "no deploy"})
		if !errors.Is(err, rollback.ErrBadRequest) {
			t.Fatalf("Revert without a deploy id: %v, want ErrBadRequest", err)
		}
	})

	if h := newHarness(t); h.Break != nil {
		t.Run("broken backend", func(t *testing.T) {
			d := Deploy(t, 7)
			prepare(t, h, d)
			restore := h.Break(t)
			_, err := h.Trigger.Revert(ctx(t), Request(d))
			if !errors.Is(err, rollback.ErrRejected) && !errors.Is(err, rollback.ErrUnavailable) && !errors.Is(err, rollback.ErrTimeout) {
				t.Fatalf("Revert on a broken backend: %v, want ErrRejected, ErrUnavailable or ErrTimeout", err)
			}
			wantReverts(t, h, d.ID, 0)
			restore()
			res, err := h.Trigger.Revert(ctx(t), Request(d))
			checkDone(t, h, res, err, false)
			wantReverts(t, h, d.ID, 1)
		})
	}

	if h := newHarness(t); h.Restart != nil {
		t.Run("restart", func(t *testing.T) {
			d := Deploy(t, 8)
			prepare(t, h, d)
			res, err := h.Trigger.Revert(ctx(t), Request(d))
			checkDone(t, h, res, err, false)
			h.Trigger = h.Restart(t)
			res, err = h.Trigger.Revert(ctx(t), Request(d))
			checkDone(t, h, res, err, true)
			wantReverts(t, h, d.ID, 1)
		})
	}
}
