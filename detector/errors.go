package detector

import "errors"

var (
	// ErrTooFewSamples: a sample is smaller than the test needs.
	ErrTooFewSamples = errors.New("too few samples")
	// ErrNonFinite: a sample holds NaN or ±Inf.
	ErrNonFinite = errors.New("non-finite value")
	// ErrConstant: the data are essentially constant, so the test's
	// statistic is undefined (R: "data are essentially constant").
	ErrConstant = errors.New("data are essentially constant")
	// ErrInvalidOption: an option is out of range.
	ErrInvalidOption = errors.New("invalid option")
	// ErrInvalidCounts: events and trials do not form a proportion.
	ErrInvalidCounts = errors.New("invalid counts")
)
