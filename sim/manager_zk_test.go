package sim_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/internal/zktest"
	"github.com/immune-project/immune/sim"
)

// versions maps instance -> running version.
func versions(f *sim.Fleet) map[string]string {
	out := map[string]string{}
	for _, tg := range f.Targets() {
		out[tg.Instance] = tg.Version
	}
	return out
}

func allOn(f *sim.Fleet, v string) bool {
	for _, tg := range f.Targets() {
		if tg.Version != v || !tg.Announced {
			return false
		}
	}
	return true
}

// TestManagerZK: full deploys in groups over a real ZooKeeper, with the
// test playing immune.
func TestManagerZK(t *testing.T) {
	addr := zktest.Shared(t)
	for _, tc := range []struct {
		name    string
		version string
		policy  policy
		opts    func(*sim.ManagerOptions)
		// wantState is the final state in the deploy znode and in Result.
		wantState string
		// wantGroups is how many groups started.
		wantGroups int
		// wantOn is the version of every instance at the end.
		wantOn     string
		wantReason string
		wantEvents []sim.EventKind // in this order, among others
	}{
		{
			name: "proceed every group", version: "v2",
			policy:    func(int, bool) string { return answerProceed },
			wantState: deploy.StateDone, wantGroups: 3, wantOn: "v2",
			wantEvents: []sim.EventKind{sim.EventDeployStarted, sim.EventGroupStarted, sim.EventGateProceed,
				sim.EventGroupStarted, sim.EventGateProceed, sim.EventGroupStarted, sim.EventPromoting, sim.EventGateProceed, sim.EventDone},
		},
		{
			name: "revert request in group 1", version: "v2-bad",
			policy: func(g int, _ bool) string {
				if g == 0 {
					return answerProceed
				}
				return answerRevert
			},
			wantState: deploy.StateReverted, wantGroups: 2, wantOn: "v1", wantReason: "conversion dropped 30%",
			wantEvents: []sim.EventKind{sim.EventGroupStarted, sim.EventGateProceed, sim.EventGroupStarted,
				sim.EventRevertRequest, sim.EventReverting, sim.EventReverted},
		},
		{
			name: "gate decision revert in group 0", version: "v2-bad",
			policy:    func(int, bool) string { return answerGate },
			wantState: deploy.StateReverted, wantGroups: 1, wantOn: "v1", wantReason: "conversion dropped 30%",
			wantEvents: []sim.EventKind{sim.EventGroupStarted, sim.EventGateRevert, sim.EventReverting, sim.EventReverted},
		},
		{
			name: "failed self test reverted", version: "v2-broken",
			policy: func(_ int, failed bool) string {
				if failed {
					return answerRevert
				}
				return answerProceed
			},
			wantState: deploy.StateReverted, wantGroups: 1, wantOn: "v1", wantReason: "self test failed",
			wantEvents: []sim.EventKind{sim.EventGroupStarted, sim.EventSelfTestFailed, sim.EventReverting, sim.EventReverted},
		},
		{
			name: "no decision: stop", version: "v2",
			policy: func(int, bool) string { return answerNothing },
			opts: func(o *sim.ManagerOptions) {
				o.GateTimeout, o.OnGateTimeout = 300*time.Millisecond, sim.GateTimeoutStop
			},
			wantState: deploy.StateAbandoned, wantGroups: 1, wantReason: "no gate decision for group 0 within 300ms",
			wantEvents: []sim.EventKind{sim.EventGroupStarted, sim.EventGateWaiting, sim.EventGateTimeout, sim.EventAbandoned},
		},
		{
			name: "no decision: proceed", version: "v2",
			policy:    func(int, bool) string { return answerNothing },
			opts:      func(o *sim.ManagerOptions) { o.GateTimeout = 200 * time.Millisecond },
			wantState: deploy.StateDone, wantGroups: 3, wantOn: "v2",
			wantEvents: []sim.EventKind{sim.EventGateTimeout, sim.EventGateTimeout, sim.EventGateTimeout, sim.EventDone},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := layout(zktest.Root(t))
			c := dial(t, addr, 0)
			ann := sim.NewZKAnnouncer(c, l, nil)
			defer ann.Close()
			rec := &recorder{}
			f := newFleet(t, sim.FleetOptions{Service: "checkout", Size: 7, Announcer: ann, OnEvent: rec.add})
			opts := sim.ManagerOptions{Transport: sim.NewZKTransport(c, l), Fleet: f, OnEvent: rec.add, GateTimeout: 20 * time.Second}
			if tc.opts != nil {
				tc.opts(&opts)
			}
			reg := prometheus.NewRegistry()
			opts.Registerer = reg
			m, err := sim.NewManager(opts)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
			defer cancel()
			id := "d-" + strings.ReplaceAll(tc.name, " ", "-")
			v := zkView{c: c, l: l, service: "checkout", id: id}
			pctx, stop := context.WithCancel(ctx)
			played := play(pctx, t, v, id, tc.policy)
			res, err := m.Deploy(ctx, sim.Request{ID: id, Version: tc.version, Commit: "abc123", Author: "ana"})
			stop()
			<-played
			if err != nil {
				t.Fatal(err)
			}
			if res.Record.State != tc.wantState || res.Reason != tc.wantReason {
				t.Fatalf("result %s %q, want %s %q", res.Record.State, res.Reason, tc.wantState, tc.wantReason)
			}
			got := v.record(t)
			if got.State != tc.wantState || got.Version != tc.version || got.PreviousVersion != "v1" ||
				fmt.Sprint(got.Groups) != "[1 2 4]" || got.Commit != "abc123" || got.Author != "ana" {
				t.Fatalf("deploy znode %+v", got)
			}
			gs, err := v.groups()
			if err != nil {
				t.Fatal(err)
			}
			if len(gs) != tc.wantGroups {
				t.Fatalf("%d groups started, want %d", len(gs), tc.wantGroups)
			}
			var reached []string
			for i, g := range gs {
				if g.Group != i || len(g.Instances) != 1<<i || g.StartedAt.IsZero() {
					t.Fatalf("group %d: %+v", i, g)
				}
				reached = append(reached, g.Instances...)
			}
			if !slices.Equal(res.Deployed, reached) {
				t.Fatalf("deployed %v, groups %v", res.Deployed, reached)
			}
			st, err := v.selftests()
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range res.Deployed {
				r, ok := st[n]
				if !ok || r.Version != tc.version || r.Passed == (tc.version == "v2-broken") {
					t.Fatalf("self test of %s: %+v (present %v)", n, r, ok)
				}
			}
			if tc.wantOn != "" && !allOn(f, tc.wantOn) {
				t.Fatalf("versions %v, want all on %s and announced", versions(f), tc.wantOn)
			}
			if tc.wantOn != "" {
				for _, m := range members(t, c, l, "checkout") {
					if m.Metadata.Version != tc.wantOn {
						t.Fatalf("member on %s, want %s", m.Metadata.Version, tc.wantOn)
					}
				}
			}
			kinds := rec.kinds(func(e sim.Event) bool { return e.DeployID == id })
			i := 0
			for _, k := range kinds {
				if i < len(tc.wantEvents) && k == string(tc.wantEvents[i]) {
					i++
				}
			}
			if i < len(tc.wantEvents) {
				t.Fatalf("events %v: missing %v in order %v", kinds, tc.wantEvents[i], tc.wantEvents)
			}
			want := fmt.Sprintf(`# HELP sim_manager_deploys_total Deploys finished by the simulated deployment manager, by service and final state.
# TYPE sim_manager_deploys_total counter
sim_manager_deploys_total{service="checkout",state=%q} 1
`, tc.wantState)
			if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "sim_manager_deploys_total"); err != nil {
				t.Fatal(err)
			}
			if n := testutil.CollectAndCount(reg, "sim_manager_gate_wait_seconds"); n == 0 {
				t.Fatal("no gate wait observed")
			}
		})
	}
}

