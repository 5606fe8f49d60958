package detector

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// sentence explains a KPI's verdict in one line, numbers first:
//
//	conversion fell 4.1% (95% CI 2.0% to 6.3%) from 0.0312 to 0.0299, p=0.0004 < 0.0025 (Holm, 4 KPIs)
func sentence(kv KPIVerdict, correction string, n int) string {
	var b strings.Builder
	b.WriteString(kv.Name)
	if kv.Outcome == Inconclusive {
		b.WriteString(": inconclusive: ")
		b.WriteString(kv.Reason)
		return b.String()
	}
	what := ""
	if kv.Test == KSTest {
		what = " median"
	}
	b.WriteString(what)
	switch {
	case kv.Effect > 0:
		b.WriteString(" rose ")
	case kv.Effect < 0:
		b.WriteString(" fell ")
	default:
		b.WriteString(" did not change")
	}
	if kv.Effect != 0 && !math.IsNaN(kv.Effect) {
		sign := 1.0
		if kv.Effect < 0 {
			sign = -1 // a fall: sizes and bounds as positive magnitudes of the fall
		}
		lo, hi := sign*kv.EffectLow, sign*kv.EffectHigh
		size := sign * kv.Effect
		format := func(x float64) string {
			if kv.Relative {
				return formatPercent(100 * x / math.Abs(kv.BaselineLevel))
			}
			return formatNumber(x)
		}
		if !kv.Relative {
			b.WriteString("by ")
		}
		b.WriteString(format(size))
		// An exact interval from very few samples reaches only a low
		// confidence (R reports it as achieved); below one half it says
		// nothing and is left out.
		if !math.IsNaN(lo) && !math.IsNaN(hi) && kv.Confidence >= 0.5 {
			if lo > hi {
				lo, hi = hi, lo
			}
			fmt.Fprintf(&b, " (%s%% CI %s to %s)", formatNumber(100*kv.Confidence), formatBound(lo, format), formatBound(hi, format))
		}
	}
	fmt.Fprintf(&b, " from %s to %s", formatNumber(kv.BaselineLevel), formatNumber(kv.CanaryLevel))
	p, t := FormatPair(kv.PValue, kv.Threshold)
	cmp := ">"
	if kv.Significant {
		cmp = "<"
		if kv.PValue == kv.Threshold {
			cmp = "="
		}
	}
	fmt.Fprintf(&b, ", p=%s %s %s", p, cmp, t)
	var how []string
	switch {
	case kv.Placebos > 0 && kv.AcrossInstances && !math.IsNaN(kv.Offset):
		how = append(how, fmt.Sprintf("against %d placebo windows of the canary's instances' own past against the other instances, less their offset of %+.4g from them before the deploy",
			kv.Placebos, kv.Offset))
	case kv.Placebos > 0 && kv.AcrossInstances:
		how = append(how, fmt.Sprintf("against %d A/A placebos among the instances before the deploy", kv.Placebos))
	case kv.Placebos > 0 && kv.InPhase:
		how = append(how, fmt.Sprintf("against %d placebo deploys at the same time of day", kv.Placebos))
	case kv.Placebos > 0:
		how = append(how, fmt.Sprintf("against %d placebo deploys", kv.Placebos))
	case kv.Looks > 1:
		how = append(how, fmt.Sprintf("×%d looks", kv.Looks))
	}
	if kv.Placebos > 0 && kv.Looks > 1 {
		// An events/trials KPI: never below its test's p times the looks.
		how[0] += fmt.Sprintf(", at least the test's ×%d looks", kv.Looks)
	}
	if correction != "" {
		how = append(how, fmt.Sprintf("%s, %d KPIs", correction, n))
	}
	if len(how) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(how, "; "))
	}
	switch {
	case kv.Outcome == Fail && kv.Critical:
		b.WriteString(": critical")
	case kv.Outcome == Pass && kv.Reason != "":
		b.WriteString(": ")
		b.WriteString(kv.Reason)
		if !math.IsNaN(kv.MDE) {
			fmt.Fprintf(&b, "; it could have detected a change of %s", formatSize(&kv, kv.MDE))
		}
	}
	return b.String()
}

func formatBound(x float64, format func(float64) string) string {
	if math.IsInf(x, 1) {
		return "∞"
	}
	if math.IsInf(x, -1) {
		return "-∞"
	}
	return format(x)
}

// formatPercent formats x, already in percent, with the digits it needs.
func formatPercent(x float64) string {
	a := math.Abs(x)
	switch {
	case a == 0:
		return "0%"
	case a >= 10:
		return strconv.FormatFloat(x, 'f', 0, 64) + "%"
	case a >= 0.1:
		return strconv.FormatFloat(x, 'f', 1, 64) + "%"
	default:
		return strconv.FormatFloat(x, 'g', 2, 64) + "%"
	}
}

// formatNumber formats x with four significant digits.
func formatNumber(x float64) string {
	if math.IsNaN(x) {
		return "NaN"
	}
	return strconv.FormatFloat(x, 'g', 4, 64)
}

// formatP formats a p-value or threshold with d significant digits.
func formatP(p float64, d int) string {
	if p != 0 && p < 1e-4 {
		return strconv.FormatFloat(p, 'e', d-1, 64)
	}
	return strconv.FormatFloat(p, 'g', d, 64)
}

// FormatPair formats a p-value with two significant digits and its
// threshold with three, or both with more where that would make different
// numbers read the same.
func FormatPair(p, t float64) (string, string) {
	for d := 2; d < 17; d++ {
		ps, ts := formatP(p, d), formatP(t, d+1)
		if ps != ts || p == t {
			return ps, ts
		}
	}
	return formatP(p, 17), formatP(t, 17)
}
