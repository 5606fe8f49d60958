package deploy

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the counters every deploy source shares:
//
//	immune_deploy_events_total{source,kind}          events delivered
//	immune_deploy_source_errors_total{source,reason} problems met
//
// Reasons: "malformed" (bad JSON or a record missing a field, logged
// with its znode path, file line or request), "zookeeper" (a ZooKeeper
// operation failed; the watcher resyncs), "persist" (the HTTP API could
// not write its log), "unauthorized" (a write without the right token).
type Metrics struct {
	Events *prometheus.CounterVec
	Errors *prometheus.CounterVec
}

// NewMetrics registers the counters with reg, or reuses the ones
// already registered there by another source; nil reg registers
// nothing.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "immune_deploy_events_total",
			Help: "Deploy events delivered, by source and kind.",
		}, []string{"source", "kind"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "immune_deploy_source_errors_total",
			Help: "Problems met by the deploy sources, by source and reason (malformed, zookeeper, persist, unauthorized).",
		}, []string{"source", "reason"}),
	}
	if reg == nil {
		return m
	}
	m.Events = register(reg, m.Events)
	m.Errors = register(reg, m.Errors)
	return m
}

func register(reg prometheus.Registerer, c *prometheus.CounterVec) *prometheus.CounterVec {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if old, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return old
			}
		}
		panic(err) // a different metric with the same name: a programming error
	}
	return c
}

// Event counts an event delivered by source.
func (m *Metrics) Event(source string, kind EventKind) {
	m.Events.WithLabelValues(source, string(kind)).Inc()
}

// Error counts a problem of source.
func (m *Metrics) Error(source, reason string) {
	m.Errors.WithLabelValues(source, reason).Inc()
}
