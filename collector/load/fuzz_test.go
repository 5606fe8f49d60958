package load_test

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/immune-project/immune/collector/load"
)

// FuzzCSV: no input panics; what loads is well-formed (valid names, the
// extra label, finite values, times strictly increasing), and every error
// is a FileError whose lines start with the file's name.
func FuzzCSV(f *testing.F) {
	for _, seed := range []string{
		"timestamp,value\n2014-04-01 00:00:00,1\n",
		"timestamp,a,b\n1396310400.5,1,\n2014-04-01T00:00:00Z,,2\n",
		"\ufefftimestamp,value\r\n1,1\r\n1,2\r\n",
		"timestamp,value\n\"2014-04-01 00:00:00\",\"1\"\n# c\n",
		"timestamp,value\nx,y,z\n\"unterminated\n",
		"timestamp,value\n253402300799.9999,NaN\n",
		"",
		"timestamp\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		series, st, err := load.CSV("f.csv", bytes.NewReader(data), load.Options{Labels: map[string]string{"job": "fuzz"}})
		if err != nil {
			var fe *load.FileError
			if !errors.As(err, &fe) {
				t.Fatalf("error %T is not a *FileError: %v", err, err)
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "f.csv") {
					t.Fatalf("error line %q does not start with the file name", line)
				}
			}
			if series != nil {
				t.Fatal("series with an error")
			}
			return
		}
		n := 0
		for _, s := range series {
			if !model.LegacyValidation.IsValidMetricName(s.Labels["__name__"]) || s.Labels["job"] != "fuzz" || len(s.Labels) != 2 {
				t.Fatalf("labels %s", s.Labels)
			}
			if len(s.Samples) == 0 {
				t.Fatalf("%s: no samples", s.Labels)
			}
			for i, p := range s.Samples {
				if math.IsNaN(p.V) || math.IsInf(p.V, 0) {
					t.Fatalf("%s: value %v", s.Labels, p.V)
				}
				if i > 0 && !p.T.After(s.Samples[i-1].T) {
					t.Fatalf("%s: times not increasing at %d", s.Labels, i)
				}
				if p.T.Location().String() != "UTC" || p.T.Nanosecond()%1e6 != 0 {
					t.Fatalf("%s: time %v not UTC milliseconds", s.Labels, p.T)
				}
			}
			n += len(s.Samples)
		}
		if st.Samples != n || st.Series != len(series) {
			t.Fatalf("stats %+v for %d series, %d samples", st, len(series), n)
		}
	})
}

// FuzzText: the same for the text exposition formats.
func FuzzText(f *testing.F) {
	for _, seed := range []string{
		"a 1 1000\n",
		"# TYPE a counter\na_total{x=\"y\"} 1 1\n# EOF\n",
		"a{b=\"c\"} NaN 5\na 2\n",
		"{\"a.b\"} 1 1\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		series, _, err := load.Text("f.prom", bytes.NewReader(data), load.Options{})
		if err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "f.prom") {
					t.Fatalf("error line %q does not start with the file name", line)
				}
			}
			return
		}
		for _, s := range series {
			if !model.LegacyValidation.IsValidMetricName(s.Labels["__name__"]) {
				t.Fatalf("labels %s", s.Labels)
			}
			for i := 1; i < len(s.Samples); i++ {
				if !s.Samples[i].T.After(s.Samples[i-1].T) {
					t.Fatalf("%s: times not increasing at %d", s.Labels, i)
				}
			}
		}
	})
}

// FuzzTimestamp: the fast path of "2006-01-02 15:04:05" agrees with
// time.Parse, on what it takes and what it makes of it.
func FuzzTimestamp(f *testing.F) {
	for _, s := range []string{"2014-04-01 00:00:00", "2014-02-30 00:00:00", "2014-04-01 24:00:00", "0000-01-01 00:00:00", "2014-04-01 00:00:60", "2014-13-01 00:00:00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, _, err := load.CSV("t.csv", strings.NewReader("timestamp,v\n\""+strings.ReplaceAll(s, "\"", "")+"\",1\n"), load.Options{})
		_ = err // no panic
		want, werr := time.Parse("2006-01-02 15:04:05", s)
		if werr != nil || strings.ContainsAny(s, ".,\"\r\n") {
			return
		}
		series, _, err := load.CSV("t.csv", strings.NewReader("timestamp,v\n"+s+",1\n"), load.Options{})
		if err != nil {
			t.Fatalf("%q: time.Parse takes it, CSV says %v", s, err)
		}
		if got := series[0].Samples[0].T; !got.Equal(want) {
			t.Fatalf("%q: got %v, want %v", s, got, want)
		}
	})
}
