package annotator

import "errors"

// Errors of annotators. Implementations wrap them with the detail, so
// test with errors.Is.
var (
	// ErrBadEvent: the event cannot be annotated (unknown kind, no deploy
	// id, no time). Retrying does not help.
	ErrBadEvent = errors.New("bad annotation event")
	// ErrRejected: the backend refused the annotation (HTTP 4xx other
	// than 401 and 403, an unknown dashboard). Retrying does not help.
	ErrRejected = errors.New("annotation rejected")
	// ErrUnauthorized: the backend refused the credentials (HTTP 401,
	// 403). Retrying does not help.
	ErrUnauthorized = errors.New("annotation backend refused the credentials")
	// ErrUnavailable: the backend could not be reached or failed (network
	// errors, HTTP 5xx). Async retries these.
	ErrUnavailable = errors.New("annotation backend unavailable")
	// ErrQueueFull: Async's queue was full; the event was dropped.
	ErrQueueFull = errors.New("annotation queue full")
	// ErrClosed: the annotator was closed.
	ErrClosed = errors.New("annotator closed")
)

// Permanent reports whether retrying err cannot help: a bad event, a
// rejected annotation, refused credentials or a closed annotator.
func Permanent(err error) bool {
	return errors.Is(err, ErrBadEvent) || errors.Is(err, ErrRejected) || errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrClosed)
}
