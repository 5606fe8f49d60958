package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/immune-project/immune/detector"
)

const compareUsage = `Usage: immune compare [flags] BASELINE CANARY

Compares two samples with a two-sample test, the canary against the
baseline, and prints both samples side by side with the difference, its
interval and the p-value. The numbers are R's for the same call with the
canary as x: wilcox.test(canary, baseline, conf.int=TRUE), t.test,
ks.test, prop.test.

Files hold one number per line; blank lines and lines starting with # are
skipped. For --test proportion, lines of "events trials", summed.

Exit status: 0 when the test ran, 2 on bad flags or bad input.

Flags:
`

func runCompare(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("compare", compareUsage, stderr)
	test := fs.String("test", "mann-whitney", "the test: mann-whitney, welch, ks or proportion")
	alt := fs.String("alternative", "two-sided", "two-sided, greater (canary greater than baseline) or less")
	conf := fs.Float64("confidence", 0.95, "confidence level of the interval, in (0, 1)")
	format := fs.String("format", "text", "output format: text or json")
	pos, code, done := parseFlags(fs, args)
	if done {
		return code
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "immune compare: "+format+"\n", a...)
		return exitUsage
	}
	if len(pos) != 2 {
		return usageErr("want two files, BASELINE and CANARY, got %d (see immune compare -h)", len(pos))
	}
	kind, err := detector.ParseTestKind(*test)
	if err != nil || kind == detector.Auto {
		return usageErr("--test %q: must be one of mann-whitney, welch, ks, proportion", *test)
	}
	alternative, err := detector.ParseAlternative(*alt)
	if err != nil {
		return usageErr("--alternative: %v", err)
	}
	if !(*conf > 0 && *conf < 1) {
		return usageErr("--confidence %v: must be in (0, 1)", *conf)
	}
	if *format != "text" && *format != "json" {
		return usageErr("--format %q: must be text or json", *format)
	}
	opt := detector.Options{Alternative: alternative, Confidence: *conf}

	var (
		res              detector.Result
		baseline, canary []float64
		bc, cc           detector.Counts
	)
	if kind == detector.ProportionTest {
		if bc, err = readCounts(pos[0]); err == nil {
			cc, err = readCounts(pos[1])
		}
		if err == nil {
			res, err = detector.Proportion(cc, bc, opt)
		}
	} else {
		if baseline, err = readSample(pos[0]); err == nil {
			canary, err = readSample(pos[1])
		}
		if err == nil {
			switch kind {
			case detector.MannWhitneyTest:
				res, err = detector.MannWhitney(canary, baseline, opt)
			case detector.WelchTest:
				res, err = detector.Welch(canary, baseline, opt)
			case detector.KSTest:
				res, err = detector.KS(canary, baseline, opt)
			}
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "immune compare: %v\n", err)
		return exitUsage
	}
	if *format == "json" {
		return printCompareJSON(stdout, stderr, res)
	}
	printCompareText(stdout, res, pos, baseline, canary, bc, cc)
	return exitOK
}

func readSample(path string) ([]float64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return detector.ParseSample(path, data)
}

func readCounts(path string) (detector.Counts, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return detector.Counts{}, err
	}
	return detector.ParseCounts(path, data)
}

// jsonNumber is a float64 that is written as null when it is NaN or
// infinite (the open end of a one-sided interval, or no estimate).
type jsonNumber float64

func (x jsonNumber) MarshalJSON() ([]byte, error) {
	f := float64(x)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, f, 'g', -1, 64), nil
}

type compareJSON struct {
	Test          string     `json:"test"`
	Method        string     `json:"method"`
	Alternative   string     `json:"alternative"`
	Confidence    float64    `json:"confidence"`
	NBaseline     float64    `json:"n_baseline"`
	NCanary       float64    `json:"n_canary"`
	StatisticName string     `json:"statistic_name"`
	Statistic     jsonNumber `json:"statistic"`
	DF            jsonNumber `json:"df"`
	PValue        jsonNumber `json:"p_value"`
	EstimateName  string     `json:"estimate_name,omitempty"`
	Estimate      jsonNumber `json:"estimate"`
	CILow         jsonNumber `json:"ci_low"`
	CIHigh        jsonNumber `json:"ci_high"`
	Exact         bool       `json:"exact"`
}

