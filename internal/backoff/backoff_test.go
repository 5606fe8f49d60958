package backoff

import (
	"testing"
	"time"
)

func TestJittered(t *testing.T) {
	for _, tt := range []struct {
		attempt int
		lo, hi  time.Duration
	}{
		{1, 250 * time.Millisecond, 500 * time.Millisecond},
		{2, 500 * time.Millisecond, time.Second},
		{3, time.Second, 2 * time.Second},
		{10, 2 * time.Second, 4 * time.Second}, // capped at max
	} {
		for range 200 {
			if d := Jittered(500*time.Millisecond, 4*time.Second, tt.attempt); d < tt.lo || d > tt.hi {
				t.Fatalf("attempt %d: %v outside [%v, %v]", tt.attempt, d, tt.lo, tt.hi)
			}
		}
	}
	if d := Jittered(0, 0, 3); d != 0 {
		t.Errorf("no backoff: %v", d)
	}
}
