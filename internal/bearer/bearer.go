// Package bearer is immune's one way of checking HTTP bearer tokens (RFC
// 6750) against a token read from a file: the write and query endpoints of
// the collector (read once, Load), the deploy API and the Alertmanager
// receiver (read at every request, Read and Matches, so that a token can be
// rotated), the simulator's webhook. The token never appears in an error,
// a log line or a response.
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
	b, err := Read(path)
	if err != nil {
		return nil, err
	}
	return &Token{sum: sha256.Sum256(b), set: true}, nil
}

// Read returns the token in a file: its content without leading and
// trailing white space. The error names the file, never its content; an
// empty file is ErrEmpty.
func Read(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		// The cause alone (os errors repeat the path); never the content.
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("token file %s: %w", path, err)
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, fmt.Errorf("token file %s: %w", path, ErrEmpty)
	}
	return b, nil
}

// Matches reports whether r carries want in "Authorization: Bearer …"
// (the scheme in any case), comparing in constant time whatever the
// presented token.
func Matches(r *http.Request, want []byte) bool {
	w := sha256.Sum256(want)
	return matchesSum(r, &w)
}

func matchesSum(r *http.Request, sum *[sha256.Size]byte) bool {
	h := r.Header.Get("Authorization")
	const prefix = "bearer "
	if len(h) < len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(h[len(prefix):])))
	return subtle.ConstantTimeCompare(got[:], sum[:]) == 1
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
	return matchesSum(r, &t.sum)
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
