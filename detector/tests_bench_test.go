package detector

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// testsBenchSizes are the per-sample sizes of the Welch and KS benchmarks:
// a short canary window, a typical one and a very long one.
var testsBenchSizes = []int{60, 1000, 100000}

// testsBenchData returns a canary and a baseline of n lognormal-ish
// latencies each, the canary slightly slower.
func testsBenchData(n int) (canary, baseline []float64) {
	r := rand.New(rand.NewPCG(1, uint64(n)))
	canary, baseline = make([]float64, n), make([]float64, n)
	for i := range n {
		canary[i] = 100 + 20*r.NormFloat64() + 5
		baseline[i] = 100 + 20*r.NormFloat64()
	}
	return canary, baseline
}

func BenchmarkWelch(b *testing.B) {
	for _, n := range testsBenchSizes {
		canary, baseline := testsBenchData(n)
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			for b.Loop() {
				if _, err := Welch(canary, baseline, Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkKS: n=60 is exact (60·60 < 10000), the others asymptotic.
func BenchmarkKS(b *testing.B) {
	for _, n := range testsBenchSizes {
		canary, baseline := testsBenchData(n)
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			for b.Loop() {
				if _, err := KS(canary, baseline, Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkProportion(b *testing.B) {
	canary, baseline := Counts{Events: 1500, Trials: 100000}, Counts{Events: 1200, Trials: 100000}
	for b.Loop() {
		if _, err := Proportion(canary, baseline, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
