package detector

import (
	"fmt"
	"math"
)

// checkSample returns an error naming the sample when it is shorter than
// min or holds a non-finite value.
func checkSample(name string, xs []float64, min int) error {
	if len(xs) < min {
		return fmt.Errorf("%w: %s has %d, the test needs at least %d", ErrTooFewSamples, name, len(xs), min)
	}
	for i, x := range xs {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Errorf("%w: %s[%d] is %v", ErrNonFinite, name, i, x)
		}
	}
	return nil
}
