package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/deploy/httpapi"
)

// statuses is a StatusFunc whose answers the test sets, and whose
// answer for an id can change after some questions.
type statuses struct {
	mu    sync.Mutex
	m     map[string][]httpapi.Status // answered in turn; the last one stays
	asked map[string]int
}

func (s *statuses) status(_ context.Context, id string) (httpapi.Status, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.m[id]
	if !ok {
		return httpapi.Status{}, false
	}
	i := min(s.asked[id], len(l)-1)
	s.asked[id]++
	return l[i], true
}

func deployServer(t *testing.T, opts httpapi.Options) (string, *statuses) {
	t.Helper()
	st := &statuses{m: map[string][]httpapi.Status{}, asked: map[string]int{}}
	opts.Status = st.status
	api, err := httpapi.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	api.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() { srv.Close(); api.Close() })
	return srv.URL, st
}

func TestDeployStartAndGroup(t *testing.T) {
	url, _ := deployServer(t, httpapi.Options{})
	tests := []struct {
		args     []string
		code     int
		inStdout string
		inStderr string
	}{
		{[]string{"start", "--url", url, "--service", "checkout", "--version", "v2", "--previous-version", "v1", "--id", "d1", "--groups", "1,2,4", "--commit", "abc123", "--author", "ana"}, 0, "d1\n", ""},
		{[]string{"start", "--url", url, "--service", "checkout", "--version", "v2", "--previous-version", "v1", "--id", "d1", "--groups", "1,2,4", "--commit", "abc123", "--author", "ana"}, 0, "d1\n", ""},
		{[]string{"start", "--url", url, "--service", "checkout", "--version", "v3", "--id", "d1"}, 1, "", "HTTP 409: conflicting record: deploy d1 exists with different content"},
		{[]string{"start", "--url", url, "--service", "search", "--version", "v7"}, 0, "search-", ""},
		{[]string{"start", "--url", url, "--service", "search", "--version", "v7", "--json", "--started-at", "2026-11-25T12:00:00Z"}, 0, `"started_at": "2026-11-25T12:00:00Z"`, ""},
		{[]string{"start", "--url", url, "--version", "v2"}, 2, "", "--service and --version are required"},
		{[]string{"start", "--url", url, "--service", "s", "--version", "v", "--groups", "1,x"}, 2, "", `item 2 ("x") is not a positive number`},
		{[]string{"start", "--url", "ftp://x", "--service", "s", "--version", "v"}, 2, "", "--url"},
		{[]string{"start", "--url", url, "--service", "a/b", "--version", "v"}, 1, "", "HTTP 400: field service"},
		{[]string{"start", "--bogus"}, 2, "", "flag provided but not defined"},
		{[]string{"group", "d1", "--url", url, "--group", "0", "--instances", "c-1"}, 0, "deploy d1: group 0 started", ""},
		{[]string{"group", "--url", url, "--group", "1", "d1"}, 0, "group 1 started", ""},
		{[]string{"group", "d1", "--url", url, "--group", "5"}, 1, "", "field group: 5: the deploy plans groups 0 to 2"},
		{[]string{"group", "nope", "--url", url, "--group", "0"}, 1, "", `HTTP 404: unknown deploy "nope"`},
		{[]string{"group", "d1", "--url", url}, 2, "", "--group N is required"},
		{[]string{"group", "--url", url, "--group", "0"}, 2, "", "want one deploy ID"},
		{[]string{"selftest", "d1", "--url", url, "--instance", "c-1", "--failed", "--detail", "db down"}, 0, "self test of c-1 failed", ""},
		{[]string{"selftest", "d1", "--url", url, "--instance", "c-1"}, 2, "", "say --passed or --failed"},
		{[]string{"state", "d1", "--url", url, "--state", "done"}, 0, "deploy d1: done", ""},
		{[]string{"state", "d1", "--url", url, "--state", "over"}, 1, "", `field state: "over"`},
		{[]string{"state", "d1", "--url", url}, 2, "", "--state is required"},
		{[]string{"nope"}, 2, "", `unknown command "nope"`},
	}
	for _, tt := range tests {
		code, out, errs := runArgs(append([]string{"deploy"}, tt.args...)...)
		if code != tt.code || !strings.Contains(out, tt.inStdout) || !strings.Contains(errs, tt.inStderr) {
			t.Errorf("immune deploy %v: exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
				tt.args, code, out, errs, tt.code, tt.inStdout, tt.inStderr)
		}
	}
}

