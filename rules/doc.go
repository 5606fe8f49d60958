// Package rules reads KPI rule files, format version 1: which KPIs of a
// service to watch after a deploy, what a bad change of each is, and how
// the deploy is compared with its baseline.
//
// Parse and ParseFile are strict: unknown fields, wrong types, bad enums,
// durations and numbers, missing required fields, duplicate keys and KPI
// names, and invalid PromQL are all errors, and every error of a file is
// reported at once, sorted by position, as an *Error that prints as
//
//	checkout.yaml:14:5: kpi "conversion": bad: must be one of increase, decrease, either (got "down")
//	checkout.yaml:6:10: analysis.alpha: must be in (0, 0.5] (got 0.7)
//
// The parsed File has every default filled in. For the concurrent baseline,
// File.Queries turns a KPI's PromQL into the canary's and the baseline's
// queries by injecting the file's selectors (see Inject).
//
// The package queries nothing and imports no other package of immune; the
// reference of the format is docs/rules.md.
package rules
