package rollback

import (
	"context"
	"fmt"
	"time"

	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/rollback/audit"
)

// AuditedGate is a Gate whose every write is recorded in the audit log
// (a KindVerdict record: the group, the decision, the version written or
// the error).
type AuditedGate struct {
	next Gate
	log  *audit.Log
	now  func() time.Time
}

var _ Gate = (*AuditedGate)(nil)

// AuditGate wraps g; now is the clock of the records (time.Now when nil).
func AuditGate(g Gate, log *audit.Log, now func() time.Time) *AuditedGate {
	if now == nil {
		now = time.Now
	}
	return &AuditedGate{next: g, log: log, now: now}
}

// WriteVerdict writes through the wrapped gate, then records the write.
func (a *AuditedGate) WriteVerdict(ctx context.Context, d deploy.Deploy, v deploy.VerdictRecord) (int32, error) {
	version, err := a.next.WriteVerdict(ctx, d, v)
	group := v.Group
	r := audit.Record{Time: a.now(), Kind: audit.KindVerdict, DeployID: d.ID, Service: d.Service, Version: d.Version,
		PreviousVersion: d.PreviousVersion, Verdict: v.Decision, Group: &group, Reason: v.Reason, Instance: v.Instance,
		Detail: "verdict " + v.Verdict, Result: "written"}
	if err != nil {
		r.Result, r.Error = audit.ResultFailed, err.Error()
	} else {
		r.ZKVersion = &version
	}
	if aerr := a.log.Append(context.WithoutCancel(ctx), r); aerr != nil {
		if err != nil {
			return version, fmt.Errorf("%w (and audit: %w)", err, aerr)
		}
		return version, fmt.Errorf("verdict of deploy %s written, audit: %w", d.ID, aerr)
	}
	return version, err
}
