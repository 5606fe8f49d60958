package triggers_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/rollback/rollbacktest"
	"github.com/immune-project/immune/rollback/triggers"
)

func parse(t *testing.T, src string) (triggers.Config, error) {
	t.Helper()
	var c triggers.Config
	dec := yaml.NewDecoder(bytes.NewReader([]byte(src)))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return c, err
	}
	return c, c.Validate()
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"webhook", "trigger: webhook\naudit_log: /tmp/a\nwebhook:\n  url: https://x/revert\n  auth_file: /etc/t\n  deadline: 1m\n", ""},
		{"command", "trigger: command\naudit_log: /tmp/a\ncommand:\n  command: [/bin/revert, --now]\n  timeout: 30s\n", ""},
		{"zookeeper", "trigger: zookeeper\naudit_log: /tmp/a\nzookeeper:\n  fence_root: /immune/fences\nshadow:\n  services: [search]\n  rule_files: [x.yaml]\n", ""},
		{"shadow", "trigger: shadow\naudit_log: /tmp/a\n", ""},
		{"no audit log", "trigger: shadow\n", "rollback.audit_log"},
		{"no trigger", "audit_log: /a\n", "rollback.trigger: missing"},
		{"bad trigger", "trigger: email\naudit_log: /a\n", `rollback.trigger: "email"`},
		{"webhook without section", "trigger: webhook\naudit_log: /a\n", "rollback.webhook: trigger is webhook"},
		{"bad webhook url", "trigger: webhook\naudit_log: /a\nwebhook:\n  url: nope\n", "rollback.webhook url"},
		{"bad command", "trigger: command\naudit_log: /a\ncommand:\n  command: []\n", "rollback.command: want"},
		{"unknown field", "trigger: shadow\naudit_log: /a\nretries: 3\n", "field retries not found"},
		{"all errors at once", "trigger: webhook\nshadow:\n  services: ['']\n", "rollback.audit_log"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(t, tt.src)
			if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("err %v, want %q", err, tt.want)
			}
		})
	}
	_, err := parse(t, "trigger: webhook\nshadow:\n  services: ['']\n")
	if n := strings.Count(err.Error(), "\n") + 1; n != 3 {
		t.Errorf("%d errors reported, want 3: %v", n, err)
	}
}

// TestNew: the webhook path with one service in shadow mode: that
// service's deploys are recorded, the others' reverted, once.
func TestNew(t *testing.T) {
	var posts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { posts.Add(1) }))
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	cfg, err := parse(t, "trigger: webhook\naudit_log: "+path+"\nwebhook:\n  url: "+srv.URL+"\nshadow:\n  services: [search]\n")
	if err != nil {
		t.Fatal(err)
	}
	p, err := triggers.New(cfg, triggers.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Gate != nil {
		t.Error("a gate without ZooKeeper")
	}
	ctx := context.Background()
	checkout, search := rollbacktest.Deploy(t, 1), rollbacktest.Deploy(t, 2)
	search.Service = "search"
	for range 2 {
		for _, d := range []deploy.Deploy{checkout, search} {
			if _, err := p.Trigger.Revert(ctx, rollbacktest.Request(d)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if posts.Load() != 1 {
		t.Errorf("%d posts, want 1", posts.Load())
	}
	var got []string
	for _, r := range p.Log.Records() {
		got = append(got, r.Trigger+":"+r.Result)
	}
	if want := "webhook:reverted shadow:shadow webhook:already shadow:already"; strings.Join(got, " ") != want {
		t.Errorf("audit %q, want %q", strings.Join(got, " "), want)
	}
	if _, err := triggers.New(triggers.Config{Trigger: triggers.ZooKeeper, AuditLog: path}, triggers.Deps{}); err == nil {
		t.Error("zookeeper trigger without a connection")
	}
}
