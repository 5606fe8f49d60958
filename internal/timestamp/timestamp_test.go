package timestamp

import (
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	at := time.Date(2014, 4, 1, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		in      string
		want    time.Time
		wantErr string
	}{
		{"2014-04-01 03:04:05", at, ""},
		{"2014-04-01 03:04:05.25", at.Add(250 * time.Millisecond), ""},
		{"2014-04-01T05:04:05+02:00", at, ""},
		{"1396321445", at, ""},
		{"1396321445.2506", at.Add(251 * time.Millisecond), ""},
		{"", time.Time{}, "empty timestamp"},
		{"2014-02-30 00:00:00", time.Time{}, `timestamp "2014-02-30 00:00:00": want`},
		{"yesterday", time.Time{}, `timestamp "yesterday": want 2006-01-02 15:04:05 (UTC), RFC 3339 or Unix seconds`},
		{"1396321445000", time.Time{}, "(milliseconds? divide by 1000)"},
		{"-5", time.Time{}, `timestamp "-5": want`},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Parse(%q) = %v, %v, want error with %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !got.Equal(tt.want) || got.Location() != time.UTC {
			t.Errorf("Parse(%q) = %v, %v, want %v", tt.in, got, err, tt.want)
		}
	}
}
