// Package deploy is the deploy model, the ZooKeeper protocol's types
// (protocol.go) and the sources of deploy events: CSV for backtests,
// ZooKeeper, HTTP and the CLI for live deploys.
package deploy

import "time"

// Deploy is one rollout of a version of a service.
type Deploy struct {
	ID              string
	Service         string
	Version         string
	PreviousVersion string
	// Time is when the new version started taking traffic: the end of the
	// "before" baseline and the start of the analysis window.
	Time   time.Time
	Commit string
	Author string
	// Groups is the planned size of each rollout group, in instances.
	Groups []int
}
