// Command accuracy is the deploy-regression benchmark of
// ../shared/bench/README.md: real NAB series with synthetic deploys, judged
// by immune (analysis.Replay on the embedded store, the code path of
// `immune backtest`) and by two reference detectors, Kayenta-style and
// threshold-style; the synthetic table, i.i.d. Gaussian series against
// Wald's bound on the detection delay; the events/trials table,
// synthetic per-step error and request counts with a binomial or
// overdispersed error rate on a daily cycle, judged by immune's
// events/trials KPI and by the binomial test times the looks; and the
// concurrent table, a `concurrent` baseline on real multi-machine data.
//
// The concurrent table's protocol. NAB's EC2 CPU series of machines
// recorded over the same two weeks make two fleets: ec2-feb (24ae8d,
// 53ea38, 5f5533, fe7f93; 2014-02-14 to 02-28) and ec2-apr (77c1ca,
// ac20cd, c6585a; 2014-04-02 to 04-16), each machine an instance
// (instance="<file id>") of a service whose KPI is avg(cpu) over its
// instances, the files aligned row by row on one 5-minute grid
// (readFleet). Every machine in turn is the canary, a first rollout group
// of one instance (rollout groups 1 and n−1). Deploy points: the first
// window starts after two days (576 steps) of history, the next ones
// every W steps, windows not overlapping. Each deploy is a copy of the
// fleet up to the end of its window, with the history the calibration
// reads before it (placebos + L + W − 1 steps), in the store as
// cpu{copy="<fleet>/<canary>/<t>/<case>", instance, version}: the
// canary's series version="v1" up to and including the deploy's instant
// (sample t−1) and version="v2" after it, the other machines' version="v1"
// throughout. Cases: null, and shift-k for k in {0.5, 1, 2, 4}, k·s added
// to the canary's window values, s = 1.4826 × MAD of the canary's L
// values before the deploy (deploys with s = 0 skipped). W = 24 steps
// (-window), L = 48 (-lookback), alpha 0.01 (-alpha). Detectors:
//
//   - immune calibrated: baseline concurrent, lookback L, selectors
//     canary '{version="$version"}', baseline '{version="$previous_version"}'
//     and instance: instance, KPI avg(cpu) with bad: increase (placebos of
//     the canary machine's own past against the others, each less its mean
//     difference from them over the lookback before it, as the deploy is);
//   - immune uncalibrated: the same rule file without instance: the
//     Mann-Whitney test of the canary's values against the other
//     instances' over the same steps, p × the looks;
//   - Kayenta-style: the canary's W window values against the baseline's
//     (the other machines' mean) at the same steps, at the end of the
//     window: Kayenta's canary-versus-baseline-cluster mode.
//
// Reported per fleet and overall: deploys judged, false rollbacks (null
// judged fail), inconclusive, detection per shift, median delay in
// samples.
//
// The tables go to stdout in markdown, progress to stderr, and with -json
// one line per deploy, case and detector to a file. The output is the same
// on every run.
//
//	go run ./bench/accuracy [-nab DIR] [-json FILE] [-only nab|gauss|counts|concurrent]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"time"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// config holds the flags.
type config struct {
	NAB           string
	L, W          int
	History       int
	Alpha         float64
	SkipIrregular bool
	GaussSeries   int
	GaussDeploys  int
	GaussWindow   int
	CountsSeries  int
	CountsDays    int
	Seed          uint64
	Workers       int
	JSON          string
	Only          string
	Quiet         bool
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("accuracy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	fs.StringVar(&c.NAB, "nab", "../shared/bench/nab/data", "directory of the NAB CSV files (all *.csv under it)")
	fs.IntVar(&c.L, "lookback", 48, "L: baseline samples before each deploy")
	fs.IntVar(&c.W, "window", 24, "W: window samples after each deploy (NAB, events/trials and concurrent tables)")
	fs.IntVar(&c.History, "history", 0, "H: samples before each deploy's window that its copy keeps (at least L); 0 keeps all (the concurrent table keeps what its calibration reads)")
	fs.Float64Var(&c.Alpha, "alpha", 0.01, "the rule's alpha")
	irregular := fs.String("irregular", "clock", "deploys whose timestamps are irregular: clock (judge them on the regular clock of the file's median interval) or skip")
	fs.IntVar(&c.GaussSeries, "gauss-series", 50, "synthetic Gaussian series")
	fs.IntVar(&c.GaussDeploys, "gauss-deploys", 20, "deploys per synthetic series")
	fs.IntVar(&c.GaussWindow, "gauss-window", 200, "W of the synthetic Gaussian table")
	fs.Uint64Var(&c.Seed, "seed", 1, "seed of the synthetic series")
	fs.IntVar(&c.Workers, "workers", min(2, runtime.GOMAXPROCS(0)), "series judged in parallel")
	fs.StringVar(&c.JSON, "json", "", "write per-deploy details (JSON, one object per line) to this file")
	fs.IntVar(&c.CountsSeries, "counts-series", 24, "synthetic events/trials series per level of overdispersion")
	fs.IntVar(&c.CountsDays, "counts-days", 14, "days of 5-minute steps per events/trials series (deploys after the first week)")
	fs.StringVar(&c.Only, "only", "", "run one table only: nab, gauss, counts or concurrent")
	fs.BoolVar(&c.Quiet, "q", false, "no progress on stderr")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "accuracy: "+format+"\n", a...)
		return 2
	}
	switch {
	case fs.NArg() > 0:
		return usage("unexpected argument %q", fs.Arg(0))
	case c.L < 2 || c.W < 1 || c.GaussWindow < 1:
		return usage("-lookback must be at least 2, -window and -gauss-window at least 1")
	case c.History != 0 && c.History < c.L:
		return usage("-history %d: must be 0 (all) or at least -lookback %d", c.History, c.L)
	case !(c.Alpha > 0 && c.Alpha <= 0.5):
		return usage("-alpha %v: must be in (0, 0.5]", c.Alpha)
	case *irregular != "clock" && *irregular != "skip":
		return usage("-irregular %q: must be clock or skip", *irregular)
	case c.Only != "" && c.Only != "nab" && c.Only != "gauss" && c.Only != benchCounts && c.Only != benchConcurrent:
		return usage("-only %q: must be nab, gauss, counts or concurrent", c.Only)
	case c.GaussSeries < 1 || c.GaussDeploys < 1:
		return usage("-gauss-series and -gauss-deploys must be at least 1")
	case c.CountsSeries < 1 || c.CountsDays < 8:
		return usage("-counts-series must be at least 1, -counts-days at least 8")
	}
	c.SkipIrregular = *irregular == "skip"

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := bench(ctx, c, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "accuracy: %v\n", err)
		return 1
	}
	return 0
}

