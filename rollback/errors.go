package rollback

import "errors"

// Errors of every Trigger and Ownership. Implementations wrap them with
// the detail, so test with errors.Is. When the caller's context ends
// first, the error wraps ctx.Err() as well.
var (
	// ErrRejected: the revert path refused the request for good (HTTP
	// 4xx, a command that exited non-zero, a deploy znode that does not
	// exist). Retrying the same request does not help.
	ErrRejected = errors.New("revert rejected")
	// ErrUnavailable: the revert path could not be reached, or kept
	// failing (network errors, HTTP 5xx, no ZooKeeper session) until the
	// deadline.
	ErrUnavailable = errors.New("revert path unavailable")
	// ErrTimeout: the revert did not finish within its timeout (a
	// command that hung was killed).
	ErrTimeout = errors.New("revert timed out")
	// ErrNotOwner: this instance does not own the deploy's analysis (it
	// never acquired it, released it, or lost it with its session): it
	// must not revert, and did not.
	ErrNotOwner = errors.New("not the owner of the deploy")
	// ErrOwned: another instance owns the deploy's analysis.
	ErrOwned = errors.New("deploy owned by another instance")
	// ErrLeaseLost: the lease ended with its session; a new one must be
	// acquired.
	ErrLeaseLost = errors.New("ownership lost")
	// ErrBadRequest: the request lacks a field the trigger needs (deploy
	// id, service).
	ErrBadRequest = errors.New("bad revert request")
)
