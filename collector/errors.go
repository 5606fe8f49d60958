package collector

import "errors"

// Errors of every Source. Implementations wrap them with the detail (the
// engine's or server's message), so test with errors.Is. When the caller's
// context ends first, the error wraps ctx.Err() as well.
var (
	// ErrBadQuery: the source refused the query (syntax, types, a range
	// it cannot evaluate, HTTP 400 or 422). Retrying does not help.
	ErrBadQuery = errors.New("bad query")
	// ErrTimeout: evaluation ran past the query timeout.
	ErrTimeout = errors.New("query timed out")
	// ErrTooManySamples: evaluation would load more samples than allowed.
	ErrTooManySamples = errors.New("query would load too many samples")
	// ErrUnavailable: the source could not be reached, or kept failing
	// (network errors, HTTP 5xx) after every retry.
	ErrUnavailable = errors.New("source unavailable")
	// ErrUnauthorized: the source refused the credentials (HTTP 401, 403).
	ErrUnauthorized = errors.New("source refused the credentials")
	// ErrBadResponse: the source answered something that is not a
	// Prometheus API response (HTTP 404, an HTML page, broken JSON).
	ErrBadResponse = errors.New("bad response from source")
	// ErrUnsupported: the result holds something this package does not
	// hand on, such as native histogram samples.
	ErrUnsupported = errors.New("unsupported result")
	// ErrClosed: the source was closed.
	ErrClosed = errors.New("source closed")
)
