package analysis

import (
	"context"
	"encoding/json"
	"time"

	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/rules"
)

// The seams the Supervisor consumes, defined here where they are used.
// cmd/immune binds them to the backends: rollback's triggers, ownership
// and audit log, the annotators.

// RuleSet gives the rule file that watches a service, nil for none. It is
// asked at each deploy's start, so a reload applies to the next deploys.
type RuleSet interface {
	For(service string) *rules.File
}

// RevertRequest asks for a deploy to be reverted.
type RevertRequest struct {
	Deploy   deploy.Deploy
	Reason   string
	At       time.Time
	Instance string
	// Evidence is the decision behind the revert, as JSON, for the audit.
	Evidence json.RawMessage
	// Shadow is true when the rule file or the service is in shadow
	// mode: the decision is recorded, nothing is reverted.
	Shadow bool
	// Lease is the ownership of the deploy's analysis, for a trigger that
	// fences its write with it; nil without ownership.
	Lease Lease
}

// RevertResult is what a revert did.
type RevertResult struct {
	// Reverted is false in shadow mode.
	Reverted bool
	// Already is true when the deploy had been reverted before (a retry,
	// a duplicated decision, a restart): nothing was done again.
	Already bool
	Trigger string
	Detail  string
}

// Reverter pulls a deploy's revert path at most once per deploy id.
type Reverter interface {
	Revert(ctx context.Context, r RevertRequest) (RevertResult, error)
}

// Gate publishes the verdict and the per-group gate decision of a deploy
// (ZooKeeper's …/verdict), for the deployment manager to wait on before
// the next, larger group.
type Gate interface {
	Publish(ctx context.Context, d deploy.Deploy, v deploy.VerdictRecord, lease Lease) error
}

// Ownership decides which instance analyses a deploy.
type Ownership interface {
	// Acquire blocks until this instance owns the deploy's analysis, or
	// ctx ends.
	Acquire(ctx context.Context, deployID string) (Lease, error)
}

// Lease is the ownership of one deploy's analysis.
type Lease interface {
	// Lost is closed when the ownership is lost (session expired): the
	// analysis must stop at once, and another instance takes it over.
	Lost() <-chan struct{}
	// Release gives the ownership up.
	Release()
}

// Event kinds for the annotator.
const (
	EventDeploy  = "deploy"  // the deploy started: a region begins
	EventVerdict = "verdict" // the final verdict, or the first fail
	EventRevert  = "revert"  // the revert was pulled
	EventEnd     = "end"     // the analysis ended: the region ends
)

// Note is what the supervisor tells the annotators.
type Note struct {
	Kind        string
	At          time.Time
	Deploy      deploy.Deploy
	Verdict     string
	FailingKPIs []string
	Text        string
	Shadow      bool
}

// Annotator marks deploys on graphs; it must not block (queue inside).
type Annotator interface {
	Note(n Note)
}

// Journal is the durable record of the analyses (the audit log): what
// was decided and how far each analysis went, read back at start.
type Journal interface {
	// Append records an entry durably (fsynced) before returning.
	Append(ctx context.Context, e JournalEntry) error
	// Progress returns what the journal holds for a deploy.
	Progress(deployID string) (JournalProgress, bool)
}

// Journal entry kinds.
const (
	EntryLook     = "look"     // a look was judged
	EntryDecision = "decision" // the analysis decided (fail, or the window ended)
	EntryRevert   = "revert"   // a revert attempt and its result
	EntryGate     = "gate"     // a gate decision was published
)

// JournalEntry is one record of the audit log.
type JournalEntry struct {
	Kind     string          `json:"kind"`
	At       time.Time       `json:"at"`
	Deploy   deploy.Deploy   `json:"deploy"`
	Instance string          `json:"instance"`
	Look     int             `json:"look,omitempty"`
	Verdict  string          `json:"verdict,omitempty"`
	Reason   string          `json:"reason,omitempty"`
	Evidence json.RawMessage `json:"evidence,omitempty"`
	Trigger  string          `json:"trigger,omitempty"`
	Result   string          `json:"result,omitempty"`
	Error    string          `json:"error,omitempty"`
	Group    int             `json:"group,omitempty"`
}

// JournalProgress is how far a deploy's analysis went before.
type JournalProgress struct {
	LastLook int
	// Decided is set when the analysis ended, with its verdict.
	Decided bool
	Verdict string
	// Reverted is set when a revert succeeded (or was found done).
	Reverted bool
	// Gates holds the gate decisions published, by group.
	Gates map[int]string
}