// gaussPerUnit is how many synthetic series share a store.
const gaussPerUnit = 5

func bench(ctx context.Context, c config, stdout, stderr io.Writer) error {
	start := time.Now()
	logf := func(format string, a ...any) {
		if !c.Quiet {
			fmt.Fprintf(stderr, "%6.1fs  "+format+"\n", append([]any{time.Since(start).Seconds()}, a...)...)
		}
	}

	var units []*unit
	var nab *nabReport
	if c.Only == "" || c.Only == "nab" {
		files, err := nabFiles(c.NAB)
		if err != nil {
			return err
		}
		p := params{L: c.L, W: c.W, History: c.History, Alpha: c.Alpha, Cases: nabCases, MADUnit: true,
			References: true, SkipIrregular: c.SkipIrregular}
		nab = &nabReport{Params: p}
		for _, path := range files {
			s, info, err := readNAB(c.NAB, path)
			if err != nil {
				return err
			}
			nab.Files = append(nab.Files, info)
			units = append(units, &unit{Bench: "nab", Params: p, Series: []*series{s}})
		}
		logf("read %d NAB files from %s", len(files), c.NAB)
	}
	var gauss *gaussReport
	if c.Only == "" || c.Only == "gauss" {
		p := params{L: c.L, W: c.GaussWindow, History: c.History, Alpha: c.Alpha, Cases: gaussCases}
		gauss = &gaussReport{Params: p, Series: c.GaussSeries, Count: c.GaussDeploys}
		n := c.GaussDeploys * (c.L + c.GaussWindow)
		for i := 0; i < c.GaussSeries; i += gaussPerUnit {
			u := &unit{Bench: "gauss", Params: p}
			for j := i; j < min(i+gaussPerUnit, c.GaussSeries); j++ {
				u.Series = append(u.Series, gaussSeries(c.Seed, j, n))
			}
			units = append(units, u)
		}
	}

	var counts *countsReport
	if c.Only == "" || c.Only == benchCounts {
		p := params{L: c.L, W: c.W, History: c.History, Alpha: c.Alpha}
		spec := countsSpec{Levels: defaultCountsLevels, Series: c.CountsSeries, Steps: c.CountsDays * countsDay,
			MinHistory: countsWeek, Rate: countsRate, Trials: countsTrials, Seed: c.Seed}
		counts = &countsReport{Params: p, Spec: spec}
		for li := range spec.Levels {
			for i := range spec.Series {
				units = append(units, &unit{Bench: benchCounts, Params: p, MinHistory: spec.MinHistory,
					Counts: []*countsSeries{makeCountsSeries(spec, li, i)}})
			}
		}
	}

	var conc *concurrentReport
	if c.Only == "" || c.Only == benchConcurrent {
		p := params{L: c.L, W: c.W, History: concurrentHistory(c.Alpha, c.L, c.W), Alpha: c.Alpha, Cases: concurrentCases, MADUnit: true}
		conc = &concurrentReport{Params: p, MinHistory: max(concurrentMinHistory, c.L)}
		for _, spec := range concurrentFleets {
			f, err := readFleet(c.NAB, spec)
			if err != nil {
				return err
			}
			conc.Fleets = append(conc.Fleets, f)
			units = append(units, fleetUnits(f, p, conc.MinHistory)...)
		}
		logf("read %d fleets from %s", len(conc.Fleets), c.NAB)
	}

	done, deploys := 0, 0
	progress := func(u *unit, recs []record, took time.Duration) {
		done++
		n := 0
		for _, r := range recs {
			if r.Detector == detImmune {
				n++
			}
		}
		deploys += n
		name, last := u.names()
		if last != name {
			name += fmt.Sprintf(" … %s", last)
		}
		logf("[%d/%d] %s: %d copies judged in %.1fs (%d in all)", done, len(units), name, n, took.Seconds(), deploys)
	}
	results, err := runAll(ctx, units, c.Workers, progress)
	if err != nil {
		return err
	}

	var nabRecs, gaussRecs, countsRecs, concRecs []record
	for i, u := range units {
		switch u.Bench {
		case "nab":
			nabRecs = append(nabRecs, results[i]...)
		case benchCounts:
			countsRecs = append(countsRecs, results[i]...)
		case benchConcurrent:
			concRecs = append(concRecs, results[i]...)
		default:
			gaussRecs = append(gaussRecs, results[i]...)
		}
	}
	if nab != nil {
		nab.Records = nabRecs
		nab.write(stdout)
	}
	if gauss != nil {
		gauss.Records = gaussRecs
		gauss.write(stdout)
	}
	if counts != nil {
		counts.Records = countsRecs
		counts.write(stdout)
	}
	if conc != nil {
		conc.Records = concRecs
		conc.write(stdout)
	}
	if c.JSON != "" {
		f, err := os.Create(c.JSON)
		if err != nil {
			return err
		}
		if err := writeJSON(f, nabRecs, gaussRecs, countsRecs, concRecs); err != nil {
			f.Close()
			return fmt.Errorf("write %s: %w", c.JSON, err)
		}
		if err := f.Close(); err != nil {
			return err
		}
		logf("wrote %s", c.JSON)
	}
	logf("done in %s", time.Since(start).Round(time.Second))
	return nil
}
