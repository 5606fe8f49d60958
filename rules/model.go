package rules

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Version is the only version of the rule file format this package reads.
const Version = 1

// Defaults and limits of the analysis section.
const (
	DefaultLookback = 2 * time.Hour
	DefaultWindow   = time.Hour
	DefaultStep     = 5 * time.Minute
	DefaultAlpha    = 0.01
	DefaultSeason   = 7 * 24 * time.Hour // 1w
	DefaultSeasons  = 1
	DefaultWeight   = 1.0

	MinStep     = time.Second
	MaxWindow   = 24 * time.Hour
	MaxLookback = 7 * 24 * time.Hour
	MaxSeason   = 5 * 7 * 24 * time.Hour // 5w
	MaxSeasons  = 12
	MaxAlpha    = 0.5
	// MaxRelativeMinEffect is the bound (exclusive) of a relative
	// min_effect, as a fraction: 1000%.
	MaxRelativeMinEffect = 10.0
	// MaxNameLen is the longest KPI name; MaxServiceLen the longest service.
	MaxNameLen    = 128
	MaxServiceLen = 63
)

// File is a parsed rule file, defaults filled in.
type File struct {
	// Filename is the name the file was parsed under.
	Filename string
	// Version is the format version: always 1 (also when the file omits it).
	Version int
	// Service is the service the rules watch: a DNS label such as checkout.
	Service string
	// Owner is free text: the team or an email address. May be empty.
	Owner    string
	Analysis Analysis
	// Selectors inject the canary's and the baseline's label matchers into
	// every KPI query. Set exactly when Analysis.Baseline is
	// BaselineConcurrent, nil otherwise.
	Selectors *Selectors
	// KPIs in file order; at least one, names unique.
	KPIs []KPI
}

// KPI returns the KPI with the given name, or nil.
func (f *File) KPI(name string) *KPI {
	for i := range f.KPIs {
		if f.KPIs[i].Name == name {
			return &f.KPIs[i]
		}
	}
	return nil
}

// Analysis says what a deploy is compared with, for how long, how often,
// and how much risk of a false alarm the file accepts.
type Analysis struct {
	Baseline Baseline
	// Lookback is how much history before the deploy forms the baseline
	// (BaselineBefore), or over which a concurrent canary's offset from
	// the other instances is measured (BaselineConcurrent with
	// Selectors.Instance); the other uses ignore it.
	Lookback time.Duration
	// Window is how long after the deploy to watch.
	Window time.Duration
	// Step is the evaluation interval: KPIs are sampled, and the deploy
	// judged, every Step.
	Step time.Duration
	// Alpha is the most this rule file may risk failing a harmless deploy,
	// over all its KPIs together. In (0, 0.5].
	Alpha float64
	Mode  Mode
	// Season is the period of a seasonal baseline (1d, 1w), and Seasons how
	// many earlier periods form it. Both are zero unless Baseline is
	// BaselineSeasonal.
	Season  time.Duration
	Seasons int
}

// KPI is one key performance indicator of the service and how to judge it.
type KPI struct {
	// Name is unique in the file; it matches [a-zA-Z_][a-zA-Z0-9_:-]*.
	Name        string
	Description string
	// Query is the KPI's PromQL, for a continuous KPI. Otherwise Events
	// and Trials are the PromQL of a ratio KPI's numerator and denominator
	// (errors and requests). Exactly one form is set.
	Query          string
	Events, Trials string
	// Bad is the direction in which a change hurts.
	Bad Direction
	// Test is the test as written (AutoTest when omitted); ResolvedTest
	// resolves AutoTest.
	Test      TestKind
	MinEffect MinEffect
	// Critical: a failure of this KPI alone fails the deploy.
	Critical bool
	// Weight is the KPI's share of the error budget and of the failing
	// weight that fails a deploy; > 0, 1 when omitted.
	Weight float64
	Kind   Kind
	// Line is the line of the KPI in the file (its first key).
	Line int
}

// IsRatio reports whether the KPI is written as events and trials.
func (k *KPI) IsRatio() bool { return k.Events != "" || k.Trials != "" }

// ResolvedTest is the test that decides the KPI: Test, with AutoTest
// resolved to ProportionTest for events/trials KPIs and to
// MannWhitneyTest otherwise.
func (k *KPI) ResolvedTest() TestKind {
	if k.Test != AutoTest {
		return k.Test
	}
	if k.IsRatio() {
		return ProportionTest
	}
	return MannWhitneyTest
}

// MinEffect is the smallest change that may fail a deploy: a significant
// change smaller than it passes.
type MinEffect struct {
	// Value is a fraction of the baseline's level when Relative (5% is
	// 0.05), otherwise in the KPI's own unit. Zero when not Set.
	Value    float64
	Relative bool
	// Set is true when the file gives min_effect.
	Set bool
}

// String writes the min effect as it would be written in a file: 5%, 0.02.
func (m MinEffect) String() string {
	if m.Relative {
		return strconv.FormatFloat(m.Value*100, 'g', -1, 64) + "%"
	}
	return strconv.FormatFloat(m.Value, 'g', -1, 64)
}

// Baseline is what a deploy's KPIs are compared with.
type Baseline int

const (
	// BaselineBefore: the same service during Lookback before the deploy.
	BaselineBefore Baseline = iota
	// BaselineConcurrent: the instances still on the previous version,
	// during the same window as the canary (see Selectors).
	BaselineConcurrent
	// BaselineSeasonal: the same window one or more seasons earlier.
	BaselineSeasonal
)

