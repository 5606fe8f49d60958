package load_test

import (
	"math"
	"strings"
	"testing"

	"github.com/immune-project/immune/collector"
	"github.com/immune-project/immune/collector/load"
)

func TestTextPrometheus(t *testing.T) {
	in := `# HELP checkout_started_total Checkouts started.
# TYPE checkout_started_total counter
checkout_started_total{region="eu"} 10 1396310400000

# a plain comment
checkout_started_total{region="us"} 7 1396310400000
checkout_started_total{region="eu"} 12 1396310460000
checkout_started_total{region="eu"} 11 1396310430000
checkout_latency_seconds NaN 1396310400000
checkout_latency_seconds +Inf 1396310460500
`
	got, st, err := load.Text("h.prom", strings.NewReader(in), load.Options{Labels: map[string]string{"service": "checkout"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []collector.Series{
		{Labels: collector.Labels{"__name__": "checkout_started_total", "region": "eu", "service": "checkout"}, Samples: []collector.Sample{
			{T: ms("2014-04-01T00:00:00Z"), V: 10}, {T: ms("2014-04-01T00:00:30Z"), V: 11}, {T: ms("2014-04-01T00:01:00Z"), V: 12},
		}},
		{Labels: collector.Labels{"__name__": "checkout_started_total", "region": "us", "service": "checkout"}, Samples: []collector.Sample{
			{T: ms("2014-04-01T00:00:00Z"), V: 7},
		}},
		{Labels: collector.Labels{"__name__": "checkout_latency_seconds", "service": "checkout"}, Samples: []collector.Sample{
			{T: ms("2014-04-01T00:00:00Z"), V: math.NaN()}, {T: ms("2014-04-01T00:01:00.5Z"), V: math.Inf(1)},
		}},
	}
	checkSeries(t, got, want)
	if st.Series != 3 || st.Samples != 6 {
		t.Errorf("stats %+v", st)
	}
}

func TestTextOpenMetrics(t *testing.T) {
	in := `# TYPE checkout_started counter
# HELP checkout_started Checkouts started.
checkout_started_total{region="eu"} 10 1396310400
checkout_started_total{region="eu"} 12 1396310460.25
checkout_started_created{region="eu"} 1396310000 1396310400
# TYPE temperature_celsius gauge
# UNIT temperature_celsius celsius
temperature_celsius 21.5 1396310400.001
# EOF
`
	got, _, err := load.Text("h.om", strings.NewReader(in), load.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []collector.Series{
		{Labels: collector.Labels{"__name__": "checkout_started_total", "region": "eu"}, Samples: []collector.Sample{
			{T: ms("2014-04-01T00:00:00Z"), V: 10}, {T: ms("2014-04-01T00:01:00.25Z"), V: 12},
		}},
		{Labels: collector.Labels{"__name__": "checkout_started_created", "region": "eu"}, Samples: []collector.Sample{
			{T: ms("2014-04-01T00:00:00Z"), V: 1396310000},
		}},
		{Labels: collector.Labels{"__name__": "temperature_celsius"}, Samples: []collector.Sample{
			{T: ms("2014-04-01T00:00:00.001Z"), V: 21.5},
		}},
	}
	checkSeries(t, got, want)
}

func TestTextErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		opts     load.Options
		want     []string
	}{
		{"no timestamp", "# TYPE a gauge\na 1 1000\n\na 2\nb{x=\"y\"} 3\n", load.Options{}, []string{
			`e.prom:4: {__name__="a"} has no timestamp`,
			`e.prom:5: {__name__="b", x="y"} has no timestamp`,
		}},
		{"syntax", "a 1 1000\n\n# comment\na{x=} 2 2000\nb 1 1000\n", load.Options{}, []string{
			`e.prom:4: expected label value`,
		}},
		{"syntax first line", "{{{\n", load.Options{}, []string{`e.prom:1: `}},
		{"openmetrics blank line", "a 1 1\n\n# EOF\n", load.Options{}, []string{`e.prom:2: `}},
		{"openmetrics bad timestamp", "# TYPE a gauge\na 1 1\na 1 x\n# EOF\n", load.Options{}, []string{`e.prom:3: `}},
		{"utf-8 name", "{\"checkout.started\"} 1 1000\n", load.Options{}, []string{
			`e.prom:1: "checkout.started" is not a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)`,
		}},
		{"utf-8 label", "a{\"région\"=\"eu\"} 1 1000\n", load.Options{}, []string{
			`e.prom:1: "région" is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)`,
		}},
		{"clash", "a{service=\"cart\"} 1 1000\na{service=\"checkout\"} 1 1000\n", load.Options{Labels: map[string]string{"service": "checkout"}}, []string{
			`e.prom:1: {__name__="a", service="cart"}: label service="cart" clashes with the extra label service="checkout"`,
		}},
		{"duplicate rejected", "a 1 1000\na 2 1000\n", load.Options{Duplicates: load.Reject}, []string{
			`e.prom:2: a{} at 1970-01-01T00:00:01Z: value 2, but line 1 has 1`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := load.Text("e.prom", strings.NewReader(tc.in), tc.opts)
			if err == nil {
				t.Fatal("no error")
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.want) {
				t.Errorf("got %d problems, want %d:\n%v", len(lines), len(tc.want), err)
			}
			for i := 0; i < len(lines) && i < len(tc.want); i++ {
				if !strings.HasPrefix(lines[i], tc.want[i]) {
					t.Errorf("problem %d: got %q, want %q", i, lines[i], tc.want[i])
				}
			}
		})
	}
}
