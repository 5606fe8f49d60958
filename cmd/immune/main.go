// Command immune watches deploys, compares their KPIs against a baseline
// with statistical tests, and pulls the revert path when a deploy hurts.
//
// Usage:
//
//	immune <command> [flags] [args]
//
// Run "immune help" for the list of commands.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
)

// Exit codes shared by every subcommand.
const (
	exitOK    = 0 // success
	exitFail  = 1 // ran, and the answer is "no" (invalid rules, failed tests) or an error
	exitUsage = 2 // the command line or the input files are unusable
)

// command is one subcommand. run gets the arguments after the command name.
type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

// commands is every subcommand, in the order "immune help" lists them.
var commands = []command{
	{"backtest", "replay past deploys through a rule file, without look-ahead", runBacktest},
	{"demo", "the whole story on one machine: a simulated fleet, a good deploy, a bad one reverted", runDemo},
	{"compare", "compare two samples with a two-sample test, like R or ministat", runCompare},
	{"deploy", "announce deploys to immune and read their verdicts (deploy start, group, status)", runDeploy},
	{"rules", "check and test KPI rule files (rules check, rules test)", runRules},
	{"run", "watch deploys and revert the bad ones (the service)", runRun},
	{"version", "print the version", runVersion},
}

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	return dispatch("immune", commands, usage, args, stdout, stderr)
}

// dispatch runs the command named by args[0]; with no command it prints
// usage and fails, with help it prints usage to stdout.
func dispatch(prog string, cmds []command, usage func(io.Writer), args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return exitOK
	}
	for _, c := range cmds {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "%s: unknown command %q\n\n", prog, args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: immune <command> [flags] [args]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	cs := append([]command(nil), commands...)
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].name < cs[j].name })
	for _, c := range cs {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, `Run "immune <command> -h" for a command's flags.`)
}

func runVersion(args []string, stdout, stderr io.Writer) int {
	if len(args) != 0 {
		fmt.Fprintln(stderr, "Usage: immune version")
		return exitUsage
	}
	fmt.Fprintf(stdout, "immune %s\n", version)
	return exitOK
}

// newFlags returns a subcommand's flag set: errors and -h print usage and
// the flags to stderr.
func newFlags(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses flags that may come before, between or after the
// positional arguments, and returns the positional ones. When done is
// true the command returns code at once: after -h (0) or a bad flag (2).
func parseFlags(fs *flag.FlagSet, args []string) (pos []string, code int, done bool) {
	pos, err := parseInterspersed(fs, args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return nil, exitOK, true
	case err != nil:
		return nil, exitUsage, true
	}
	return pos, exitOK, false
}

// parseInterspersed parses flags that may come before, between or after
// the positional arguments, and returns the positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}
