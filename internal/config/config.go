// Package config is the configuration file of `immune run`: strict YAML
// (an unknown field is an error), every error as file:line: field:
// message, all of them at once; secrets only by reference (a file or an
// environment variable), never inline. docs/configuration.md documents
// every field; keep the two together.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"github.com/immune-project/immune/annotator/grafana"
	"github.com/immune-project/immune/collector/scrape"
	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/rollback/command"
	"github.com/immune-project/immune/rollback/webhook"
	zkrollback "github.com/immune-project/immune/rollback/zookeeper"
)

// Config is the whole file. The zero value, after Defaults, is the
// embedded setup: everything on one machine, shadow mode.
type Config struct {
	// Listen is the HTTP address of the API, the pages and /metrics.
	Listen string `yaml:"listen"`
	// Instance names this immune instance (default: the host name).
	Instance string `yaml:"instance"`
	// DataDir holds the embedded store, the audit log, the built-in
	// annotations and the deploys received over HTTP.
	DataDir string `yaml:"data_dir"`
	// ExternalURL is how people reach this instance (links in
	// annotations); default http://<listen>.
	ExternalURL string          `yaml:"external_url"`
	Log         Log             `yaml:"log"`
	Rules       []string        `yaml:"rules"`
	Metrics     Metrics         `yaml:"metrics"`
	ZooKeeper   *ZooKeeper      `yaml:"zookeeper"`
	Deploys     Deploys         `yaml:"deploys"`
	Analysis    Analysis        `yaml:"analysis"`
	Rollback    Rollback        `yaml:"rollback"`
	Grafana     *grafana.Config `yaml:"grafana"`
	Alerts      Alerts          `yaml:"alerts"`
	Scrape      scrape.Config   `yaml:"scrape"`
	Ingest      Ingest          `yaml:"ingest"`
	Query       Query           `yaml:"query"`
	lines       map[string]int
	file        string
}

// Log is the program's own logging.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error (default info)
	Format string `yaml:"format"` // text or json (default text)
}

// Metrics says where KPIs are read from.
type Metrics struct {
	// Source is embedded (default) or prometheus.
	Source     string      `yaml:"source"`
	Prometheus *Prometheus `yaml:"prometheus"`
	// Retention of the embedded store (default 15d; 0 keeps everything).
	Retention *Duration `yaml:"retention"`
}

// Prometheus is a remote Prometheus-compatible query API.
type Prometheus struct {
	URL             string   `yaml:"url"`
	BearerTokenFile string   `yaml:"bearer_token_file"`
	Timeout         Duration `yaml:"timeout"`
}

// ZooKeeper is the connection shared by the deploy watcher, discovery,
// ownership and the ZooKeeper trigger.
type ZooKeeper struct {
	Servers         []string `yaml:"servers"`
	SessionTimeout  Duration `yaml:"session_timeout"`
	CredentialsFile string   `yaml:"credentials_file"`
	TLS             *TLS     `yaml:"tls"`
	Roots           Roots    `yaml:"roots"`
}