func TestManagerRejects(t *testing.T) {
	f, err := sim.NewFleet(sim.FleetOptions{Service: "checkout", Size: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sim.NewManager(sim.ManagerOptions{Fleet: f}); err == nil {
		t.Fatal("a manager without transport")
	}
	tr, err := sim.NewHTTPTransport(sim.HTTPOptions{URL: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := sim.NewManager(sim.ManagerOptions{Fleet: f, Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		req  sim.Request
		want string
	}{
		{sim.Request{}, "version is empty"},
		{sim.Request{Version: "v2", Groups: []int{1, 0}}, "group 1 has 0 instances"},
		{sim.Request{Version: "v2", Groups: []int{2, 2}}, "the fleet has 3"},
		{sim.Request{Version: "v2", ID: "a/b"}, "not a valid name"},
	} {
		if _, err := m.Deploy(context.Background(), tc.req); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Deploy(%+v): %v, want %q", tc.req, err, tc.want)
		}
	}
}

func TestExponentialGroups(t *testing.T) {
	for n, want := range map[int]string{0: "[]", 1: "[1]", 3: "[1 2]", 7: "[1 2 4]", 10: "[1 2 4 3]", 20: "[1 2 4 8 5]"} {
		if got := fmt.Sprint(sim.ExponentialGroups(n)); got != want {
			t.Errorf("ExponentialGroups(%d) = %s, want %s", n, got, want)
		}
	}
}

// TestManagerZKSessionExpiry: the manager's session expires while it
// waits for the gate; immune decides meanwhile; the manager reads the
// decision in its new session and finishes.
func TestManagerZKSessionExpiry(t *testing.T) {
	addr := zktest.Shared(t)
	l := layout(zktest.Root(t))
	proxy := zktest.NewProxy(t, addr)
	c := dial(t, proxy.Addr(), 2*time.Second)
	immune := dial(t, addr, 0)
	f := newFleet(t, sim.FleetOptions{Service: "checkout", Size: 3})
	var once sync.Once
	cut := make(chan struct{})
	rec := &recorder{}
	m, err := sim.NewManager(sim.ManagerOptions{Transport: sim.NewZKTransport(c, l), Fleet: f, GateTimeout: 30 * time.Second, OnGateTimeout: sim.GateTimeoutStop,
		OnEvent: func(e sim.Event) {
			rec.add(e)
			if e.Kind == sim.EventGateWaiting {
				once.Do(func() { proxy.Cut(); close(cut) })
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	v := zkView{c: immune, l: l, service: "checkout", id: "d-exp"}
	go func() {
		<-cut
		// Past the session timeout, then the network comes back.
		eventually(t, "the manager still has its session after the cut", func() bool {
			ok, _, err := immune.Exists(l.Deploy("checkout", "d-exp"))
			return err == nil && ok && !c.HasSession()
		})
		time.Sleep(3 * time.Second)
		proxy.Restore()
	}()
	pctx, stop := context.WithCancel(ctx)
	played := play(pctx, t, v, "d-exp", func(int, bool) string { return answerProceed })
	res, err := m.Deploy(ctx, sim.Request{ID: "d-exp", Version: "v2"})
	stop()
	<-played
	if err != nil {
		t.Fatal(err)
	}
	if res.Record.State != deploy.StateDone || !allOn(f, "v2") {
		t.Fatalf("state %s, versions %v", res.Record.State, versions(f))
	}
	if got := v.record(t).State; got != deploy.StateDone {
		t.Fatalf("deploy znode state %s", got)
	}
	if !slices.Contains(rec.kinds(nil), string(sim.EventGateProceed)) {
		t.Fatalf("events %v", rec.kinds(nil))
	}
}
