package main

import (
	"fmt"
	"io"

	"github.com/immune-project/immune/rules"
)

const rulesUsage = `Usage: immune rules <command> [flags] [args]

Works with KPI rule files (format: docs/rules.md).

Commands:
`

// rulesCommands are the subcommands of "immune rules", in the order the
// usage lists them.
var rulesCommands = []command{
	{"check", "check rule files: fields, types, ranges, PromQL", runRulesCheck},
	{"test", "run unit tests of rule files: input series, deploys, expected verdicts", runRulesTest},
}

func rulesUsageTo(w io.Writer) {
	fmt.Fprint(w, rulesUsage)
	for _, c := range rulesCommands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, `Run "immune rules <command> -h" for a command's flags.`)
}

// runRules dispatches "immune rules <command>".
func runRules(args []string, stdout, stderr io.Writer) int {
	return dispatch("immune rules", rulesCommands, rulesUsageTo, args, stdout, stderr)
}

const rulesCheckUsage = `Usage: immune rules check [-q] FILE...

Checks KPI rule files: YAML, fields, types, enums, durations, ranges,
required fields, duplicate keys and KPI names, PromQL. Every problem of
every file is printed to stdout, one per line, sorted by position:

  FILE:LINE:COL: kpi "NAME": FIELD: MESSAGE    (a problem in a KPI)
  FILE:LINE:COL: FIELD: MESSAGE                (a problem elsewhere)

A file that is valid prints "FILE: ok (…)" unless -q. A file that cannot
be read is reported like an invalid one, as "FILE: cannot read: …".

Exit status: 0 when every file is valid, 1 when any is invalid or
unreadable, 2 on bad flags or no files.

Flags:
`

func runRulesCheck(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("rules check", rulesCheckUsage, stderr)
	quiet := fs.Bool("q", false, "print problems only, no line for a valid file")
	files, code, done := parseFlags(fs, args)
	if done {
		return code
	}
	if len(files) == 0 {
		fmt.Fprintln(stderr, "immune rules check: no files given (see immune rules check -h)")
		return exitUsage
	}
	invalid, problems := 0, 0
	for _, path := range files {
		f, errs := rules.ParseFile(path)
		if len(errs) > 0 {
			invalid++
			problems += len(errs)
			for _, err := range errs {
				fmt.Fprintln(stdout, err)
			}
			continue
		}
		if !*quiet {
			base := f.Analysis.Baseline.String()
			if f.Selectors != nil && f.Selectors.Instance != "" {
				base += " calibrated across instances (label " + f.Selectors.Instance + ")"
			}
			fmt.Fprintf(stdout, "%s: ok (service %s, %s, baseline %s)\n", path, f.Service, nouns(len(f.KPIs), "KPI"), base)
		}
	}
	if invalid > 0 {
		fmt.Fprintf(stderr, "immune rules check: %d of %s invalid, %s\n", invalid, nouns(len(files), "file"), nouns(problems, "problem"))
		return exitFail
	}
	return exitOK
}

// nouns writes n and the noun, with an s unless n is 1.
func nouns(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
