// Package sim is a simulated fleet and a reference deployment manager
// speaking immune's deploy protocol (deploy/protocol.go, docs/zookeeper.md),
// for the end-to-end tests and for `immune demo`.
//
// An Instance is one simulated process of a service: it serves real
// Prometheus /metrics over HTTP from a registry of its own, and a
// clock-driven traffic model (Poisson arrivals, binomial conversions and
// errors, lognormal latency, reproducible from a seed) advances its
// counters with the simulated time. How it behaves depends on the version
// it runs, through a Behaviours table: "v2-bad" converts less, "v2-slow"
// answers slower and fails more, "v2-broken" fails its self test.
//
// A Fleet is N instances of a service, announced as ServerSet members in
// ZooKeeper (ZKAnnouncer) or listed as static targets when there is no
// ZooKeeper. Deploying an instance un-announces it, stops its traffic,
// restarts it on the new version, runs its self test and, when the test
// passes, announces it again.
//
// A Manager rolls a version out to a Fleet in exponential groups (1, 2,
// 4, … instances) through a Transport: ZooKeeper (ZKTransport: the
// /deploys/<service>/<id> znodes) or immune's HTTP deploy API
// (HTTPTransport, with a POST /revert webhook). Before each next group it
// waits for immune's gate decision; it obeys a revert request at any
// time by redeploying the previous version. Every step is reported as an
// Event, for a live timeline.
//
// Time is a parameter everywhere: a Clock maps the wall clock to the
// simulated clock at a speed (docs/sim.md explains what a scraper at a
// real interval sees then).
package sim
