package analysis

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/immune-project/immune/annotator"
	"github.com/immune-project/immune/collector"
	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/rollback"
	"github.com/immune-project/immune/rollback/audit"
	"github.com/immune-project/immune/rules"
)

type oneRules struct{ f *rules.File }

func (r oneRules) For(service string) *rules.File {
	if service == r.f.Service {
		return r.f
	}
	return nil
}

type fakeTrigger struct {
	mu     sync.Mutex
	reqs   []rollback.Request
	done   map[string]bool
	shadow rollback.ShadowConfig
}

func (f *fakeTrigger) Revert(_ context.Context, r rollback.Request) (rollback.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, r)
	if f.shadow.Shadowed(r) {
		return rollback.Result{Trigger: "shadow", Shadow: true}, nil
	}
	if f.done == nil {
		f.done = map[string]bool{}
	}
	if f.done[r.Deploy.ID] {
		return rollback.Result{Already: true, Reverted: true, Trigger: "fake"}, nil
	}
	f.done[r.Deploy.ID] = true
	return rollback.Result{Reverted: true, Trigger: "fake"}, nil
}

func (f *fakeTrigger) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.reqs)
}

type memGate struct {
	mu  sync.Mutex
	got []deploy.VerdictRecord
}

func (g *memGate) WriteVerdict(_ context.Context, _ deploy.Deploy, v deploy.VerdictRecord) (int32, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.got = append(g.got, v)
	return int32(len(g.got)), nil
}

type memNotes struct {
	mu     sync.Mutex
	events []annotator.Event
}

func (m *memNotes) Annotate(_ context.Context, ev annotator.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.events = append(m.events, ev)
	return nil
}

func (m *memNotes) kinds() []annotator.Kind {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []annotator.Kind
	for _, n := range m.events {
		out = append(out, n.Kind)
	}
	return out
}

func openAudit(t *testing.T, path string) *audit.Log {
	t.Helper()
	l, err := audit.Open(path, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// supervise runs a supervisor in a synctest bubble whose clock starts at
// `start` in the data's time.
func supervise(t *testing.T, src collector.Source, f *rules.File, start time.Time, o SupervisorOptions, body func(s *Supervisor)) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		offset := time.Until(start)
		o.Source, o.Rules = src, oneRules{f}
		o.Now = func() time.Time { return time.Now().Add(offset) }
		s, err := NewSupervisor(o)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		body(s)
	})
}

