package scrape

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"github.com/immune-project/immune/deploy"
)

func TestConfigYAML(t *testing.T) {
	const in = `
interval: 30s
timeout: 5s
body_size_limit: 1048576
series_limit: -1
static:
  - targets: [10.0.0.1:9100, "[::1]:9100"]
    labels: {service: checkout, version: v41}
    metrics_path: /admin/metrics
serversets:
  services: [checkout, payments]
  scheme: https
  labels: {env: prod}
`
	var c Config
	dec := yaml.NewDecoder(strings.NewReader(in))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	o := c.Options(Options{})
	if o.Interval != 30*time.Second || o.Timeout != 5*time.Second || o.BodySizeLimit != 1<<20 || o.SeriesLimit != -1 {
		t.Errorf("options %+v", o)
	}
	got := c.StaticTargets()
	want := []Target{
		{Address: "10.0.0.1:9100", Path: "/admin/metrics", Labels: map[string]string{"instance": "10.0.0.1:9100", "service": "checkout", "version": "v41"}},
		{Address: "[::1]:9100", Path: "/admin/metrics", Labels: map[string]string{"instance": "[::1]:9100", "service": "checkout", "version": "v41"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("static targets\ngot  %+v\nwant %+v", got, want)
	}
	if u := got[1].URL(); u != "http://[::1]:9100/admin/metrics" {
		t.Errorf("URL %s", u)
	}
	members := []deploy.Announcement{{
		Service: "checkout", Znode: "/services/checkout/members/member_0000000003",
		Member: deploy.Member{ServiceEndpoint: deploy.Endpoint{Host: "10.0.0.7", Port: 8080}, Status: deploy.StatusAlive, Shard: 3,
			Metadata: deploy.MemberMetadata{Version: "v42"}},
	}}
	ts := ServerSetTargets(c.ServerSets, members)
	wantT := []Target{{Scheme: "https", Address: "10.0.0.7:8080", Labels: map[string]string{
		"env": "prod", "service": "checkout", "instance": "10.0.0.7:8080", "version": "v42", "shard": "3"}}}
	if !reflect.DeepEqual(ts, wantT) {
		t.Errorf("serverset targets\ngot  %+v\nwant %+v", ts, wantT)
	}
	if u := ts[0].URL(); u != "https://10.0.0.7:8080/metrics" {
		t.Errorf("URL %s", u)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Config
		want []string
	}{
		{"zero", Config{}, nil},
		{"timeout longer than interval", Config{Interval: m(10 * time.Second), Timeout: m(20 * time.Second)},
			[]string{"scrape.timeout: 20s is longer than the interval 10s"}},
		{"timeout longer than the default interval", Config{Timeout: m(time.Minute)}, []string{"scrape.timeout: 1m is longer than the interval 15s"}},
		{"negative", Config{Interval: m(-time.Second), BodySizeLimit: -1, SeriesLimit: -2}, []string{
			"scrape.interval: -1s is negative", "scrape.body_size_limit: -1 is negative", "scrape.series_limit: -2"}},
		{"static", Config{Static: []StaticConfig{
			{Targets: []string{"10.0.0.1:9100"}},
			{Targets: []string{"10.0.0.1", ":80", "h:0", "h:http"}, Scheme: "ftp", MetricsPath: "metrics",
				Labels: map[string]string{"1x": "a", "__name__": "b", "ok": "\xff"}},
			{},
		}}, []string{
			`scrape.static[1].targets[0]: "10.0.0.1" is not host:port`,
			`scrape.static[1].targets[1]: ":80" is not host:port`,
			`scrape.static[1].targets[2]: "h:0": port "0" is not a port number`,
			`scrape.static[1].targets[3]: "h:http": port "http" is not a port number`,
			`scrape.static[1].scheme: "ftp": want http or https`,
			`scrape.static[1].metrics_path: "metrics" does not start with /`,
			`scrape.static[1].labels: "1x" is not a label name`,
			`scrape.static[1].labels: "__name__" is not a label name`,
			`scrape.static[1].labels.ok: the value is not valid UTF-8`,
			`scrape.static[2].targets: empty`,
		}},
		{"serversets", Config{ServerSets: &ServerSetConfig{Services: []string{"a", "b/c", "a"}}}, []string{
			`scrape.serversets.services[1]: "b/c" is not a valid service name`,
			`scrape.serversets.services[2]: "a" is listed twice`,
		}},
		{"no services", Config{ServerSets: &ServerSetConfig{}}, []string{"scrape.serversets.services: empty"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.c.Validate()
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.want) {
				t.Fatalf("%d errors, want %d:\n%v", len(lines), len(tc.want), err)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(lines[i], w) {
					t.Errorf("error %d: %q, want prefix %q", i, lines[i], w)
				}
			}
		})
	}
}

func m(d time.Duration) model.Duration { return model.Duration(d) }
