package sim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/sim"
)

const testToken = "s3cr3t-t0ken"

// fakeAPI plays immune's HTTP deploy API over a memView.
func fakeAPI(t *testing.T, v *memView) *httptest.Server {
	t.Helper()
	fail := func(w http.ResponseWriter, code int, msg string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(map[string]string{"status": "error", "error": msg})
	}
	auth := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer "+testToken {
				fail(w, http.StatusUnauthorized, "bad token "+r.Header.Get("Authorization"))
				return
			}
			h(w, r)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/deploys", auth(func(w http.ResponseWriter, r *http.Request) {
		var rec deploy.DeployRecord
		if err := json.NewDecoder(r.Body).Decode(&rec); err != nil {
			fail(w, http.StatusBadRequest, err.Error())
			return
		}
		if err := rec.Check("body"); err != nil {
			fail(w, http.StatusBadRequest, err.Error())
			return
		}
		v.mu.Lock()
		v.deploys[rec.ID] = rec
		v.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(rec)
	}))
	known := func(w http.ResponseWriter, id string) bool {
		v.mu.Lock()
		defer v.mu.Unlock()
		if _, ok := v.deploys[id]; !ok {
			fail(w, http.StatusNotFound, "unknown deploy "+id)
			return false
		}
		return true
	}
	mux.HandleFunc("POST /api/v1/deploys/{id}/groups", auth(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		var g deploy.GroupRecord
		if err := json.NewDecoder(r.Body).Decode(&g); err != nil {
			fail(w, http.StatusBadRequest, err.Error())
			return
		}
		if !known(w, id) {
			return
		}
		v.mu.Lock()
		v.grps[id] = append(v.grps[id], g)
		v.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
	}))
	mux.HandleFunc("POST /api/v1/deploys/{id}/selftest", auth(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		var s deploy.SelfTestRecord
		if err := json.NewDecoder(r.Body).Decode(&s); err != nil {
			fail(w, http.StatusBadRequest, err.Error())
			return
		}
		if !known(w, id) {
			return
		}
		v.mu.Lock()
		if v.tests[id] == nil {
			v.tests[id] = map[string]deploy.SelfTestRecord{}
		}
		v.tests[id][s.Instance] = s
		v.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
	}))
	mux.HandleFunc("POST /api/v1/deploys/{id}/state", auth(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		var body struct {
			State string `json:"state"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.State == "" {
			fail(w, http.StatusBadRequest, "want {\"state\": …}")
			return
		}
		if !known(w, id) {
			return
		}
		v.mu.Lock()
		rec := v.deploys[id]
		rec.State = body.State
		v.deploys[id] = rec
		v.states[id] = append(v.states[id], body.State)
		v.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(rec)
	}))
	mux.HandleFunc("GET /api/v1/deploys/{id}", auth(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if !known(w, id) {
			return
		}
		v.mu.Lock()
		body := map[string]any{"deploy": v.deploys[id], "verdict": v.verdict[id], "revert": v.revert[id],
			"owner": "immune-1", "analysis": map[string]any{"looks": 3}}
		v.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(body)
	}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func tokenFile(t *testing.T, tok string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(f, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestManagerHTTP: the same story against immune's HTTP deploy API; the
// revert arrives at the manager's webhook or through GET.
func TestManagerHTTP(t *testing.T) {
	for _, tc := range []struct {
		name      string
		version   string
		webhook   bool // the revert goes to POST /revert, not into GET
		policy    policy
		wantState string
		wantOn    string
	}{
		{"proceed", "v2", false, func(int, bool) string { return answerProceed }, deploy.StateDone, "v2"},
		{"revert at the webhook", "v2-bad", true, func(g int, _ bool) string {
			if g == 0 {
				return answerProceed
			}
			return answerRevert
		}, deploy.StateReverted, "v1"},
		{"revert seen by polling", "v2-bad", false, func(g int, _ bool) string {
			if g < 2 {
				return answerProceed
			}
			return answerRevert
		}, deploy.StateReverted, "v1"},
		{"failed self test", "v2-broken", true, func(_ int, failed bool) string {
			if failed {
				return answerRevert
			}
			return answerProceed
		}, deploy.StateReverted, "v1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newMemView()
			api := fakeAPI(t, v)
			tr, err := sim.NewHTTPTransport(sim.HTTPOptions{URL: api.URL, TokenFile: tokenFile(t, testToken), PollInterval: 50 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			mux := http.NewServeMux()
			tr.Register(mux)
			hook := httptest.NewServer(mux)
			defer hook.Close()
			if tc.webhook {
				v.onRevert = func(r deploy.RevertRecord) error {
					// What a webhook trigger might send: more than needed.
					b, _ := json.Marshal(map[string]any{"deploy_id": r.DeployID, "reason": r.Reason, "service": "checkout",
						"version": tc.version, "kpis": []string{"conversion"}, "at": r.At})
					resp, err := http.Post(hook.URL+"/revert", "application/json", bytes.NewReader(b))
					if err != nil {
						return err
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusAccepted {
						return errors.New("webhook answered " + resp.Status)
					}
					return nil
				}
			}
			rec := &recorder{}
			f := newFleet(t, sim.FleetOptions{Service: "checkout", Size: 7, OnEvent: rec.add})
			m, err := sim.NewManager(sim.ManagerOptions{Transport: tr, Fleet: f, OnEvent: rec.add, GateTimeout: 20 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
			defer cancel()
			id := "h-" + strings.ReplaceAll(tc.name, " ", "-")
			v.id = id
			pctx, stop := context.WithCancel(ctx)
			played := play(pctx, t, v, id, tc.policy)
			res, err := m.Deploy(ctx, sim.Request{ID: id, Version: tc.version})
			stop()
			<-played
			if err != nil {
				t.Fatal(err)
			}
			if res.Record.State != tc.wantState {
				t.Fatalf("state %s, want %s (reason %q)", res.Record.State, tc.wantState, res.Reason)
			}
			if !allOn(f, tc.wantOn) {
				t.Fatalf("versions %v, want all on %s", versions(f), tc.wantOn)
			}
			v.mu.Lock()
			stored, groups, states := v.deploys[id], len(v.grps[id]), append([]string(nil), v.states[id]...)
			v.mu.Unlock()
			if stored.Version != tc.version || stored.PreviousVersion != "v1" || groups == 0 {
				t.Fatalf("immune got %+v and %d groups", stored, groups)
			}
			// immune is told every state after running, ending with the final one.
			wantStates := []string{deploy.StatePromoting, deploy.StateDone}
			if tc.wantState == deploy.StateReverted {
				wantStates = []string{deploy.StateReverting, deploy.StateReverted}
			}
			if stored.State != tc.wantState || len(states) < 2 || !slices.Equal(states[len(states)-2:], wantStates) {
				t.Fatalf("immune was told the states %v (record %s), want them to end with %v", states, stored.State, wantStates)
			}
			if tc.webhook {
				if r := tr.Reverted(id); r == nil || r.Reason == "" {
					t.Fatalf("webhook revert %+v", r)
				}
			}
		})
	}
}

// TestHTTPTransportErrors: 4xx is rejected (not retried), 5xx and a
// closed port unavailable; the token is never in an error nor a log line,
// even when the server echoes it.
func TestHTTPTransportErrors(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		if strings.HasSuffix(r.URL.Path, "/groups") {
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
			return
		}
		// A careless server echoes the credentials.
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"status":"error","error":"token ` + r.Header.Get("Authorization") + ` refused"}`))
	}))
	defer srv.Close()
	tr, err := sim.NewHTTPTransport(sim.HTTPOptions{URL: srv.URL, TokenFile: tokenFile(t, testToken), Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	err = tr.Create(ctx, deploy.DeployRecord{ID: "d", Service: "s", Version: "v", StartedAt: time.Now()})
	if !errors.Is(err, sim.ErrRejected) || !strings.Contains(err.Error(), "HTTP 403") {
		t.Fatalf("403: %v, want ErrRejected", err)
	}
	if strings.Contains(err.Error(), testToken) || !strings.Contains(err.Error(), "<redacted>") {
		t.Fatalf("the error shows the token: %v", err)
	}
	err = tr.StartGroup(ctx, "s", "d", deploy.GroupRecord{})
	if !errors.Is(err, sim.ErrUnavailable) || !strings.Contains(err.Error(), "overloaded") {
		t.Fatalf("503: %v, want ErrUnavailable", err)
	}
	// Through the manager: a 4xx is tried once.
	f := newFleet(t, sim.FleetOptions{Service: "s", Size: 1})
	m, err := sim.NewManager(sim.ManagerOptions{Transport: tr, Fleet: f, Logger: logger, RetryBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	calls = 0
	if _, err := m.Deploy(ctx, sim.Request{ID: "d2", Version: "v2"}); !errors.Is(err, sim.ErrRejected) || calls != 1 {
		t.Fatalf("deploy against a 403: %v after %d calls, want ErrRejected after 1", err, calls)
	}
	if strings.Contains(logs.String(), testToken) {
		t.Fatalf("a log line shows the token: %s", logs.String())
	}
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	tr2, err := sim.NewHTTPTransport(sim.HTTPOptions{URL: closed.URL})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := tr2.Status(ctx, "s", "d"); !errors.Is(err, sim.ErrUnavailable) {
		t.Fatalf("closed port: %v, want ErrUnavailable", err)
	}
	for _, u := range []string{"", "ftp://x", "http://", "http://user:pw@host:1"} {
		_, err := sim.NewHTTPTransport(sim.HTTPOptions{URL: u})
		if err == nil || strings.Contains(err.Error(), "pw") {
			t.Errorf("URL %q: %v", u, err)
		}
	}
	if _, err := sim.NewHTTPTransport(sim.HTTPOptions{URL: srv.URL, TokenFile: "/nonexistent"}); err == nil {
		t.Error("a missing token file: no error")
	}
}

// TestRevertWebhook: the answers of POST /revert.
func TestRevertWebhook(t *testing.T) {
	v := newMemView()
	api := fakeAPI(t, v)
	tr, err := sim.NewHTTPTransport(sim.HTTPOptions{URL: api.URL, TokenFile: tokenFile(t, testToken)})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Create(context.Background(), deploy.DeployRecord{ID: "d1", Service: "s", Version: "v2", StartedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	tr.Register(mux)
	hook := httptest.NewServer(mux)
	defer hook.Close()
	for _, tc := range []struct {
		name, body string
		code       int
		want       string
	}{
		{"broken json", `{"deploy_id":`, 400, "revert request"},
		{"no deploy id", `{"reason":"x"}`, 400, "deploy_id is missing"},
		{"no reason", `{"deploy_id":"d1"}`, 400, "reason is missing"},
		{"bad id", `{"deploy_id":"../x","reason":"x"}`, 400, "not a valid name"},
		{"unknown deploy", `{"deploy_id":"d9","reason":"x"}`, 404, "unknown deploy"},
		{"too large", `{"deploy_id":"d1","reason":"` + strings.Repeat("x", 2<<20) + `"}`, 413, "over 1 MiB"},
		{"id instead of deploy_id", `{"id":"d1","reason":"x"}`, 400, "deploy_id is missing"},
		{"accepted", `{"deploy_id":"d1","reason":"conversion dropped","extra":[1,2]}`, 202, `"success"`},
		{"duplicate", `{"deploy_id":"d1","reason":"again"}`, 200, "already requested"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Post(hook.URL+"/revert", "application/json", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var b bytes.Buffer
			_, _ = b.ReadFrom(resp.Body)
			if resp.StatusCode != tc.code || !strings.Contains(b.String(), tc.want) {
				t.Fatalf("%d %s, want %d with %q", resp.StatusCode, b.String(), tc.code, tc.want)
			}
			if tc.code >= 400 && !strings.Contains(b.String(), `"status":"error"`) {
				t.Fatalf("error body %s", b.String())
			}
		})
	}
	if r := tr.Reverted("d1"); r == nil || r.Reason != "conversion dropped" {
		t.Fatalf("kept revert %+v, want the first one", r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	st, changed, err := tr.Status(ctx, "s", "d1")
	if err != nil || st.Revert == nil || st.Revert.DeployID != "d1" {
		t.Fatalf("status after the webhook: %+v, %v", st, err)
	}
	cancel()
	<-changed // closed when its context ends
}

func TestParseStatus(t *testing.T) {
	for _, tc := range []struct {
		body                string
		wantVerdict, wantRv bool
		wantErr             bool
	}{
		{`{"deploy":{"id":"d"},"verdict":null,"revert":null}`, false, false, false},
		{`{"verdict":{"decision":"proceed","group":0},"revert":null,"more":1}`, true, false, false},
		// Only the top level counts, as immune answers (no "data" wrapper).
		{`{"status":"success","data":{"verdict":{"decision":"revert"},"revert":{"deploy_id":"d","reason":"r"}}}`, false, false, false},
		{`[]`, false, false, true},
		{`{"verdict":"pass"}`, false, false, true},
	} {
		st, err := sim.ParseStatus([]byte(tc.body))
		if (err != nil) != tc.wantErr || (st.Verdict != nil) != tc.wantVerdict || (st.Revert != nil) != tc.wantRv {
			t.Errorf("ParseStatus(%s) = %+v, %v", tc.body, st, err)
		}
		if err != nil && !errors.Is(err, sim.ErrBadResponse) {
			t.Errorf("ParseStatus(%s): %v is not ErrBadResponse", tc.body, err)
		}
	}
}

func TestStatusGate(t *testing.T) {
	v := func(group int, decision string, groups ...deploy.GroupVerdict) sim.Status {
		return sim.Status{Verdict: &deploy.VerdictRecord{Group: group, Decision: decision, Reason: "why", Groups: groups}}
	}
	for _, tc := range []struct {
		name string
		st   sim.Status
		g    int
		want string
	}{
		{"none", sim.Status{}, 0, ""},
		{"wait", v(0, deploy.GateWait), 0, ""},
		{"proceed", v(1, deploy.GateProceed), 1, deploy.GateProceed},
		{"proceed for an earlier group", v(0, deploy.GateProceed), 1, ""},
		{"proceed for a later group", v(2, deploy.GateProceed), 1, deploy.GateProceed},
		{"revert for any group", v(0, deploy.GateRevert), 3, deploy.GateRevert},
		{"from the list", v(2, deploy.GateWait, deploy.GroupVerdict{Group: 1, Decision: deploy.GateProceed}), 1, deploy.GateProceed},
		{"revert in the list", v(2, deploy.GateWait, deploy.GroupVerdict{Group: 0, Decision: deploy.GateRevert}), 2, deploy.GateRevert},
	} {
		if got, _ := tc.st.Gate(tc.g); got != tc.want {
			t.Errorf("%s: Gate(%d) = %q, want %q", tc.name, tc.g, got, tc.want)
		}
	}
}

func FuzzParseRevertRequest(f *testing.F) {
	for _, s := range []string{`{"deploy_id":"d1","reason":"x"}`, `{"id":"d"}`, `{}`, `null`, `{"deploy_id":"a/b","reason":"r"}`, `{"at":"nope"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := sim.ParseRevertRequest(b)
		if err == nil && (!deploy.ValidName(r.DeployID) || strings.TrimSpace(r.Reason) == "") {
			t.Fatalf("accepted %+v", r)
		}
	})
}

func FuzzParseStatus(f *testing.F) {
	for _, s := range []string{`{"verdict":null}`, `{"data":{"revert":{}}}`, `{"verdict":{"groups":[{"group":1}]}}`, `7`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := sim.ParseStatus(b)
		if err == nil {
			for g := range 3 {
				st.Gate(g)
			}
		}
	})
}

// TestRevertWebhookToken: with a webhook token, POST /revert wants it;
// the answer never shows it.
func TestRevertWebhookToken(t *testing.T) {
	v := newMemView()
	api := fakeAPI(t, v)
	tr, err := sim.NewHTTPTransport(sim.HTTPOptions{URL: api.URL, TokenFile: tokenFile(t, testToken), WebhookTokenFile: tokenFile(t, "hook-s3cr3t")})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Create(context.Background(), deploy.DeployRecord{ID: "d1", Service: "s", Version: "v2", StartedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	tr.Register(mux)
	hook := httptest.NewServer(mux)
	defer hook.Close()
	for _, tc := range []struct {
		name, auth string
		code       int
	}{
		{"none", "", 401},
		{"wrong", "Bearer hook-s3cr3", 401},
		{"wrong scheme", "Basic hook-s3cr3t", 401},
		{"right", "bearer hook-s3cr3t", 202},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", hook.URL+"/revert", strings.NewReader(`{"deploy_id":"d1","reason":"r"}`))
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var b bytes.Buffer
			_, _ = b.ReadFrom(resp.Body)
			if resp.StatusCode != tc.code || strings.Contains(b.String(), "s3cr3") {
				t.Fatalf("%d %s, want %d without the token", resp.StatusCode, b.String(), tc.code)
			}
		})
	}
	if tr.Reverted("d1") == nil {
		t.Fatal("the authorized revert was not kept")
	}
}
