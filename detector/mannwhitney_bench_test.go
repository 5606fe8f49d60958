package detector

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/aclements/go-moremath/stats"
)

// mwBenchSizes are the per-sample sizes: n=60 is past R's exact limit of
// 50, so every size takes the normal approximation with its interval.
var mwBenchSizes = []int{60, 1000, 100000}

// mwBenchData returns n normal values per sample, the canary shifted up by
// a fifth of a standard deviation.
func mwBenchData(n int) (canary, baseline []float64) {
	r := rand.New(rand.NewPCG(17, uint64(n)))
	canary, baseline = make([]float64, n), make([]float64, n)
	for i := range n {
		canary[i] = 100 + 20*r.NormFloat64() + 4
		baseline[i] = 100 + 20*r.NormFloat64()
	}
	return canary, baseline
}

// BenchmarkMannWhitney measures the test with its Hodges-Lehmann estimate
// and interval.
func BenchmarkMannWhitney(b *testing.B) {
	for _, n := range mwBenchSizes {
		canary, baseline := mwBenchData(n)
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			for b.Loop() {
				if _, err := MannWhitney(canary, baseline, Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkMannWhitneyMoremath runs go-moremath's U test, which gives a
// p-value only (no estimate, no interval), on the same data, for a ratio.
func BenchmarkMannWhitneyMoremath(b *testing.B) {
	for _, n := range mwBenchSizes {
		canary, baseline := mwBenchData(n)
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			for b.Loop() {
				if _, err := stats.MannWhitneyUTest(canary, baseline, stats.LocationDiffers); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkMannWhitneyExact measures the exact test at the largest size
// R allows it, 49 a sample (the distribution table is cached after the
// first call).
func BenchmarkMannWhitneyExact(b *testing.B) {
	canary, baseline := mwBenchData(49)
	for b.Loop() {
		if _, err := MannWhitney(canary, baseline, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
