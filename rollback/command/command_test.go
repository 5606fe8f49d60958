package command_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/immune-project/immune/rollback"
	"github.com/immune-project/immune/rollback/audit"
	"github.com/immune-project/immune/rollback/command"
	"github.com/immune-project/immune/rollback/rollbacktest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newTrigger(t *testing.T, cfg command.Config) *command.Trigger {
	t.Helper()
	tr, err := command.New(cfg, command.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// revertScript is a deployment tool: it appends the deploy id to a
// ledger (the reverts it did), unless the "broken" file exists.
func revertScript(dir string) []string {
	return []string{"/bin/sh", "-c", `if [ -e "$0/broken" ]; then echo "cannot revert" >&2; exit 3; fi; echo "$IMMUNE_DEPLOY_ID" >> "$0/ledger"; echo "reverted $IMMUNE_SERVICE to $IMMUNE_PREVIOUS_VERSION"`, dir}
}

func ledger(t *testing.T, dir, id string) int {
	b, err := os.ReadFile(filepath.Join(dir, "ledger"))
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if l == id {
			n++
		}
	}
	return n
}

func TestSuite(t *testing.T) {
	rollbacktest.Run(t, func(t *testing.T) rollbacktest.Harness {
		dir := t.TempDir()
		return rollbacktest.Harness{
			Trigger: newTrigger(t, command.Config{Command: revertScript(dir), Timeout: 10 * time.Second}),
			Name:    command.Name,
			Reverts: func(t *testing.T, id string) int { return ledger(t, dir, id) },
			Break: func(t *testing.T) func() {
				f := filepath.Join(dir, "broken")
				if err := os.WriteFile(f, nil, 0o600); err != nil {
					t.Fatal(err)
				}
				return func() { os.Remove(f) }
			},
		}
	})
}

