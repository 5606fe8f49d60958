// Package httpx holds what the deploy HTTP endpoints share: JSON
// answers and errors, bearer tokens read from a file, and request
// bodies decoded field by field so that an error names the field.
package httpx

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/immune-project/immune/internal/bearer"
)

// MaxBody is the largest request body read.
const MaxBody = 1 << 20

// WriteJSON writes v as JSON with the status code.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// WriteError writes {"status":"error","error":msg} with the code.
func WriteError(w http.ResponseWriter, code int, msg string) {
	WriteJSON(w, code, map[string]string{"status": "error", "error": msg})
}

// ReadBody reads a request body of at most MaxBody bytes.
func ReadBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if len(b) > MaxBody {
		return nil, fmt.Errorf("body: larger than %d bytes", MaxBody)
	}
	return b, nil
}

// Token checks "Authorization: Bearer …" against a token read from a
// file at every request (so that it can be rotated without a restart).
// The token is never logged nor put in an error.
type Token struct {
	File string // empty: no token needed
}

// ErrUnauthorized: the request has no token or the wrong one.
var ErrUnauthorized = errors.New("missing or wrong bearer token")

// Check returns nil when no token is configured or the request carries
// it, ErrUnauthorized when it does not, and another error (naming the
// file, never its content) when the file cannot be read.
func (t Token) Check(r *http.Request) error {
	if t.File == "" {
		return nil
	}
	want, err := bearer.Read(t.File)
	if err != nil {
		return err
	}
	if !bearer.Matches(r, want) {
		return ErrUnauthorized
	}
	return nil
}

// Authorize checks the token and answers 401 (with bearer.Challenge's
// WWW-Authenticate) or 500 when it fails; it reports whether the handler
// may go on, and the error: ErrUnauthorized for a 401.
func (t Token) Authorize(w http.ResponseWriter, r *http.Request) (ok bool, err error) {
	err = t.Check(r)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrUnauthorized):
		bearer.Challenge(w, r)
		WriteError(w, http.StatusUnauthorized, err.Error())
	default:
		WriteError(w, http.StatusInternalServerError, "cannot check the bearer token: see the server's log")
	}
	return false, err
}

// FieldError is a request body field that does not fit.
type FieldError struct {
	Field string // like "groups" or "alerts[2].startsAt"; empty for the body itself
	Msg   string
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return "body: " + e.Msg
	}
	return "field " + e.Field + ": " + e.Msg
}

// DecodeObject decodes a JSON object into the struct v points to, field
// by field, so that an error names the field (prefix + its JSON name).
// With strict, a key that is not a field of v is an error. A field
// absent from data keeps its value.
func DecodeObject(data []byte, v any, prefix string, strict bool) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		var field string
		if prefix != "" {
			field = strings.TrimSuffix(prefix, ".")
		}
		if bytes.HasPrefix(bytes.TrimSpace(data), []byte("{")) || len(bytes.TrimSpace(data)) == 0 {
			return &FieldError{field, "invalid JSON: " + jsonMsg(err)}
		}
		return &FieldError{field, "want a JSON object"}
	}
	if raw == nil {
		return &FieldError{strings.TrimSuffix(prefix, "."), "want a JSON object, got null"}
	}
	rv := reflect.ValueOf(v).Elem()
	rt := rv.Type()
	fields := map[string]int{}
	for i := 0; i < rt.NumField(); i++ {
		name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		fields[name] = i
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		i, ok := fields[k]
		if !ok {
			if strict {
				return &FieldError{prefix + k, "unknown field"}
			}
			continue
		}
		f := rv.Field(i)
		if err := json.Unmarshal(raw[k], f.Addr().Interface()); err != nil {
			var te *json.UnmarshalTypeError
			if f.Type() == timeType && !errors.As(err, &te) {
				return &FieldError{prefix + k, "want an RFC 3339 time like 2026-01-02T15:04:05Z"}
			}
			return &FieldError{prefix + k, jsonMsg(err)}
		}
	}
	return nil
}

// HasField reports whether the JSON object data has the key name.
func HasField(data []byte, name string) bool {
	var raw map[string]json.RawMessage
	if json.Unmarshal(data, &raw) != nil {
		return false
	}
	_, ok := raw[name]
	return ok
}

var timeType = reflect.TypeFor[time.Time]()

// jsonMsg turns encoding/json's messages into short ones without Go
// type paths.
func jsonMsg(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("want %s, got %s", kind(te.Type), te.Value)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%s (offset %d)", strings.TrimPrefix(se.Error(), "json: "), se.Offset)
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func kind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint, reflect.Uint64:
		return "an integer"
	case reflect.Float64, reflect.Float32:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		if t == timeType {
			return "an RFC 3339 time"
		}
		return "an object"
	}
	return t.String()
}
