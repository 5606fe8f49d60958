package sim_test

import (
	"testing"

	"github.com/immune-project/immune/sim"
)

func TestBehavioursFor(t *testing.T) {
	b := sim.DefaultBehaviours()
	if got := b.For("v7-unknown"); got != sim.Healthy {
		t.Errorf("unknown version: %v, want Healthy", got)
	}
	if got := b.For("v2-bad"); got.Conversion >= 1 {
		t.Errorf("v2-bad converts %v, want less than 1", got.Conversion)
	}
	if !b.For("v2-broken").SelfTestFails {
		t.Error("v2-broken passes its self test")
	}
}
