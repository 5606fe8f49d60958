package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/deploy/httpapi"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

type fixture struct {
	t    *testing.T
	api  *httpapi.API
	srv  *httptest.Server
	reg  *prometheus.Registry
	logs *bytes.Buffer
	mu   *sync.Mutex
}

func newFixture(t *testing.T, opts httpapi.Options) *fixture {
	t.Helper()
	f := &fixture{t: t, reg: prometheus.NewRegistry(), logs: &bytes.Buffer{}, mu: &sync.Mutex{}}
	if opts.Now == nil {
		opts.Now = func() time.Time { return t0 }
	}
	opts.Registerer = f.reg
	opts.Logger = slog.New(slog.NewTextHandler(lockedWriter{f.mu, f.logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	api, err := httpapi.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	f.api = api
	mux := http.NewServeMux()
	api.Register(mux)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(func() {
		f.srv.Close()
		if err := api.Close(); err != nil {
			t.Error(err)
		}
	})
	return f
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (f *fixture) do(method, path, body string, header ...string) (int, string) {
	f.t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// events runs the API's Run until n events came (or 5 s passed).
func (f *fixture) events(n int) []deploy.Event {
	f.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan deploy.Event)
	done := make(chan error, 1)
	go func() { done <- f.api.Run(ctx, out) }()
	var evs []deploy.Event
	timeout := time.After(5 * time.Second)
loop:
	for len(evs) < n {
		select {
		case ev := <-out:
			evs = append(evs, ev)
		case <-timeout:
			break loop
		}
	}
	// Nothing more is waiting.
	select {
	case ev := <-out:
		evs = append(evs, ev)
	case <-time.After(50 * time.Millisecond):
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		f.t.Errorf("Run: %v, want context.Canceled", err)
	}
	if len(evs) != n {
		f.t.Errorf("got %d events, want %d: %+v", len(evs), n, evs)
	}
	return evs
}

const startBody = `{"id":"d1","service":"checkout","version":"v2","previous_version":"v1","groups":[1,2,4]}`

func TestPostDeploy(t *testing.T) {
	tests := []struct {
		name     string
		body     string
		code     int
		contains string
	}{
		{"new", startBody, 201, `"started_at": "2026-11-25T12:00:00Z"`},
		{"identical retry", startBody, 200, `"id": "d1"`},
		{"identical retry with the time", `{"id":"d1","service":"checkout","version":"v2","previous_version":"v1","groups":[1,2,4],"started_at":"2026-11-25T12:00:00Z","state":"running"}`, 200, `"id": "d1"`},
		{"same id, other version", `{"id":"d1","service":"checkout","version":"v3","previous_version":"v1","groups":[1,2,4]}`, 409, `deploy d1 exists with different content`},
		{"generated id", `{"service":"search","version":"v9"}`, 201, `"id": "search-20261125T120000Z-`},
		{"no service", `{"version":"v2"}`, 400, `field service: missing`},
		{"bad service", `{"service":"a/b","version":"v2"}`, 400, `field service: \"a/b\" is not a valid name`},
		{"no version", `{"service":"s"}`, 400, `field version: missing`},
		{"version a number", `{"service":"s","version":2}`, 400, `field version: want a string, got number`},
		{"bad group size", `{"service":"s","version":"v","groups":[1,0]}`, 400, `field groups[1]: 0: want a positive number`},
		{"groups not an array", `{"service":"s","version":"v","groups":"1,2"}`, 400, `field groups: want an array, got string`},
		{"bad time", `{"service":"s","version":"v","started_at":"yesterday"}`, 400, `field started_at: want an RFC 3339 time`},
		{"bad state", `{"service":"s","version":"v","state":"ok"}`, 400, `field state: \"ok\": want running`},
		{"unknown field", `{"service":"s","version":"v","sha":"abc"}`, 400, `field sha: unknown field`},
		{"not JSON", `{"service":`, 400, `body: invalid JSON`},
		{"an array", `[1]`, 400, `body: want a JSON object`},
		{"empty", ``, 400, `body: invalid JSON`},
		{"bad id", `{"id":"..","service":"s","version":"v"}`, 400, `field id: \"..\" is not a valid name`},
	}
	f := newFixture(t, httpapi.Options{})
	for _, tt := range tests {
		code, body := f.do("POST", "/api/v1/deploys", tt.body)
		if code != tt.code || !strings.Contains(body, tt.contains) {
			t.Errorf("%s: %d %s, want %d with %q", tt.name, code, body, tt.code, tt.contains)
		}
		if code >= 400 && !strings.Contains(body, `"status": "error"`) {
			t.Errorf("%s: error body %s without status error", tt.name, body)
		}
	}
	evs := f.events(2)
	if len(evs) == 2 {
		if evs[0].Kind != deploy.EventStarted || evs[0].Deploy.ID != "d1" || evs[0].Source != "http" || evs[0].State != "running" ||
			!evs[0].Deploy.Time.Equal(t0) || len(evs[0].Deploy.Groups) != 3 || evs[0].Deploy.PreviousVersion != "v1" {
			t.Errorf("first event %+v", evs[0])
		}
		if evs[1].Deploy.Service != "search" {
			t.Errorf("second event %+v", evs[1])
		}
	}
	want := `
# HELP immune_deploy_events_total Deploy events delivered, by source and kind.
# TYPE immune_deploy_events_total counter
immune_deploy_events_total{kind="started",source="http"} 2
`
	if err := testutil.GatherAndCompare(f.reg, strings.NewReader(want), "immune_deploy_events_total"); err != nil {
		t.Error(err)
	}
	if got := testutil.ToFloat64(counter(t, f.reg, "immune_deploy_source_errors_total", "malformed")); got != 13 {
		t.Errorf("malformed errors %v, want 13", got)
	}
}

// TestPostDeployName: an id or service ZooKeeper could not take as a
// path element is refused, naming the field.
func TestPostDeployName(t *testing.T) {
	f := newFixture(t, httpapi.Options{})
	for _, tt := range []struct{ body, want string }{
		{`{"id":"d\u0085","service":"s","version":"v"}`, `field id: \"d\\u0085\" is not a valid name`},
		{`{"service":"s\uffff","version":"v"}`, `field service: \"s\\uffff\" is not a valid name`},
		{"{\"service\":\"s\xff\",\"version\":\"v\"}", `field service: \"s` + "\ufffd" + `\" is not a valid name`}, // invalid UTF-8 decodes to U+FFFD
	} {
		if code, body := f.do("POST", "/api/v1/deploys", tt.body); code != 400 || !strings.Contains(body, tt.want) {
			t.Errorf("%q: %d %s, want 400 with %s", tt.body, code, body, tt.want)
		}
	}
}

// counter finds one series of a counter vector by its reason or kind label.
func counter(t *testing.T, reg *prometheus.Registry, name, label string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var v float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if (l.GetName() == "reason" || l.GetName() == "kind") && l.GetValue() == label {
					v = m.GetCounter().GetValue()
				}
			}
		}
	}
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "x"}, func() float64 { return v })
}

