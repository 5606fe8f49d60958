// Package rollback is immune's reflex: the Trigger seam that pulls a
// deploy's revert path, its implementations in subpackages (zookeeper,
// webhook, command) and here (Shadow, Selector, Once), the ownership of
// an analysis across instances (Ownership, Lease; a ZooKeeper one in
// rollback/zookeeper, Local here for one process), and the audit log (rollback/audit)
// through which a restart neither forgets a decision nor repeats a
// revert.
//
// Every Trigger is idempotent per deploy id: a retried or duplicated
// decision reverts at most once (rollbacktest.Run checks it).
package rollback

import (
	"context"
	"encoding/json"
	"time"

	"github.com/immune-project/immune/deploy"
)

// Request asks a trigger to revert one deploy.
type Request struct {
	Deploy deploy.Deploy
	// Reason is the verdict's explanation, one line.
	Reason string
	// At is the decision's time (the analysis' clock, not the trigger's).
	At time.Time
	// Instance is the deciding immune instance.
	Instance string
	// RuleFile is the rule file whose verdict failed (for shadow mode per
	// rule file, and the audit).
	RuleFile string
	// Evidence is the KPI evidence of the verdict, as JSON, for the audit
	// log; triggers do not interpret it.
	Evidence json.RawMessage
	// Shadow is set by the analysis when the rule file itself is in
	// shadow mode (analysis.mode: shadow): ShadowConfig.Shadowed is then
	// true whatever the configuration.
	Shadow bool
}

// Result says what a trigger did.
type Result struct {
	// Trigger names the implementation ("zookeeper", "webhook",
	// "command", "shadow").
	Trigger string
	// Reverted is true when the deploy's revert has been requested, by
	// this call or (Already) by an earlier one. False in shadow mode.
	Reverted bool
	// Already is true when an earlier call (maybe before a restart, maybe
	// another instance's) had requested the revert: this call did nothing.
	Already bool
	// Shadow is true when the trigger only recorded the decision.
	Shadow bool
	// Attempts is the number of tries this call made (HTTP requests,
	// ZooKeeper transactions, command runs).
	Attempts int
	// Detail is a short human-readable account (HTTP status, exit code).
	Detail string
	// ZKVersion is the version of the revert znode written or found
	// (ZooKeeper trigger only; -1 otherwise).
	ZKVersion int32
	// Output is the bounded output of a command trigger.
	Output string
}

// Trigger pulls a deploy's revert path. Implementations are safe for
// concurrent use and idempotent per deploy id.
type Trigger interface {
	Revert(ctx context.Context, req Request) (Result, error)
}

// Gate writes the per-group decision of an exponential rollout, for the
// deployment manager to wait on before the next group. The ZooKeeper
// trigger implements it (…/<deploy-id>/verdict), fenced by ownership.
type Gate interface {
	WriteVerdict(ctx context.Context, d deploy.Deploy, v deploy.VerdictRecord) (version int32, err error)
}

// Ownership hands out the analysis of a deploy to exactly one instance.
type Ownership interface {
	// Acquire tries once, without waiting: ErrOwned when another
	// instance owns the deploy.
	Acquire(ctx context.Context, deployID string) (Lease, error)
	// Wait blocks until this instance owns the deploy: at once when
	// nobody does, or when the current owner releases it or dies (its
	// session expires), or until ctx ends.
	Wait(ctx context.Context, deployID string) (Lease, error)
}

// Lease is the ownership of one deploy's analysis.
type Lease interface {
	DeployID() string
	// Lost is closed when the lease ended without Release: its session
	// expired (or may have: disconnected longer than the session
	// timeout). A lost lease is lost for good; acquire a new one.
	Lost() <-chan struct{}
	// Release gives the deploy up (for another instance to take).
	Release(ctx context.Context) error
}
