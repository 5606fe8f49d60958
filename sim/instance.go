package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"gonum.org/v1/gonum/stat/distuv"

	"github.com/immune-project/immune/deploy"
)

// Traffic is the model of one instance's traffic on a healthy version,
// per simulated second.
type Traffic struct {
	// RequestRate is the mean number of HTTP requests per second
	// (Poisson), default 20.
	RequestRate float64
	// CheckoutRate is the mean number of checkouts started per second
	// (Poisson), default 2.
	CheckoutRate float64
	// Conversion is the probability that a started checkout completes,
	// default 0.3.
	Conversion float64
	// ErrorRate is the fraction of requests answered 500, default 0.002.
	ErrorRate float64
	// LatencyMedian and LatencySigma are the lognormal latency's median,
	// default 80ms, and the standard deviation of its log, default 0.5.
	LatencyMedian time.Duration
	LatencySigma  float64
	// MemoryBytes is the mean resident memory, default 200 MiB.
	MemoryBytes float64
}

var defaultTraffic = Traffic{
	RequestRate: 20, CheckoutRate: 2, Conversion: 0.3, ErrorRate: 0.002,
	LatencyMedian: 80 * time.Millisecond, LatencySigma: 0.5, MemoryBytes: 200 << 20,
}

func (t Traffic) withDefaults() Traffic {
	d := defaultTraffic
	if t.RequestRate > 0 {
		d.RequestRate = t.RequestRate
	}
	if t.CheckoutRate > 0 {
		d.CheckoutRate = t.CheckoutRate
	}
	if t.Conversion > 0 {
		d.Conversion = math.Min(t.Conversion, 1)
	}
	if t.ErrorRate > 0 {
		d.ErrorRate = math.Min(t.ErrorRate, 1)
	}
	if t.LatencyMedian > 0 {
		d.LatencyMedian = t.LatencyMedian
	}
	if t.LatencySigma > 0 {
		d.LatencySigma = t.LatencySigma
	}
	if t.MemoryBytes > 0 {
		d.MemoryBytes = t.MemoryBytes
	}
	return d
}

// maxRequestsPerTick bounds the latencies drawn in one tick, so that a
// huge step of simulated time costs bounded CPU: the counters still count
// every request, the histogram only the first maxRequestsPerTick of a
// tick (a tick of one second at speed 1000 is 20 000 requests).
const maxRequestsPerTick = 200_000

// InstanceOptions configure an Instance.
type InstanceOptions struct {
	Service string
	Name    string
	// Version is the version it starts on.
	Version    string
	Behaviours Behaviours // DefaultBehaviours when nil
	Traffic    Traffic
	// Seed and Stream seed its random numbers: the same seed, stream and
	// ticks give the same counters.
	Seed, Stream uint64
}

// Instance is one simulated process of a service. Its /metrics handler
// serves the registry of the current process: a restart starts a new
// registry, so counters start again from zero, as after a real restart.
// The metrics carry a constant label version.
//
// Metrics: checkout_started_total, checkout_completed_total,
// http_requests_total{code}, http_request_duration_seconds (histogram),
// process_cpu_seconds_total, process_resident_memory_bytes,
// process_start_time_seconds, service_build_info{service}.
type Instance struct {
	opts    InstanceOptions
	traffic Traffic

	mu        sync.Mutex
	rng       *rand.Rand
	src       rand.Source
	version   string
	behaviour Behaviour
	up        bool // the process runs (serves /metrics)
	inTraffic bool // clients send it requests
	last      time.Time
	m         *processMetrics
}

type processMetrics struct {
	reg       *prometheus.Registry
	handler   http.Handler
	started   prometheus.Counter
	completed prometheus.Counter
	requests  *prometheus.CounterVec
	latency   prometheus.Histogram
	cpu       prometheus.Counter
	memory    prometheus.Gauge
	startTime prometheus.Gauge
}

func newProcessMetrics(service, version string) *processMetrics {
	reg := prometheus.NewRegistry()
	r := prometheus.WrapRegistererWith(prometheus.Labels{"version": version}, reg)
	m := &processMetrics{
		reg: reg,
		started: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "checkout_started_total", Help: "Checkouts started."}),
		completed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "checkout_completed_total", Help: "Checkouts completed (paid)."}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_requests_total", Help: "HTTP requests answered, by status code."}, []string{"code"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "http_request_duration_seconds", Help: "Time to answer an HTTP request.", Buckets: prometheus.DefBuckets}),
		cpu: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "process_cpu_seconds_total", Help: "CPU time spent (simulated)."}),
		memory: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "process_resident_memory_bytes", Help: "Resident memory (simulated)."}),
		startTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "process_start_time_seconds", Help: "Start time of the process since the Unix epoch, in simulated time."}),
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "service_build_info", Help: "Always 1; labelled with the running version.",
		ConstLabels: prometheus.Labels{"service": service}})
	info.Set(1)
	r.MustRegister(m.started, m.completed, m.requests, m.latency, m.cpu, m.memory, m.startTime, info)
	// Both codes exist from the start, so that a ratio of errors is 0,
	// not empty, before the first error.
	m.requests.WithLabelValues("200")
	m.requests.WithLabelValues("500")
	m.handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	return m
}