// TLS for the ZooKeeper connection.
type TLS struct {
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// Roots of the ZooKeeper protocol (docs/zookeeper.md).
type Roots struct {
	Services string `yaml:"services"`
	Deploys  string `yaml:"deploys"`
	Owners   string `yaml:"owners"`
}

// Deploys says where deploy events come from.
type Deploys struct {
	// HTTP enables POST /api/v1/deploys (default true).
	HTTP *bool `yaml:"http"`
	// Retention is how long deploys received over HTTP are kept in
	// data_dir/deploys.jsonl (default 7 days).
	Retention Duration `yaml:"retention"`
	// TokenFile protects the HTTP deploy API with a bearer token.
	TokenFile string `yaml:"token_file"`
	// ZooKeeper watches /deploys in the zookeeper section's server
	// (default true when a zookeeper section is present).
	ZooKeeper *bool `yaml:"zookeeper"`
	// Services limits the ZooKeeper watcher to these services (default all).
	Services []string `yaml:"services"`
}

// Analysis tunes the live analyses.
type Analysis struct {
	// Delay after a look's instant before it is taken, for the samples to
	// arrive (default 30s; at least the scrape interval).
	Delay *Duration `yaml:"delay"`
	// GateLooks is how many looks a rollout group is watched before its
	// gate says proceed (default 2).
	GateLooks int `yaml:"gate_looks"`
}

// Rollback says how a failing deploy is reverted.
type Rollback struct {
	// Trigger is shadow (default), zookeeper, webhook or command.
	Trigger string `yaml:"trigger"`
	// ShadowServices and ShadowRuleFiles stay in shadow mode whatever
	// the trigger (a rule file with analysis.mode: shadow does too).
	ShadowServices  []string `yaml:"shadow_services"`
	ShadowRuleFiles []string `yaml:"shadow_rule_files"`
	// Webhook, Command and ZooKeeper configure their triggers.
	Webhook   *webhook.Config   `yaml:"webhook"`
	Command   *command.Config   `yaml:"command"`
	ZooKeeper zkrollback.Config `yaml:"zookeeper"`
}

// Alerts is the Alertmanager webhook receiver (POST /api/v1/alerts).
type Alerts struct {
	// Revert makes a firing alert of a deploy's service during its window
	// fail the deploy (default false: alerts are recorded only).
	Revert bool `yaml:"revert"`
	// ServiceLabel is the alert label naming the service (default service).
	ServiceLabel string `yaml:"service_label"`
	// TokenFile protects the receiver with a bearer token.
	TokenFile string `yaml:"token_file"`
}

// Ingest guards the write endpoints (remote-write, push).
type Ingest struct {
	// TokenFile holds the bearer token the write endpoints require.
	TokenFile string `yaml:"token_file"`
	// Limits per request; 0 keeps the default, -1 lifts the limit.
	MaxBodyBytes         int64    `yaml:"max_body_bytes"`
	MaxSamplesPerRequest int      `yaml:"max_samples_per_request"`
	MaxSeriesPerRequest  int      `yaml:"max_series_per_request"`
	MaxLabelsPerSeries   int      `yaml:"max_labels_per_series"`
	MaxLabelNameLength   int      `yaml:"max_label_name_length"`
	MaxLabelValueLength  int      `yaml:"max_label_value_length"`
	MaxAhead             Duration `yaml:"max_ahead"`
}

// Query is the Prometheus-compatible query API over the embedded store.
type Query struct {
	// TokenFile, when set, protects the query API with a bearer token.
	TokenFile string `yaml:"token_file"`
}

// Duration is a time.Duration written as 30s, 5m, 1h30m, 7d or 2w.
type Duration time.Duration

// UnmarshalYAML reads a Go duration (30s, 1.5h) or a Prometheus one
// (7d, 2w, 1d12h), as the scrape section does.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: want a duration like 30s, 5m or 7d", n.Line)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		var m model.Duration
		m, err = model.ParseDuration(s)
		v = time.Duration(m)
	}
	if err != nil || v < 0 {
		return fmt.Errorf("line %d: %q is not a duration like 30s, 5m or 7d", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// D is the duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Error is one problem of a config file, at a line.
type Error struct {
	File  string
	Line  int
	Field string
	Msg   string
}

func (e *Error) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	if e.Field != "" {
		return fmt.Sprintf("%s: %s: %s", loc, e.Field, e.Msg)
	}
	return fmt.Sprintf("%s: %s", loc, e.Msg)
}

// Load reads and checks a config file.
func Load(file string) (*Config, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(file, data)
}

var yamlLine = regexp.MustCompile(`^line (\d+): (.*)$`)

// Parse reads a config from data; file names it in errors. Every problem
// is reported, joined.
func Parse(file string, data []byte) (*Config, error) {
	c := &Config{file: file, lines: map[string]int{}}
	var errs []error
	if len(bytes.TrimSpace(data)) > 0 {
		var root yaml.Node
		if err := yaml.Unmarshal(data, &root); err != nil {
			return nil, yamlErr(file, err)
		}
		index(&root, "", c.lines)
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
			var te *yaml.TypeError
			if !errors.As(err, &te) {
				return nil, yamlErr(file, err)
			}
			// Unknown or mistyped fields: report them with the rest.
			errs = append(errs, yamlErr(file, err))
		}
	}
	c.Defaults()
	c.resolvePaths()
	errs = append(errs, c.validate()...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// Default is the configuration without a file: embedded defaults.
func Default() *Config {
	c := &Config{file: "(defaults)", lines: map[string]int{}}
	c.Defaults()
	return c
}

func yamlErr(file string, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		var errs []error
		for _, m := range te.Errors {
			errs = append(errs, lineErr(file, m))
		}
		return errors.Join(errs...)
	}
	return lineErr(file, err.Error())
}

func lineErr(file, msg string) error {
	msg = strings.TrimPrefix(msg, "yaml: ")
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		var line int
		fmt.Sscan(m[1], &line)
		msg := strings.ReplaceAll(m[2], "in type config.", "in section ")
		return &Error{File: file, Line: line, Msg: msg}
	}
	return &Error{File: file, Msg: msg}
}

