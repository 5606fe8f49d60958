package detector

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"
)

// rrefCase is one case of an R reference fixture written by
// testdata/{welch,ks,proportion}.R: two samples (or, for proportion,
// x = {events, trials} of the canary and y of the baseline) and what R
// returned for each alternative and confidence level, or R's error.
type rrefCase struct {
	line   int
	name   string
	method string
	x, y   []float64
	err    string
	wants  []rrefWant
}

type rrefWant struct {
	line                 int
	alt                  Alternative
	conf                 float64
	statistic, df, p     float64
	estimate, ciLo, ciHi float64
	exact                bool
}

// rrefLoad parses an R reference fixture (the format is described at the
// top of each testdata/*.R script).
func rrefLoad(t *testing.T, file string) []rrefCase {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cases []rrefCase
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 4<<20)
	line := 0
	fail := func(format string, a ...any) {
		t.Helper()
		t.Fatalf("%s:%d: %s", file, line, fmt.Sprintf(format, a...))
	}
	nums := func(fields []string) []float64 {
		t.Helper()
		vs := make([]float64, len(fields))
		for i, s := range fields {
			v, err := strconv.ParseFloat(s, 64)
			if err != nil {
				fail("%v", err)
			}
			vs[i] = v
		}
		return vs
	}
	for sc.Scan() {
		line++
		text := sc.Text()
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		key, rest, _ := strings.Cut(text, " ")
		if key != "case" && len(cases) == 0 {
			fail("%s before the first case", key)
		}
		c := &rrefCase{}
		if len(cases) > 0 {
			c = &cases[len(cases)-1]
		}
		switch key {
		case "case":
			cases = append(cases, rrefCase{line: line, name: rest})
		case "method":
			c.method = rest
		case "error":
			c.err = rest
		case "x":
			c.x = nums(strings.Fields(rest))
		case "y":
			c.y = nums(strings.Fields(rest))
		case "want":
			fields := strings.Fields(rest)
			if len(fields) != 9 {
				fail("want has %d fields, not 9", len(fields))
			}
			alt, err := ParseAlternative(fields[0])
			if err != nil {
				fail("%v", err)
			}
			v := nums(fields[1:])
			c.wants = append(c.wants, rrefWant{
				line: line, alt: alt, conf: v[0],
				statistic: v[1], df: v[2], p: v[3],
				estimate: v[4], ciLo: v[5], ciHi: v[6],
				exact: v[7] == 1,
			})
		default:
			fail("unknown record %q", key)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if len(cases) == 0 {
		t.Fatalf("%s: no cases", file)
	}
	return cases
}

// rrefTolerance is how far a result may be from R's: p-values absolutely,
// everything else relatively.
const (
	rrefAbsP = 1e-6
	rrefRel  = 1e-9
)

// rrefDeviation records the largest deviations from R seen by a test, so
// that the test's log says how close the port is.
type rrefDeviation struct {
	// absFloor, when set, also accepts numbers within it absolutely
	// (for statistics that R computes with rounding error around zero).
	absFloor float64

	p, rel float64
	pAt    string
	relAt  string
}

// rrefRelDiff is |got − want| relative to |want|; zero when both are the same
// infinity or both NaN, +Inf when only one is.
func rrefRelDiff(got, want float64) float64 {
	switch {
	case math.IsNaN(got) || math.IsNaN(want):
		if math.IsNaN(got) && math.IsNaN(want) {
			return 0
		}
		return math.Inf(1)
	case math.IsInf(got, 0) || math.IsInf(want, 0):
		if got == want {
			return 0
		}
		return math.Inf(1)
	case got == want:
		return 0
	}
	return math.Abs(got-want) / math.Max(math.Abs(want), math.SmallestNonzeroFloat64)
}

// check compares one result with R's and reports what is off.
func (d *rrefDeviation) check(t *testing.T, where string, got Result, want rrefWant, method string) {
	t.Helper()
	if got.Method != method {
		t.Errorf("method = %q, want %q", got.Method, method)
	}
	if got.Alternative != want.alt || got.Confidence != want.conf && !math.IsNaN(want.conf) {
		t.Errorf("alternative, confidence = %v, %v; want %v, %v", got.Alternative, got.Confidence, want.alt, want.conf)
	}
	if got.Exact != want.exact {
		t.Errorf("exact = %v, want %v", got.Exact, want.exact)
	}
	if dp := math.Abs(got.PValue - want.p); !(dp <= rrefAbsP) {
		t.Errorf("p-value = %.17g, want %.17g (|diff| %.3g)", got.PValue, want.p, dp)
	} else if dp > d.p {
		d.p, d.pAt = dp, where
	}
	for _, v := range []struct {
		name      string
		got, want float64
	}{
		{"statistic", got.Statistic, want.statistic},
		{"df", got.DF, want.df},
		{"estimate", got.Estimate, want.estimate},
		{"ci low", got.CILow, want.ciLo},
		{"ci high", got.CIHigh, want.ciHi},
	} {
		r := rrefRelDiff(v.got, v.want)
		if math.Abs(v.got-v.want) <= d.absFloor {
			continue
		}
		if !(r <= rrefRel) {
			t.Errorf("%s = %.17g, want %.17g (relative diff %.3g)", v.name, v.got, v.want, r)
		} else if r > d.rel {
			d.rel, d.relAt = r, where+" "+v.name
		}
	}
}

func (d *rrefDeviation) log(t *testing.T) {
	t.Logf("largest deviation from R: p-value %.3g (%s), relative %.3g (%s)", d.p, d.pAt, d.rel, d.relAt)
}

func TestWelchR(t *testing.T) {
	var dev rrefDeviation
	for _, c := range rrefLoad(t, "testdata/welch.txt") {
		if c.err != "" {
			t.Run(c.name, func(t *testing.T) {
				_, err := Welch(c.x, c.y, Options{})
				want := ErrConstant
				if strings.HasPrefix(c.err, "not enough") {
					want = ErrTooFewSamples
				}
				if !errors.Is(err, want) {
					t.Errorf("testdata/welch.txt:%d: err = %v, want %v (R: %s)", c.line, err, want, c.err)
				}
			})
			continue
		}
		for _, w := range c.wants {
			name := fmt.Sprintf("%s/%v/%v", c.name, w.alt, w.conf)
			t.Run(name, func(t *testing.T) {
				got, err := Welch(c.x, c.y, Options{Alternative: w.alt, Confidence: w.conf})
				if err != nil {
					t.Fatalf("testdata/welch.txt:%d: %v", w.line, err)
				}
				dev.check(t, name, got, w, c.method)
				if got.Test != "welch" || got.StatisticName != "t" || got.EstimateName != "difference in means" {
					t.Errorf("names = %q, %q, %q", got.Test, got.StatisticName, got.EstimateName)
				}
				if got.NCanary != float64(len(c.x)) || got.NBaseline != float64(len(c.y)) {
					t.Errorf("n = %v, %v; want %d, %d", got.NCanary, got.NBaseline, len(c.x), len(c.y))
				}
			})
		}
	}
	dev.log(t)
}

func TestWelchErrors(t *testing.T) {
	ok := []float64{1, 2, 3}
	tests := []struct {
		name             string
		canary, baseline []float64
		opt              Options
		want             error
	}{
		{"empty canary", nil, ok, Options{}, ErrTooFewSamples},
		{"one baseline value", ok, []float64{1}, Options{}, ErrTooFewSamples},
		{"nan", []float64{1, math.NaN()}, ok, Options{}, ErrNonFinite},
		{"inf", ok, []float64{1, math.Inf(-1)}, Options{}, ErrNonFinite},
		{"constant", []float64{2, 2}, []float64{2, 2, 2}, Options{}, ErrConstant},
		{"all zero", []float64{0, 0}, []float64{0, 0, 0}, Options{}, ErrConstant},
		{"confidence 1", ok, ok, Options{Confidence: 1}, ErrInvalidOption},
		{"confidence negative", ok, ok, Options{Confidence: -0.5}, ErrInvalidOption},
		{"alternative", ok, ok, Options{Alternative: Alternative(7)}, ErrInvalidOption},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Welch(tt.canary, tt.baseline, tt.opt)
			if !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestWelchExtremeMagnitudes checks that values near the ends of the
// float64 range give the same t, df and p-value as the same data at a
// moderate scale (R overflows or underflows on some of them).
func TestWelchExtremeMagnitudes(t *testing.T) {
	x := []float64{1.2, 3.4, 2.2, 5.1, 0.3}
	y := []float64{0.9, 1.1, 2.0, 1.7}
	want, err := Welch(x, y, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, scale := range []float64{0x1p1000, 0x1p-1000, 0x1p-1030} {
		t.Run(fmt.Sprint(scale), func(t *testing.T) {
			xs, ys := make([]float64, len(x)), make([]float64, len(y))
			for i := range x {
				xs[i] = x[i] * scale
			}
			for i := range y {
				ys[i] = y[i] * scale
			}
			got, err := Welch(xs, ys, Options{})
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range []struct {
				name      string
				got, want float64
			}{
				{"t", got.Statistic, want.Statistic},
				{"df", got.DF, want.DF},
				{"p", got.PValue, want.PValue},
				{"estimate", got.Estimate / scale, want.Estimate},
				{"ci low", got.CILow / scale, want.CILow},
			} {
				if r := rrefRelDiff(v.got, v.want); r > 1e-6 {
					t.Errorf("%s = %.17g, want %.17g", v.name, v.got, v.want)
				}
			}
		})
	}
}

func FuzzWelch(f *testing.F) {
	f.Add([]byte("\x01\x02\x03\x04\x05\x06\x07\x08\x11\x12\x13\x14\x15\x16\x17\x18\x21\x22\x23\x24\x25\x26\x27\x28\x31\x32\x33\x34\x35\x36\x37\x38"), uint8(2), uint8(0), 0.95)
	f.Fuzz(func(t *testing.T, data []byte, split, alt uint8, conf float64) {
		canary, baseline := rrefFuzzSamples(data, split)
		opt := Options{Alternative: Alternative(alt % 3), Confidence: conf}
		r, err := Welch(canary, baseline, opt)
		if err != nil {
			return
		}
		rrefCheckResult(t, r)
		if math.IsNaN(r.Statistic) || math.IsNaN(r.DF) || !(r.DF > 0) {
			t.Errorf("t = %v, df = %v", r.Statistic, r.DF)
		}
		// A one-sided interval below 50% confidence need not hold the
		// estimate (its bound is the estimate plus a negative quantile).
		if (r.Alternative == TwoSided || r.Confidence >= 0.5) && !(r.CILow <= r.Estimate && r.Estimate <= r.CIHigh) {
			t.Errorf("estimate %v outside [%v, %v]", r.Estimate, r.CILow, r.CIHigh)
		}
	})
}

// rrefFuzzSamples splits fuzz input into two samples of float64 bit patterns,
// the first split of them (modulo the count) the canary.
func rrefFuzzSamples(data []byte, split uint8) (canary, baseline []float64) {
	var xs []float64
	for len(data) >= 8 {
		var u uint64
		for i := range 8 {
			u = u<<8 | uint64(data[i])
		}
		xs = append(xs, math.Float64frombits(u))
		data = data[8:]
	}
	k := 0
	if len(xs) > 0 {
		k = int(split) % (len(xs) + 1)
	}
	return xs[:k], xs[k:]
}

// rrefCheckResult checks what must hold for any result a test returns.
func rrefCheckResult(t *testing.T, r Result) {
	t.Helper()
	if !(r.PValue >= 0 && r.PValue <= 1) {
		t.Errorf("p-value = %v", r.PValue)
	}
	if math.IsNaN(r.Statistic) {
		t.Errorf("statistic is NaN")
	}
	// One-sided intervals below 50% confidence are odd, as in R: their
	// finite bound is the estimate plus a negative quantile.
	if r.HasEstimate() && (r.Alternative == TwoSided || r.Confidence >= 0.5) && !(r.CILow <= r.CIHigh) {
		t.Errorf("interval [%v, %v]", r.CILow, r.CIHigh)
	}
}
