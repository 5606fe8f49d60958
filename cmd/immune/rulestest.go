package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/immune-project/immune/rules/ruletest"
)

const rulesTestUsage = `Usage: immune rules test [-v] FILE...

Runs unit tests of KPI rule files: each test file names rule files, gives
input series in Prometheus' expanding notation (0+10x60, _, stale), places
deploys in time and says which verdict each deploy and KPI must get. The
deploys are judged as a backtest would judge them, on an embedded store
holding the input series only. Format: docs/rules-testing.md.

Each failed expectation prints as FILE:LINE: test "NAME": deploy "ID": …
followed by the verdict's explanation. The last line counts the tests:
"N passed, M failed".

Exit status: 0 when every test passed, 1 when any failed or a file is
invalid, 2 on bad flags or no files.

Flags:
`

func runRulesTest(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("rules test", rulesTestUsage, stderr)
	verbose := fs.Bool("v", false, "print every test, passed or not, and the explanation of every deploy")
	files, code, done := parseFlags(fs, args)
	if done {
		return code
	}
	if len(files) == 0 {
		fmt.Fprintln(stderr, "immune rules test: no test files given (see immune rules test -h)")
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	passed, failed, broken := 0, 0, 0
	for _, path := range files {
		opts := ruletest.Options{}
		if *verbose {
			opts.Progress = func(test, id string, explanation []string) {
				fmt.Fprintf(stdout, "%s: test %q: deploy %q:\n", path, test, id)
				for _, line := range explanation {
					fmt.Fprintf(stdout, "    %s\n", line)
				}
			}
		}
		res, err := ruletest.RunFile(ctx, path, opts)
		if err != nil {
			fmt.Fprintf(stdout, "%v\n", err)
			broken++
			if ctx.Err() != nil {
				break
			}
			continue
		}
		for i, f := range res.Failures {
			fmt.Fprintln(stdout, f.Error())
			// The explanation once per deploy, after its last failure.
			if next := i + 1; next < len(res.Failures) && res.Failures[next].Test == f.Test && res.Failures[next].Deploy == f.Deploy {
				continue
			}
			for _, line := range f.Explanation {
				fmt.Fprintf(stdout, "    %s\n", line)
			}
		}
		passed += res.Passed
		failed += res.Tests - res.Passed
		if *verbose || len(res.Failures) > 0 {
			fmt.Fprintf(stdout, "%s: %d passed, %d failed\n", path, res.Passed, res.Tests-res.Passed)
		}
	}
	fmt.Fprintf(stdout, "%d passed, %d failed\n", passed, failed)
	if broken > 0 {
		fmt.Fprintf(stdout, "%d test %s could not be run\n", broken, plural(broken, "file", "files"))
	}
	if failed > 0 || broken > 0 {
		return exitFail
	}
	return exitOK
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
