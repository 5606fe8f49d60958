package queue_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/deploy/internal/queue"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestOrder: events pushed before and during Drain arrive in order,
// none twice; an event not taken when ctx ends stays queued.
func TestOrder(t *testing.T) {
	q := queue.New()
	q.Push(deploy.Event{State: "0"}, deploy.Event{State: "1"})
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan deploy.Event)
	done := make(chan error, 1)
	sent := 0
	go func() { done <- q.Drain(ctx, out, func(deploy.Event) { sent++ }) }()
	for i := range 5 {
		if i == 2 {
			q.Push(deploy.Event{State: "2"}, deploy.Event{State: "3"})
			q.Push(deploy.Event{State: "4"})
		}
		select {
		case ev := <-out:
			if want := string(rune('0' + i)); ev.State != want {
				t.Fatalf("event %d: %q, want %q", i, ev.State, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("event %d did not come", i)
		}
	}
	q.Push(deploy.Event{State: "5"})
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Drain: %v", err)
	}
	if sent != 5 {
		t.Errorf("sent called %d times, want 5", sent)
	}
	// The event nobody took is still there for the next Drain, alone.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	buf := make(chan deploy.Event, 2)
	_ = q.Drain(ctx2, buf, nil)
	if n := len(buf); n != 1 {
		t.Fatalf("%d events left, want 1", n)
	}
	if ev := <-buf; ev.State != "5" {
		t.Errorf("left event %q", ev.State)
	}
}