// NewInstance returns an instance started on opts.Version at now
// (simulated time), not yet taking traffic.
func NewInstance(opts InstanceOptions, now time.Time) *Instance {
	if opts.Behaviours == nil {
		opts.Behaviours = DefaultBehaviours()
	}
	src := rand.NewPCG(opts.Seed, opts.Stream)
	in := &Instance{opts: opts, traffic: opts.Traffic.withDefaults(), src: src, rng: rand.New(src)}
	in.Start(now, opts.Version)
	return in
}

// Name is the instance's name.
func (in *Instance) Name() string { return in.opts.Name }

// Version is the version it runs (or last ran, when stopped).
func (in *Instance) Version() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.version
}

// Up reports whether the process runs, and whether it takes traffic.
func (in *Instance) Up() (up, inTraffic bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.up, in.inTraffic
}

// Stop stops the process: no traffic, /metrics answers 503.
func (in *Instance) Stop() {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.up, in.inTraffic = false, false
}

// Start starts the process on version at now (simulated time), with
// counters from zero; it does not take traffic until SetTraffic(true).
func (in *Instance) Start(now time.Time, version string) {
	m := newProcessMetrics(in.opts.Service, version)
	in.mu.Lock()
	defer in.mu.Unlock()
	in.m = m
	in.version = version
	in.behaviour = in.opts.Behaviours.For(version)
	in.up, in.inTraffic = true, false
	in.last = now
	m.startTime.Set(float64(now.UnixNano()) / 1e9)
	m.memory.Set(in.traffic.MemoryBytes * in.behaviour.Memory)
}

// SetTraffic makes clients send it requests (true) or not. A stopped
// process takes no traffic.
func (in *Instance) SetTraffic(on bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.inTraffic = on && in.up
}

// SelfTest runs the self test of the running version at now.
func (in *Instance) SelfTest(now time.Time) deploy.SelfTestRecord {
	in.mu.Lock()
	defer in.mu.Unlock()
	r := deploy.SelfTestRecord{Instance: in.opts.Name, Version: in.version, Passed: in.up && !in.behaviour.SelfTestFails, At: now}
	switch {
	case !in.up:
		r.Detail = "process not running"
	case in.behaviour.SelfTestFails:
		r.Detail = fmt.Sprintf("self test of %s failed: checkout smoke test answered 500", in.version)
	default:
		r.Detail = "checkout smoke test passed"
	}
	return r
}

// Tick advances the traffic model to now (simulated time): the requests,
// checkouts and errors of the time since the last tick, when the instance
// takes traffic. Ticks at or before the last one do nothing.
func (in *Instance) Tick(now time.Time) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if !now.After(in.last) {
		return
	}
	dt := now.Sub(in.last).Seconds()
	in.last = now
	if !in.up {
		return
	}
	m, b, t := in.m, in.behaviour, in.traffic
	m.memory.Set(t.MemoryBytes * b.Memory * math.Max(0.5, 1+0.02*in.rng.NormFloat64()))
	if !in.inTraffic {
		return
	}
	n := in.poisson(t.RequestRate * dt)
	errRate := math.Min(1, t.ErrorRate+b.Errors)
	errs := in.binomial(n, errRate)
	m.requests.WithLabelValues("200").Add(n - errs)
	m.requests.WithLabelValues("500").Add(errs)
	mu := math.Log(t.LatencyMedian.Seconds() * b.Latency)
	draws := int(math.Min(n, maxRequestsPerTick))
	var busy float64
	for range draws {
		d := math.Exp(mu + t.LatencySigma*in.rng.NormFloat64())
		m.latency.Observe(d)
		busy += d
	}
	if draws > 0 && n > float64(draws) {
		busy *= n / float64(draws)
	}
	m.cpu.Add(0.05 * busy)
	s := in.poisson(t.CheckoutRate * dt)
	m.started.Add(s)
	m.completed.Add(in.binomial(s, math.Min(1, t.Conversion*b.Conversion)))
}

func (in *Instance) poisson(lambda float64) float64 {
	if lambda <= 0 {
		return 0
	}
	return distuv.Poisson{Lambda: lambda, Src: in.src}.Rand()
}

func (in *Instance) binomial(n, p float64) float64 {
	if n <= 0 || p <= 0 {
		return 0
	}
	if p >= 1 {
		return n
	}
	return distuv.Binomial{N: n, P: p, Src: in.src}.Rand()
}

// ServeHTTP serves GET /metrics of the running process, and 503 while
// the process is stopped.
func (in *Instance) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	in.mu.Lock()
	up, m := in.up, in.m
	in.mu.Unlock()
	if !up {
		http.Error(w, "restarting", http.StatusServiceUnavailable)
		return
	}
	m.handler.ServeHTTP(w, r)
}
