package detector

import (
	"errors"
	"reflect"
	"testing"
)

func TestParseSample(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []float64
		wantErr string
	}{
		{"plain", "1\n2.5\n-3e2\n", []float64{1, 2.5, -300}, ""},
		{"comments and blanks", "# latency ms\n\n  12 \n#x\n13\n", []float64{12, 13}, ""},
		{"crlf", "1\r\n2\r\n", []float64{1, 2}, ""},
		{"no trailing newline", "7", []float64{7}, ""},
		{"empty", "", nil, "f.txt: no numbers"},
		{"only comments", "# nothing\n\n", nil, "f.txt: no numbers"},
		{"word", "1\nabc\n", nil, `f.txt:2: "abc" is not a number`},
		{"nan", "1\n\nNaN\n", nil, `f.txt:3: "NaN" is not a finite number`},
		{"inf", "+Inf\n", nil, `f.txt:1: "+Inf" is not a finite number`},
		{"overflow", "1e999\n", nil, `f.txt:1: "1e999" is out of range`},
		{"two fields", "1 2\n", nil, "f.txt:1: want one number, got 2 fields"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSample("f.txt", []byte(tt.in))
			if tt.wantErr != "" {
				var se *SampleError
				if err == nil || err.Error() != tt.wantErr || !errors.As(err, &se) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %v, %v, want %v", got, err, tt.want)
			}
		})
	}
}

func TestParseCounts(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Counts
		wantErr string
	}{
		{"summed", "3 100\n# hour 2\n4 120\n", Counts{7, 220}, ""},
		{"zero", "0 0\n", Counts{0, 0}, ""},
		{"events exceed trials", "3 100\n5 4\n", Counts{}, "c.txt:2: events 5 exceed trials 4"},
		{"negative", "-1 4\n", Counts{}, "c.txt:1: events must not be negative"},
		{"one field", "3\n", Counts{}, "c.txt:1: want two numbers (events trials), got 1 fields"},
		{"nan", "NaN 3\n", Counts{}, `c.txt:1: "NaN" is not a finite number`},
		{"empty", "\n", Counts{}, "c.txt: no counts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCounts("c.txt", []byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %v, %v, want %v", got, err, tt.want)
			}
		})
	}
}

func FuzzParseSample(f *testing.F) {
	for _, s := range []string{"1\n2\n", "# c\n\n3e5\n", "NaN\n", "1 2\n", "0x1p-3\n", "-0\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		xs, err := ParseSample("fuzz", data)
		if err == nil && len(xs) == 0 {
			t.Fatal("no error and no numbers")
		}
		for _, x := range xs {
			if x != x || x-x != 0 {
				t.Fatalf("non-finite %v accepted", x)
			}
		}
	})
}

func FuzzParseCounts(f *testing.F) {
	for _, s := range []string{"1 2\n", "# c\n0 0\n", "5 4\n", "1e308 1e308\n1e308 1e308\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseCounts("fuzz", data)
		if err != nil {
			return
		}
		if c.Events < 0 || c.Trials < 0 || c.Events > c.Trials || c.Trials-c.Trials != 0 {
			t.Fatalf("accepted invalid counts %+v", c)
		}
	})
}