func TestGroupsAndSelfTests(t *testing.T) {
	f := newFixture(t, httpapi.Options{})
	if code, body := f.do("POST", "/api/v1/deploys", startBody); code != 201 {
		t.Fatalf("start: %d %s", code, body)
	}
	tests := []struct {
		name, path, body string
		code             int
		contains         string
	}{
		{"group 0", "/api/v1/deploys/d1/groups", `{"group":0,"instances":["c-1"]}`, 201, `"started_at": "2026-11-25T12:00:00Z"`},
		{"group 0 again", "/api/v1/deploys/d1/groups", `{"group":0,"instances":["c-1"]}`, 200, `"group": 0`},
		{"group 0 other instances", "/api/v1/deploys/d1/groups", `{"group":0,"instances":["c-2"]}`, 409, `group 0 of deploy d1 exists`},
		{"group 1", "/api/v1/deploys/d1/groups", `{"group":1,"instances":["c-2","c-3"],"started_at":"2026-11-25T12:10:00Z"}`, 201, `"group": 1`},
		{"past the plan", "/api/v1/deploys/d1/groups", `{"group":3}`, 400, `field group: 3: the deploy plans groups 0 to 2`},
		{"no group", "/api/v1/deploys/d1/groups", `{"instances":["c-1"]}`, 400, `field group: missing`},
		{"negative group", "/api/v1/deploys/d1/groups", `{"group":-2}`, 400, `field group: -2`},
		{"bad instance", "/api/v1/deploys/d1/groups", `{"group":2,"instances":["a/b"]}`, 400, `field instances[0]`},
		{"unknown deploy", "/api/v1/deploys/nope/groups", `{"group":0}`, 404, `unknown deploy \"nope\"`},
		{"self test", "/api/v1/deploys/d1/selftest", `{"instance":"c-1","passed":true}`, 201, `"version": "v2"`},
		{"self test again", "/api/v1/deploys/d1/selftest", `{"instance":"c-1","passed":true}`, 200, `"passed": true`},
		{"self test changed", "/api/v1/deploys/d1/selftest", `{"instance":"c-1","passed":false,"detail":"db ping failed"}`, 201, `"detail": "db ping failed"`},
		{"self test no instance", "/api/v1/deploys/d1/selftest", `{"passed":true}`, 400, `field instance: missing`},
		{"self test no passed", "/api/v1/deploys/d1/selftest", `{"instance":"c-1"}`, 400, `field passed: missing`},
		{"self test passed a string", "/api/v1/deploys/d1/selftest", `{"instance":"c-1","passed":"yes"}`, 400, `field passed: want true or false, got string`},
		{"self test unknown deploy", "/api/v1/deploys/nope/selftest", `{"instance":"c-1","passed":true}`, 404, `unknown deploy`},
	}
	for _, tt := range tests {
		code, body := f.do("POST", tt.path, tt.body)
		if code != tt.code || !strings.Contains(body, tt.contains) {
			t.Errorf("%s: %d %s, want %d with %q", tt.name, code, body, tt.code, tt.contains)
		}
	}
	evs := f.events(5)
	kinds := []deploy.EventKind{deploy.EventStarted, deploy.EventGroup, deploy.EventGroup, deploy.EventSelfTest, deploy.EventSelfTest}
	for i, ev := range evs {
		if i < len(kinds) && ev.Kind != kinds[i] {
			t.Errorf("event %d: %s, want %s", i, ev.Kind, kinds[i])
		}
	}
	if len(evs) == 5 {
		if g := evs[2].Group; g.Group != 1 || len(g.Instances) != 2 || !g.StartedAt.Equal(t0.Add(10*time.Minute)) {
			t.Errorf("group event %+v", g)
		}
		if s := evs[4].SelfTest; s.Passed || s.Detail != "db ping failed" || s.Instance != "c-1" || evs[4].Deploy.ID != "d1" {
			t.Errorf("self test event %+v", s)
		}
	}
}

