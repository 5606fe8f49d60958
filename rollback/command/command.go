// Package command is the revert path through a program: it runs a
// configured command (an argv, no shell) with the deploy's fields in its
// environment (IMMUNE_DEPLOY_ID, IMMUNE_SERVICE, IMMUNE_VERSION,
// IMMUNE_PREVIOUS_VERSION, IMMUNE_REASON, …), under a timeout after which
// its whole process group is killed, and keeps its output, bounded, for
// the audit log. Exit status 0 is a revert done; any other is a refusal
// (not retried: the command may have done half its work; it is its own
// business to be safe to run again).
package command

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/immune-project/immune/rollback"
)

// Name is the trigger's name in results, metrics and the audit log.
const Name = "command"

// Config is a command trigger's configuration.
type Config struct {
	// Command is the program and its arguments; no shell is involved.
	Command []string `yaml:"command"`
	// Timeout bounds a run (default 1m); then the process group is killed.
	Timeout time.Duration `yaml:"timeout"`
	// Dir is the working directory (default: immune's).
	Dir string `yaml:"dir"`
	// Env holds more KEY=value variables for the command.
	Env []string `yaml:"env"`
	// MaxOutput is how many bytes of output (stdout and stderr together)
	// are kept (default 16384).
	MaxOutput int `yaml:"max_output"`
}

// Validate reports the first bad field.
func (c Config) Validate() error {
	if len(c.Command) == 0 || c.Command[0] == "" {
		return errors.New("command: want the program and its arguments, e.g. [/usr/local/bin/revert, --now]")
	}
	if c.Timeout < 0 {
		return fmt.Errorf("command timeout: %v is negative", c.Timeout)
	}
	if c.MaxOutput < 0 {
		return fmt.Errorf("command max_output: %d is negative", c.MaxOutput)
	}
	for i, kv := range c.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return fmt.Errorf("command env[%d]: want KEY=value", i)
		}
	}
	return nil
}

// Options of New.
type Options struct {
	// Logger receives one line per run; discard when nil.
	Logger *slog.Logger
	// Metrics count the runs; nil records nothing.
	Metrics *rollback.Metrics
}

// Trigger is the command trigger.
type Trigger struct {
	cfg   Config
	log   *slog.Logger
	m     *rollback.Metrics
	dedup rollback.Dedup
}

var _ rollback.Trigger = (*Trigger)(nil)

// New returns a command trigger. The program is looked up at each run.
func New(cfg Config, opts Options) (*Trigger, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = time.Minute
	}
	if cfg.MaxOutput == 0 {
		cfg.MaxOutput = 16384
	}
	t := &Trigger{cfg: cfg, log: opts.Logger, m: opts.Metrics}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	return t, nil
}

// Env is the environment a run adds for req, as KEY=value.
func Env(req rollback.Request) []string {
	d := req.Deploy
	env := []string{
		"IMMUNE_DEPLOY_ID=" + d.ID,
		"IMMUNE_SERVICE=" + d.Service,
		"IMMUNE_VERSION=" + d.Version,
		"IMMUNE_PREVIOUS_VERSION=" + d.PreviousVersion,
		"IMMUNE_COMMIT=" + d.Commit,
		"IMMUNE_AUTHOR=" + d.Author,
		"IMMUNE_REASON=" + req.Reason,
		"IMMUNE_INSTANCE=" + req.Instance,
		"IMMUNE_RULE_FILE=" + req.RuleFile,
	}
	if !d.Time.IsZero() {
		env = append(env, "IMMUNE_DEPLOY_TIME="+d.Time.UTC().Format(time.RFC3339))
	}
	if !req.At.IsZero() {
		env = append(env, "IMMUNE_AT="+req.At.UTC().Format(time.RFC3339))
	}
	if len(req.Evidence) > 0 && len(req.Evidence) <= 64<<10 {
		env = append(env, "IMMUNE_EVIDENCE="+string(req.Evidence))
	}
	return env
}

