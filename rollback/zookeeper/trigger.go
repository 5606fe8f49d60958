package zookeeper

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/immune-project/immune/internal/zk"

	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/rollback"
)

// Name is the trigger's name in results, metrics and the audit log.
const Name = "zookeeper"

// Trigger writes …/<deploy-id>/revert (deploy.RevertRecord) for the
// deployment manager, and the gate's …/<deploy-id>/verdict, each in one
// transaction fenced by this instance's lease on the deploy.
type Trigger struct {
	o *Owners
	// trace, when set (tests), is told of each read ("exists") and
	// transaction ("multi") of Revert.
	trace func(op string)
}

var (
	_ rollback.Trigger = (*Trigger)(nil)
	_ rollback.Gate    = (*Trigger)(nil)
)

// NewTrigger returns the trigger writing through the leases of o: it
// reverts only deploys this instance holds a live lease on.
func NewTrigger(o *Owners) *Trigger { return &Trigger{o: o} }

// Revert writes the revert request unless the revert znode exists
// already (Already, with its version). A lost connection is waited out
// and the write tried again until ctx ends; a lost lease is never
// written through (ErrNotOwner).
func (t *Trigger) Revert(ctx context.Context, req rollback.Request) (rollback.Result, error) {
	res := rollback.Result{Trigger: Name, ZKVersion: -1}
	d := req.Deploy
	if !deploy.ValidName(d.ID) || !deploy.ValidName(d.Service) {
		return res, fmt.Errorf("zookeeper revert: %w: deploy id %q and service %q must be valid names", rollback.ErrBadRequest, d.ID, d.Service)
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("zookeeper revert of deploy %s: %w", d.ID, err)
	}
	rec := deploy.RevertRecord{DeployID: d.ID, Service: d.Service, Version: d.Version, Reason: req.Reason,
		At: req.At.UTC(), Instance: req.Instance}
	if rec.Instance == "" {
		rec.Instance = t.o.opts.Instance
	}
	if rec.At.IsZero() {
		rec.At = t.o.opts.Now().UTC()
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return res, fmt.Errorf("zookeeper revert of deploy %s: %w", d.ID, err)
	}
	p := t.o.opts.Layout.Revert(d.Service, d.ID)
	// An existing revert znode is a revert done, whoever wrote it: read
	// it first, with or without a lease (a restarted instance, or one
	// that lost the deploy to another, reports it as Already).
	var (
		checked bool // the read just before found no znode: write at once
		counted bool // "already" counted by the transaction that found it
	)
	exists := func() (bool, error) {
		var (
			ok   bool
			stat *zk.Stat
		)
		if t.trace != nil {
			t.trace("exists")
		}
		if err := call(ctx, func() (err error) { ok, stat, err = t.o.conn.Exists(p); return err }); err != nil {
			return false, err
		}
		if ok {
			res.Reverted, res.Already, res.ZKVersion = true, true, stat.Version
			res.Detail = fmt.Sprintf("%s exists already", p)
			if !counted {
				t.o.opts.Metrics.Attempt(Name, "already")
			}
		}
		return ok, nil
	}
	if t.o.conn.HasSession() {
		ok, err := exists()
		if err == nil && ok {
			return res, nil
		}
		checked = err == nil
	}
	err = t.fenced(ctx, &res, d.ID, func(l *Lease) (bool, error) {
		// After a failed or lost transaction, read again: a request
		// whose answer was lost may have written the znode.
		if !checked {
			ok, err := exists()
			if err != nil {
				return retryable(err), err
			}
			if ok {
				return false, nil
			}
		}
		checked = false
		if t.trace != nil {
			t.trace("multi")
		}
		mr, err := l.Multi(ctx, &zk.CreateRequest{Path: p, Data: data, Acl: t.o.conn.ACL()})
		res.Attempts++
		switch {
		case err == nil:
			res.Reverted, res.ZKVersion = true, 0
			res.Detail = "wrote " + p
			t.o.opts.Metrics.Attempt(Name, "ok")
			return false, nil
		case errors.Is(opErr(mr, 1), zk.ErrNodeExists):
			// Written meanwhile: by another call, or by this one's
			// earlier attempt whose answer the connection lost.
			t.o.opts.Metrics.Attempt(Name, "already")
			counted = true
			return true, nil // the next pass reads its version
		}
		return t.failed(l, err, mr, p)
	})
	return res, err
}