func TestState(t *testing.T) {
	f := newFixture(t, httpapi.Options{})
	f.do("POST", "/api/v1/deploys", startBody)
	for _, tt := range []struct {
		path, body string
		code       int
		contains   string
	}{
		{"/api/v1/deploys/d1/state", `{"state":"done"}`, 200, `"state": "done"`},
		{"/api/v1/deploys/d1/state", `{"state":"done"}`, 200, `"state": "done"`},
		{"/api/v1/deploys/d1/state", `{"state":"finished"}`, 400, `field state: \"finished\": want running`},
		{"/api/v1/deploys/d1/state", `{}`, 400, `field state: missing`},
		{"/api/v1/deploys/nope/state", `{"state":"done"}`, 404, `unknown deploy`},
		// A retry of the start after the change is still the same deploy.
		{"/api/v1/deploys", startBody, 200, `"state": "done"`},
	} {
		code, body := f.do("POST", tt.path, tt.body)
		if code != tt.code || !strings.Contains(body, tt.contains) {
			t.Errorf("POST %s %s: %d %s, want %d with %q", tt.path, tt.body, code, body, tt.code, tt.contains)
		}
	}
	evs := f.events(2)
	if len(evs) == 2 && (evs[1].Kind != deploy.EventState || evs[1].State != "done" || evs[1].Deploy.ID != "d1") {
		t.Errorf("state event %+v", evs[1])
	}
}

