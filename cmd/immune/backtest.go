package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/common/model"

	"github.com/immune-project/immune/analysis"
	"github.com/immune-project/immune/collector"
	"github.com/immune-project/immune/collector/embedded"
	"github.com/immune-project/immune/collector/load"
	"github.com/immune-project/immune/collector/remote"
	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/detector"
	"github.com/immune-project/immune/rules"
)

const backtestUsage = `Usage: immune backtest --rules RULES --deploys DEPLOYS.csv (--data FILE... | --prometheus URL) [flags]

Replays past deploys through a rule file: for each deploy, time steps by the
rule's step through its window, and at each step the deploy is judged on the
data up to that step only, exactly as the live analysis would have judged it.
A deploy stops at its first fail; otherwise its verdict is the one at the end
of the window.

--data loads history into an embedded store: CSV (timestamp,<metric>...) or
Prometheus/OpenMetrics text with timestamps (see docs/collector.md). With
--prometheus the history is read from a Prometheus-compatible API instead.

DEPLOYS.csv has a header with at least id,time (optionally service, version,
previous_version). A deploy's time is when the new version took over: the
baseline ends there and the first evaluation is one step later.

Exit status: 0 when the backtest ran, whatever the verdicts; 1 on errors
(invalid rules, deploys or data, an unreachable source); 2 on bad flags.

Flags:
`

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func runBacktest(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("backtest", backtestUsage, stderr)
	var data, labelFlags stringList
	rulesPath := fs.String("rules", "", "the rule file (required)")
	deploysPath := fs.String("deploys", "", "CSV of the deploys to replay (required)")
	fs.Var(&data, "data", "a history file to load into the embedded store (repeatable)")
	fs.Var(&labelFlags, "label", "name=value label added to every series loaded with --data (repeatable)")
	promURL := fs.String("prometheus", "", "read history from this Prometheus-compatible API instead of --data")
	tokenFile := fs.String("bearer-token-file", "", "with --prometheus: file holding a bearer token")
	basicUser := fs.String("basic-auth-user", "", "with --prometheus: basic auth user name")
	basicPassFile := fs.String("basic-auth-password-file", "", "with --prometheus: file holding the basic auth password")
	format := fs.String("format", "text", "output: text (a table) or json (one object per deploy per line)")
	quiet := fs.Bool("q", false, "no progress on stderr")
	pos, code, done := parseFlags(fs, args)
	if done {
		return code
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "immune backtest: "+format+"\n", a...)
		return exitUsage
	}
	switch {
	case len(pos) > 0:
		return usageErr("unexpected argument %q (see immune backtest -h)", pos[0])
	case *rulesPath == "":
		return usageErr("--rules is required")
	case *deploysPath == "":
		return usageErr("--deploys is required")
	case len(data) == 0 && *promURL == "":
		return usageErr("give history with --data FILE or --prometheus URL")
	case len(data) > 0 && *promURL != "":
		return usageErr("--data and --prometheus exclude each other")
	case *format != "text" && *format != "json":
		return usageErr("--format %q: must be text or json", *format)
	case len(labelFlags) > 0 && len(data) == 0:
		return usageErr("--label applies to --data only")
	}
	labels := map[string]string{}
	for _, l := range labelFlags {
		name, value, ok := strings.Cut(l, "=")
		if !ok || name == "" {
			return usageErr("--label %q: want name=value", l)
		}
		labels[name] = value
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "%v\n", err)
		return exitFail
	}

	rf, errs := rules.ParseFile(*rulesPath)
	if len(errs) > 0 {
		return fail(errors.Join(errs...))
	}
	deploysData, err := os.ReadFile(*deploysPath)
	if err != nil {
		return fail(err)
	}
	deploys, err := deploy.ParseCSV(*deploysPath, deploysData)
	if err != nil {
		return fail(err)
	}
	for i := range deploys {
		d := &deploys[i]
		if d.Service != "" && d.Service != rf.Service {
			return fail(fmt.Errorf("%s: deploy %q is of service %q, %s is for %q", *deploysPath, d.ID, d.Service, *rulesPath, rf.Service))
		}
		d.Service = rf.Service
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	progress := newProgress(stderr, *quiet)

	var src collector.Source
	if *promURL != "" {
		r, err := remote.New(remote.Options{URL: *promURL, BearerTokenFile: *tokenFile,
			BasicAuthUsername: *basicUser, BasicAuthPasswordFile: *basicPassFile})
		if err != nil {
			return fail(err)
		}
		defer r.Close()
		// One query first, so that a wrong URL or credentials stop the
		// backtest at once and not at its first deploy.
		if _, _, err := r.Query(ctx, "vector(1)", deploys[0].Time); err != nil {
			return fail(fmt.Errorf("prometheus %s: %w", r.URL(), err))
		}
		src = r
	} else {
		store, err := embedded.Open(embedded.Options{})
		if err != nil {
			return fail(err)
		}
		defer store.Close()
		for _, path := range data {
			st, err := load.File(ctx, store, path, load.Options{Labels: labels})
			if err != nil {
				return fail(err)
			}
			progress.logf("loaded %s: %d series, %d samples, %s to %s", path, st.Series, st.Samples,
				st.First.UTC().Format(time.RFC3339), st.Last.UTC().Format(time.RFC3339))
		}
		src = store
	}

	var decisions []analysis.Decision
	enc := json.NewEncoder(stdout)
	for i, d := range deploys {
		dec, err := analysis.Replay(ctx, src, rf, d, nil)
		if err != nil {
			progress.done()
			return fail(fmt.Errorf("deploy %q: %w", d.ID, err))
		}
		progress.bar(i+1, len(deploys))
		if *format == "json" {
			if err := enc.Encode(dec); err != nil {
				return fail(err)
			}
			continue
		}
		decisions = append(decisions, dec)
	}
	progress.done()
	if *format == "text" {
		printBacktest(stdout, rf, decisions)
	}
	return exitOK
}

