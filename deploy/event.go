package deploy

import (
	"context"
	"time"
)

// EventKind says what an Event reports.
type EventKind string

// The kinds of Event.
const (
	// EventStarted: a deploy was announced. Event.State holds the
	// record's state: a deploy already done, reverted or abandoned when
	// the source first saw it (an old deploy found at start) is delivered
	// with that state, so that the consumer can skip it.
	EventStarted EventKind = "started"
	// EventGroup: rollout group Event.Group.Group started.
	EventGroup EventKind = "group"
	// EventSelfTest: an instance reported a self test (Event.SelfTest);
	// a failed one calls for an immediate revert.
	EventSelfTest EventKind = "selftest"
	// EventState: the deploy record changed state (Event.State, e.g.
	// done or reverted); Event.Deploy is the record as it is now.
	EventState EventKind = "state"
	// EventRemoved: the deploy was deleted from its source.
	EventRemoved EventKind = "removed"
	// EventAlert: a firing alert labelled with a service (Event.Alert;
	// Event.Deploy holds only the Service). The consumer counts it
	// against the service's deploys whose window holds it.
	EventAlert EventKind = "alert"
)

// Event is one thing a deploy source reports.
//
// What every source guarantees: a deploy's EventStarted comes before
// any other event of that deploy; each group and each self test result
// is delivered at least once and, in the normal course (including
// after a ZooKeeper session expiry and resync, or a restart of the HTTP
// API with its persisted deploys), exactly once. A consumer that must
// be exact across its own restarts dedupes by (deploy id, group) and
// (deploy id, instance, self test time).
type Event struct {
	Kind EventKind
	// Source names where the event came from: "zookeeper", "http",
	// "alertmanager".
	Source string
	// Deploy is the deploy the event is about (for EventAlert, only its
	// Service is set).
	Deploy Deploy
	// State is the deploy record's state (EventStarted, EventState).
	State    string
	Group    *GroupRecord    // EventGroup
	SelfTest *SelfTestRecord // EventSelfTest
	Alert    *Alert          // EventAlert
	// At is when the source observed the event (its injected clock).
	At time.Time
}

// Alert is a firing alert for a service, as Alertmanager's webhook
// sends it.
type Alert struct {
	Fingerprint  string
	Status       string // "firing"
	Labels       map[string]string
	Annotations  map[string]string
	StartsAt     time.Time
	EndsAt       time.Time
	GeneratorURL string
	Receiver     string
}

// Source is a source of deploy events. Run delivers events to out
// until ctx ends (then it returns ctx.Err()) or the source fails for
// good. Run blocks when out is full: a slow consumer slows the source
// down, nothing is dropped. Run may be called once.
type Source interface {
	Run(ctx context.Context, out chan<- Event) error
}

// Finished reports whether a deploy state means the deploy is over:
// done, reverted or abandoned. Sources stop following the groups and
// self tests of a finished deploy.
func Finished(state string) bool {
	switch state {
	case StateDone, StateReverted, StateAbandoned:
		return true
	}
	return false
}
