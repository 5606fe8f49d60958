package load_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/immune-project/immune/collector"
	"github.com/immune-project/immune/collector/load"
)

func ms(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

func TestCSV(t *testing.T) {
	in := "\ufefftimestamp,value\r\n" +
		"2014-04-01 00:10:00,3\r\n" +
		"2014-04-01 00:00:00,1\r\n" + // out of order: sorted
		"# a comment\r\n" +
		"2014-04-01T00:05:00Z,2\r\n" +
		"1396311000,4\r\n" + // 00:10:00 again, another value: the later row wins
		"1396311300.25,5.5e0\r\n" +
		"\r\n"
	got, st, err := load.CSV("nab.csv", strings.NewReader(in), load.Options{Labels: map[string]string{"service": "checkout"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []collector.Series{{
		Labels: collector.Labels{"__name__": "value", "service": "checkout"},
		Samples: []collector.Sample{
			{T: ms("2014-04-01T00:00:00Z"), V: 1},
			{T: ms("2014-04-01T00:05:00Z"), V: 2},
			{T: ms("2014-04-01T00:10:00Z"), V: 4},
			{T: ms("2014-04-01T00:15:00.25Z"), V: 5.5},
		},
	}}
	checkSeries(t, got, want)
	wantStats := load.Stats{Series: 1, Samples: 4, Duplicates: 1, First: ms("2014-04-01T00:00:00Z"), Last: ms("2014-04-01T00:15:00.25Z")}
	if st != wantStats {
		t.Errorf("stats: got %+v, want %+v", st, wantStats)
	}
}

func TestCSVColumns(t *testing.T) {
	in := `timestamp, checkout_started_total ,checkout_completed_total
2024-01-01T00:00:00+01:00,10,
2024-01-01 00:00:00,20,5
2024-01-01 00:01:00,,6
`
	got, st, err := load.CSV("two.csv", strings.NewReader(in), load.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []collector.Series{
		{Labels: collector.Labels{"__name__": "checkout_started_total"}, Samples: []collector.Sample{
			{T: ms("2023-12-31T23:00:00Z"), V: 10}, {T: ms("2024-01-01T00:00:00Z"), V: 20},
		}},
		{Labels: collector.Labels{"__name__": "checkout_completed_total"}, Samples: []collector.Sample{
			{T: ms("2024-01-01T00:00:00Z"), V: 5}, {T: ms("2024-01-01T00:01:00Z"), V: 6},
		}},
	}
	checkSeries(t, got, want)
	if st.Series != 2 || st.Samples != 4 || st.Duplicates != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestCSVTimestamps(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // RFC 3339, or the error
	}{
		{"2014-04-01 00:00:00", "2014-04-01T00:00:00Z"},
		{"2014-04-01 00:00:00.5", "2014-04-01T00:00:00.5Z"},
		{"2014-04-01T02:00:00+02:00", "2014-04-01T00:00:00Z"},
		{"2014-04-01T00:00:00.123456Z", "2014-04-01T00:00:00.123Z"},
		{"2014-04-01T00:00:00.1235Z", "2014-04-01T00:00:00.124Z"},
		{"1396310400", "2014-04-01T00:00:00Z"},
		{"1396310400.1", "2014-04-01T00:00:00.1Z"},
		{"1396310400.123", "2014-04-01T00:00:00.123Z"},
		{"1396310400.1235", "2014-04-01T00:00:00.124Z"},
		{"1396310400.1234999", "2014-04-01T00:00:00.123Z"},
		{"0", "1970-01-01T00:00:00Z"},
		{"0001396310400", "2014-04-01T00:00:00Z"},
		{"253402300799", "9999-12-31T23:59:59Z"},
		{"1396310400000", "milliseconds?"},
		{"253402300800", "beyond the year 9999"},
		{"99999999999999999999999", "beyond the year 9999"},
		{"1396310400.", "want 2006-01-02 15:04:05"},
		{".5", "want 2006-01-02 15:04:05"},
		{"-1", "want 2006-01-02 15:04:05"},
		{"1e9", "want 2006-01-02 15:04:05"},
		{"2014-04-01", "want 2006-01-02 15:04:05"},
		{"2014-04-01T00:00:00", "want 2006-01-02 15:04:05"},
		{"01/04/2014 00:00", "want 2006-01-02 15:04:05"},
	} {
		got, _, err := load.CSV("t.csv", strings.NewReader("timestamp,v\n"+tc.in+",1\n"), load.Options{})
		if strings.Contains(tc.want, "T") && !strings.Contains(tc.want, " ") {
			if err != nil {
				t.Errorf("%q: %v", tc.in, err)
				continue
			}
			if g := got[0].Samples[0].T; !g.Equal(ms(tc.want)) {
				t.Errorf("%q: got %s, want %s", tc.in, g.Format(time.RFC3339Nano), tc.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "t.csv:2: ") {
			t.Errorf("%q: got error %v, want t.csv:2: …%s…", tc.in, err, tc.want)
		}
	}
}

func TestCSVErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string
	}{
		{"empty", "", []string{"e.csv: empty file: want a header timestamp,<metric>[,<metric>…]"}},
		{"comments only", "# nothing\n", []string{"e.csv: empty file"}},
		{"header one column", "timestamp\n", []string{`e.csv:1: header "timestamp": want timestamp,<metric>[,<metric>…]`}},
		{"header first column", "time,value\n", []string{`e.csv:1: header: first column is "time", want timestamp`}},
		{"header bad metric", "timestamp,cpu-usage,ok,9lives,\n", []string{
			`e.csv:1: header: column 2: "cpu-usage" is not a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)`,
			`e.csv:1: header: column 4: "9lives" is not a metric name`,
			`e.csv:1: header: column 5: "" is not a metric name`,
		}},
		{"header duplicate", "timestamp,a,a\n", []string{"e.csv:1: header: column 3: a appears twice"}},
		{"rows", "timestamp,value\n" +
			"2014-04-01 00:00:00,1\n" +
			"2014-04-01 00:05:00,abc\n" +
			"2014-04-01 00:10:00,NaN\n" +
			"2014-04-01 00:15:00,+Inf\n" +
			"yesterday,1\n" +
			"2014-04-01 00:20:00,1,2\n" +
			"2014-04-01 00:25:00\n" +
			"\"2014-04-01 00:30:00,1\n", []string{
			`e.csv:3: column value: "abc" is not a number`,
			`e.csv:4: column value: NaN is refused: leave the cell empty for a missing value`,
			`e.csv:5: column value: +Inf is refused: leave the cell empty for a missing value`,
			`e.csv:6: timestamp "yesterday": want 2006-01-02 15:04:05 (UTC), RFC 3339 or Unix seconds`,
			`e.csv:7: 3 columns, want 2 (timestamp,value)`,
			`e.csv:8: 1 columns, want 2 (timestamp,value)`,
			`e.csv:9: extraneous or missing " in quoted-field`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := load.CSV("e.csv", strings.NewReader(tc.in), load.Options{})
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
			var fe *load.FileError
			if !errors.As(err, &fe) || fe.File != "e.csv" {
				t.Errorf("not a *FileError: %T", err)
			}
			var le *load.LineError
			if !errors.As(err, &le) {
				t.Errorf("no *LineError in %T", err)
			}
		})
	}
}

func TestCSVMaxErrors(t *testing.T) {
	var b strings.Builder
	b.WriteString("timestamp,value\n")
	for range 30 {
		b.WriteString("x,1\n")
	}
	_, _, err := load.CSV("m.csv", strings.NewReader(b.String()), load.Options{MaxErrors: 5})
	var fe *load.FileError
	if !errors.As(err, &fe) {
		t.Fatalf("got %v", err)
	}
	if len(fe.Errors) != 5 || fe.Omitted == 0 {
		t.Errorf("got %d errors and %d omitted, want 5 and some", len(fe.Errors), fe.Omitted)
	}
	if !strings.HasSuffix(err.Error(), "more problems") {
		t.Errorf("error does not say more problems: %v", err)
	}
}

func TestCSVDuplicates(t *testing.T) {
	in := "timestamp,value\n2014-03-09 03:00:00,1\n2014-03-09 03:00:00,1\n2014-03-09 03:00:00,2\n2014-03-09 03:00:00,3\n"
	got, st, err := load.CSV("d.csv", strings.NewReader(in), load.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got[0].Samples) != 1 || got[0].Samples[0].V != 3 || st.Duplicates != 3 {
		t.Errorf("KeepLast: got %v, %+v; want one sample, 3, three duplicates", got, st)
	}
	_, _, err = load.CSV("d.csv", strings.NewReader(in), load.Options{Duplicates: load.Reject})
	want := []string{
		`d.csv:4: value{} at 2014-03-09T03:00:00Z: value 2, but line 2 has 1`,
		`d.csv:5: value{} at 2014-03-09T03:00:00Z: value 3, but line 2 has 1`,
	}
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Errorf("Reject: got %v, want\n%s", err, strings.Join(want, "\n"))
	}
}

func TestExtraLabels(t *testing.T) {
	for _, tc := range []struct {
		labels map[string]string
		want   string
	}{
		{map[string]string{"__name__": "x"}, "the metric name comes from the file"},
		{map[string]string{"a-b": "x"}, "not a valid label name"},
		{map[string]string{"__meta": "x"}, "reserved"},
		{map[string]string{"a": ""}, "empty value"},
	} {
		_, _, err := load.CSV("x.csv", strings.NewReader("timestamp,v\n1,1\n"), load.Options{Labels: tc.labels})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want %q", tc.labels, err, tc.want)
		}
		_, _, err = load.Text("x.prom", strings.NewReader("v 1 1\n"), load.Options{Labels: tc.labels})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("text %v: got %v, want %q", tc.labels, err, tc.want)
		}
	}
}

func checkSeries(t *testing.T, got, want []collector.Series) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d series, want %d: %v", len(got), len(want), got)
	}
	for i := range got {
		if !got[i].Labels.Equal(want[i].Labels) {
			t.Errorf("series %d: got %s, want %s", i, got[i].Labels, want[i].Labels)
		}
		if len(got[i].Samples) != len(want[i].Samples) {
			t.Errorf("%s: got %d samples, want %d: %v", got[i].Labels, len(got[i].Samples), len(want[i].Samples), got[i].Samples)
			continue
		}
		for j, s := range got[i].Samples {
			w := want[i].Samples[j]
			if !s.T.Equal(w.T) || s.V != w.V && !(s.V != s.V && w.V != w.V) {
				t.Errorf("%s sample %d: got %v@%s, want %v@%s", got[i].Labels, j, s.V, s.T.Format(time.RFC3339Nano), w.V, w.T.Format(time.RFC3339Nano))
			}
		}
	}
}
