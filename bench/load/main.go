// Command load is the load benchmark of issue 8: many concurrent live
// analyses on the embedded store, through the code path of `immune run`
// (analysis.Supervisor, the embedded store's PromQL, rollback.Once with
// the fsynced audit log), with samples arriving every step as a scraper
// would append them.
//
// It reports the CPU time and the heap per analysis, the time per look,
// how late looks ran, and, for the deploys made bad, the time from the
// append of the sample that decided to the revert handed to the trigger
// (target: under one step).
//
//	go run ./bench/load [-analyses 1000] [-kpis 10] [-step 15s] [-window 5m] [-speed 1]
//
// With -speed N the simulated clock runs N times as fast as the wall
// clock: shorter runs, N times the load per wall-clock second.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/immune-project/immune/analysis"
	"github.com/immune-project/immune/collector/embedded"
	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/rollback"
	"github.com/immune-project/immune/rollback/audit"
	"github.com/immune-project/immune/rules"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

type flags struct {
	analyses, kpis int
	step, window   time.Duration
	speed          float64
	bad            float64
	seed           uint64
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f flags
	fs.IntVar(&f.analyses, "analyses", 1000, "concurrent deploy analyses")
	fs.IntVar(&f.kpis, "kpis", 10, "KPIs per analysis")
	fs.DurationVar(&f.step, "step", 15*time.Second, "the rule files' step (and the append interval)")
	fs.DurationVar(&f.window, "window", 5*time.Minute, "the rule files' window")
	fs.Float64Var(&f.speed, "speed", 1, "simulated seconds per wall-clock second")
	fs.Float64Var(&f.bad, "bad", 0.1, "share of deploys whose first KPI drops by 4 standard deviations")
	fs.Uint64Var(&f.seed, "seed", 1, "seed of the values")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if f.analyses < 1 || f.kpis < 1 || f.step <= 0 || f.window < f.step || f.speed <= 0 || f.bad < 0 || f.bad > 1 {
		fmt.Fprintln(stderr, "load: want analyses, kpis ≥ 1, 0 < step ≤ window, speed > 0, 0 ≤ bad ≤ 1")
		return 2
	}
	if err := bench(f, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "load:", err)
		return 1
	}
	return 0
}

// clock is the simulated clock: origin plus speed × the wall time elapsed.
type clock struct {
	origin, wall0 time.Time
	speed         float64
}

func (c clock) Now() time.Time {
	return c.origin.Add(time.Duration(float64(time.Since(c.wall0)) * c.speed))
}
func (c clock) wall(d time.Duration) time.Duration { return time.Duration(float64(d) / c.speed) }

// ruleSet is one generated rule file per service.
type ruleSet map[string]*rules.File

func (r ruleSet) For(s string) *rules.File { return r[s] }

// trigger records when each revert was asked for.
type trigger struct {
	mu    sync.Mutex
	at    map[string]time.Time // wall clock
	judge map[string]time.Time // the deciding look's instant
}

func (t *trigger) Revert(_ context.Context, req rollback.Request) (rollback.Result, error) {
	now := time.Now()
	var rep struct {
		At time.Time `json:"evaluated_at"`
	}
	_ = json.Unmarshal(req.Evidence, &rep)
	t.mu.Lock()
	t.at[req.Deploy.ID], t.judge[req.Deploy.ID] = now, rep.At
	t.mu.Unlock()
	return rollback.Result{Trigger: "load", Reverted: true}, nil
}

