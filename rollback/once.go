package rollback

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/immune-project/immune/rollback/audit"
)

// OnceOptions configure Once.
type OnceOptions struct {
	// Name names the trigger in the audit log and the metrics when a
	// call fails before the trigger says its name ("zookeeper", …).
	Name string
	// Now is the clock of the audit records; time.Now when nil.
	Now func() time.Time
	// Logger receives one line per call; discard when nil.
	Logger *slog.Logger
	// Metrics count the calls (immune_rollbacks_total,
	// immune_trigger_duration_seconds); nil records nothing.
	Metrics *Metrics
}

// OnceTrigger is a Trigger made idempotent per deploy id across restarts
// by the audit log: every call is recorded there, and a deploy whose
// revert the log shows requested is not reverted again.
type OnceTrigger struct {
	next  Trigger
	log   *audit.Log
	opts  OnceOptions
	dedup Dedup
	lg    *slog.Logger
}

var _ Trigger = (*OnceTrigger)(nil)

// Once wraps next: one audit record per call (a KindRevert record with
// the result, the error, the ZooKeeper version, the output), and no call
// of next for a deploy whose revert the log already shows.
func Once(next Trigger, log *audit.Log, opts OnceOptions) *OnceTrigger {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Name == "" {
		opts.Name = "trigger"
	}
	o := &OnceTrigger{next: next, log: log, opts: opts, lg: opts.Logger}
	if o.lg == nil {
		o.lg = slog.New(slog.DiscardHandler)
	}
	return o
}

// Revert reverts req.Deploy unless the audit log shows it done.
func (o *OnceTrigger) Revert(ctx context.Context, req Request) (Result, error) {
	start := time.Now()
	if req.Deploy.ID == "" {
		return Result{Trigger: o.opts.Name, ZKVersion: -1}, fmt.Errorf("revert: %w: no deploy id", ErrBadRequest)
	}
	res, err := func() (Result, error) {
		unlock, err := o.dedup.Lock(ctx, req.Deploy.ID)
		if err != nil {
			return Result{ZKVersion: -1}, err
		}
		defer unlock()
		if prev, ok := o.log.Reverted(req.Deploy.ID); ok {
			res := Result{Trigger: prev.Trigger, Reverted: prev.Result != audit.ResultShadow,
				Shadow: prev.Result == audit.ResultShadow, Already: true, ZKVersion: -1,
				Detail: fmt.Sprintf("already requested at %s (audit log)", prev.Time.UTC().Format(time.RFC3339))}
			if prev.ZKVersion != nil {
				res.ZKVersion = *prev.ZKVersion
			}
			return res, o.record(ctx, req, res, nil)
		}
		res, err := o.next.Revert(ctx, req)
		if aerr := o.record(ctx, req, res, err); aerr != nil {
			if err != nil {
				return res, errors.Join(err, aerr)
			}
			// The revert was requested but the log does not say so:
			// the caller must know, and a retry must not find it done.
			return Result{Trigger: res.Trigger, ZKVersion: res.ZKVersion}, fmt.Errorf("revert of deploy %s requested, %w", req.Deploy.ID, aerr)
		}
		return res, err
	}()
	if res.Trigger == "" {
		res.Trigger = o.opts.Name
	}
	o.opts.Metrics.Rollback(res.Trigger, resultOf(res, err), time.Since(start))
	return res, err
}

func (o *OnceTrigger) record(ctx context.Context, req Request, res Result, err error) error {
	r := audit.Record{
		Time: o.opts.Now(), Kind: audit.KindRevert,
		DeployID: req.Deploy.ID, Service: req.Deploy.Service, Version: req.Deploy.Version,
		PreviousVersion: req.Deploy.PreviousVersion, RuleFile: req.RuleFile, Reason: req.Reason, Evidence: req.Evidence,
		Trigger: res.Trigger, Result: resultOf(res, err), Attempts: res.Attempts,
		Detail: res.Detail, Output: res.Output, Instance: req.Instance,
	}
	if r.Trigger == "" {
		r.Trigger = o.opts.Name
	}
	// Only the ZooKeeper trigger writes znodes; others leave ZKVersion
	// at -1, but a zero Result must not read as "version 0 written".
	if res.ZKVersion >= 0 && (res.Reverted || res.Already) && r.Trigger == "zookeeper" {
		v := res.ZKVersion
		r.ZKVersion = &v
	}
	if err != nil {
		r.Error = err.Error()
	}
	o.lg.Info("revert", "deploy", req.Deploy.ID, "service", req.Deploy.Service, "trigger", r.Trigger,
		"result", r.Result, "attempts", r.Attempts, "detail", r.Detail, "err", r.Error)
	// The record is written even when ctx has ended: what was done must
	// be on file.
	if aerr := o.log.Append(context.WithoutCancel(ctx), r); aerr != nil {
		return fmt.Errorf("audit: %w", aerr)
	}
	return nil
}

func resultOf(res Result, err error) string {
	switch {
	case err != nil:
		return audit.ResultFailed
	case res.Already:
		return audit.ResultAlready
	case res.Shadow:
		return audit.ResultShadow
	case res.Reverted:
		return audit.ResultReverted
	}
	return audit.ResultFailed
}