func TestSupervisor(t *testing.T) {
	from := t0.Add(-24 * time.Hour)
	f := parseRules(t, beforeRules)
	d := deploy.Deploy{ID: "d1", Service: "checkout", Version: "v2", Time: t0}
	tests := []struct {
		name        string
		shift       float64
		wantVerdict string
		wantReverts int
		lastGate    string
	}{
		{"harmless", 0, "pass", 0, "proceed"},
		{"drop", -20, "fail", 1, "revert"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := store(t, series(from, 24*12+24+1, noise(1, from, 100, 5, tt.shift), "__name__", "conversion"))
			auditFile := filepath.Join(t.TempDir(), "audit.jsonl")
			rev, gate, notes := &fakeTrigger{}, &memGate{}, &memNotes{}
			o := SupervisorOptions{Trigger: rev, Journal: openAudit(t, auditFile), Gate: gate, Annotator: notes, Instance: "i1", Delay: time.Second}
			supervise(t, src, f, t0, o, func(s *Supervisor) {
				s.Start(d)
				s.Group(d.ID, deploy.GroupRecord{Group: 0, StartedAt: t0})
				time.Sleep(30 * time.Minute)
				s.Group(d.ID, deploy.GroupRecord{Group: 1, StartedAt: t0.Add(30 * time.Minute)})
				if err := s.Wait(context.Background(), d.ID); err != nil {
					t.Fatal(err)
				}
				r, _ := s.Lookup(d.ID)
				if r.Verdict != tt.wantVerdict || r.State != StateDecided {
					t.Fatalf("verdict %q state %q, want %q decided: %s", r.Verdict, r.State, tt.wantVerdict, r.Reason)
				}
				if n := rev.count(); n != tt.wantReverts {
					t.Fatalf("%d reverts, want %d", n, tt.wantReverts)
				}
				var gates []string
				for _, g := range gate.got {
					gates = append(gates, g.Decision)
				}
				if len(gates) == 0 || gates[len(gates)-1] != tt.lastGate {
					t.Fatalf("gate decisions %v, want the last %q", gates, tt.lastGate)
				}
				if tt.lastGate == "proceed" && len(gates) != 3 {
					t.Fatalf("gate decisions %v, want proceed for group 0, group 1, and at the end", gates)
				}
				if tt.wantVerdict == "fail" && (r.Revert == nil || !r.Revert.Reverted) {
					t.Fatalf("revert info %+v", r.Revert)
				}
				kinds := notes.kinds()
				if kinds[0] != annotator.KindDeploy || kinds[len(kinds)-1] != annotator.KindEnd {
					t.Fatalf("notes %v", kinds)
				}
			})
			// A restart with the audit log read back decides nothing again.
			rev2 := &fakeTrigger{}
			o.Trigger, o.Journal = rev2, openAudit(t, auditFile)
			supervise(t, src, f, t0.Add(3*time.Hour), o, func(s *Supervisor) {
				s.Start(d)
				if err := s.Wait(context.Background(), d.ID); err != nil {
					t.Fatal(err)
				}
				r, _ := s.Lookup(d.ID)
				if r.Verdict != tt.wantVerdict || rev2.count() != 0 {
					t.Fatalf("after a restart: verdict %q, %d reverts", r.Verdict, rev2.count())
				}
				if r.Report == nil || len(r.Report.KPIs) != 1 || r.Report.KPIs[0].Name != "conversion" {
					t.Fatalf("after a restart: report %+v, want the decision's numbers from the audit log", r.Report)
				}
			})
		})
	}
}

// TestSupervisorSelfTest: a failed self test reverts at once, before any look.
func TestSupervisorSelfTest(t *testing.T) {
	from := t0.Add(-24 * time.Hour)
	f := parseRules(t, beforeRules)
	src := store(t, series(from, 24*12+24+1, noise(1, from, 100, 5, 0), "__name__", "conversion"))
	d := deploy.Deploy{ID: "d2", Service: "checkout", Version: "v2", Time: t0}
	rev := &fakeTrigger{}
	supervise(t, src, f, t0, SupervisorOptions{Trigger: rev}, func(s *Supervisor) {
		s.Start(d)
		time.Sleep(time.Minute)
		s.SelfTest(d.ID, deploy.SelfTestRecord{Instance: "host-1:80", Passed: false, Detail: "GET /health: 500"})
		if err := s.Wait(context.Background(), d.ID); err != nil {
			t.Fatal(err)
		}
		r, _ := s.Lookup(d.ID)
		if r.Verdict != "fail" || rev.count() != 1 || r.Decision.Looks != 0 {
			t.Fatalf("verdict %q after %d looks, %d reverts: %s", r.Verdict, r.Decision.Looks, rev.count(), r.Reason)
		}
		if want := "fail: self test failed on host-1:80: GET /health: 500"; r.Reason != want {
			t.Fatalf("reason %q, want %q", r.Reason, want)
		}
	})
}

// TestSupervisorShadow: a shadow rule file decides and records, never reverts.
func TestSupervisorShadow(t *testing.T) {
	from := t0.Add(-24 * time.Hour)
	f := parseRules(t, beforeRules)
	src := store(t, series(from, 24*12+24+1, noise(1, from, 100, 5, -20), "__name__", "conversion"))
	d := deploy.Deploy{ID: "d3", Service: "checkout", Version: "v2", Time: t0}
	shadow := rollback.ShadowConfig{Services: []string{"checkout"}}
	rev := &fakeTrigger{shadow: shadow}
	supervise(t, src, f, t0, SupervisorOptions{Trigger: rev, Shadow: shadow}, func(s *Supervisor) {
		s.Start(d)
		if err := s.Wait(context.Background(), d.ID); err != nil {
			t.Fatal(err)
		}
		r, _ := s.Lookup(d.ID)
		if r.Verdict != "fail" || !r.Shadow || r.Revert == nil || r.Revert.Reverted {
			t.Fatalf("shadow: verdict %q shadow %v revert %+v", r.Verdict, r.Shadow, r.Revert)
		}
		if rev.count() != 1 {
			t.Fatalf("%d revert requests, want 1 (answered in shadow)", rev.count())
		}
	})
}

