package grafana

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestMessage(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{`{"message":"invalid API key"}`, "invalid API key"},
		{`{"message":"Dashboard not found","status":"not-found"}`, "Dashboard not found"},
		{"<html>\n<body>502 Bad Gateway</body>", "<html>"},
		{`{"message":"two\nlines"}`, "two lines"},
		{strings.Repeat("é", 150), strings.Repeat("é", 100) + "…"},
		{"", ""},
		{strings.Repeat("x", 300), strings.Repeat("x", 200) + "…"},
	} {
		if got := message([]byte(tc.body)); got != tc.want {
			t.Errorf("message(%q) = %q, want %q", tc.body, got, tc.want)
		}
	}
}

// FuzzMessage: whatever a server answers, the message is one line of at
// most 200 bytes plus the ellipsis.
func FuzzMessage(f *testing.F) {
	for _, s := range []string{`{"message":"x"}`, "a\nb", `{"message":1}`, "\xff\xfe"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		m := message(body)
		if len(m) > 200+len("…") {
			t.Errorf("message of %d bytes", len(m))
		}
		if strings.ContainsAny(m, "\r\n") {
			t.Errorf("message %q spans lines", m)
		}
		if utf8.Valid(body) && !utf8.ValidString(m) {
			t.Errorf("message %q of valid UTF-8 is not valid UTF-8", m)
		}
	})
}