// Revert runs the command, at most once successfully per deploy in this
// process.
func (t *Trigger) Revert(ctx context.Context, req rollback.Request) (rollback.Result, error) {
	res := rollback.Result{Trigger: Name, ZKVersion: -1}
	if req.Deploy.ID == "" {
		return res, fmt.Errorf("command revert: %w: no deploy id", rollback.ErrBadRequest)
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("command revert of deploy %s: %w", req.Deploy.ID, err)
	}
	return t.dedup.Do(ctx, req.Deploy.ID, func() (rollback.Result, error) { return t.run(ctx, req) })
}

func (t *Trigger) run(parent context.Context, req rollback.Request) (rollback.Result, error) {
	res := rollback.Result{Trigger: Name, ZKVersion: -1, Attempts: 1}
	id := req.Deploy.ID
	ctx, cancel := context.WithTimeout(parent, t.cfg.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, t.cfg.Command[0], t.cfg.Command[1:]...)
	cmd.Dir = t.cfg.Dir
	cmd.Env = append(append(os.Environ(), t.cfg.Env...), Env(req)...)
	out := &boundedBuffer{max: t.cfg.MaxOutput}
	cmd.Stdout, cmd.Stderr = out, out
	setGroup(cmd)
	// On timeout or cancellation: the whole group, the command's
	// children included, is killed; the pipes are not waited on for more
	// than a second after.
	cmd.Cancel = func() error { return killGroup(cmd) }
	cmd.WaitDelay = time.Second
	start := time.Now()
	err := cmd.Run()
	res.Output = out.String()
	elapsed := time.Since(start).Round(time.Millisecond)
	name := t.cfg.Command[0]
	// Exit status 0 with a child of the command still holding its output
	// open: Run gives up on the output after WaitDelay (ErrWaitDelay),
	// but the command succeeded: the revert is done.
	lingering := errors.Is(err, exec.ErrWaitDelay) && cmd.ProcessState != nil && cmd.ProcessState.Success()
	switch {
	case err == nil || lingering:
		t.m.Attempt(Name, "ok")
		res.Reverted, res.Detail = true, fmt.Sprintf("%s exited 0 after %v", name, elapsed)
		if lingering {
			res.Detail += fmt.Sprintf("; output after that not kept (a child process held it open for more than %v)", cmd.WaitDelay)
		}
		t.log.Info("revert command", "deploy", id, "command", name, "exit", 0, "elapsed", elapsed, "output_cut", lingering)
		return res, nil
	case parent.Err() != nil:
		t.m.Attempt(Name, "canceled")
		res.Detail = fmt.Sprintf("%s killed after %v: canceled", name, elapsed)
		return res, fmt.Errorf("command revert of deploy %s: %s killed: %w", id, name, parent.Err())
	case ctx.Err() != nil:
		t.m.Attempt(Name, "timeout")
		res.Detail = fmt.Sprintf("%s killed at the %v timeout", name, t.cfg.Timeout)
		t.log.Warn("revert command timed out", "deploy", id, "command", name, "timeout", t.cfg.Timeout)
		return res, fmt.Errorf("command revert of deploy %s: %w: %s killed at the %v timeout", id, rollback.ErrTimeout, name, t.cfg.Timeout)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		t.m.Attempt(Name, "exit")
		res.Detail = fmt.Sprintf("%s exited %d after %v", name, ee.ExitCode(), elapsed)
		t.log.Warn("revert command failed", "deploy", id, "command", name, "exit", ee.ExitCode())
		return res, fmt.Errorf("command revert of deploy %s: %w: %s exited with status %d", id, rollback.ErrRejected, name, ee.ExitCode())
	}
	t.m.Attempt(Name, "error")
	res.Detail = err.Error()
	return res, fmt.Errorf("command revert of deploy %s: %w: %w", id, rollback.ErrRejected, err)
}

// boundedBuffer keeps the first max bytes written and counts the rest.
type boundedBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	max     int
	dropped int
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	keep := min(len(p), b.max-b.buf.Len())
	if keep > 0 {
		b.buf.Write(p[:keep])
	}
	b.dropped += len(p) - max(keep, 0)
	return len(p), nil
}

func (b *boundedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dropped > 0 {
		return fmt.Sprintf("%s\n… (%d more bytes dropped)", b.buf.String(), b.dropped)
	}
	return b.buf.String()
}
