package rollback

import (
	"context"
	"fmt"
	"sync"
)

// Dedup makes a trigger idempotent per deploy id within the process: at
// most one call per deploy runs at a time, and once a call succeeded,
// later ones return its result with Already set, without running. Once
// adds the audit log to survive restarts.
type Dedup struct {
	mu    sync.Mutex
	locks map[string]chan struct{}
	done  map[string]Result
}

// Do runs revert for deploy id unless a call for it already succeeded
// (Reverted or Shadow). It waits for a concurrent call for the same id,
// or until ctx ends.
func (d *Dedup) Do(ctx context.Context, id string, revert func() (Result, error)) (Result, error) {
	unlock, err := d.Lock(ctx, id)
	if err != nil {
		return Result{ZKVersion: -1}, err
	}
	defer unlock()
	d.mu.Lock()
	prev, ok := d.done[id]
	d.mu.Unlock()
	if ok {
		prev.Already, prev.Attempts, prev.Output = true, 0, ""
		prev.Detail = "already requested by an earlier call"
		return prev, nil
	}
	res, err := revert()
	if err == nil && (res.Reverted || res.Shadow) {
		d.mu.Lock()
		if d.done == nil {
			d.done = map[string]Result{}
		}
		d.done[id] = res
		d.mu.Unlock()
	}
	return res, err
}

// Lock takes the per-deploy lock, or gives up when ctx ends.
func (d *Dedup) Lock(ctx context.Context, id string) (func(), error) {
	for {
		d.mu.Lock()
		if d.locks == nil {
			d.locks = map[string]chan struct{}{}
		}
		held, busy := d.locks[id]
		if !busy {
			ch := make(chan struct{})
			d.locks[id] = ch
			d.mu.Unlock()
			return func() {
				d.mu.Lock()
				delete(d.locks, id)
				d.mu.Unlock()
				close(ch)
			}, nil
		}
		d.mu.Unlock()
		select {
		case <-held:
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for a concurrent revert of deploy %s: %w", id, ctx.Err())
		}
	}
}
