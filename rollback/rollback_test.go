package rollback_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/rollback"
	"github.com/immune-project/immune/rollback/audit"
	"github.com/immune-project/immune/rollback/rollbacktest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// counter is a revert path that reverts every time it is called, as a
// naive receiver would: the idempotency must come from Once.
type counter struct {
	mu     sync.Mutex
	n      map[string]int
	broken bool
}

func (c *counter) Revert(ctx context.Context, req rollback.Request) (rollback.Result, error) {
	if err := ctx.Err(); err != nil {
		return rollback.Result{}, fmt.Errorf("counter: %w", err)
	}
	if req.Deploy.ID == "" {
		return rollback.Result{}, fmt.Errorf("counter: %w", rollback.ErrBadRequest)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken {
		return rollback.Result{Trigger: "counter", Attempts: 1}, fmt.Errorf("counter: %w", rollback.ErrUnavailable)
	}
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[req.Deploy.ID]++
	return rollback.Result{Trigger: "counter", Reverted: true, Attempts: 1, ZKVersion: -1}, nil
}

func (c *counter) count(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[id]
}

func openLog(t *testing.T, path string) *audit.Log {
	t.Helper()
	l, err := audit.Open(path, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestOnceSuite(t *testing.T) {
	rollbacktest.Run(t, func(t *testing.T) rollbacktest.Harness {
		path := filepath.Join(t.TempDir(), "audit.jsonl")
		c := &counter{}
		return rollbacktest.Harness{
			Trigger: rollback.Once(c, openLog(t, path), rollback.OnceOptions{Name: "counter"}),
			Name:    "counter",
			Reverts: func(t *testing.T, id string) int { return c.count(id) },
			Break: func(t *testing.T) func() {
				c.mu.Lock()
				c.broken = true
				c.mu.Unlock()
				return func() { c.mu.Lock(); c.broken = false; c.mu.Unlock() }
			},
			Restart: func(t *testing.T) rollback.Trigger {
				return rollback.Once(c, openLog(t, path), rollback.OnceOptions{Name: "counter"})
			},
		}
	})
}

func TestShadowSuite(t *testing.T) {
	rollbacktest.Run(t, func(t *testing.T) rollbacktest.Harness {
		path := filepath.Join(t.TempDir(), "audit.jsonl")
		real := &counter{}
		log := openLog(t, path)
		sel := &rollback.Selector{Real: real, Config: rollback.ShadowConfig{Services: []string{"checkout"}}}
		return rollbacktest.Harness{
			Trigger: rollback.Once(sel, log, rollback.OnceOptions{Name: "shadow"}),
			Name:    "shadow",
			Shadow:  true,
			Reverts: func(t *testing.T, id string) int {
				if real.count(id) != 0 {
					t.Errorf("shadow mode reverted %s", id)
				}
				recs, err := audit.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				n := 0
				for _, r := range recs {
					if r.DeployID == id && r.Result == audit.ResultShadow {
						n++
					}
				}
				return n
			},
		}
	})
}

func TestSelector(t *testing.T) {
	d := deploy.Deploy{ID: "d1", Service: "checkout"}
	tests := []struct {
		name       string
		cfg        rollback.ShadowConfig
		ruleFile   string
		wantShadow bool
	}{
		{"none", rollback.ShadowConfig{}, "checkout.yaml", false},
		{"all", rollback.ShadowConfig{All: true}, "checkout.yaml", true},
		{"by service", rollback.ShadowConfig{Services: []string{"search", "checkout"}}, "x.yaml", true},
		{"other service", rollback.ShadowConfig{Services: []string{"search"}}, "x.yaml", false},
		{"by rule file", rollback.ShadowConfig{RuleFiles: []string{"checkout.yaml"}}, "checkout.yaml", true},
		{"other rule file", rollback.ShadowConfig{RuleFiles: []string{"checkout.yaml"}}, "payments.yaml", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			real := &counter{}
			s := &rollback.Selector{Real: real, Config: tt.cfg}
			res, err := s.Revert(context.Background(), rollback.Request{Deploy: d, RuleFile: tt.ruleFile})
			if err != nil {
				t.Fatal(err)
			}
			if res.Shadow != tt.wantShadow || res.Reverted == tt.wantShadow || (real.count("d1") == 1) == tt.wantShadow {
				t.Errorf("Shadow %v Reverted %v real reverts %d, want shadow %v", res.Shadow, res.Reverted, real.count("d1"), tt.wantShadow)
			}
		})
	}
}

// TestOnceAuditRecords: every call is on file with its result; a failed
// call is not a revert, and a restart after a failure reverts.
func TestOnceAuditRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	c := &counter{broken: true}
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	reg := prometheus.NewPedanticRegistry()
	m := rollback.NewMetrics(reg)
	o := rollback.Once(c, openLog(t, path), rollback.OnceOptions{Name: "counter", Now: func() time.Time { return now }, Metrics: m})
	req := rollbacktest.Request(rollbacktest.Deploy(t, 1))
	if _, err := o.Revert(context.Background(), req); !errors.Is(err, rollback.ErrUnavailable) {
		t.Fatalf("broken: %v", err)
	}
	c.broken = false
	for range 2 {
		if _, err := o.Revert(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := audit.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		if r.DeployID != req.Deploy.ID || r.Kind != audit.KindRevert || !r.Time.Equal(now) || r.Reason != req.Reason || r.Instance != "immune-a" {
			t.Errorf("record %+v", r)
		}
		got = append(got, r.Result)
	}
	if want := "failed reverted already"; strings.Join(got, " ") != want {
		t.Errorf("results %q, want %q", strings.Join(got, " "), want)
	}
	if string(recs[1].Evidence) != string(req.Evidence) {
		t.Errorf("revert record evidence %s, want %s", recs[1].Evidence, req.Evidence)
	}
	if recs[0].Error == "" {
		t.Error("the failed call's record has no error")
	}
	if c.count(req.Deploy.ID) != 1 {
		t.Errorf("%d reverts, want 1", c.count(req.Deploy.ID))
	}
	want := `
# HELP immune_rollbacks_total Revert decisions handed to a trigger, by trigger and result (reverted, already, shadow, failed).
# TYPE immune_rollbacks_total counter
immune_rollbacks_total{result="already",trigger="counter"} 1
immune_rollbacks_total{result="failed",trigger="counter"} 1
immune_rollbacks_total{result="reverted",trigger="counter"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "immune_rollbacks_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(reg, "immune_trigger_duration_seconds"); n != 1 {
		t.Errorf("immune_trigger_duration_seconds: %d series, want 1", n)
	}
}

// TestOnceAuditFailure: a revert that cannot be recorded is reported as
// an error, not as a success the log does not know about.
func TestOnceAuditFailure(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	log, err := audit.Open(path, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	log.Close()
	o := rollback.Once(&counter{}, log, rollback.OnceOptions{Name: "counter"})
	_, err = o.Revert(context.Background(), rollbacktest.Request(rollbacktest.Deploy(t, 1)))
	if !errors.Is(err, audit.ErrClosed) {
		t.Fatalf("Revert with a closed audit log: %v, want audit.ErrClosed", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
}

func TestLocalOwnership(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var o rollback.Local
	l, err := o.Acquire(ctx, "d1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.Acquire(ctx, "d1"); !errors.Is(err, rollback.ErrOwned) {
		t.Fatalf("second Acquire: %v, want ErrOwned", err)
	}
	if _, err := o.Acquire(ctx, "d2"); err != nil {
		t.Fatalf("another deploy: %v", err)
	}
	got := make(chan rollback.Lease)
	go func() {
		l2, err := o.Wait(ctx, "d1")
		if err != nil {
			t.Error(err)
		}
		got <- l2
	}()
	select {
	case <-got:
		t.Fatal("Wait returned while the lease is held")
	case <-time.After(50 * time.Millisecond):
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if l2 := <-got; l2 == nil || l2.DeployID() != "d1" {
		t.Fatalf("Wait after release: %v", l2)
	}
	short, cancel2 := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel2()
	if _, err := o.Wait(short, "d1"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait on a held deploy: %v, want a deadline error", err)
	}
}

type gate struct{ version int32 }

func (g *gate) WriteVerdict(ctx context.Context, d deploy.Deploy, v deploy.VerdictRecord) (int32, error) {
	if v.Decision == "bogus" {
		return -1, fmt.Errorf("gate: %w", rollback.ErrBadRequest)
	}
	g.version++
	return g.version, nil
}

func TestAuditGate(t *testing.T) {
	log := openLog(t, filepath.Join(t.TempDir(), "audit.jsonl"))
	g := rollback.AuditGate(&gate{version: -1}, log, nil)
	d := deploy.Deploy{ID: "d1", Service: "checkout"}
	for i, dec := range []string{deploy.GateProceed, deploy.GateRevert, "bogus"} {
		_, err := g.WriteVerdict(context.Background(), d, deploy.VerdictRecord{Group: i, Decision: dec, Verdict: "pass"})
		if (err != nil) != (dec == "bogus") {
			t.Fatalf("%s: %v", dec, err)
		}
	}
	recs := log.Deploy("d1")
	if len(recs) != 3 {
		t.Fatalf("%d records, want 3", len(recs))
	}
	for i, r := range recs {
		if r.Kind != audit.KindVerdict || r.Group == nil || *r.Group != i {
			t.Errorf("record %d: %+v", i, r)
		}
	}
	if *recs[1].ZKVersion != 1 || recs[1].Verdict != deploy.GateRevert || recs[2].Result != audit.ResultFailed || recs[2].Error == "" {
		t.Errorf("records %+v", recs)
	}
}