func TestOnceSuite(t *testing.T) {
	rollbacktest.Run(t, func(t *testing.T) rollbacktest.Harness {
		dir := t.TempDir()
		path := filepath.Join(dir, "audit.jsonl")
		open := func(t *testing.T) rollback.Trigger {
			l, err := audit.Open(path, audit.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			return rollback.Once(newTrigger(t, command.Config{Command: revertScript(dir)}), l, rollback.OnceOptions{Name: command.Name})
		}
		return rollbacktest.Harness{
			Trigger: open(t),
			Name:    command.Name,
			Reverts: func(t *testing.T, id string) int { return ledger(t, dir, id) },
			Restart: open,
		}
	})
}

// TestEnvAndOutput: the deploy's fields are in the environment, and the
// output is kept in the result and the audit log.
func TestEnvAndOutput(t *testing.T) {
	tr := newTrigger(t, command.Config{Command: []string{"/usr/bin/env"}, Env: []string{"EXTRA=1"}})
	l, err := audit.Open(filepath.Join(t.TempDir(), "audit.jsonl"), audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	d := rollbacktest.Deploy(t, 1)
	res, err := rollback.Once(tr, l, rollback.OnceOptions{Name: command.Name}).Revert(context.Background(), rollbacktest.Request(d))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"IMMUNE_DEPLOY_ID=" + d.ID, "IMMUNE_SERVICE=checkout", "IMMUNE_VERSION=v2", "IMMUNE_PREVIOUS_VERSION=v1",
		"IMMUNE_REASON=conversion decreased", "IMMUNE_COMMIT=abc123", "IMMUNE_AUTHOR=ann", "IMMUNE_INSTANCE=immune-a",
		"IMMUNE_RULE_FILE=checkout.yaml", "IMMUNE_DEPLOY_TIME=2026-11-25T12:00:00Z", "IMMUNE_AT=2026-11-25T12:10:00Z",
		`IMMUNE_EVIDENCE={"kpis"`, "EXTRA=1",
	} {
		if !strings.Contains(res.Output, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	recs := reread(t, l.Path(), d.ID)
	if len(recs) != 1 || !strings.Contains(recs[0].Output, "IMMUNE_DEPLOY_ID="+d.ID) || recs[0].Result != audit.ResultReverted {
		t.Errorf("audit %+v", recs)
	}
}

func TestOutputBounded(t *testing.T) {
	tr := newTrigger(t, command.Config{Command: []string{"/bin/sh", "-c", "head -c 100000 /dev/zero | tr '\\0' x"}, MaxOutput: 100})
	res, err := tr.Revert(context.Background(), rollbacktest.Request(rollbacktest.Deploy(t, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res.Output, strings.Repeat("x", 100)+"\n") || !strings.Contains(res.Output, "99900 more bytes dropped") {
		t.Errorf("output %q", res.Output)
	}
}

// TestHang: a command that hangs (and a child of it) is killed at the
// timeout, and the audit log says so.
func TestHang(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	tr := newTrigger(t, command.Config{
		Command: []string{"/bin/sh", "-c", `sleep 300 & echo $! > "$0"; echo started; wait`, pidFile},
		Timeout: 500 * time.Millisecond,
	})
	l, err := audit.Open(filepath.Join(dir, "audit.jsonl"), audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	d := rollbacktest.Deploy(t, 1)
	res, err := rollback.Once(tr, l, rollback.OnceOptions{Name: command.Name}).Revert(context.Background(), rollbacktest.Request(d))
	if !errors.Is(err, rollback.ErrTimeout) {
		t.Fatalf("err %v, want ErrTimeout", err)
	}
	if res.Reverted || !strings.Contains(res.Output, "started") || !strings.Contains(res.Detail, "killed") {
		t.Errorf("result %+v", res)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	// The child is gone (killed with its group); it may linger a moment
	// as a zombie of init, which signal 0 cannot tell from alive, so
	// look at its state.
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("the command's child %d survived the timeout", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	recs := reread(t, l.Path(), d.ID)
	if len(recs) != 1 || recs[0].Result != audit.ResultFailed || !strings.Contains(recs[0].Error, "timed out") || !strings.Contains(recs[0].Output, "started") {
		t.Errorf("audit %+v", recs)
	}
	if _, ok := l.Reverted(d.ID); ok {
		t.Error("the audit log shows a revert")
	}
}

func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// TestExitStatus: a non-zero exit is a refusal, with the status and the
// output.
func TestExitStatus(t *testing.T) {
	tr := newTrigger(t, command.Config{Command: []string{"/bin/sh", "-c", "echo nope >&2; exit 7"}})
	res, err := tr.Revert(context.Background(), rollbacktest.Request(rollbacktest.Deploy(t, 1)))
	if !errors.Is(err, rollback.ErrRejected) || !strings.Contains(err.Error(), "status 7") || !strings.Contains(res.Output, "nope") {
		t.Fatalf("%+v %v", res, err)
	}
	tr = newTrigger(t, command.Config{Command: []string{"/nonexistent/revert"}})
	if _, err := tr.Revert(context.Background(), rollbacktest.Request(rollbacktest.Deploy(t, 2))); !errors.Is(err, rollback.ErrRejected) {
		t.Fatalf("missing program: %v", err)
	}
}

// TestBackgroundChild: a command that exits 0 leaving a child that holds
// its output open has reverted; its output up to then is kept.
func TestBackgroundChild(t *testing.T) {
	tr := newTrigger(t, command.Config{Command: []string{"/bin/sh", "-c", "echo reverting; sleep 3 & exit 0"}})
	res, err := tr.Revert(context.Background(), rollbacktest.Request(rollbacktest.Deploy(t, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Reverted || !strings.Contains(res.Output, "reverting") || !strings.Contains(res.Detail, "exited 0") || !strings.Contains(res.Detail, "child process") {
		t.Errorf("result %+v", res)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  command.Config
		want string
	}{
		{command.Config{Command: []string{"revert"}}, ""},
		{command.Config{}, "command: want"},
		{command.Config{Command: []string{""}}, "command: want"},
		{command.Config{Command: []string{"x"}, Timeout: -1}, "timeout"},
		{command.Config{Command: []string{"x"}, Env: []string{"NOEQUALS"}}, "env[0]"},
		{command.Config{Command: []string{"x"}, MaxOutput: -1}, "max_output"},
	} {
		err := tc.cfg.Validate()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

// TestCanceledWhileRunning: the caller's cancellation kills the command.
func TestCanceledWhileRunning(t *testing.T) {
	tr := newTrigger(t, command.Config{Command: []string{"/bin/sleep", "300"}, Timeout: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	_, err := tr.Revert(ctx, rollbacktest.Request(rollbacktest.Deploy(t, 1)))
	if !errors.Is(err, context.Canceled) || errors.Is(err, rollback.ErrTimeout) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
}

// reread reads the audit log back from its file: a deploy's revert records.
func reread(t *testing.T, path, id string) []audit.Record {
	t.Helper()
	all, err := audit.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var recs []audit.Record
	for _, r := range all {
		if r.DeployID == id && r.Kind == audit.KindRevert {
			recs = append(recs, r)
		}
	}
	return recs
}
