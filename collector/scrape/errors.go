package scrape

import "errors"

// Errors of a failed scrape; the Report's Err wraps one of them, or the
// HTTP client's error.
var (
	// ErrStatus: the target answered with a status other than 200.
	ErrStatus = errors.New("unexpected http status")
	// ErrTimeout: no complete answer within the scrape timeout.
	ErrTimeout = errors.New("scrape timeout")
	// ErrBodySizeLimit: the (uncompressed) body is larger than the limit.
	ErrBodySizeLimit = errors.New("body size limit exceeded")
	// ErrParse: the body is not valid text or OpenMetrics exposition.
	ErrParse = errors.New("bad exposition")
	// ErrSeriesLimit: the target exposes more series than the limit.
	ErrSeriesLimit = errors.New("series limit exceeded")
	// ErrStore: the store did not take the samples.
	ErrStore = errors.New("store")
	// ErrNoStore is returned by NewManager without a store.
	ErrNoStore = errors.New("scrape: no store")
)
