package sim_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/immune-project/immune/sim"
)

func TestParseBehaviours(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    sim.Behaviours
		wantErr string
	}{
		{in: "", want: sim.Behaviours{}},
		{in: "v2-bad=conversion:0.7", want: sim.Behaviours{"v2-bad": {Conversion: 0.7, Latency: 1, Memory: 1}}},
		{in: " v3 = latency:2, errors:0.01 ,selftest:fail ; v4=memory:3",
			want: sim.Behaviours{
				"v3": {Conversion: 1, Errors: 0.01, Latency: 2, Memory: 1, SelfTestFails: true},
				"v4": {Conversion: 1, Latency: 1, Memory: 3},
			}},
		{in: "v2", wantErr: `behaviour 1 "v2": want version=field:value`},
		{in: "=conversion:1", wantErr: "want version="},
		{in: "v2=conversion", wantErr: `field "conversion": want name:value`},
		{in: "v2=conversion:-1", wantErr: "conversion must be a non-negative number"},
		{in: "v2=conversion:NaN", wantErr: "non-negative number"},
		{in: "v2=errors:1.5", wantErr: "errors must be a fraction in [0, 1]"},
		{in: "v2=speed:2", wantErr: `unknown field "speed"`},
		{in: "v2=selftest:maybe", wantErr: "selftest must be pass or fail"},
		{in: "v2=latency:2;v2=latency:3", wantErr: `version "v2" given twice`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := sim.ParseBehaviours(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, sim.ErrBadBehaviour) {
					t.Fatalf("ParseBehaviours(%q) = %v, want an ErrBadBehaviour containing %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ParseBehaviours(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

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
	back, err := sim.ParseBehaviours(b.String())
	if err != nil || !reflect.DeepEqual(back, b) {
		t.Fatalf("round trip of %q: %v, %v", b.String(), back, err)
	}
}

// FuzzParseBehaviours: never a panic; what parses writes back to the same.
func FuzzParseBehaviours(f *testing.F) {
	for _, s := range []string{"", "v2-bad=conversion:0.7", "a=latency:2,errors:0.1,selftest:fail;b=memory:0", "x=", "=;=", "v=errors:1e400"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := sim.ParseBehaviours(s)
		if err != nil {
			return
		}
		back, err := sim.ParseBehaviours(b.String())
		if err != nil {
			t.Fatalf("%q parsed, its String %q does not: %v", s, b.String(), err)
		}
		if !reflect.DeepEqual(back, b) {
			t.Fatalf("round trip %q: %v, want %v", s, back, b)
		}
	})
}
