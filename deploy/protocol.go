package deploy

import (
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"time"
	"unicode/utf8"
)

// This file is the ZooKeeper protocol of docs/zookeeper.md in types: the
// JSON each party writes and the paths it writes it at. The deployment
// manager, the instances of a service, immune and the simulator in sim/
// all use these, so that the protocol is spelled in one place.

// Layout holds the roots of the ZooKeeper protocol. Every root is
// configurable; DefaultLayout is the one in docs/zookeeper.md.
type Layout struct {
	Services string // "/services": /services/<service>/members/member_<seq>
	Deploys  string // "/deploys": /deploys/<service>/<deploy-id>
	Owners   string // "/immune/owners": /immune/owners/<deploy-id>
}

// DefaultLayout is the default set of roots.
var DefaultLayout = Layout{Services: "/services", Deploys: "/deploys", Owners: "/immune/owners"}

// Members is the directory of a service's ServerSet members.
func (l Layout) Members(service string) string { return path.Join(l.Services, service, "members") }

// MemberPrefix is the name prefix of a member znode (ephemeral, sequential).
const MemberPrefix = "member_"

// ServiceDeploys is the directory of a service's deploys.
func (l Layout) ServiceDeploys(service string) string { return path.Join(l.Deploys, service) }

// Deploy is the znode of one deploy.
func (l Layout) Deploy(service, id string) string { return path.Join(l.Deploys, service, id) }

// Groups is the directory of a deploy's rollout groups: groups/<n>.
func (l Layout) Groups(service, id string) string { return path.Join(l.Deploy(service, id), "groups") }

// Group is the znode of rollout group n (0-based).
func (l Layout) Group(service, id string, n int) string {
	return path.Join(l.Groups(service, id), fmt.Sprint(n))
}

// SelfTests is the directory of a deploy's self-test results: selftest/<instance>.
func (l Layout) SelfTests(service, id string) string {
	return path.Join(l.Deploy(service, id), "selftest")
}

// Verdict is the znode where immune writes its current verdict.
func (l Layout) Verdict(service, id string) string {
	return path.Join(l.Deploy(service, id), "verdict")
}

// Revert is the znode where immune writes the revert request; the
// deployment manager watches it.
func (l Layout) Revert(service, id string) string { return path.Join(l.Deploy(service, id), "revert") }

// Owner is the ephemeral znode of the instance that owns a deploy's analysis.
func (l Layout) Owner(id string) string { return path.Join(l.Owners, id) }

// Validate reports a root that is not an absolute, clean ZooKeeper path.
func (l Layout) Validate() error {
	for _, r := range []struct{ name, p string }{{"services", l.Services}, {"deploys", l.Deploys}, {"owners", l.Owners}} {
		if !strings.HasPrefix(r.p, "/") || path.Clean(r.p) != r.p || r.p == "/" {
			return fmt.Errorf("zookeeper root %s: %q is not an absolute path like /%s", r.name, r.p, r.name)
		}
	}
	return nil
}

// ValidName reports whether s can be one path element (a service, a
// deploy id, an instance): not empty, at most 255 bytes, no "/", not "."
// or "..", valid UTF-8 without the characters ZooKeeper refuses in a
// path: the controls U+0000-U+001F and U+007F-U+009F, U+D800-U+F8FF,
// U+FFF0-U+FFFF, and everything past U+FFFF (ZooKeeper checks the
// UTF-16 units, where those are surrogates).
func ValidName(s string) bool {
	if s == "" || s == "." || s == ".." || len(s) > 255 || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		switch {
		case r == '/', r < 0x20, r >= 0x7f && r <= 0x9f,
			r >= 0xd800 && r <= 0xf8ff, r >= 0xfff0:
			return false
		}
	}
	return true
}

// Endpoint is a host and port of a ServerSet member.
type Endpoint struct {
	Host string `json:"host"`
	Port int    `json:"port"`
}

// Member is the ServerSet JSON of one announced instance, as Finagle and
// Prometheus' serverset_sd_configs read it, plus metadata.version.
type Member struct {
	ServiceEndpoint     Endpoint            `json:"serviceEndpoint"`
	AdditionalEndpoints map[string]Endpoint `json:"additionalEndpoints"`
	Status              string              `json:"status"` // "ALIVE"
	Shard               int                 `json:"shard"`
	Metadata            MemberMetadata      `json:"metadata"`
}

// MemberMetadata is what immune adds to the ServerSet JSON.
type MemberMetadata struct {
	Version string `json:"version"`
	// Instance is the instance's name, as GroupRecord.Instances and
	// SelfTestRecord.Instance spell it. Optional: the instance label of
	// scraped series is this name, or serviceEndpoint host:port when empty.
	Instance string `json:"instance,omitempty"`
}

