// Package queue hands events from HTTP handlers to a source's Run: a
// handler never blocks on a slow consumer, and nothing accepted is
// dropped.
package queue

import (
	"context"
	"sync"

	"github.com/immune-project/immune/deploy"
)

// Queue is an unbounded FIFO of events. Its zero value is not usable:
// call New.
type Queue struct {
	mu     sync.Mutex
	items  []deploy.Event
	notify chan struct{}
}

// New returns an empty queue.
func New() *Queue { return &Queue{notify: make(chan struct{}, 1)} }

// Push appends events.
func (q *Queue) Push(evs ...deploy.Event) {
	if len(evs) == 0 {
		return
	}
	q.mu.Lock()
	q.items = append(q.items, evs...)
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

// Drain sends the queued events to out, in order, until ctx ends; it
// returns ctx.Err(). sent, when not nil, is called after each event.
func (q *Queue) Drain(ctx context.Context, out chan<- deploy.Event, sent func(deploy.Event)) error {
	for {
		q.mu.Lock()
		var ev deploy.Event
		have := len(q.items) > 0
		if have {
			ev = q.items[0]
		}
		q.mu.Unlock()
		if !have {
			select {
			case <-q.notify:
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		select {
		case out <- ev:
		case <-ctx.Done():
			return ctx.Err()
		}
		q.mu.Lock()
		q.items[0] = deploy.Event{}
		q.items = q.items[1:]
		q.mu.Unlock()
		if sent != nil {
			sent(ev)
		}
	}
}
