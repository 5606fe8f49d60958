// Package backoff is the retry wait shared by immune's HTTP clients (the
// remote Prometheus source, the webhook trigger, the annotators).
package backoff

import (
	"math/rand/v2"
	"time"
)

// Jittered is the wait before retry number attempt (1 for the first
// retry): first doubled attempt−1 times, at most most, then drawn
// uniformly from its upper half ("equal jitter"), so that clients failing
// together do not retry together.
func Jittered(first, most time.Duration, attempt int) time.Duration {
	d := first
	for i := 1; i < attempt && d < most; i++ {
		d *= 2
	}
	d = min(d, most)
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d/2+1)
}
