package sim

import (
	"fmt"
	"strings"
	"time"
)

// EventKind is what happened, in a timeline Event.
type EventKind string

// Event kinds. Fleet events carry Instance; manager events carry DeployID
// and, when about a group, Group.
const (
	EventAnnounced      EventKind = "announced"       // the instance is a ServerSet member again
	EventUnannounced    EventKind = "unannounced"     // the instance left the ServerSet; no traffic
	EventRestarted      EventKind = "restarted"       // the instance runs Version
	EventSelfTestPassed EventKind = "selftest-passed" // Detail: the test
	EventSelfTestFailed EventKind = "selftest-failed" // Detail: the failure
	EventDeployStarted  EventKind = "deploy-started"  // Detail: the planned groups
	EventGroupStarted   EventKind = "group-started"   // Detail: the instances
	EventGateWaiting    EventKind = "gate-waiting"    // waiting for immune's decision on Group
	EventGateProceed    EventKind = "gate-proceed"    // Detail: immune's reason
	EventGateRevert     EventKind = "gate-revert"     // Detail: immune's reason
	EventGateTimeout    EventKind = "gate-timeout"    // no decision in time; Detail: what the manager did
	EventRevertRequest  EventKind = "revert-requested"
	EventReverting      EventKind = "reverting" // Detail: back to which version
	EventReverted       EventKind = "reverted"
	EventPromoting      EventKind = "promoting" // every group is out; waiting for the last decision
	EventDone           EventKind = "done"
	EventAbandoned      EventKind = "abandoned"
	EventError          EventKind = "error" // Detail: the error; the step is retried or the deploy stops
)

// Event is one step of the story, for a live timeline.
type Event struct {
	At       time.Time // wall-clock time
	Kind     EventKind
	Service  string
	DeployID string
	Group    int // the rollout group, -1 when the event is not about one
	Instance string
	Version  string
	Detail   string
}

// String is one line of a timeline:
// "15:04:05 checkout d-1 group 2 gate-proceed: conversion within bounds".
func (e Event) String() string {
	var b strings.Builder
	b.WriteString(e.At.Format("15:04:05"))
	b.WriteString(" " + e.Service)
	if e.DeployID != "" {
		b.WriteString(" " + e.DeployID)
	}
	if e.Group >= 0 {
		fmt.Fprintf(&b, " group %d", e.Group)
	}
	if e.Instance != "" {
		b.WriteString(" " + e.Instance)
	}
	b.WriteString(" " + string(e.Kind))
	if e.Version != "" {
		b.WriteString(" " + e.Version)
	}
	if e.Detail != "" {
		b.WriteString(": " + e.Detail)
	}
	return b.String()
}

// Ref ties the fleet's events to the deploy and group that caused them.
type Ref struct {
	DeployID string
	Group    int
}

// NoRef is the Ref of steps outside any deploy.
var NoRef = Ref{Group: -1}
