package main

import (
	"testing"
	"time"
)

// TestCountReverts: reverts are told apart by the deploy being bad, not
// by whether its latency could be measured.
func TestCountReverts(t *testing.T) {
	ids := []string{"d0", "d1", "d2", "d3"}
	bad := []bool{true, true, false, false}
	now := time.Now()
	// d0 bad and reverted, d1 bad and missed, d2 harmless and reverted.
	at := map[string]time.Time{"d0": now, "d2": now}
	if ofBad, ofHarmless := countReverts(ids, bad, at); ofBad != 1 || ofHarmless != 1 {
		t.Fatalf("countReverts = %d bad, %d harmless; want 1 and 1", ofBad, ofHarmless)
	}
}