// WriteVerdict writes the deploy's verdict znode (created, or replaced)
// fenced by the lease; it returns the znode's version after the write.
func (t *Trigger) WriteVerdict(ctx context.Context, d deploy.Deploy, v deploy.VerdictRecord) (int32, error) {
	if !deploy.ValidName(d.ID) || !deploy.ValidName(d.Service) {
		return -1, fmt.Errorf("zookeeper verdict: %w: deploy id %q and service %q must be valid names", rollback.ErrBadRequest, d.ID, d.Service)
	}
	switch v.Decision {
	case deploy.GateProceed, deploy.GateRevert, deploy.GateWait:
	default:
		return -1, fmt.Errorf("zookeeper verdict of deploy %s: %w: decision %q, want proceed, revert or wait", d.ID, rollback.ErrBadRequest, v.Decision)
	}
	if v.DeployID == "" {
		v.DeployID = d.ID
	}
	if v.Instance == "" {
		v.Instance = t.o.opts.Instance
	}
	data, err := json.Marshal(v)
	if err != nil {
		return -1, fmt.Errorf("zookeeper verdict of deploy %s: %w", d.ID, err)
	}
	p := t.o.opts.Layout.Verdict(d.Service, d.ID)
	res := rollback.Result{ZKVersion: -1}
	create := false
	err = t.fenced(ctx, &res, d.ID, func(l *Lease) (bool, error) {
		var op any = &zk.SetDataRequest{Path: p, Data: data, Version: -1}
		if create {
			op = &zk.CreateRequest{Path: p, Data: data, Acl: t.o.conn.ACL()}
		}
		mr, err := l.Multi(ctx, op)
		res.Attempts++
		switch {
		case err == nil:
			res.ZKVersion = 0
			if len(mr) > 1 && mr[1].Stat != nil {
				res.ZKVersion = mr[1].Stat.Version
			}
			return false, nil
		case !create && errors.Is(opErr(mr, 1), zk.ErrNoNode):
			create = true
			return true, nil
		case create && errors.Is(opErr(mr, 1), zk.ErrNodeExists):
			create = false
			return true, nil
		}
		return t.failed(l, err, mr, p)
	})
	if err != nil {
		return -1, err
	}
	return res.ZKVersion, nil
}

// fenced runs try with the deploy's lease until it says it is done,
// waiting for a session after connection errors, until ctx ends.
func (t *Trigger) fenced(ctx context.Context, res *rollback.Result, id string, try func(*Lease) (again bool, err error)) error {
	for {
		l, ok := t.o.Lease(id)
		if !ok {
			return fmt.Errorf("zookeeper write for deploy %s: %w: this instance (%s) holds no lease on it", id, rollback.ErrNotOwner, t.o.opts.Instance)
		}
		if err := t.o.conn.WaitSession(ctx); err != nil {
			return fmt.Errorf("zookeeper write for deploy %s: %w: %w", id, rollback.ErrUnavailable, err)
		}
		again, err := try(l)
		switch {
		case err == nil && !again:
			return nil
		case err == nil:
			continue
		case !again:
			return fmt.Errorf("zookeeper write for deploy %s: %w", id, err)
		}
		t.o.log.Warn("zookeeper write failed, retrying", "deploy", id, "attempt", res.Attempts, "err", err.Error())
		select {
		case <-ctx.Done():
			return fmt.Errorf("zookeeper write for deploy %s: %w: %w (last: %v)", id, rollback.ErrUnavailable, ctx.Err(), err)
		case <-time.After(backoff(res.Attempts)):
		}
	}
}

// failed classifies a failed fenced transaction: retry (connection),
// lost lease, or rejected.
func (t *Trigger) failed(l *Lease, err error, mr []zk.MultiResponse, p string) (bool, error) {
	switch {
	case errors.Is(opErr(mr, 0), zk.ErrNoNode):
		t.o.opts.Metrics.Attempt(Name, "not_owner")
		l.end(true, "fence gone")
		return false, fmt.Errorf("%w: %w: the fence is gone (session expired)", rollback.ErrNotOwner, rollback.ErrLeaseLost)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		t.o.opts.Metrics.Attempt(Name, "canceled")
		return false, fmt.Errorf("%w: %w", rollback.ErrUnavailable, err)
	case retryable(err):
		t.o.opts.Metrics.Attempt(Name, "connection")
		return true, err
	case errors.Is(opErr(mr, 1), zk.ErrNoNode):
		t.o.opts.Metrics.Attempt(Name, "rejected")
		return false, fmt.Errorf("%w: the deploy's znode, parent of %s, does not exist", rollback.ErrRejected, p)
	}
	t.o.opts.Metrics.Attempt(Name, "rejected")
	return false, fmt.Errorf("write %s: %w: %w", p, classify(err), err)
}

func backoff(attempt int) time.Duration {
	d := 100 * time.Millisecond << min(attempt, 5)
	return min(d, 2*time.Second)
}