// StatusAlive is the status of a member taking traffic.
const StatusAlive = "ALIVE"

// Deploy states written by the deployment manager in DeployRecord.State.
const (
	StateRunning   = "running"   // groups are rolling out
	StateDone      = "done"      // every group is out; the version is promoted
	StateReverted  = "reverted"  // the deployment manager reverted it
	StateAbandoned = "abandoned" // stopped by a person
	StateReverting = "reverting" // the revert is in progress
	StatePromoting = "promoting" // waiting for the last verdict before done
)

// DeployRecord is the JSON of /deploys/<service>/<deploy-id>, written by
// the deployment manager.
type DeployRecord struct {
	ID              string    `json:"id"`
	Service         string    `json:"service"`
	Version         string    `json:"version"`
	PreviousVersion string    `json:"previous_version"`
	Commit          string    `json:"commit,omitempty"`
	Author          string    `json:"author,omitempty"`
	StartedAt       time.Time `json:"started_at"`
	// Groups is the planned size of each rollout group, in instances
	// (1, 2, 4, …); groups/<n> appears when group n starts.
	Groups []int  `json:"groups,omitempty"`
	State  string `json:"state"`
}

// Deploy converts the record to the deploy model.
func (r DeployRecord) Deploy() Deploy {
	return Deploy{
		ID: r.ID, Service: r.Service, Version: r.Version, PreviousVersion: r.PreviousVersion,
		Commit: r.Commit, Author: r.Author, Time: r.StartedAt, Groups: r.Groups,
	}
}

// Check reports the first missing or malformed field of a record read
// from path p.
func (r DeployRecord) Check(p string) error {
	switch {
	case !ValidName(r.ID):
		return fmt.Errorf("deploy %s: id %q is not a valid name", p, r.ID)
	case !ValidName(r.Service):
		return fmt.Errorf("deploy %s: service %q is not a valid name", p, r.Service)
	case r.Version == "":
		return fmt.Errorf("deploy %s: version is empty", p)
	case r.StartedAt.IsZero():
		return fmt.Errorf("deploy %s: started_at is missing", p)
	}
	for i, g := range r.Groups {
		if g <= 0 {
			return fmt.Errorf("deploy %s: groups[%d] is %d, want a positive number of instances", p, i, g)
		}
	}
	return nil
}

// GroupRecord is the JSON of …/<deploy-id>/groups/<n>: group n started.
type GroupRecord struct {
	Group     int       `json:"group"`
	Instances []string  `json:"instances"`
	StartedAt time.Time `json:"started_at"`
}

// SelfTestRecord is the JSON of …/<deploy-id>/selftest/<instance>.
type SelfTestRecord struct {
	Instance string    `json:"instance"`
	Version  string    `json:"version"`
	Passed   bool      `json:"passed"`
	Detail   string    `json:"detail,omitempty"`
	At       time.Time `json:"at"`
}

// Verdict values written to …/verdict (Decision) for the rollout gate.
const (
	GateProceed = "proceed"
	GateRevert  = "revert"
	GateWait    = "wait" // no decision yet for the current group
)

// VerdictRecord is the JSON immune writes to …/<deploy-id>/verdict: the
// current verdict of the deploy and, per group, the gate decision.
type VerdictRecord struct {
	DeployID string `json:"deploy_id"`
	// Verdict is pass, fail or inconclusive (or pending while undecided).
	Verdict string `json:"verdict"`
	// Group is the rollout group the gate decision is for.
	Group int `json:"group"`
	// Decision is proceed, revert or wait.
	Decision string    `json:"decision"`
	Reason   string    `json:"reason"`
	At       time.Time `json:"at"`
	Instance string    `json:"instance"` // the deciding immune instance
	// Groups holds the gate decision of every group decided so far.
	Groups []GroupVerdict `json:"groups,omitempty"`
}

// GroupVerdict is the gate decision for one group.
type GroupVerdict struct {
	Group    int       `json:"group"`
	Decision string    `json:"decision"`
	Verdict  string    `json:"verdict"`
	At       time.Time `json:"at"`
}

// RevertRecord is the JSON immune writes to …/<deploy-id>/revert.
type RevertRecord struct {
	DeployID string    `json:"deploy_id"`
	Service  string    `json:"service"`
	Version  string    `json:"version"`
	Reason   string    `json:"reason"`
	At       time.Time `json:"at"`
	Instance string    `json:"instance"` // the deciding immune instance
}

// OwnerRecord is the JSON of the ephemeral /immune/owners/<deploy-id>.
type OwnerRecord struct {
	Instance string    `json:"instance"`
	Since    time.Time `json:"since"`
}

// Unmarshal decodes protocol JSON read from znode p, naming p in the error.
func Unmarshal(p string, data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("znode %s: %w", p, err)
	}
	return nil
}