func printBacktest(w io.Writer, rf *rules.File, decisions []analysis.Decision) {
	a := rf.Analysis
	fmt.Fprintf(w, "%s: baseline %s, window %s, step %s, alpha %g (%d looks)\n\n",
		rf.Service, a.Baseline, model.Duration(a.Window), model.Duration(a.Step), a.Alpha, analysis.Looks(a))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DEPLOY\tTIME\tVERDICT\tAFTER\tWHY")
	count := map[detector.Outcome]int{}
	for _, d := range decisions {
		count[d.Verdict.Outcome]++
		after := "-"
		if !d.DecidedAt.IsZero() {
			after = d.DecidedAt.Sub(d.Deploy.Time).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.Deploy.ID, d.Deploy.Time.UTC().Format(time.RFC3339),
			d.Verdict.Outcome, after, why(d.Verdict))
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%d deploys: %d pass, %d fail, %d inconclusive\n", len(decisions),
		count[detector.Pass], count[detector.Fail], count[detector.Inconclusive])
}

// why is the sentence that explains a verdict best: the first failing KPI's,
// else the first inconclusive one's, else that of the KPI that came
// closest to failing (the smallest p-value against its threshold).
func why(v detector.Verdict) string {
	best, closest := "", math.Inf(1)
	for _, k := range v.KPIs {
		switch {
		case k.Outcome == v.Outcome && v.Outcome != detector.Pass:
			return k.Sentence
		case v.Outcome == detector.Pass && k.PValue/k.Threshold < closest:
			best, closest = k.Sentence, k.PValue/k.Threshold
		}
	}
	if best == "" {
		return v.Reason
	}
	return best
}

// progress draws a bar on stderr when it is a terminal, and otherwise
// prints nothing but the log lines.
type progress struct {
	w     io.Writer
	quiet bool
	tty   bool
	drawn bool
}

func newProgress(w io.Writer, quiet bool) *progress {
	p := &progress{w: w, quiet: quiet}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *progress) logf(format string, a ...any) {
	if p.quiet {
		return
	}
	p.done()
	fmt.Fprintf(p.w, format+"\n", a...)
}

func (p *progress) bar(i, n int) {
	if p.quiet || !p.tty {
		return
	}
	const width = 30
	fill := width * i / n
	fmt.Fprintf(p.w, "\rbacktest [%s%s] %d/%d deploys", strings.Repeat("=", fill), strings.Repeat(" ", width-fill), i, n)
	p.drawn = true
}

func (p *progress) done() {
	if p.drawn {
		fmt.Fprintln(p.w)
		p.drawn = false
	}
}
