package scrape

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"

	"github.com/immune-project/immune/deploy"
)

// Config is the scrape section of immune's configuration file.
//
//	scrape:
//	  interval: 15s
//	  timeout: 10s
//	  body_size_limit: 33554432
//	  series_limit: 100000
//	  static:
//	    - targets: [10.0.0.1:9100, 10.0.0.2:9100]
//	      labels: {service: checkout, version: v41}
//	  serversets:
//	    services: [checkout, payments]
type Config struct {
	Interval      model.Duration `yaml:"interval,omitempty"`
	Timeout       model.Duration `yaml:"timeout,omitempty"`
	BodySizeLimit int64          `yaml:"body_size_limit,omitempty"` // bytes
	SeriesLimit   int            `yaml:"series_limit,omitempty"`    // -1: none
	Static        []StaticConfig `yaml:"static,omitempty"`
	// ServerSets discovers targets from ZooKeeper (the connection and the
	// roots come from the zookeeper section of the configuration).
	ServerSets *ServerSetConfig `yaml:"serversets,omitempty"`
}

// StaticConfig is a fixed list of targets sharing labels.
type StaticConfig struct {
	Targets     []string          `yaml:"targets"`
	Labels      map[string]string `yaml:"labels,omitempty"`
	Scheme      string            `yaml:"scheme,omitempty"`       // http (default) or https
	MetricsPath string            `yaml:"metrics_path,omitempty"` // default /metrics
}

// ServerSetConfig scrapes the announced members of services.
type ServerSetConfig struct {
	Services    []string `yaml:"services"`
	Scheme      string   `yaml:"scheme,omitempty"`
	MetricsPath string   `yaml:"metrics_path,omitempty"`
	// Labels are added to every member's series (like env: prod); the
	// labels from the member (service, instance, version, shard) win.
	Labels map[string]string `yaml:"labels,omitempty"`
}

// Validate reports every problem of the configuration at once, each
// naming its field, like scrape.static[1].targets[0].
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf("scrape."+format, args...)) }
	if c.Interval < 0 {
		add("interval: %v is negative", c.Interval)
	}
	if c.Timeout < 0 {
		add("timeout: %v is negative", c.Timeout)
	}
	interval := time.Duration(c.Interval)
	if interval == 0 {
		interval = DefaultInterval
	}
	if c.Timeout > 0 && time.Duration(c.Timeout) > interval {
		add("timeout: %v is longer than the interval %v", c.Timeout, model.Duration(interval))
	}
	if c.BodySizeLimit < 0 {
		add("body_size_limit: %d is negative", c.BodySizeLimit)
	}
	if c.SeriesLimit < -1 {
		add("series_limit: %d: want a positive number, 0 for the default or -1 for none", c.SeriesLimit)
	}
	for i, s := range c.Static {
		field := fmt.Sprintf("static[%d]", i)
		if len(s.Targets) == 0 {
			add("%s.targets: empty", field)
		}
		for j, t := range s.Targets {
			if err := checkAddress(t); err != nil {
				add("%s.targets[%d]: %v", field, j, err)
			}
		}
		errs = append(errs, checkEndpoint("scrape."+field, s.Scheme, s.MetricsPath, s.Labels)...)
	}
	if ss := c.ServerSets; ss != nil {
		if len(ss.Services) == 0 {
			add("serversets.services: empty")
		}
		seen := map[string]bool{}
		for i, s := range ss.Services {
			switch {
			case !deploy.ValidName(s):
				add("serversets.services[%d]: %q is not a valid service name", i, s)
			case seen[s]:
				add("serversets.services[%d]: %q is listed twice", i, s)
			}
			seen[s] = true
		}
		errs = append(errs, checkEndpoint("scrape.serversets", ss.Scheme, ss.MetricsPath, ss.Labels)...)
	}
	return errors.Join(errs...)
}

func checkAddress(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil || host == "" {
		return fmt.Errorf("%q is not host:port", a)
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return fmt.Errorf("%q: port %q is not a port number", a, port)
	}
	return nil
}

func checkEndpoint(field, scheme, path string, ls map[string]string) []error {
	var errs []error
	if scheme != "" && scheme != "http" && scheme != "https" {
		errs = append(errs, fmt.Errorf("%s.scheme: %q: want http or https", field, scheme))
	}
	if path != "" && !strings.HasPrefix(path, "/") {
		errs = append(errs, fmt.Errorf("%s.metrics_path: %q does not start with /", field, path))
	}
	for _, k := range sortedNames(ls) {
		switch {
		case !model.LegacyValidation.IsValidLabelName(k) || strings.HasPrefix(k, "__"):
			errs = append(errs, fmt.Errorf("%s.labels: %q is not a label name (letters, digits and _, not starting with a digit or __)", field, k))
		case !model.LabelValue(ls[k]).IsValid():
			errs = append(errs, fmt.Errorf("%s.labels.%s: the value is not valid UTF-8", field, k))
		}
	}
	return errs
}

// Options returns base with the configuration's settings.
func (c Config) Options(base Options) Options {
	if c.Interval > 0 {
		base.Interval = time.Duration(c.Interval)
	}
	if c.Timeout > 0 {
		base.Timeout = time.Duration(c.Timeout)
	}
	if c.BodySizeLimit > 0 {
		base.BodySizeLimit = c.BodySizeLimit
	}
	if c.SeriesLimit != 0 {
		base.SeriesLimit = c.SeriesLimit
	}
	return base
}

// SourceStatic is the source name of the static targets.
const SourceStatic = "static"

// StaticTargets are the targets of the static lists. A target without an
// instance label gets its address as instance.
func (c Config) StaticTargets() []Target {
	var out []Target
	for _, s := range c.Static {
		for _, a := range s.Targets {
			ls := make(map[string]string, len(s.Labels)+1)
			ls[LabelInstance] = a
			for k, v := range s.Labels {
				ls[k] = v
			}
			out = append(out, Target{Scheme: s.Scheme, Address: a, Path: s.MetricsPath, Labels: ls})
		}
	}
	return out
}

// ServerSetSource is the source name of a service's members.
func ServerSetSource(service string) string { return "serverset/" + service }

// ServerSetTargets are the targets of a service's announced members, as
// deploy.ServerSetDiscovery delivers them: the serviceEndpoint, labelled
// service, instance (metadata.instance, else host:port), version
// (metadata.version; none when empty) and shard. c may be nil.
func ServerSetTargets(c *ServerSetConfig, members []deploy.Announcement) []Target {
	out := make([]Target, 0, len(members))
	for _, m := range members {
		t := Target{Address: m.Address(), Labels: map[string]string{}}
		if c != nil {
			t.Scheme, t.Path = c.Scheme, c.MetricsPath
			for k, v := range c.Labels {
				t.Labels[k] = v
			}
		}
		t.Labels[LabelService] = m.Service
		t.Labels[LabelInstance] = m.Instance()
		t.Labels[LabelVersion] = m.Member.Metadata.Version
		t.Labels[LabelShard] = strconv.Itoa(m.Member.Shard)
		out = append(out, t)
	}
	return out
}

func sortedNames(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}