func bench(f flags, stdout, stderr io.Writer) error {
	dir, err := os.MkdirTemp("", "immune-load-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	st, err := embedded.Open(embedded.Options{Dir: filepath.Join(dir, "tsdb")})
	if err != nil {
		return err
	}
	defer st.Close()
	al, err := audit.Open(filepath.Join(dir, "audit.jsonl"), audit.Options{})
	if err != nil {
		return err
	}
	defer al.Close()

	// One rule file per service: a concurrent baseline, f.kpis gauges.
	rs := ruleSet{}
	for i := range f.analyses {
		svc := fmt.Sprintf("svc%d", i)
		var b strings.Builder
		fmt.Fprintf(&b, "service: %s\nanalysis: {baseline: concurrent, window: %s, step: %s, alpha: 0.01}\n", svc, f.window, f.step)
		b.WriteString("selectors:\n  canary: '{version=\"$version\"}'\n  baseline: '{version=\"$previous_version\"}'\nkpis:\n")
		for k := range f.kpis {
			fmt.Fprintf(&b, "  - name: kpi%d\n    query: avg(kpi%d{service=%q})\n    bad: decrease\n", k, k, svc)
		}
		file, errs := rules.Parse(svc+".yaml", []byte(b.String()))
		if len(errs) > 0 {
			return fmt.Errorf("generated rules: %v", errs)
		}
		rs[svc] = file
	}

	start := time.Now().Truncate(f.step).Add(f.step)
	ck := clock{origin: start, wall0: time.Now(), speed: f.speed}
	rng := rand.New(rand.NewPCG(f.seed, 1))
	bad := make([]bool, f.analyses)
	for i := range bad {
		bad[i] = rng.Float64() < f.bad
	}

	// The ingester: at every step, one sample per service, KPI and version.
	type ref struct{ canary, baseline embedded.SeriesRef }
	refs := make([][]ref, f.analyses)
	lbls := make([][][2]labels.Labels, f.analyses)
	for i := range refs {
		refs[i] = make([]ref, f.kpis)
		lbls[i] = make([][2]labels.Labels, f.kpis)
		for k := range f.kpis {
			svc := fmt.Sprintf("svc%d", i)
			name := fmt.Sprintf("kpi%d", k)
			lbls[i][k] = [2]labels.Labels{
				labels.FromStrings("__name__", name, "service", svc, "version", "v2"),
				labels.FromStrings("__name__", name, "service", svc, "version", "v1"),
			}
		}
	}
	var (
		appendedMu sync.Mutex
		appended   = map[int64]time.Time{} // instant (ms) → wall time of its append
	)
	appendAt := func(t time.Time, deployed bool) error {
		app := st.Appender(context.Background())
		ms := t.UnixMilli()
		for i := range refs {
			for k := range refs[i] {
				vb := 100 + 5*rng.NormFloat64()
				vc := 100 + 5*rng.NormFloat64()
				if deployed && bad[i] && k == 0 {
					vc -= 20
				}
				r := &refs[i][k]
				var err error
				if r.canary, err = app.Append(r.canary, lbls[i][k][0], ms, vc); err != nil {
					return err
				}
				if r.baseline, err = app.Append(r.baseline, lbls[i][k][1], ms, vb); err != nil {
					return err
				}
			}
		}
		if err := app.Commit(); err != nil {
			return err
		}
		appendedMu.Lock()
		appended[ms] = time.Now()
		appendedMu.Unlock()
		return nil
	}
	// Ten steps before the deploys, for the range selectors.
	for s := -10; s <= 0; s++ {
		if err := appendAt(start.Add(time.Duration(s)*f.step), false); err != nil {
			return err
		}
	}

	reg := prometheus.NewRegistry()
	tr := &trigger{at: map[string]time.Time{}, judge: map[string]time.Time{}}
	sup, err := analysis.NewSupervisor(analysis.SupervisorOptions{
		Source: st, Rules: rs, Journal: al, Instance: "load",
		Trigger: rollback.Once(tr, al, rollback.OnceOptions{Name: "load"}),
		Delay:   time.Second, Now: ck.Now,
		After:      func(d time.Duration) <-chan time.Time { return time.After(ck.wall(d)) },
		Registerer: reg,
	})
	if err != nil {
		return err
	}
	defer sup.Close()

	runtime.GC()
	var m0 runtime.MemStats
	runtime.ReadMemStats(&m0)
	cpu0 := cpuTime()
	wall0 := time.Now()
	ids := make([]string, f.analyses)
	for i := range f.analyses {
		ids[i] = fmt.Sprintf("d%d", i)
		sup.Start(deploy.Deploy{ID: ids[i], Service: fmt.Sprintf("svc%d", i), Version: "v2", PreviousVersion: "v1", Time: start})
	}

	// Append every step until the window ends, while the analyses run.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var heapMax uint64
	done := make(chan error, 1)
	go func() {
		looks := int(f.window / f.step)
		for s := 1; s <= looks+1; s++ {
			at := start.Add(time.Duration(s) * f.step)
			select {
			case <-ctx.Done():
				done <- nil
				return
			case <-time.After(time.Until(ck.wall0.Add(ck.wall(at.Sub(start))))):
			}
			if err := appendAt(at, true); err != nil {
				done <- err
				return
			}
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			heapMax = max(heapMax, m.HeapInuse)
			fmt.Fprintf(stderr, "\rstep %d/%d appended", s, looks+1)
		}
		done <- nil
	}()
	for _, id := range ids {
		if err := sup.Wait(context.Background(), id); err != nil {
			return err
		}
	}
	cancel()
	if err := <-done; err != nil {
		return err
	}
	fmt.Fprintln(stderr)
	wall := time.Since(wall0)
	cpu := cpuTime() - cpu0

	// Results.
	verdicts := map[string]int{}
	for _, r := range sup.Records() {
		verdicts[r.Verdict]++
	}
	var lat []time.Duration
	nbad := 0
	tr.mu.Lock()
	reverted, falseReverts := countReverts(ids, bad, tr.at)
	for i, id := range ids {
		if !bad[i] {
			continue
		}
		nbad++
		at, ok := tr.at[id]
		if !ok {
			continue
		}
		appendedMu.Lock()
		w, ok := appended[tr.judge[id].UnixMilli()]
		appendedMu.Unlock()
		if ok {
			lat = append(lat, time.Duration(float64(at.Sub(w))*f.speed))
		}
	}
	tr.mu.Unlock()
	slices.Sort(lat)
	looksN, looksSum := histogram(reg, "immune_analysis_duration_seconds")

	fmt.Fprintf(stdout, "| analyses | KPIs each | step | window | speed | wall time | CPU per analysis | CPU per look | heap per analysis | looks | mean look |\n")
	fmt.Fprintf(stdout, "|---|---|---|---|---|---|---|---|---|---|---|\n")
	perHeap := float64(int64(heapMax)-int64(m0.HeapInuse)) / float64(f.analyses)
	fmt.Fprintf(stdout, "| %d | %d | %s | %s | %g | %s | %s | %s | %.0f KiB | %d | %.1f ms |\n",
		f.analyses, f.kpis, f.step, f.window, f.speed, wall.Round(time.Second),
		(cpu / time.Duration(f.analyses)).Round(time.Microsecond),
		(cpu / time.Duration(max(looksN, 1))).Round(time.Microsecond),
		perHeap/1024, looksN, 1000*looksSum/float64(max(looksN, 1)))
	fmt.Fprintf(stdout, "\nverdicts: %v; bad deploys %d, reverted %d, reverts of harmless deploys %d\n", verdicts, nbad, reverted, falseReverts)
	if len(lat) > 0 {
		fmt.Fprintf(stdout, "from the append of the deciding sample to the revert (simulated time, %d reverts): median %s, p95 %s, max %s (one step is %s)\n",
			len(lat), lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)*95/100].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond), f.step)
	}
	fmt.Fprintf(stdout, "CPU %s over %s of wall time (%.0f%% of one core)\n", cpu.Round(time.Millisecond), wall.Round(time.Millisecond), 100*cpu.Seconds()/wall.Seconds())
	return nil
}

// countReverts splits the reverts asked for (by deploy id) into those of
// bad deploys and those of harmless ones; ids[i] is bad when bad[i].
func countReverts(ids []string, bad []bool, at map[string]time.Time) (ofBad, ofHarmless int) {
	for i, id := range ids {
		if _, ok := at[id]; !ok {
			continue
		}
		if bad[i] {
			ofBad++
		} else {
			ofHarmless++
		}
	}
	return ofBad, ofHarmless
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func histogram(reg *prometheus.Registry, name string) (int, float64) {
	mfs, err := reg.Gather()
	if err != nil {
		return 0, 0
	}
	for _, mf := range mfs {
		if mf.GetName() == name && mf.GetType() == dto.MetricType_HISTOGRAM && len(mf.Metric) > 0 {
			h := mf.Metric[0].GetHistogram()
			return int(h.GetSampleCount()), h.GetSampleSum()
		}
	}
	return 0, 0
}
