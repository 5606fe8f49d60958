package httpx_test

import (
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/immune-project/immune/deploy/internal/httpx"
)

type rec struct {
	Name  string    `json:"name"`
	N     int       `json:"n"`
	On    bool      `json:"on"`
	List  []int     `json:"list"`
	At    time.Time `json:"at"`
	Plain string
}

func TestDecodeObject(t *testing.T) {
	tests := []struct {
		body   string
		strict bool
		err    string
	}{
		{`{"name":"a","n":1,"on":true,"list":[1],"at":"2026-11-25T12:00:00Z"}`, true, ""},
		{`{"name":"a","extra":1}`, false, ""},
		{`{"name":"a","extra":1}`, true, "field p.extra: unknown field"},
		{`{"name":1}`, true, "field p.name: want a string, got number"},
		{`{"n":"1"}`, true, "field p.n: want an integer, got string"},
		{`{"n":1.5}`, true, "field p.n: want an integer, got number 1.5"},
		{`{"on":"yes"}`, true, "field p.on: want true or false, got string"},
		{`{"list":{}}`, true, "field p.list: want an array, got object"},
		{`{"at":"noon"}`, true, "field p.at: want an RFC 3339 time"},
		{`{"at":5}`, true, "field p.at: want an RFC 3339 time"},
		{`{"Plain":"x"}`, true, "field p.Plain: unknown field"},
		{`{"name":`, true, "field p: invalid JSON: unexpected end of JSON input"},
		{`"x"`, true, "field p: want a JSON object"},
		{`null`, true, "field p: want a JSON object, got null"},
	}
	for _, tt := range tests {
		var r rec
		err := httpx.DecodeObject([]byte(tt.body), &r, "p.", tt.strict)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if (tt.err == "") != (got == "") || !strings.Contains(got, tt.err) {
			t.Errorf("DecodeObject(%s): %q, want %q", tt.body, got, tt.err)
		}
	}
}

// TestToken: the token is checked, read anew at each request, and never
// in an error.
func TestToken(t *testing.T) {
	const secret = "httpx-secret-e4da3b7fbbce2345d7772b0674a318d5"
	f := filepath.Join(t.TempDir(), "token")
	tok := httpx.Token{File: f}
	req := func(auth string) error {
		r := httptest.NewRequest("POST", "/", nil)
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		return tok.Check(r)
	}
	if err := req("Bearer " + secret); err == nil || !strings.Contains(err.Error(), "token file "+f) || strings.Contains(err.Error(), secret) {
		t.Errorf("missing file: %v", err)
	}
	if err := os.WriteFile(f, []byte("  \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := req("Bearer "); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Errorf("empty file: %v", err)
	}
	if err := os.WriteFile(f, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		auth string
		ok   bool
	}{{"Bearer " + secret, true}, {"Bearer " + secret + "x", false}, {"bearer " + secret, true}, {"Basic " + secret, false}, {secret, false}, {"", false}} {
		err := req(tc.auth)
		if (err == nil) != tc.ok {
			t.Errorf("Authorization %q: %v", tc.auth, err)
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("the error shows the token: %v", err)
		}
	}
	if err := (httpx.Token{}).Check(httptest.NewRequest("POST", "/", nil)); err != nil {
		t.Errorf("no token configured: %v", err)
	}
}

// TestAuthorize: 401 with RFC 6750's challenge (error="invalid_token"
// when a token was presented), 500 when the file cannot be read.
func TestAuthorize(t *testing.T) {
	f := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(f, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tok := httpx.Token{File: f}
	for _, tc := range []struct {
		auth, challenge string
		code            int
		ok              bool
	}{
		{"Bearer secret", "", 200, true},
		{"", `Bearer realm="immune"`, 401, false},
		{"Bearer nope", `Bearer realm="immune", error="invalid_token"`, 401, false},
	} {
		r := httptest.NewRequest("POST", "/", nil)
		if tc.auth != "" {
			r.Header.Set("Authorization", tc.auth)
		}
		w := httptest.NewRecorder()
		ok, err := tok.Authorize(w, r)
		if ok != tc.ok || w.Code != tc.code || w.Header().Get("WWW-Authenticate") != tc.challenge ||
			(!ok && !errors.Is(err, httpx.ErrUnauthorized)) {
			t.Errorf("Authorization %q: %v %v, %d WWW-Authenticate %q; want %v, %d %q",
				tc.auth, ok, err, w.Code, w.Header().Get("WWW-Authenticate"), tc.ok, tc.code, tc.challenge)
		}
	}
	if err := os.Remove(f); err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	ok, err := tok.Authorize(w, httptest.NewRequest("POST", "/", nil))
	if ok || w.Code != 500 || errors.Is(err, httpx.ErrUnauthorized) || w.Header().Get("WWW-Authenticate") != "" {
		t.Errorf("missing file: %v %v, %d %q", ok, err, w.Code, w.Header().Get("WWW-Authenticate"))
	}
}
