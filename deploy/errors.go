package deploy

import "errors"

// Errors of the deploy sources; they wrap them with the detail, so test
// with errors.Is.
var (
	// ErrMalformed: a record (znode data, a line of the HTTP API's log)
	// is not valid JSON or misses a required field. (A request body's
	// error names the field instead.)
	ErrMalformed = errors.New("malformed record")
	// ErrUnknownDeploy: no deploy has that id.
	ErrUnknownDeploy = errors.New("unknown deploy")
	// ErrConflict: a record with that id exists with different content.
	ErrConflict = errors.New("conflicting record")
)
