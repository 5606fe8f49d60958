package queryapi

import (
	"encoding/json"
	"math"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
)

// As Prometheus writes them (util/jsonutil.MarshalTimestamp): three
// decimals whenever there is a fraction.
func TestAppendTimestamp(t *testing.T) {
	for _, tc := range []struct {
		ms   int64
		want string
	}{
		{0, "0"}, {1000, "1"}, {1500, "1.500"}, {1435781451781, "1435781451.781"}, {1001, "1.001"}, {1010, "1.010"}, {-1500, "-1.500"}, {-5, "-0.005"},
	} {
		if got := string(appendTimestamp(nil, tc.ms)); got != tc.want {
			t.Errorf("%d: got %s, want %s", tc.ms, got, tc.want)
		}
	}
}

func TestAppendFloat(t *testing.T) {
	for _, tc := range []struct {
		f    float64
		want string
	}{
		{0, `"0"`}, {1.5, `"1.5"`}, {-2, `"-2"`}, {1e21, `"1e+21"`}, {1e20, `"100000000000000000000"`}, {1e-7, `"1e-07"`},
		{math.NaN(), `"NaN"`}, {math.Inf(1), `"+Inf"`}, {math.Inf(-1), `"-Inf"`},
	} {
		if got := string(appendFloat(nil, tc.f)); got != tc.want {
			t.Errorf("%v: got %s, want %s", tc.f, got, tc.want)
		}
	}
}

func TestAppendValue(t *testing.T) {
	ls := labels.FromStrings("__name__", "m", "a", `q"<x>`)
	v := promql.Vector{{Metric: ls, T: 1500, F: 2}}
	got := string(appendValue(nil, v))
	want := `[{"metric":{"__name__":"m","a":"q\"\u003cx\u003e"},"value":[1.500,"2"]}]`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	// encoding/json through promql's own MarshalJSON agrees.
	std, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var a, b any
	if err := json.Unmarshal(std, &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(got), &b); err != nil {
		t.Fatal(err)
	}
	if ja, jb := mustJSON(t, a), mustJSON(t, b); ja != jb {
		t.Errorf("encoding/json %s, ours %s", ja, jb)
	}
}

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Our string encoding is valid JSON and means what encoding/json's does.
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", "quote\" back\\ <html> & \u2028 \x00 \x1f \t\n", "\xff\xfe invalid", "é 日本"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ours := appendString(nil, s)
		std, _ := json.Marshal(s)
		if string(ours) == string(std) {
			return
		}
		var a, b string
		if err := json.Unmarshal(ours, &a); err != nil {
			t.Fatalf("%q: ours %s is not JSON: %v", s, ours, err)
		}
		if err := json.Unmarshal(std, &b); err != nil {
			t.Fatal(err)
		}
		if a != b {
			t.Fatalf("%q: ours %s means %q, encoding/json %s means %q", s, ours, a, std, b)
		}
	})
}
