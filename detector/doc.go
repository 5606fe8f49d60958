// Package detector holds the statistics that decide a deploy: two-sample
// tests (Mann-Whitney with the Hodges-Lehmann interval, Welch's t,
// Kolmogorov-Smirnov, the two-proportion test), and the judge that turns
// per-KPI results into a verdict with its explanation.
//
// Nothing here does I/O or reads a clock: every function is pure, so each
// number can be checked against R (see testdata/) and benchmarked alone.
// Every test takes the canary first, as R's x, and the baseline second.
package detector
