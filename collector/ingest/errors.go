package ingest

import "errors"

// Why a request was refused. Responses and logs carry them with the
// detail; the rejected-samples metric names them by reason (see reasonOf).
var (
	// ErrUnauthorized: the request lacks the bearer token, or has another.
	ErrUnauthorized = errors.New("missing or wrong bearer token")
	// ErrBodyTooLarge: the body, or its decoded form, is over
	// Limits.MaxBodyBytes.
	ErrBodyTooLarge = errors.New("body too large")
	// ErrUnsupportedMediaType: a Content-Type or Content-Encoding the
	// endpoint does not take.
	ErrUnsupportedMediaType = errors.New("unsupported media type")
	// ErrParse: the body does not decode (snappy, protobuf, text, JSON).
	ErrParse = errors.New("cannot parse body")
	// ErrTooManySamples: more samples than Limits.MaxSamplesPerRequest.
	ErrTooManySamples = errors.New("too many samples in request")
	// ErrTooManySeries: more series than Limits.MaxSeriesPerRequest.
	ErrTooManySeries = errors.New("too many series in request")
	// ErrTooManyLabels: a series with more labels than
	// Limits.MaxLabelsPerSeries.
	ErrTooManyLabels = errors.New("too many labels")
	// ErrLabelNameTooLong: a label name over Limits.MaxLabelNameLength.
	ErrLabelNameTooLong = errors.New("label name too long")
	// ErrLabelValueTooLong: a label value over Limits.MaxLabelValueLength.
	ErrLabelValueTooLong = errors.New("label value too long")
	// ErrInvalidLabels: no metric name, a label name or value that is not
	// valid UTF-8 (or empty, for a name), a label name twice.
	ErrInvalidLabels = errors.New("invalid labels")
	// ErrTooFarAhead: a timestamp more than Limits.MaxAhead past the
	// receiver's clock.
	ErrTooFarAhead = errors.New("timestamp too far in the future")
	// ErrDuplicateSample: a push with two different values for a series
	// at one timestamp.
	ErrDuplicateSample = errors.New("two values for one series at one timestamp")
)
