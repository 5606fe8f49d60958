package main

import (
	"errors"
	"fmt"
	"math"

	"github.com/immune-project/immune/detector"
)

// refVerdict is a reference detector's decision on one deploy.
type refVerdict struct {
	Fail bool
	// Delay is the number of window samples seen when it failed the
	// deploy; 0 unless Fail.
	Delay int
}

// Kayenta-style judge (NetflixACAJudge's MannWhitneyClassifier with its
// defaults): one look at the end of the window.
const (
	kayentaConfidence = 0.98
	kayentaTolerance  = 0.25
)

// kayenta judges the whole window against the lookback once, at the end of
// the window: Mann-Whitney's two-sided 98% interval for the shift canary −
// baseline and its Hodges-Lehmann estimate HL; the deploy fails when the
// interval's lower end exceeds 0.25·|HL| (the metric is "High"). Equal
// samples pass, as in Kayenta. Its delay is the window's length.
func kayenta(baseline, canary []float64) (refVerdict, error) {
	r, err := detector.MannWhitney(canary, baseline, detector.Options{Alternative: detector.TwoSided, Confidence: kayentaConfidence})
	if errors.Is(err, detector.ErrConstant) {
		return refVerdict{}, nil
	}
	if err != nil {
		return refVerdict{}, fmt.Errorf("kayenta-style: %w", err)
	}
	if r.CILow > kayentaTolerance*math.Abs(r.Estimate) {
		return refVerdict{Fail: true, Delay: len(canary)}, nil
	}
	return refVerdict{}, nil
}

// Threshold-style check, as users write them for Argo Rollouts and Flagger.
const (
	thresholdFactor   = 1.2
	thresholdSamples  = 3
	thresholdBreaches = 3
)

// threshold looks at every step k = 1, 2, … of the window: the mean of the
// last 3 canary samples (of the k seen so far while k < 3; never samples
// from before the deploy) against 1.2 × the baseline's mean. The deploy
// fails at the third consecutive breach, so its delay is at least 3.
func threshold(baseline, canary []float64) refVerdict {
	limit := thresholdFactor * mean(baseline)
	run := 0
	for k := 1; k <= len(canary); k++ {
		if mean(canary[max(0, k-thresholdSamples):k]) > limit {
			run++
			if run == thresholdBreaches {
				return refVerdict{Fail: true, Delay: k}
			}
			continue
		}
		run = 0
	}
	return refVerdict{}
}

func mean(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}
