package detector

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/stat/distuv"
)

// Counts are the events out of trials of a proportion KPI: errors out of
// requests, conversions out of sessions. They need not be integers.
type Counts struct{ Events, Trials float64 }

// Proportion tests the canary's proportion of events against the
// baseline's, as R's prop.test(c(canary.Events, baseline.Events),
// c(canary.Trials, baseline.Trials), alternative, conf.level = Confidence)
// with correct = TRUE: Pearson's chi-squared test of the 2×2 table with
// Yates' continuity correction (capped, as R does, so that it never
// exceeds the difference itself), the estimate is the difference in
// proportions canary − baseline with its Wald interval, corrected too.
//
// Counts that are negative, not finite, with more events than trials or
// no trials return an error wrapping ErrInvalidCounts. When neither
// sample has an event, or every trial of both is one, the statistic is
// undefined (R returns NaN) and Proportion returns an error wrapping
// ErrConstant.
func Proportion(canary, baseline Counts, opt Options) (Result, error) {
	conf, err := opt.confidence()
	if err != nil {
		return Result{}, fmt.Errorf("proportion: %w", err)
	}
	if opt.Alternative != TwoSided && opt.Alternative != Greater && opt.Alternative != Less {
		return Result{}, fmt.Errorf("proportion: %w: alternative %v", ErrInvalidOption, opt.Alternative)
	}
	if err := checkProportionCounts("canary", canary); err != nil {
		return Result{}, fmt.Errorf("proportion: %w", err)
	}
	if err := checkProportionCounts("baseline", baseline); err != nil {
		return Result{}, fmt.Errorf("proportion: %w", err)
	}

	// The same operations, in the same order, as R's prop.test with
	// x = c(xc, xb) and n = c(nc, nb).
	xc, nc := canary.Events, canary.Trials
	xb, nb := baseline.Events, baseline.Trials
	pc, pb := xc/nc, xb/nb
	delta := pc - pb
	sumInv := 1/nc + 1/nb
	yates := math.Min(0.5, math.Abs(delta)/sumInv)

	var z float64
	if opt.Alternative == TwoSided {
		z = distuv.UnitNormal.Quantile((1 + conf) / 2)
	} else {
		z = distuv.UnitNormal.Quantile(conf)
	}
	width := z*math.Sqrt(pc*(1-pc)/nc+pb*(1-pb)/nb) + yates*sumInv
	lo, hi := math.Max(delta-width, -1), math.Min(delta+width, 1)
	switch opt.Alternative {
	case Greater:
		hi = 1
	case Less:
		lo = -1
	}

	p := (xc + xb) / (nc + nb)
	if math.IsInf(nc+nb, 0) {
		p = (xc/2 + xb/2) / (nc/2 + nb/2)
	}
	// The table's cells row by row, as R's cbind(x, n - x) and
	// cbind(n * p, n * (1 - p)), in R's (column-major) order.
	observed := [4]float64{xc, xb, nc - xc, nb - xb}
	expected := [4]float64{nc * p, nb * p, nc * (1 - p), nb * (1 - p)}
	stat := 0.0
	for i, o := range observed {
		e := expected[i]
		if !(e > 0) {
			return Result{}, fmt.Errorf("proportion: %w: %v events in %v trials in all",
				ErrConstant, xc+xb, nc+nb)
		}
		// R: (|x − E| − YATES)²/E; divided first so that it cannot
		// overflow for counts beyond 1e154.
		d := math.Abs(o-e) - yates
		stat += d / e * d
	}

	// R: z <- sign(DELTA) * sqrt(STATISTIC).
	z = math.Sqrt(stat)
	switch {
	case delta < 0:
		z = -z
	case delta == 0:
		z = 0
	}
	var pval float64
	switch opt.Alternative {
	case TwoSided:
		pval = distuv.ChiSquared{K: 1}.Survival(stat)
	case Greater:
		pval = distuv.UnitNormal.Survival(z)
	case Less:
		pval = distuv.UnitNormal.CDF(z)
	}

	method := "2-sample test for equality of proportions with continuity correction"
	if yates == 0 {
		method = "2-sample test for equality of proportions without continuity correction"
	}
	return Result{
		Test:          "proportion",
		Method:        method,
		Alternative:   opt.Alternative,
		Confidence:    conf,
		StatisticName: "X-squared",
		Statistic:     stat,
		DF:            1,
		PValue:        pval,
		EstimateName:  "difference in proportions",
		Estimate:      delta,
		CILow:         lo,
		CIHigh:        hi,
		NCanary:       nc,
		NBaseline:     nb,
	}, nil
}

// checkProportionCounts returns an error naming the sample when its counts do not
// form a proportion.
func checkProportionCounts(name string, c Counts) error {
	switch {
	case math.IsNaN(c.Events) || math.IsInf(c.Events, 0) || math.IsNaN(c.Trials) || math.IsInf(c.Trials, 0):
		return fmt.Errorf("%w: %s has %v events in %v trials, not finite", ErrInvalidCounts, name, c.Events, c.Trials)
	case c.Events < 0 || c.Trials < 0:
		return fmt.Errorf("%w: %s has %v events in %v trials, negative", ErrInvalidCounts, name, c.Events, c.Trials)
	case c.Trials == 0:
		return fmt.Errorf("%w: %s has no trials", ErrInvalidCounts, name)
	case math.IsInf(1/c.Trials, 0):
		return fmt.Errorf("%w: %s has %v trials, too few", ErrInvalidCounts, name, c.Trials)
	case c.Events > c.Trials:
		return fmt.Errorf("%w: %s has %v events in %v trials, more events than trials", ErrInvalidCounts, name, c.Events, c.Trials)
	}
	return nil
}
