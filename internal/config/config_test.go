package config

import (
	"strings"
	"testing"
	"time"
)

func TestDefaults(t *testing.T) {
	c := Default()
	if c.Listen != "127.0.0.1:9797" || c.Metrics.Source != "embedded" || c.Rollback.Trigger != "shadow" ||
		!*c.Deploys.HTTP || *c.Deploys.ZooKeeper || c.Analysis.Delay.D() != 30*time.Second || c.ExternalURL != "http://127.0.0.1:9797" {
		t.Fatalf("defaults: %+v", c)
	}
	if errs := c.validate(); len(errs) > 0 {
		t.Fatalf("the defaults do not validate: %v", errs)
	}
}

func TestParseGood(t *testing.T) {
	c, err := Parse("shop.yaml", []byte(`
listen: 0.0.0.0:9797
instance: immune-1
metrics:
  source: prometheus
  prometheus: {url: "http://prometheus:9090", bearer_token_file: /etc/immune/prom-token, timeout: 20s}
zookeeper:
  servers: [zk1:2181, zk2:2181]
  credentials_file: /etc/immune/zk-digest
  roots: {deploys: /cd/deploys}
rollback:
  trigger: zookeeper
  shadow_services: [search]
grafana:
  url: https://grafana.example.com
  token_file: /etc/immune/grafana-token
  dashboards: [{uid: abc123, panel_ids: [2, 4]}]
analysis: {delay: 45s, gate_looks: 3}
`))
	if err != nil {
		t.Fatal(err)
	}
	if !*c.Deploys.ZooKeeper || c.Layout().Deploys != "/cd/deploys" || c.Layout().Services != "/services" ||
		c.ZooKeeper.SessionTimeout.D() != 10*time.Second || c.Analysis.GateLooks != 3 || c.Grafana.Dashboards[0].PanelIDs[1] != 4 {
		t.Fatalf("parsed: %+v", c)
	}
}

// TestParsePathsAndDurations: shadow rule files are relative to the config
// file, as the rule files they are compared with; durations take days;
// grafana's links default to nothing here (immune run uses external_url,
// after --listen).
func TestParsePathsAndDurations(t *testing.T) {
	c, err := Parse("/etc/immune/immune.yaml", []byte(`
rules: [checkout.yaml]
rollback: {shadow_rule_files: [checkout.yaml, /abs/other.yaml, ./sub/../x.yaml]}
metrics: {retention: 15d}
deploys: {retention: 1w}
grafana: {url: "http://g:3000", token_file: t}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/etc/immune/checkout.yaml", "/abs/other.yaml", "/etc/immune/x.yaml"}
	if strings.Join(c.Rollback.ShadowRuleFiles, " ") != strings.Join(want, " ") {
		t.Errorf("shadow_rule_files %q, want %q", c.Rollback.ShadowRuleFiles, want)
	}
	if c.Metrics.Retention.D() != 15*24*time.Hour || c.Deploys.Retention.D() != 7*24*time.Hour {
		t.Errorf("retentions %v, %v", c.Metrics.Retention.D(), c.Deploys.Retention.D())
	}
	if c.Rules[0] != "/etc/immune/checkout.yaml" || c.Grafana.TokenFile != "/etc/immune/t" || c.DataDir != "/etc/immune/immune-data" {
		t.Errorf("paths not resolved once against the config's directory: rules %q, grafana token %q, data %q", c.Rules, c.Grafana.TokenFile, c.DataDir)
	}
	if c.Grafana.ReportBaseURL != "" {
		t.Errorf("report_base_url defaulted to %q in the config", c.Grafana.ReportBaseURL)
	}
	// A bad grafana.url is reported once, not again by Grafana's own checks.
	_, err = Parse("cfg.yaml", []byte("grafana: {url: ftp://g, token_file: t}\n"))
	if err == nil || strings.Count(err.Error(), "url") != 1 {
		t.Errorf("bad grafana url: %v", err)
	}
}

func TestParseBad(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"unknown field", "listen: 127.0.0.1:1\nlisten_addr: x\n", []string{"cfg.yaml:2: field listen_addr not found"}},
		{"bad duration", "analysis:\n  delay: soon\n", []string{`cfg.yaml:2:`, `"soon" is not a duration`}},
		{"bad enum", "rollback:\n  trigger: email\n", []string{`cfg.yaml:2: rollback.trigger: "email" is not one of`}},
		{"webhook without url", "rollback:\n  trigger: webhook\n", []string{"rollback.webhook.url: required"}},
		{"credentials in url", "rollback:\n  trigger: webhook\n  webhook:\n    url: https://u:secret@x/y\n",
			[]string{"cfg.yaml:4: rollback.webhook.url: credentials in the URL are refused"}},
		{"zookeeper trigger without zookeeper", "rollback: {trigger: zookeeper}\n", []string{"needs a zookeeper section"}},
		{"zookeeper bad root", "zookeeper:\n  servers: [a:1]\n  roots: {owners: owners}\n", []string{"zookeeper.roots", "not an absolute path"}},
		{"grafana without token", "grafana:\n  url: http://g:3000\n", []string{"cfg.yaml:1: grafana.token_file: required"}},
		{"all at once", "listen: x\nlog: {level: loud}\n", []string{"cfg.yaml:1: listen", "cfg.yaml:2: log.level"}},
		{"not yaml", "listen: [\n", []string{"cfg.yaml:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("cfg.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("the error shows a secret: %v", err)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("listen: 127.0.0.1:1\n"))
	f.Add([]byte("zookeeper: {servers: [a:1]}\nrollback: {trigger: zookeeper}\n"))
	f.Add([]byte("scrape: {static: [{address: a:1, service: s}]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("f.yaml", data)
		if err == nil && c == nil {
			t.Fatal("nil config without an error")
		}
	})
}

// TestExamples: the example configs of the docs parse.
func TestExamples(t *testing.T) {
	for _, f := range []string{"../../examples/config/immune.yaml", "../../examples/config/immune-shop.yaml"} {
		c, err := Load(f)
		if err != nil {
			t.Fatal(err)
		}
		if c.Rollback.Trigger == "shadow" {
			t.Errorf("%s: the example chooses no trigger", f)
		}
	}
}