func TestDeployStatus(t *testing.T) {
	url, st := deployServer(t, httpapi.Options{})
	at := time.Date(2026, 11, 25, 12, 30, 0, 0, time.UTC)
	verdict := func(v, decision string, group int, groups ...deploy.GroupVerdict) httpapi.Status {
		return httpapi.Status{Verdict: &deploy.VerdictRecord{Verdict: v, Decision: decision, Group: group, Reason: "reason of " + v, Groups: groups, At: at}}
	}
	st.m["pass"] = []httpapi.Status{verdict("pass", deploy.GateProceed, 2)}
	st.m["fail"] = []httpapi.Status{verdict("fail", deploy.GateRevert, 0)}
	st.m["inc"] = []httpapi.Status{verdict("inconclusive", deploy.GateProceed, 2)}
	st.m["pending"] = []httpapi.Status{verdict("pending", deploy.GateWait, 1, deploy.GroupVerdict{Group: 0, Decision: deploy.GateProceed, Verdict: "pending"})}
	st.m["reverted"] = []httpapi.Status{{Verdict: verdict("fail", deploy.GateRevert, 1).Verdict,
		Revert: &deploy.RevertRecord{Reason: "conversion fell 12%", At: at, Instance: "immune-2"}}}
	st.m["none"] = []httpapi.Status{{}}
	st.m["later"] = []httpapi.Status{verdict("pending", deploy.GateWait, 1), verdict("pending", deploy.GateWait, 1), verdict("fail", deploy.GateRevert, 1)}
	st.m["gate"] = []httpapi.Status{verdict("pending", deploy.GateWait, 1), verdict("pending", deploy.GateProceed, 1)}
	tests := []struct {
		args     []string
		code     int
		inStdout string
		inStderr string
	}{
		{[]string{"pass"}, 0, "deploy pass: pass: reason of pass", ""},
		{[]string{"fail"}, 1, "deploy fail: fail: reason of fail", ""},
		{[]string{"inc"}, 3, "inconclusive", ""},
		{[]string{"pending"}, 3, "deploy pending: pending", ""},
		{[]string{"none"}, 3, "no verdict yet", ""},
		{[]string{"reverted"}, 1, "reverted at 2026-11-25T12:30:00Z by immune-2: conversion fell 12%", ""},
		{[]string{"pending", "--group", "0"}, 0, "group 0: proceed", ""},
		{[]string{"pending", "--group", "1"}, 3, "group 1: no gate decision yet", ""},
		{[]string{"fail", "--group", "0"}, 1, "group 0: revert", ""},
		{[]string{"later", "--wait", "--interval", "10ms"}, 1, "deploy later: fail", ""},
		{[]string{"gate", "--wait", "--interval", "10ms", "--group", "1"}, 0, "group 1: proceed", ""},
		{[]string{"pending", "--wait", "--interval", "10ms", "--wait-timeout", "50ms"}, 3, "pending", "no final answer after 50ms"},
		{[]string{"pass", "--json"}, 0, `"verdict": "pass"`, ""},
		{[]string{"nope"}, 2, "", `HTTP 404: unknown deploy "nope"`},
		{[]string{"nope", "--wait", "--interval", "10ms"}, 2, "", `HTTP 404`},
		{[]string{}, 2, "", "want one deploy ID"},
	}
	for _, tt := range tests {
		args := append([]string{"deploy", "status", "--url", url}, tt.args...)
		code, out, errs := runArgs(args...)
		if code != tt.code || !strings.Contains(out, tt.inStdout) || !strings.Contains(errs, tt.inStderr) {
			t.Errorf("immune %v: exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
				args, code, out, errs, tt.code, tt.inStdout, tt.inStderr)
		}
	}
}

// TestDeployUnreachable: start fails (1); status has no answer (2).
func TestDeployUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	if code, _, errs := runArgs("deploy", "start", "--url", url, "--service", "s", "--version", "v"); code != 1 || !strings.Contains(errs, "connection refused") {
		t.Errorf("start: exit %d, %q", code, errs)
	}
	if code, _, errs := runArgs("deploy", "status", "--url", url, "d1"); code != 2 || !strings.Contains(errs, "connection refused") {
		t.Errorf("status: exit %d, %q", code, errs)
	}
	if code, _, errs := runArgs("deploy", "status", "--url", url, "d1", "--wait", "--interval", "10ms", "--wait-timeout", "100ms"); code != 2 || !strings.Contains(errs, "asking again") || !strings.Contains(errs, "no answer after") {
		t.Errorf("status --wait: exit %d, %q", code, errs)
	}
}

// TestDeployToken: the CLI sends the token of --token-file on writes,
// and never prints it.
func TestDeployToken(t *testing.T) {
	const secret = "cli-token-c4ca4238a0b923820dcc509a6f75849b"
	f := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(f, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	url, _ := deployServer(t, httpapi.Options{TokenFile: f})
	code, out, errs := runArgs("deploy", "start", "--url", url, "--service", "s", "--version", "v", "--id", "d1")
	if code != 1 || !strings.Contains(errs, "HTTP 401") {
		t.Errorf("without the token: exit %d, %q", code, errs)
	}
	other := filepath.Join(t.TempDir(), "other")
	if err := os.WriteFile(other, []byte("wrong-"+secret), 0o600); err != nil {
		t.Fatal(err)
	}
	code2, out2, errs2 := runArgs("deploy", "start", "--url", url, "--token-file", other, "--service", "s", "--version", "v", "--id", "d1")
	if code2 != 1 {
		t.Errorf("wrong token: exit %d", code2)
	}
	code3, out3, errs3 := runArgs("deploy", "start", "--url", url, "--token-file", f, "--service", "s", "--version", "v", "--id", "d1")
	if code3 != 0 || out3 != "d1\n" {
		t.Errorf("with the token: exit %d, %q %q", code3, out3, errs3)
	}
	for _, s := range []string{out, errs, out2, errs2, out3, errs3} {
		if strings.Contains(s, secret) {
			t.Errorf("the token shows in %q", s)
		}
	}
}

// TestDeployEmptyTokenFile: an empty --token-file is an error before any
// request, not an empty bearer token sent to immune.
func TestDeployEmptyTokenFile(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
	}))
	defer srv.Close()
	f := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(f, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errs := runArgs("deploy", "start", "--url", srv.URL, "--token-file", f, "--service", "s", "--version", "v", "--id", "d1")
	if code != 1 || !strings.Contains(errs, "token file "+f) || !strings.Contains(errs, "empty") {
		t.Errorf("empty token file: exit %d, %q", code, errs)
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("%d requests sent with an empty token file, want none", n)
	}
}
