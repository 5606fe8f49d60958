package ingest

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Protocols, the protocol label of the metrics.
const (
	protoRemoteWrite1    = "remote_write_1"   // remote write 1.0 (prometheus.WriteRequest)
	protoRemoteWrite2    = "remote_write_2"   // remote write 2.0 (io.prometheus.write.v2.Request)
	protoRemoteWrite     = "remote_write"     // a write request whose protocol is not known
	protoPushText        = "push_text"        // Prometheus text format 0.0.4
	protoPushOpenMetrics = "push_openmetrics" // OpenMetrics 1.0 text
	protoPushProtobuf    = "push_protobuf"    // delimited io.prometheus.client.MetricFamily
	protoPushJSON        = "push_json"        // JSON samples
	protoPush            = "push"             // a push whose format is not known
)

var protocols = []string{protoRemoteWrite1, protoRemoteWrite2, protoPushText, protoPushOpenMetrics, protoPushProtobuf, protoPushJSON}

type metrics struct {
	ingested *prometheus.CounterVec   // protocol
	rejected *prometheus.CounterVec   // protocol, reason
	requests *prometheus.CounterVec   // protocol, code
	duration *prometheus.HistogramVec // protocol
	bytes    *prometheus.CounterVec   // protocol
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		ingested: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "immune_ingested_samples_total",
			Help: "Samples stored from remote write and push, by protocol.",
		}, []string{"protocol"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "immune_rejected_samples_total",
			Help: "Samples of refused write requests, by protocol and the reason the request was refused (a request is stored whole or not at all).",
		}, []string{"protocol", "reason"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "immune_ingest_requests_total",
			Help: "Write requests (remote write and push) by protocol and HTTP status code.",
		}, []string{"protocol", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "immune_ingest_request_duration_seconds",
			Help:    "Time to read, check and store a write request, by protocol.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"protocol"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "immune_ingest_received_bytes_total",
			Help: "Bytes of write request bodies as received (compressed, if they were), by protocol.",
		}, []string{"protocol"}),
	}
	for _, p := range protocols {
		m.ingested.WithLabelValues(p)
	}
	if reg == nil {
		return m, nil
	}
	var done []prometheus.Collector
	for _, c := range []prometheus.Collector{m.ingested, m.rejected, m.requests, m.duration, m.bytes} {
		if err := reg.Register(c); err != nil {
			// All or none: a second receiver on one registry fails
			// cleanly, and the first keeps its metrics.
			for _, d := range done {
				reg.Unregister(d)
			}
			return nil, err
		}
		done = append(done, c)
	}
	return m, nil
}