func printCompareJSON(stdout, stderr io.Writer, r detector.Result) int {
	out := compareJSON{
		Test: r.Test, Method: r.Method, Alternative: r.Alternative.String(), Confidence: r.Confidence,
		NBaseline: r.NBaseline, NCanary: r.NCanary,
		StatisticName: r.StatisticName, Statistic: jsonNumber(r.Statistic), DF: jsonNumber(r.DF),
		PValue: jsonNumber(r.PValue), EstimateName: r.EstimateName, Estimate: jsonNumber(r.Estimate),
		CILow: jsonNumber(r.CILow), CIHigh: jsonNumber(r.CIHigh), Exact: r.Exact,
	}
	b, err := json.Marshal(out)
	if err != nil {
		fmt.Fprintf(stderr, "immune compare: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(stdout, "%s\n", b)
	return exitOK
}

func printCompareText(w io.Writer, r detector.Result, files []string, baseline, canary []float64, bc, cc detector.Counts) {
	fmt.Fprintf(w, "%s (%s), alternative %s\n\n", r.Method, r.Test, describeAlternative(r))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	if r.Test == "proportion" {
		fmt.Fprintln(tw, "\tevents\ttrials\tproportion\t")
		for i, c := range []detector.Counts{bc, cc} {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", [2]string{"baseline", "canary"}[i], num(c.Events), num(c.Trials), num(c.Events/c.Trials))
		}
	} else {
		fmt.Fprintln(tw, "\tn\tmin\tmedian\tmean\tmax\tsd\t")
		for i, xs := range [][]float64{baseline, canary} {
			s := summarize(xs)
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t\n", [2]string{"baseline", "canary"}[i], len(xs),
				num(s.min), num(s.median), num(s.mean), num(s.max), num(s.sd))
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "  (baseline %s, canary %s)\n\n", files[0], files[1])

	if r.HasEstimate() {
		fmt.Fprintf(w, "%s (canary − baseline): %s", r.EstimateName, num(r.Estimate))
		fmt.Fprintf(w, ", %s%% CI %s to %s\n", num(100*r.Confidence), bound(r.CILow), bound(r.CIHigh))
		lo, hi := r.CILow, r.CIHigh
		if r.Test == "proportion" {
			// R closes a one-sided interval of a difference of
			// proportions at ±1; relative to the baseline that bound
			// says nothing, so it is shown open.
			switch r.Alternative {
			case detector.Greater:
				hi = math.Inf(1)
			case detector.Less:
				lo = math.Inf(-1)
			}
		}
		if ref := reference(r, baseline, bc); ref != 0 && !math.IsNaN(ref) {
			fmt.Fprintf(w, "relative to the baseline %s: %s, %s%% CI %s to %s\n", referenceName(r), pct(r.Estimate/math.Abs(ref)), num(100*r.Confidence),
				pctBound(lo/math.Abs(ref)), pctBound(hi/math.Abs(ref)))
		}
	}
	stat := fmt.Sprintf("%s = %s", r.StatisticName, num(r.Statistic))
	if !math.IsNaN(r.DF) {
		stat += fmt.Sprintf(", df = %s", num(r.DF))
	}
	fmt.Fprintf(w, "%s, p-value = %s\n", stat, pvalue(r.PValue))
}

func describeAlternative(r detector.Result) string {
	switch r.Alternative {
	case detector.Greater:
		if r.Test == "ks" {
			return "greater (the canary's CDF lies above the baseline's)"
		}
		return "greater (canary greater than baseline)"
	case detector.Less:
		if r.Test == "ks" {
			return "less (the canary's CDF lies below the baseline's)"
		}
		return "less (canary less than baseline)"
	}
	return "two-sided"
}

// reference is the baseline level the estimate is relative to.
func reference(r detector.Result, baseline []float64, bc detector.Counts) float64 {
	switch r.Test {
	case "proportion":
		return bc.Events / bc.Trials
	case "welch":
		return summarize(baseline).mean
	}
	return summarize(baseline).median
}

func referenceName(r detector.Result) string {
	switch r.Test {
	case "proportion":
		return "proportion"
	case "welch":
		return "mean"
	}
	return "median"
}

type stats struct{ min, max, median, mean, sd float64 }

func summarize(xs []float64) stats {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	st := stats{min: s[0], max: s[n-1]}
	if n%2 == 1 {
		st.median = s[n/2]
	} else {
		st.median = (s[n/2-1] + s[n/2]) / 2
	}
	for _, x := range s {
		st.mean += x
	}
	st.mean /= float64(n)
	if n > 1 {
		ss := 0.0
		for _, x := range s {
			ss += (x - st.mean) * (x - st.mean)
		}
		st.sd = math.Sqrt(ss / float64(n-1))
	} else {
		st.sd = math.NaN()
	}
	return st
}

func num(x float64) string {
	if math.IsNaN(x) {
		return "-"
	}
	return strconv.FormatFloat(x, 'g', 6, 64)
}

func bound(x float64) string {
	switch {
	case math.IsInf(x, 1):
		return "Inf"
	case math.IsInf(x, -1):
		return "-Inf"
	}
	return num(x)
}

func pct(x float64) string {
	return strconv.FormatFloat(100*x, 'g', 3, 64) + "%"
}

func pctBound(x float64) string {
	if math.IsInf(x, 0) {
		return bound(x)
	}
	return pct(x)
}

func pvalue(p float64) string {
	if p < 2.2e-16 {
		return "< 2.2e-16"
	}
	return strings.TrimSpace(strconv.FormatFloat(p, 'g', 4, 64))
}