// Direction is the direction in which a change of a KPI hurts. The zero
// value is not a direction: bad is required.
type Direction int

const (
	// Increase: a rise is bad (latency, errors).
	Increase Direction = iota + 1
	// Decrease: a fall is bad (conversion, revenue).
	Decrease
	// Either: any change is bad.
	Either
)

// TestKind is the two-sample test that judges a KPI.
type TestKind int

const (
	// AutoTest chooses: ProportionTest for events/trials KPIs,
	// MannWhitneyTest otherwise.
	AutoTest TestKind = iota
	// MannWhitneyTest compares ranks (effect: the Hodges-Lehmann shift).
	MannWhitneyTest
	// WelchTest compares means (Welch's t-test).
	WelchTest
	// KSTest compares distributions (Kolmogorov-Smirnov).
	KSTest
	// ProportionTest compares events/trials proportions.
	ProportionTest
)

// Kind says what a KPI is about: the business (conversion, revenue) or
// the system (latency, errors).
type Kind int

const (
	// KindBusiness: what the product is for (conversion, revenue).
	KindBusiness Kind = iota
	// KindSystem: health of the system (latency, errors, saturation).
	KindSystem
)

// Mode says whether a failing verdict pulls the revert path.
type Mode int

const (
	// ModeEnforce: a failing deploy is reverted.
	ModeEnforce Mode = iota
	// ModeShadow: deploys are judged and annotated, never reverted.
	ModeShadow
)

var (
	baselineNames  = []string{"before", "concurrent", "seasonal"}
	directionNames = []string{"", "increase", "decrease", "either"}
	testNames      = []string{"auto", "mann-whitney", "welch", "ks", "proportion"}
	kindNames      = []string{"business", "system"}
	modeNames      = []string{"enforce", "shadow"}
)

func enumString(names []string, typ string, i int) string {
	if i >= 0 && i < len(names) && names[i] != "" {
		return names[i]
	}
	return fmt.Sprintf("%s(%d)", typ, i)
}

func enumParse(names []string, what, s string) (int, error) {
	for i, n := range names {
		if n != "" && n == s {
			return i, nil
		}
	}
	return 0, fmt.Errorf("%s %q: must be one of %s", what, s, oneOf(names))
}

// oneOf lists the non-empty names: "a, b, c".
func oneOf(names []string) string {
	var ns []string
	for _, n := range names {
		if n != "" {
			ns = append(ns, n)
		}
	}
	return strings.Join(ns, ", ")
}

func (b Baseline) String() string  { return enumString(baselineNames, "Baseline", int(b)) }
func (d Direction) String() string { return enumString(directionNames, "Direction", int(d)) }
func (t TestKind) String() string  { return enumString(testNames, "TestKind", int(t)) }
func (k Kind) String() string      { return enumString(kindNames, "Kind", int(k)) }
func (m Mode) String() string      { return enumString(modeNames, "Mode", int(m)) }

// ParseBaseline accepts before, concurrent and seasonal.
func ParseBaseline(s string) (Baseline, error) {
	i, err := enumParse(baselineNames, "baseline", s)
	return Baseline(i), err
}

// ParseDirection accepts increase, decrease and either.
func ParseDirection(s string) (Direction, error) {
	i, err := enumParse(directionNames, "bad", s)
	return Direction(i), err
}

// ParseTestKind accepts auto, mann-whitney, welch, ks and proportion.
func ParseTestKind(s string) (TestKind, error) {
	i, err := enumParse(testNames, "test", s)
	return TestKind(i), err
}

// ParseKind accepts business and system.
func ParseKind(s string) (Kind, error) {
	i, err := enumParse(kindNames, "kind", s)
	return Kind(i), err
}

// ParseMode accepts enforce and shadow.
func ParseMode(s string) (Mode, error) {
	i, err := enumParse(modeNames, "mode", s)
	return Mode(i), err
}

// MarshalText writes the name used in rule files, for JSON and logs.
func (b Baseline) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// MarshalText writes the name used in rule files, for JSON and logs.
func (d Direction) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// MarshalText writes the name used in rule files, for JSON and logs.
func (t TestKind) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// MarshalText writes the name used in rule files, for JSON and logs.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// MarshalText writes the name used in rule files, for JSON and logs.
func (m Mode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText reads the name used in rule files.
func (b *Baseline) UnmarshalText(p []byte) error {
	x, err := ParseBaseline(string(p))
	if err == nil {
		*b = x
	}
	return err
}

// UnmarshalText reads the name used in rule files.
func (d *Direction) UnmarshalText(p []byte) error {
	x, err := ParseDirection(string(p))
	if err == nil {
		*d = x
	}
	return err
}

// UnmarshalText reads the name used in rule files.
func (t *TestKind) UnmarshalText(p []byte) error {
	x, err := ParseTestKind(string(p))
	if err == nil {
		*t = x
	}
	return err
}

// UnmarshalText reads the name used in rule files.
func (k *Kind) UnmarshalText(p []byte) error {
	x, err := ParseKind(string(p))
	if err == nil {
		*k = x
	}
	return err
}

// UnmarshalText reads the name used in rule files.
func (m *Mode) UnmarshalText(p []byte) error {
	x, err := ParseMode(string(p))
	if err == nil {
		*m = x
	}
	return err
}