func TestGetWithStatus(t *testing.T) {
	status := func(_ context.Context, id string) (httpapi.Status, bool) {
		switch id {
		case "d1":
			return httpapi.Status{Verdict: &deploy.VerdictRecord{DeployID: "d1", Verdict: "fail", Decision: deploy.GateRevert, Reason: "conversion fell 12%"},
				Revert: &deploy.RevertRecord{DeployID: "d1", Reason: "conversion fell 12%"}}, true
		case "zk1":
			return httpapi.Status{Verdict: &deploy.VerdictRecord{DeployID: "zk1", Verdict: "pass", Decision: deploy.GateProceed}}, true
		}
		return httpapi.Status{}, false
	}
	f := newFixture(t, httpapi.Options{Status: status})
	f.do("POST", "/api/v1/deploys", startBody)
	f.do("POST", "/api/v1/deploys", `{"id":"d2","service":"search","version":"v5"}`)
	f.do("POST", "/api/v1/deploys/d1/groups", `{"group":0}`)

	code, body := f.do("GET", "/api/v1/deploys/d1", "")
	var v httpapi.View
	if err := json.Unmarshal([]byte(body), &v); err != nil || code != 200 {
		t.Fatalf("GET d1: %d %s %v", code, body, err)
	}
	if v.Deploy == nil || v.Deploy.ID != "d1" || len(v.Groups) != 1 || v.Verdict == nil || v.Verdict.Verdict != "fail" || v.Revert == nil {
		t.Errorf("GET d1: %s", body)
	}
	code, body = f.do("GET", "/api/v1/deploys/zk1", "")
	if code != 200 || !strings.Contains(body, `"deploy": null`) || !strings.Contains(body, `"verdict": "pass"`) {
		t.Errorf("GET zk1 (known to the analysis only): %d %s", code, body)
	}
	if code, body = f.do("GET", "/api/v1/deploys/nope", ""); code != 404 || !strings.Contains(body, `"error": "unknown deploy \"nope\""`) {
		t.Errorf("GET nope: %d %s", code, body)
	}
	var list struct {
		Deploys []httpapi.View `json:"deploys"`
	}
	for _, tc := range []struct {
		query string
		ids   []string
	}{{"", []string{"d2", "d1"}}, {"?service=checkout", []string{"d1"}}, {"?limit=1", []string{"d2"}}} {
		code, body = f.do("GET", "/api/v1/deploys"+tc.query, "")
		if err := json.Unmarshal([]byte(body), &list); err != nil || code != 200 {
			t.Fatalf("GET list%s: %d %s %v", tc.query, code, body, err)
		}
		var ids []string
		for _, v := range list.Deploys {
			ids = append(ids, v.Deploy.ID)
		}
		if strings.Join(ids, ",") != strings.Join(tc.ids, ",") {
			t.Errorf("GET list%s: %v, want %v", tc.query, ids, tc.ids)
		}
	}
	if code, body = f.do("GET", "/api/v1/deploys?limit=x", ""); code != 400 || !strings.Contains(body, "field limit") {
		t.Errorf("bad limit: %d %s", code, body)
	}
}

