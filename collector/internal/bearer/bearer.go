// Package bearer checks HTTP bearer tokens (RFC 6750) against a token read
// from a file, for the write and query endpoints of the collector. The
// token never appears in an error, a log line or a response.
package bearer

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
)

// ErrEmpty: the token file holds nothing but white space.
var ErrEmpty = errors.New("token file is empty")

// Token is a secret bearer token. Its zero value (and nil) accepts every
// request: no authentication configured.
type Token struct {
	sum [sha256.Size]byte // of the token: compared in constant time, whatever the length
	set bool
}

// Load reads the token from path: the file's content without leading and
// trailing white space (a trailing newline is usual). An empty path gives
// a nil Token (no authentication).
func Load(path string) (*Token, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		// os errors name the path and the cause, never the content.
		return nil, fmt.Errorf("read token file: %w", err)
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, fmt.Errorf("token file %s: %w", path, ErrEmpty)
	}
	return &Token{sum: sha256.Sum256(b), set: true}, nil
}

// Enabled reports whether requests must present the token.
func (t *Token) Enabled() bool { return t != nil && t.set }

// Check reports whether r carries the token in "Authorization: Bearer …".
// It is true for every request when no token is configured. The
// comparison takes the same time whatever the presented token.
func (t *Token) Check(r *http.Request) bool {
	if !t.Enabled() {
		return true
	}
	h := r.Header.Get("Authorization")
	const prefix = "bearer "
	if len(h) < len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(h[len(prefix):])))
	return subtle.ConstantTimeCompare(got[:], t.sum[:]) == 1
}

// Challenge sets the WWW-Authenticate header of a 401 answer to r: with
// error="invalid_token" when r presented credentials (RFC 6750).
func Challenge(w http.ResponseWriter, r *http.Request) {
	v := `Bearer realm="immune"`
	if r.Header.Get("Authorization") != "" {
		v += `, error="invalid_token"`
	}
	w.Header().Set("WWW-Authenticate", v)
}
