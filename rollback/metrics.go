package rollback

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the revert path's metrics. A nil *Metrics records nothing.
type Metrics struct {
	rollbacks *prometheus.CounterVec
	attempts  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
}

// NewMetrics creates the metrics and registers them with reg (when not
// nil):
//
//	immune_rollbacks_total{trigger,result}          Once calls, by result (reverted, already, shadow, failed)
//	immune_trigger_attempts_total{trigger,result}   tries of a trigger (HTTP requests, transactions, command runs), by result (ok, or the reason it failed)
//	immune_trigger_duration_seconds{trigger}        time of a whole Once call, retries included
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		rollbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "immune_rollbacks_total",
			Help: "Revert decisions handed to a trigger, by trigger and result (reverted, already, shadow, failed).",
		}, []string{"trigger", "result"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "immune_trigger_attempts_total",
			Help: "Tries of a trigger (HTTP requests, ZooKeeper transactions, command runs), by trigger and result.",
		}, []string{"trigger", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "immune_trigger_duration_seconds",
			Help:    "Time of a revert through a trigger, retries included.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"trigger"}),
	}
	if reg != nil {
		reg.MustRegister(m.rollbacks, m.attempts, m.duration)
	}
	return m
}

// Attempt counts one try of a trigger.
func (m *Metrics) Attempt(trigger, result string) {
	if m != nil {
		m.attempts.WithLabelValues(trigger, result).Inc()
	}
}

// Rollback counts one decision handed to a trigger and its duration.
func (m *Metrics) Rollback(trigger, result string, d time.Duration) {
	if m != nil {
		m.rollbacks.WithLabelValues(trigger, result).Inc()
		m.duration.WithLabelValues(trigger).Observe(d.Seconds())
	}
}