// index records the line of every field path (a.b.c, list items as a.b[0]).
func index(n *yaml.Node, path string, lines map[string]int) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			index(c, path, lines)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			lines[p] = k.Line
			index(v, p, lines)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			lines[p] = c.Line
			index(c, p, lines)
		}
	}
}

func (c *Config) errAt(field, format string, args ...any) error {
	line := 0
	for p := field; p != ""; {
		if l, ok := c.lines[p]; ok {
			line = l
			break
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return &Error{File: c.file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Defaults fills in what the file leaves out.
func (c *Config) Defaults() {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:9797"
	}
	if c.Instance == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "immune"
		}
		c.Instance = h
	}
	if c.DataDir == "" {
		c.DataDir = "immune-data"
	}
	if c.ExternalURL == "" {
		c.ExternalURL = "http://" + c.Listen
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	if c.Metrics.Source == "" {
		c.Metrics.Source = "embedded"
	}
	if c.Metrics.Retention == nil {
		r := Duration(15 * 24 * time.Hour)
		c.Metrics.Retention = &r
	}
	if c.Deploys.HTTP == nil {
		t := true
		c.Deploys.HTTP = &t
	}
	if c.Deploys.ZooKeeper == nil {
		z := c.ZooKeeper != nil
		c.Deploys.ZooKeeper = &z
	}
	if c.ZooKeeper != nil {
		if c.ZooKeeper.SessionTimeout == 0 {
			c.ZooKeeper.SessionTimeout = Duration(10 * time.Second)
		}
		r := &c.ZooKeeper.Roots
		if r.Services == "" {
			r.Services = deploy.DefaultLayout.Services
		}
		if r.Deploys == "" {
			r.Deploys = deploy.DefaultLayout.Deploys
		}
		if r.Owners == "" {
			r.Owners = deploy.DefaultLayout.Owners
		}
	}
	if c.Analysis.Delay == nil {
		d := Duration(30 * time.Second)
		c.Analysis.Delay = &d
	}
	if c.Analysis.GateLooks == 0 {
		c.Analysis.GateLooks = 2
	}
	if c.Rollback.Trigger == "" {
		c.Rollback.Trigger = "shadow"
	}
	if c.Alerts.ServiceLabel == "" {
		c.Alerts.ServiceLabel = "service"
	}
}

// Layout is the ZooKeeper protocol's layout of the config.
func (c *Config) Layout() deploy.Layout {
	if c.ZooKeeper == nil {
		return deploy.DefaultLayout
	}
	r := c.ZooKeeper.Roots
	return deploy.Layout{Services: r.Services, Deploys: r.Deploys, Owners: r.Owners}
}

// resolvePaths makes every path of the config (rule files, the data
// directory, token, credential and certificate files) relative to the
// config file's directory, once, so that no user of the config has to.
// The shadow rule files are compared with the rule files' names.
func (c *Config) resolvePaths() {
	for _, ps := range [][]string{c.Rules, c.Rollback.ShadowRuleFiles} {
		for i, p := range ps {
			ps[i] = filepath.Clean(c.resolve(p))
		}
	}
	for _, p := range []*string{&c.DataDir, &c.Deploys.TokenFile, &c.Alerts.TokenFile, &c.Ingest.TokenFile, &c.Query.TokenFile} {
		*p = c.resolve(*p)
	}
	if m := c.Metrics.Prometheus; m != nil {
		m.BearerTokenFile = c.resolve(m.BearerTokenFile)
	}
	if z := c.ZooKeeper; z != nil {
		z.CredentialsFile = c.resolve(z.CredentialsFile)
		if t := z.TLS; t != nil {
			t.CAFile, t.CertFile, t.KeyFile = c.resolve(t.CAFile), c.resolve(t.CertFile), c.resolve(t.KeyFile)
		}
	}
	if g := c.Grafana; g != nil {
		g.TokenFile = c.resolve(g.TokenFile)
	}
	if w := c.Rollback.Webhook; w != nil {
		w.AuthFile = c.resolve(w.AuthFile)
	}
}

// resolve makes a path of the config relative to the config file's
// directory.
func (c *Config) resolve(p string) string {
	if p == "" || filepath.IsAbs(p) || c.file == "(defaults)" {
		return p
	}
	return filepath.Join(filepath.Dir(c.file), p)
}

func (c *Config) validate() []error {
	var errs []error
	add := func(field, format string, args ...any) { errs = append(errs, c.errAt(field, format, args...)) }
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		add("listen", "%q is not host:port", c.Listen)
	}
	if u, err := url.Parse(c.ExternalURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		add("external_url", "want an http(s) URL")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		add("log.format", "%q is not one of text, json", c.Log.Format)
	}
	switch c.Metrics.Source {
	case "embedded":
		if c.Metrics.Prometheus != nil {
			add("metrics.prometheus", "set, but metrics.source is embedded: set source: prometheus")
		}
	case "prometheus":
		if c.Metrics.Prometheus == nil || c.Metrics.Prometheus.URL == "" {
			add("metrics.prometheus.url", "required with metrics.source: prometheus")
		} else if u, err := url.Parse(c.Metrics.Prometheus.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("metrics.prometheus.url", "want an http(s) URL")
		} else if u.User != nil {
			add("metrics.prometheus.url", "credentials in the URL are refused: use bearer_token_file")
		}
	default:
		add("metrics.source", "%q is not one of embedded, prometheus", c.Metrics.Source)
	}
	if z := c.ZooKeeper; z != nil {
		if len(z.Servers) == 0 {
			add("zookeeper.servers", "at least one host:port")
		}
		for i, s := range z.Servers {
			if _, _, err := net.SplitHostPort(s); err != nil {
				add(fmt.Sprintf("zookeeper.servers[%d]", i), "%q is not host:port", s)
			}
		}
		if err := c.Layout().Validate(); err != nil {
			add("zookeeper.roots", "%v", err)
		}
		if z.TLS != nil && (z.TLS.CertFile == "") != (z.TLS.KeyFile == "") {
			add("zookeeper.tls", "cert_file and key_file go together")
		}
	}
	if *c.Deploys.ZooKeeper && c.ZooKeeper == nil {
		add("deploys.zookeeper", "needs a zookeeper section")
	}
	switch c.Rollback.Trigger {
	case "shadow":
	case "zookeeper":
		if c.ZooKeeper == nil {
			add("rollback.trigger", "zookeeper needs a zookeeper section")
		}
	case "webhook":
		if c.Rollback.Webhook == nil || c.Rollback.Webhook.URL == "" {
			add("rollback.webhook.url", "required with trigger: webhook")
		} else if u, err := url.Parse(c.Rollback.Webhook.URL); err == nil && u.User != nil {
			add("rollback.webhook.url", "credentials in the URL are refused: use auth_file")
		} else if err := c.Rollback.Webhook.Validate(); err != nil {
			add("rollback.webhook", "%v", err)
		}
	case "command":
		if c.Rollback.Command == nil || len(c.Rollback.Command.Command) == 0 {
			add("rollback.command.command", "required with trigger: command")
		} else if err := c.Rollback.Command.Validate(); err != nil {
			add("rollback.command", "%v", err)
		}
	default:
		add("rollback.trigger", "%q is not one of shadow, zookeeper, webhook, command", c.Rollback.Trigger)
	}
	if err := c.Rollback.ZooKeeper.Validate(); err != nil {
		add("rollback.zookeeper", "%v", err)
	}
	if g := c.Grafana; g != nil {
		ok := true
		if u, err := url.Parse(g.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("grafana.url", "want an http(s) URL")
			ok = false
		}
		if g.TokenFile == "" {
			add("grafana.token_file", "required: a service account token, in a file")
			ok = false
		}
		if ok {
			// The rest of Grafana's own checks (dashboards, panels,
			// report_base_url); the two above would come twice.
			if err := g.Validate(); err != nil {
				add("grafana", "%v", err)
			}
		}
	}
	if c.Analysis.GateLooks < 0 {
		add("analysis.gate_looks", "must be positive")
	}
	if err := c.Scrape.Validate(); err != nil {
		add("scrape", "%v", err)
	}
	if c.Scrape.ServerSets != nil && c.ZooKeeper == nil {
		add("scrape.serversets", "needs a zookeeper section")
	}
	return errs
}