// TestToken: the write endpoints need the token; it never shows in a
// log line or an answer, whatever the request.
func TestToken(t *testing.T) {
	const secret = "tok-3b5d5c3712955042212316173ccf37be"
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, httpapi.Options{TokenFile: tokenFile, DataDir: dir})
	var bodies []string
	for _, tc := range []struct {
		auth string
		code int
	}{
		{"", 401},
		{"Bearer wrong-" + secret, 401},
		{"Basic " + secret, 401},
		{"Bearer " + secret, 201},
	} {
		var h []string
		if tc.auth != "" {
			h = []string{"Authorization", tc.auth}
		}
		code, body := f.do("POST", "/api/v1/deploys", startBody, h...)
		if code != tc.code {
			t.Errorf("Authorization %q: %d %s, want %d", tc.auth, code, body, tc.code)
		}
		bodies = append(bodies, body)
		code, body = f.do("POST", "/api/v1/deploys/d1/groups", `{"group":0}`, h...)
		bodies = append(bodies, body)
		if tc.auth == "" && code != 401 {
			t.Errorf("group without a token: %d", code)
		}
	}
	// Reads need no token.
	if code, _ := f.do("GET", "/api/v1/deploys/d1", ""); code != 200 {
		t.Errorf("GET without a token: %d", code)
	}
	// A token file that went away: 500, naming nothing secret.
	if err := os.Remove(tokenFile); err != nil {
		t.Fatal(err)
	}
	code, body := f.do("POST", "/api/v1/deploys", startBody, "Authorization", "Bearer "+secret)
	if code != 500 {
		t.Errorf("missing token file: %d %s", code, body)
	}
	bodies = append(bodies, body)
	f.mu.Lock()
	logs := f.logs.String()
	f.mu.Unlock()
	if !strings.Contains(logs, "bearer token") || !strings.Contains(logs, tokenFile) {
		t.Errorf("the log does not tell of the refused requests and the missing file:\n%s", logs)
	}
	log, err := os.ReadFile(filepath.Join(dir, httpapi.LogFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range append(bodies, logs, string(log)) {
		if strings.Contains(s, secret) {
			t.Errorf("the token shows in %q", s)
		}
	}
	// The 6 refused requests; the unreadable file (500) is not the
	// request's fault.
	if got := testutil.ToFloat64(counter(t, f.reg, "immune_deploy_source_errors_total", "unauthorized")); got != 6 {
		t.Errorf("unauthorized errors %v, want 6", got)
	}
}

// TestRestart: deploys accepted over HTTP survive a restart; their
// events are delivered again, and retries after the restart are
// recognized.
func TestRestart(t *testing.T) {
	dir := t.TempDir()
	f := newFixture(t, httpapi.Options{DataDir: dir})
	f.do("POST", "/api/v1/deploys", startBody)
	f.do("POST", "/api/v1/deploys/d1/groups", `{"group":0,"instances":["c-1"]}`)
	f.do("POST", "/api/v1/deploys/d1/selftest", `{"instance":"c-1","passed":true}`)
	f.do("POST", "/api/v1/deploys/d1/selftest", `{"instance":"c-1","passed":false}`)
	f.do("POST", "/api/v1/deploys/d1/state", `{"state":"reverted"}`)
	f.events(5)
	f.srv.Close()
	if err := f.api.Close(); err != nil {
		t.Fatal(err)
	}

	g := newFixture(t, httpapi.Options{DataDir: dir, Now: func() time.Time { return t0.Add(time.Hour) }})
	evs := g.events(5)
	var kinds []string
	for _, ev := range evs {
		kinds = append(kinds, string(ev.Kind))
	}
	if strings.Join(kinds, ",") != "started,group,selftest,selftest,state" {
		t.Errorf("replayed %v", kinds)
	}
	if len(evs) == 5 && (evs[3].SelfTest.Passed || !evs[0].Deploy.Time.Equal(t0) || evs[4].State != "reverted") {
		t.Errorf("replayed %+v", evs)
	}
	if code, body := g.do("POST", "/api/v1/deploys", startBody); code != 200 {
		t.Errorf("retry after restart: %d %s", code, body)
	}
	if code, body := g.do("POST", "/api/v1/deploys/d1/groups", `{"group":0,"instances":["c-1"]}`); code != 200 {
		t.Errorf("group retry after restart: %d %s", code, body)
	}
	if code, body := g.do("POST", "/api/v1/deploys/d1/groups", `{"group":1}`); code != 201 {
		t.Errorf("next group after restart: %d %s", code, body)
	}
}

func TestLogRecovery(t *testing.T) {
	good := `{"op":"deploy","deploy":{"id":"d1","service":"checkout","version":"v2","previous_version":"v1","started_at":"2026-11-25T12:00:00Z","state":"running"}}` + "\n"
	old := `{"op":"deploy","deploy":{"id":"d0","service":"checkout","version":"v1","previous_version":"v0","started_at":"2026-10-01T12:00:00Z","state":"running"}}` + "\n" +
		`{"op":"group","deploy_id":"d0","group":{"group":0,"instances":null,"started_at":"2026-10-01T12:00:00Z"}}` + "\n"
	tests := []struct {
		name    string
		content string
		err     string
		events  int
		after   string // the log after New, when not the content
	}{
		{"cut last line", good + `{"op":"group","deploy_id":"d1","gr`, "", 1, good},
		{"bad middle line", good + "garbage\n" + good, "deploys.jsonl:2:", 0, ""},
		{"bad record", `{"op":"deploy","deploy":{"id":"d1"}}` + "\n", "deploys.jsonl:1: deploy log: service", 0, ""},
		{"unknown op", `{"op":"vote"}` + "\n", `deploys.jsonl:1: op "vote"`, 0, ""},
		{"old deploys dropped", old + good, "", 1, good},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, httpapi.LogFile)
			if err := os.WriteFile(p, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			api, err := httpapi.New(httpapi.Options{DataDir: dir, Now: func() time.Time { return t0 }})
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !errors.Is(err, deploy.ErrMalformed) {
					t.Fatalf("New: %v, want an error with %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer api.Close()
			b, _ := os.ReadFile(p)
			if string(b) != tt.after {
				t.Errorf("log after New:\n%s\nwant:\n%s", b, tt.after)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			out := make(chan deploy.Event, 10)
			_ = api.Run(ctx, out)
			if len(out) != tt.events {
				t.Errorf("%d events, want %d", len(out), tt.events)
			}
		})
	}
}

// TestConcurrentRetries: the same deploy and group posted at once by
// many clients is accepted once (201) and recognized for the others
// (200); one event each.
func TestConcurrentRetries(t *testing.T) {
	f := newFixture(t, httpapi.Options{DataDir: t.TempDir()})
	const n = 16
	codes := make(chan int, 2*n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			code, _ := f.do("POST", "/api/v1/deploys", startBody)
			codes <- code
		})
	}
	wg.Wait()
	for range n {
		wg.Go(func() {
			code, _ := f.do("POST", "/api/v1/deploys/d1/groups", `{"group":0,"started_at":"2026-11-25T12:01:00Z"}`)
			codes <- code
		})
	}
	wg.Wait()
	close(codes)
	count := map[int]int{}
	for c := range codes {
		count[c]++
	}
	if count[201] != 2 || count[200] != 2*n-2 {
		t.Errorf("answers %v, want two 201 and the rest 200", count)
	}
	f.events(2)
}
