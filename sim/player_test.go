package sim_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/immune-project/immune/internal/zk"

	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/internal/zkconn"
)

// The tests play immune: they watch the deploy's groups and self tests
// and answer each group with what a policy says.

// Answers of a policy.
const (
	answerNothing = ""
	answerProceed = "proceed"     // verdict: proceed for the group
	answerGate    = "gate-revert" // verdict: revert for the group
	answerRevert  = "revert"      // the revert request
)

// policy decides a group once all its instances reported a self test.
type policy func(group int, selfTestFailed bool) string

// view is immune's side of one deploy, over ZooKeeper or HTTP.
type view interface {
	groups() ([]deploy.GroupRecord, error)
	selftests() (map[string]deploy.SelfTestRecord, error)
	writeVerdict(v deploy.VerdictRecord) error
	writeRevert(r deploy.RevertRecord) error
}

// play answers groups until ctx ends; it returns when it stopped.
func play(ctx context.Context, t *testing.T, v view, id string, p policy) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		decided := map[int]bool{}
		var gv []deploy.GroupVerdict
		reverted := false
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
			gs, err := v.groups()
			if err != nil {
				continue
			}
			st, err := v.selftests()
			if err != nil {
				continue
			}
			for _, g := range gs {
				if decided[g.Group] || reverted {
					continue
				}
				failed, complete := false, true
				for _, in := range g.Instances {
					r, ok := st[in]
					if !ok {
						complete = false
					} else if !r.Passed {
						failed = true
					}
				}
				// A failed self test is acted on at once.
				if !complete && !failed {
					continue
				}
				now := time.Now().UTC()
				switch p(g.Group, failed) {
				case answerProceed:
					decided[g.Group] = true
					gv = append(gv, deploy.GroupVerdict{Group: g.Group, Decision: deploy.GateProceed, Verdict: "pass", At: now})
					err = v.writeVerdict(deploy.VerdictRecord{DeployID: id, Verdict: "pass", Group: g.Group, Decision: deploy.GateProceed,
						Reason: "conversion within bounds", At: now, Instance: "immune-test", Groups: gv})
				case answerGate:
					decided[g.Group] = true
					gv = append(gv, deploy.GroupVerdict{Group: g.Group, Decision: deploy.GateRevert, Verdict: "fail", At: now})
					err = v.writeVerdict(deploy.VerdictRecord{DeployID: id, Verdict: "fail", Group: g.Group, Decision: deploy.GateRevert,
						Reason: "conversion dropped 30%", At: now, Instance: "immune-test", Groups: gv})
				case answerRevert:
					decided[g.Group], reverted = true, true
					reason := "conversion dropped 30%"
					if failed {
						reason = "self test failed"
					}
					err = v.writeRevert(deploy.RevertRecord{DeployID: id, Reason: reason, At: now, Instance: "immune-test"})
				}
				if err != nil {
					t.Errorf("immune player: %v", err)
				}
			}
		}
	}()
	return done
}

// zkView is immune's side over ZooKeeper.
type zkView struct {
	c           *zkconn.Conn
	l           deploy.Layout
	service, id string
}

func (z zkView) groups() ([]deploy.GroupRecord, error) {
	names, _, err := z.c.Children(z.l.Groups(z.service, z.id))
	if err != nil {
		return nil, err
	}
	var out []deploy.GroupRecord
	for _, n := range names {
		p := z.l.Groups(z.service, z.id) + "/" + n
		b, _, err := z.c.Get(p)
		if err != nil {
			return nil, err
		}
		var g deploy.GroupRecord
		if err := deploy.Unmarshal(p, b, &g); err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, nil
}

func (z zkView) selftests() (map[string]deploy.SelfTestRecord, error) {
	dir := z.l.SelfTests(z.service, z.id)
	names, _, err := z.c.Children(dir)
	if err != nil {
		return nil, err
	}
	out := map[string]deploy.SelfTestRecord{}
	for _, n := range names {
		b, _, err := z.c.Get(dir + "/" + n)
		if err != nil {
			return nil, err
		}
		var r deploy.SelfTestRecord
		if err := deploy.Unmarshal(dir+"/"+n, b, &r); err != nil {
			return nil, err
		}
		out[n] = r
	}
	return out, nil
}

func (z zkView) writeVerdict(v deploy.VerdictRecord) error {
	b, _ := json.Marshal(v)
	p := z.l.Verdict(z.service, z.id)
	_, err := z.c.Create(p, b, 0, z.c.ACL())
	if errors.Is(err, zk.ErrNodeExists) {
		_, err = z.c.Set(p, b, -1)
	}
	return err
}

func (z zkView) writeRevert(r deploy.RevertRecord) error {
	r.Service = z.service
	b, _ := json.Marshal(r)
	_, err := z.c.Create(z.l.Revert(z.service, z.id), b, 0, z.c.ACL())
	return err
}

func (z zkView) record(t *testing.T) deploy.DeployRecord {
	t.Helper()
	p := z.l.Deploy(z.service, z.id)
	b, _, err := z.c.Get(p)
	if err != nil {
		t.Fatal(err)
	}
	var r deploy.DeployRecord
	if err := deploy.Unmarshal(p, b, &r); err != nil {
		t.Fatal(err)
	}
	if err := r.Check(p); err != nil {
		t.Fatal(err)
	}
	return r
}

// memView is immune's side over HTTP: what the fake deploy API stored.
type memView struct {
	mu      sync.Mutex
	deploys map[string]deploy.DeployRecord
	grps    map[string][]deploy.GroupRecord
	tests   map[string]map[string]deploy.SelfTestRecord
	verdict map[string]*deploy.VerdictRecord
	revert  map[string]*deploy.RevertRecord
	states  map[string][]string // the states posted over HTTP, in order
	// onRevert, when set, delivers the revert (the webhook trigger)
	// instead of storing it for GET.
	onRevert func(deploy.RevertRecord) error
	id       string
}

func newMemView() *memView {
	return &memView{deploys: map[string]deploy.DeployRecord{}, grps: map[string][]deploy.GroupRecord{},
		tests: map[string]map[string]deploy.SelfTestRecord{}, verdict: map[string]*deploy.VerdictRecord{},
		revert: map[string]*deploy.RevertRecord{}, states: map[string][]string{}}
}

func (m *memView) groups() ([]deploy.GroupRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]deploy.GroupRecord(nil), m.grps[m.id]...), nil
}

func (m *memView) selftests() (map[string]deploy.SelfTestRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]deploy.SelfTestRecord{}
	for k, v := range m.tests[m.id] {
		out[k] = v
	}
	return out, nil
}

func (m *memView) writeVerdict(v deploy.VerdictRecord) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.verdict[v.DeployID] = &v
	return nil
}

func (m *memView) writeRevert(r deploy.RevertRecord) error {
	if m.onRevert != nil {
		return m.onRevert(r)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.revert[r.DeployID] = &r
	return nil
}
