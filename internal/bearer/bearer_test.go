package bearer_test

import (
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/immune-project/immune/internal/bearer"
)

func TestToken(t *testing.T) {
	const secret = "tok3n-with-some-length"
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte("\n  "+secret+" \r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tok, err := bearer.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !tok.Enabled() {
		t.Fatal("not enabled")
	}
	for _, tc := range []struct {
		header string
		ok     bool
	}{
		{"Bearer " + secret, true},
		{"bearer " + secret, true},
		{"BEARER  " + secret + " ", true},
		{"", false},
		{"Bearer", false},
		{"Bearer ", false},
		{"Bearer " + secret + "x", false},
		{"Bearer " + secret[:len(secret)-1], false},
		{"Basic " + secret, false},
		{secret, false},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		if tc.header != "" {
			r.Header.Set("Authorization", tc.header)
		}
		if got := tok.Check(r); got != tc.ok {
			t.Errorf("%q: got %v, want %v", tc.header, got, tc.ok)
		}
	}
}

func TestNoToken(t *testing.T) {
	tok, err := bearer.Load("")
	if err != nil || tok.Enabled() || !tok.Check(httptest.NewRequest("GET", "/", nil)) {
		t.Errorf("no token file: %v %v", tok, err)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte(" \n\t"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := bearer.Load(empty); !errors.Is(err, bearer.ErrEmpty) || !strings.Contains(err.Error(), empty) {
		t.Errorf("empty: %v", err)
	}
	if _, err := bearer.Load(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing: %v", err)
	}
	// A directory, not a file: an error that names the path only.
	secretDir := filepath.Join(dir, "sekrit")
	os.Mkdir(secretDir, 0o700)
	if _, err := bearer.Load(secretDir); err == nil {
		t.Error("a directory loads")
	}
}

func TestChallenge(t *testing.T) {
	w := httptest.NewRecorder()
	bearer.Challenge(w, httptest.NewRequest("GET", "/", nil))
	if got := w.Header().Get("WWW-Authenticate"); got != `Bearer realm="immune"` {
		t.Errorf("got %q", got)
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer x")
	w = httptest.NewRecorder()
	bearer.Challenge(w, r)
	if got := w.Header().Get("WWW-Authenticate"); got != `Bearer realm="immune", error="invalid_token"` {
		t.Errorf("got %q", got)
	}
}
