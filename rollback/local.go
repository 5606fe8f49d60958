package rollback

import (
	"context"
	"fmt"
	"sync"
)

// Local is an Ownership within one process: every deploy is owned at
// most once at a time; leases are never lost. It is for a program that
// embeds the analysis, and for tests: immune run without ZooKeeper uses
// no Ownership at all (a single instance analyses every deploy).
type Local struct {
	mu     sync.Mutex
	leases map[string]*localLease
}

var _ Ownership = (*Local)(nil)

type localLease struct {
	o        *Local
	id       string
	released chan struct{}
	once     sync.Once
}

var _ Lease = (*localLease)(nil)

// Acquire takes the deploy, or returns ErrOwned when a lease on it is held.
func (o *Local) Acquire(ctx context.Context, deployID string) (Lease, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("acquire deploy %s: %w", deployID, err)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, held := o.leases[deployID]; held {
		return nil, fmt.Errorf("acquire deploy %s: %w (this process)", deployID, ErrOwned)
	}
	if o.leases == nil {
		o.leases = map[string]*localLease{}
	}
	l := &localLease{o: o, id: deployID, released: make(chan struct{})}
	o.leases[deployID] = l
	return l, nil
}

// Wait takes the deploy as soon as the lease on it, if any, is released.
func (o *Local) Wait(ctx context.Context, deployID string) (Lease, error) {
	for {
		o.mu.Lock()
		held := o.leases[deployID]
		o.mu.Unlock()
		if held == nil {
			l, err := o.Acquire(ctx, deployID)
			if err == nil {
				return l, nil
			}
			if ctx.Err() != nil {
				return nil, err
			}
			continue
		}
		select {
		case <-held.released:
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for deploy %s: %w", deployID, ctx.Err())
		}
	}
}

func (l *localLease) DeployID() string { return l.id }

// Lost is never closed: a process does not lose its own leases.
func (l *localLease) Lost() <-chan struct{} { return nil }

func (l *localLease) Release(context.Context) error {
	l.once.Do(func() {
		l.o.mu.Lock()
		if l.o.leases[l.id] == l {
			delete(l.o.leases, l.id)
		}
		l.o.mu.Unlock()
		close(l.released)
	})
	return nil
}
