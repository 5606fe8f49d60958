package sim

import "errors"

// Errors of the package; wrapped with the detail, test with errors.Is.
var (
	// ErrUnknownInstance: no instance of the fleet has that name.
	ErrUnknownInstance = errors.New("unknown instance")
	// ErrRejected: immune's HTTP API refused a request (HTTP 4xx);
	// retrying does not help.
	ErrRejected = errors.New("request rejected")
	// ErrUnavailable: immune's HTTP API could not be reached or answered
	// HTTP 5xx.
	ErrUnavailable = errors.New("deploy api unavailable")
	// ErrBadResponse: an answer that is not what the protocol says.
	ErrBadResponse = errors.New("bad response")
	// ErrClosed: the fleet was closed.
	ErrClosed = errors.New("fleet closed")
)
