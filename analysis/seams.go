package analysis

import (
	"context"

	"github.com/immune-project/immune/rollback/audit"
	"github.com/immune-project/immune/rules"
)

// The seams the Supervisor consumes. The revert path, the rollout gate and
// the ownership are rollback's (rollback.Trigger, rollback.Gate,
// rollback.Ownership), the annotators annotator's; these two are defined
// here, where they are used.

// RuleSet gives the rule file that watches a service, nil for none. It is
// asked at each deploy's start, so a reload applies to the next deploys.
type RuleSet interface {
	For(service string) *rules.File
}

// Journal is the durable record of the analyses' decisions: the audit
// log (rollback/audit.Log), read back at start so that a restart neither
// forgets a decision nor repeats a revert.
type Journal interface {
	// Append records a record durably (fsynced) before returning.
	Append(ctx context.Context, r audit.Record) error
	// Decisions returns a deploy's decision records, oldest first.
	Decisions(deployID string) []audit.Record
	// Reverted returns the record of the deploy's revert, if any.
	Reverted(deployID string) (audit.Record, bool)
}
