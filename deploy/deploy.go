// Package deploy is the deploy model and, in time, the sources of deploy
// events (ZooKeeper, HTTP, the CLI). Today it reads deploys from CSV for
// backtests.
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
	Time time.Time
}
