package sim

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Behaviour is how a version of the service behaves, relative to the
// fleet's Traffic.
type Behaviour struct {
	// Conversion multiplies the base conversion (1: unchanged; 0.7: 30%
	// fewer checkouts completed).
	Conversion float64
	// Errors is the fraction of requests answered 500, added to the base
	// error rate.
	Errors float64
	// Latency multiplies the median latency.
	Latency float64
	// Memory multiplies the resident memory.
	Memory float64
	// SelfTestFails makes the self test after a restart fail.
	SelfTestFails bool
}

// Healthy is the behaviour of a version that changes nothing.
var Healthy = Behaviour{Conversion: 1, Latency: 1, Memory: 1}

// Behaviours maps a version to its behaviour; a version not in the table
// behaves as Healthy.
type Behaviours map[string]Behaviour

// DefaultBehaviours is the table of the demo and the tests: v1 and v2 are
// healthy; v2-bad converts 30% less; v2-slow has 3x the latency and 5%
// errors; v2-broken fails its self test.
func DefaultBehaviours() Behaviours {
	return Behaviours{
		"v1":        Healthy,
		"v2":        Healthy,
		"v2-bad":    {Conversion: 0.7, Latency: 1, Memory: 1},
		"v2-slow":   {Conversion: 1, Errors: 0.05, Latency: 3, Memory: 1.2},
		"v2-broken": {Conversion: 1, Latency: 1, Memory: 1, SelfTestFails: true},
	}
}

// For returns the behaviour of a version.
func (b Behaviours) For(version string) Behaviour {
	if x, ok := b[version]; ok {
		return x
	}
	return Healthy
}

// String writes the table in the syntax ParseBehaviours reads, sorted by
// version.
func (b Behaviours) String() string {
	versions := make([]string, 0, len(b))
	for v := range b {
		versions = append(versions, v)
	}
	sort.Strings(versions)
	parts := make([]string, 0, len(versions))
	for _, v := range versions {
		parts = append(parts, v+"="+b[v].String())
	}
	return strings.Join(parts, ";")
}

// String writes the behaviour as ParseBehaviours reads it.
func (x Behaviour) String() string {
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	s := "conversion:" + f(x.Conversion) + ",errors:" + f(x.Errors) + ",latency:" + f(x.Latency) + ",memory:" + f(x.Memory)
	if x.SelfTestFails {
		s += ",selftest:fail"
	}
	return s
}

// ParseBehaviours reads a table such as
//
//	v2-bad=conversion:0.7;v3=latency:2,errors:0.01,selftest:fail
//
// entries separated by ";", fields by ",". Fields not given keep the
// Healthy value. conversion, latency and memory are multipliers (>= 0;
// a conversion probability above 1 is capped at 1),
// errors a fraction in [0, 1], selftest pass or fail.
func ParseBehaviours(s string) (Behaviours, error) {
	out := Behaviours{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for i, entry := range strings.Split(s, ";") {
		entry = strings.TrimSpace(entry)
		version, spec, ok := strings.Cut(entry, "=")
		version = strings.TrimSpace(version)
		if !ok || version == "" {
			return nil, fmt.Errorf("behaviour %d %q: want version=field:value,…: %w", i+1, entry, ErrBadBehaviour)
		}
		if _, dup := out[version]; dup {
			return nil, fmt.Errorf("behaviour %d: version %q given twice: %w", i+1, version, ErrBadBehaviour)
		}
		b := Healthy
		for _, field := range strings.Split(spec, ",") {
			name, value, ok := strings.Cut(strings.TrimSpace(field), ":")
			name, value = strings.TrimSpace(name), strings.TrimSpace(value)
			if !ok {
				return nil, fmt.Errorf("behaviour %q: field %q: want name:value: %w", version, field, ErrBadBehaviour)
			}
			if name == "selftest" {
				switch value {
				case "pass":
					b.SelfTestFails = false
				case "fail":
					b.SelfTestFails = true
				default:
					return nil, fmt.Errorf("behaviour %q: selftest must be pass or fail, not %q: %w", version, value, ErrBadBehaviour)
				}
				continue
			}
			v, err := strconv.ParseFloat(value, 64)
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
				return nil, fmt.Errorf("behaviour %q: %s must be a non-negative number, not %q: %w", version, name, value, ErrBadBehaviour)
			}
			switch name {
			case "conversion":
				b.Conversion = v
			case "errors":
				if v > 1 {
					return nil, fmt.Errorf("behaviour %q: errors must be a fraction in [0, 1], not %g: %w", version, v, ErrBadBehaviour)
				}
				b.Errors = v
			case "latency":
				b.Latency = v
			case "memory":
				b.Memory = v
			default:
				return nil, fmt.Errorf("behaviour %q: unknown field %q (want conversion, errors, latency, memory, selftest): %w", version, name, ErrBadBehaviour)
			}
		}
		out[version] = b
	}
	return out, nil
}
