package sim

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