// TestSupervisorNoRules: a deploy of a service without rules is skipped, not passed.
func TestSupervisorNoRules(t *testing.T) {
	f := parseRules(t, beforeRules)
	supervise(t, store(t), f, t0, SupervisorOptions{Trigger: &fakeTrigger{}}, func(s *Supervisor) {
		s.Start(deploy.Deploy{ID: "x", Service: "other", Version: "v2", Time: t0})
		r, _ := s.Lookup("x")
		if r.State != StateSkipped || r.Verdict != "pending" {
			t.Fatalf("state %q verdict %q", r.State, r.Verdict)
		}
	})
}

// TestSupervisorAlert: with AlertsRevert, a firing alert of the service
// during the window fails and reverts the deploy; without, nothing.
func TestSupervisorAlert(t *testing.T) {
	from := t0.Add(-24 * time.Hour)
	f := parseRules(t, beforeRules)
	src := store(t, series(from, 24*12+24+1, noise(1, from, 100, 5, 0), "__name__", "conversion"))
	for _, revert := range []bool{true, false} {
		t.Run(fmt.Sprint(revert), func(t *testing.T) {
			d := deploy.Deploy{ID: "d4", Service: "checkout", Version: "v2", Time: t0}
			rev := &fakeTrigger{}
			supervise(t, src, f, t0, SupervisorOptions{Trigger: rev, AlertsRevert: revert}, func(s *Supervisor) {
				s.Start(d)
				time.Sleep(12 * time.Minute)
				s.Alert("other", "HighErrorRate", "f1", t0.Add(11*time.Minute)) // another service
				s.Alert("checkout", "HighErrorRate", "f2", t0.Add(-time.Hour))  // before the deploy
				s.Alert("checkout", "HighErrorRate", "f3", t0.Add(11*time.Minute))
				if err := s.Wait(context.Background(), d.ID); err != nil {
					t.Fatal(err)
				}
				r, _ := s.Lookup(d.ID)
				if revert {
					if r.Verdict != "fail" || rev.count() != 1 || !strings.Contains(r.Reason, "alert HighErrorRate firing (fingerprint f3)") {
						t.Fatalf("verdict %q, %d reverts: %s", r.Verdict, rev.count(), r.Reason)
					}
				} else if r.Verdict != "pass" || rev.count() != 0 {
					t.Fatalf("alerts counted without AlertsRevert: verdict %q, %d reverts", r.Verdict, rev.count())
				}
			})
		})
	}
}

// TestSupervisorShadowRuleFile: a rule file with mode: shadow is never
// reverted, even behind a Selector configured with no shadow at all.
func TestSupervisorShadowRuleFile(t *testing.T) {
	from := t0.Add(-24 * time.Hour)
	f := parseRules(t, strings.Replace(beforeRules, "alpha: 0.01}", "alpha: 0.01, mode: shadow}", 1))
	src := store(t, series(from, 24*12+24+1, noise(1, from, 100, 5, -20), "__name__", "conversion"))
	d := deploy.Deploy{ID: "d5", Service: "checkout", Version: "v2", Time: t0}
	real := &fakeTrigger{}
	sel := &rollback.Selector{Real: real}
	supervise(t, src, f, t0, SupervisorOptions{Trigger: sel}, func(s *Supervisor) {
		s.Start(d)
		if err := s.Wait(context.Background(), d.ID); err != nil {
			t.Fatal(err)
		}
		r, _ := s.Lookup(d.ID)
		if r.Verdict != "fail" || !r.Shadow || r.Revert == nil || r.Revert.Reverted || real.count() != 0 {
			t.Fatalf("mode: shadow: verdict %q shadow %v revert %+v, %d real reverts", r.Verdict, r.Shadow, r.Revert, real.count())
		}
	})
}
