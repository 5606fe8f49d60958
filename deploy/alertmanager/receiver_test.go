package alertmanager_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/deploy/alertmanager"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// payload is a notification as Alertmanager 0.27 sends it, with alerts.
func payload(alerts ...string) string {
	return `{"receiver":"immune","status":"firing","alerts":[` + strings.Join(alerts, ",") + `],
"groupLabels":{"alertname":"HighErrorRate"},"commonLabels":{"alertname":"HighErrorRate"},"commonAnnotations":{},
"externalURL":"http://alertmanager:9093","version":"4","groupKey":"{}:{alertname=\"HighErrorRate\"}","truncatedAlerts":0}`
}

func alert(status, service, fingerprint, startsAt string) string {
	labels := `"alertname":"HighErrorRate","instance":"c-1"`
	if service != "" {
		labels += `,"service":"` + service + `"`
	}
	return `{"status":"` + status + `","labels":{` + labels + `},"annotations":{"summary":"5xx above 2%"},
"startsAt":"` + startsAt + `","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prometheus:9090/graph","fingerprint":"` + fingerprint + `"}`
}

func post(t *testing.T, url, body string, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("POST", url+"/api/v1/alerts", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if len(header) == 2 {
		req.Header.Set(header[0], header[1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func serve(t *testing.T, opts alertmanager.Options) (*alertmanager.Receiver, string) {
	t.Helper()
	r := alertmanager.New(opts)
	mux := http.NewServeMux()
	r.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return r, srv.URL
}

func drain(t *testing.T, r *alertmanager.Receiver) []deploy.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	out := make(chan deploy.Event, 100)
	if err := r.Run(ctx, out); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Run: %v", err)
	}
	close(out)
	var evs []deploy.Event
	for ev := range out {
		evs = append(evs, ev)
	}
	return evs
}

func TestReceiver(t *testing.T) {
	reg := prometheus.NewRegistry()
	now := t0
	r, url := serve(t, alertmanager.Options{Registerer: reg, Now: func() time.Time { return now }})
	const s1, s2 = "2026-11-25T11:58:00Z", "2026-11-25T12:20:00Z"
	steps := []struct {
		name   string
		body   string
		answer string
	}{
		{"firing", payload(alert("firing", "checkout", "a1", s1), alert("firing", "", "a2", s1)), `"accepted": 1,  "duplicates": 0,  "ignored": 1`},
		{"repeat", payload(alert("firing", "checkout", "a1", s1)), `"accepted": 0,  "duplicates": 1,  "ignored": 0`},
		{"resolved", payload(alert("resolved", "checkout", "a1", s1)), `"accepted": 0,  "duplicates": 0,  "ignored": 1`},
		{"firing again, same startsAt", payload(alert("firing", "checkout", "a1", s1)), `"accepted": 0,  "duplicates": 1`},
		{"firing again, new startsAt", payload(alert("firing", "checkout", "a1", s2), alert("firing", "search", "b1", s2)), `"accepted": 2,  "duplicates": 0`},
	}
	for _, st := range steps {
		code, body := post(t, url, st.body)
		if code != 200 || !strings.Contains(strings.ReplaceAll(body, "\n", ""), st.answer) {
			t.Errorf("%s: %d %s, want 200 with %s", st.name, code, body, st.answer)
		}
	}
	evs := drain(t, r)
	if len(evs) != 3 {
		t.Fatalf("%d events, want 3: %+v", len(evs), evs)
	}
	for i, want := range []struct{ service, fp, startsAt string }{{"checkout", "a1", s1}, {"checkout", "a1", s2}, {"search", "b1", s2}} {
		ev := evs[i]
		if ev.Kind != deploy.EventAlert || ev.Source != "alertmanager" || ev.Deploy.Service != want.service || ev.Alert.Fingerprint != want.fp ||
			ev.Alert.StartsAt.Format(time.RFC3339) != want.startsAt || ev.Alert.Status != "firing" || ev.Alert.Labels["alertname"] != "HighErrorRate" ||
			ev.Alert.Annotations["summary"] != "5xx above 2%" || ev.Alert.Receiver != "immune" || !ev.At.Equal(t0) {
			t.Errorf("event %d: %+v %+v, want %v", i, ev, ev.Alert, want)
		}
	}
	// Past the memory, the same alert is new again.
	now = t0.Add(25 * time.Hour)
	if code, body := post(t, url, payload(alert("firing", "checkout", "a1", s1))); code != 200 || !strings.Contains(body, `"accepted": 1`) {
		t.Errorf("after the memory: %d %s", code, body)
	}
	want := `
# HELP immune_deploy_events_total Deploy events delivered, by source and kind.
# TYPE immune_deploy_events_total counter
immune_deploy_events_total{kind="alert",source="alertmanager"} 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "immune_deploy_events_total"); err != nil {
		t.Error(err)
	}
	drain(t, r)
}

func TestServiceLabel(t *testing.T) {
	r, url := serve(t, alertmanager.Options{ServiceLabel: "app"})
	a := `{"status":"firing","labels":{"app":"checkout","service":"other"},"startsAt":"2026-11-25T11:58:00Z","fingerprint":"f"}`
	if code, body := post(t, url, payload(a)); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	evs := drain(t, r)
	if len(evs) != 1 || evs[0].Deploy.Service != "checkout" {
		t.Errorf("events %+v, want one for checkout", evs)
	}
}

func TestBadPayload(t *testing.T) {
	reg := prometheus.NewRegistry()
	r, url := serve(t, alertmanager.Options{Registerer: reg})
	ok := alert("firing", "checkout", "a1", "2026-11-25T11:58:00Z")
	tests := []struct {
		name, body, want string
	}{
		{"version 3", strings.Replace(payload(ok), `"version":"4"`, `"version":"3"`, 1), `field version: \"3\": want \"4\"`},
		{"no version", strings.Replace(payload(ok), `"version":"4",`, ``, 1), `field version: missing`},
		{"version a number", strings.Replace(payload(ok), `"version":"4"`, `"version":4`, 1), `field version: want a string, got number`},
		{"no alerts", `{"version":"4"}`, `field alerts: missing`},
		{"alerts an object", `{"version":"4","alerts":{}}`, `field alerts: want an array`},
		{"alerts null", `{"version":"4","alerts":null}`, `field alerts: want an array`},
		{"bad status", payload(ok, strings.Replace(ok, `"status":"firing"`, `"status":"pending"`, 1)), `field alerts[1].status: \"pending\": want firing or resolved`},
		{"bad startsAt", payload(strings.Replace(ok, `"startsAt":"2026-11-25T11:58:00Z"`, `"startsAt":"noon"`, 1)), `field alerts[0].startsAt: want an RFC 3339 time`},
		{"no startsAt", payload(`{"status":"firing","labels":{},"fingerprint":"x"}`), `field alerts[0].startsAt: missing`},
		{"no fingerprint", payload(`{"status":"firing","labels":{},"startsAt":"2026-11-25T11:58:00Z"}`), `field alerts[0].fingerprint: missing`},
		{"labels not strings", payload(`{"status":"firing","labels":{"a":1}}`), `field alerts[0].labels: want a string, got number`},
		{"no labels", payload(`{"status":"firing","startsAt":"2026-11-25T11:58:00Z","fingerprint":"x"}`), `field alerts[0].labels: missing`},
		{"alert not an object", payload(`7`), `field alerts[0]: want a JSON object`},
		{"not JSON", `{"version":"4",`, `body: invalid JSON`},
	}
	for _, tt := range tests {
		code, body := post(t, url, tt.body)
		if code != 400 || !strings.Contains(body, tt.want) || !strings.Contains(body, `"status": "error"`) {
			t.Errorf("%s: %d %s, want 400 with %q", tt.name, code, body, tt.want)
		}
	}
	if evs := drain(t, r); len(evs) != 0 {
		t.Errorf("events from bad payloads: %+v", evs)
	}
	want := `
# HELP immune_deploy_source_errors_total Problems met by the deploy sources, by source and reason (malformed, zookeeper, persist, unauthorized).
# TYPE immune_deploy_source_errors_total counter
immune_deploy_source_errors_total{reason="malformed",source="alertmanager"} 14
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "immune_deploy_source_errors_total"); err != nil {
		t.Error(err)
	}
}

func TestToken(t *testing.T) {
	const secret = "am-token-6f1ed002ab5595859014ebf0951522d9"
	f := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(f, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	r, url := serve(t, alertmanager.Options{TokenFile: f, Registerer: reg})
	body := payload(alert("firing", "checkout", "a1", "2026-11-25T11:58:00Z"))
	code, answer := post(t, url, body, "Authorization", "Bearer nope")
	if code != 401 || strings.Contains(answer, secret) {
		t.Errorf("wrong token: %d %s", code, answer)
	}
	if code, answer = post(t, url, body, "Authorization", "Bearer "+secret); code != 200 {
		t.Errorf("right token: %d %s", code, answer)
	}
	if evs := drain(t, r); len(evs) != 1 {
		t.Errorf("%d events, want 1", len(evs))
	}
	// A token file that went away: 500, not counted as unauthorized.
	if err := os.Remove(f); err != nil {
		t.Fatal(err)
	}
	if code, answer = post(t, url, body, "Authorization", "Bearer "+secret); code != 500 || strings.Contains(answer, secret) {
		t.Errorf("missing token file: %d %s", code, answer)
	}
	want := `
# HELP immune_deploy_source_errors_total Problems met by the deploy sources, by source and reason (malformed, zookeeper, persist, unauthorized).
# TYPE immune_deploy_source_errors_total counter
immune_deploy_source_errors_total{reason="unauthorized",source="alertmanager"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "immune_deploy_source_errors_total"); err != nil {
		t.Error(err)
	}
}

// TestParseIgnores: the payload's fields the receiver does not read are
// not checked (a later Alertmanager may change them).
func TestParseIgnores(t *testing.T) {
	body := `{"version":"4","receiver":"immune","groupKey":7,"truncatedAlerts":"none","status":1,"groupLabels":[],
"commonLabels":null,"commonAnnotations":"x","externalURL":{},"alerts":[` + alert("firing", "checkout", "a1", "2026-11-25T11:58:00Z") + `]}`
	m, err := alertmanager.Parse([]byte(body))
	if err != nil || m.Receiver != "immune" || len(m.Alerts) != 1 || m.Alerts[0].Fingerprint != "a1" {
		t.Fatalf("Parse: %+v, %v", m, err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(payload(alert("firing", "checkout", "a1", "2026-11-25T11:58:00Z"))))
	f.Add([]byte(`{"version":"4","alerts":[{"status":"resolved","labels":{},"startsAt":"2026-11-25T11:58:00Z","fingerprint":"x"}]}`))
	f.Add([]byte(`{"version":"4","alerts":[null]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := alertmanager.Parse(body)
		if err != nil {
			return
		}
		if m.Version != "4" {
			t.Fatalf("accepted version %q", m.Version)
		}
		for i, a := range m.Alerts {
			if a.Fingerprint == "" || a.StartsAt.IsZero() || a.Labels == nil || (a.Status != "firing" && a.Status != "resolved") {
				t.Fatalf("accepted alert %d: %+v", i, a)
			}
		}
	})
}

// TestLongFiring: an alert that keeps firing longer than the memory is
// repeated by Alertmanager at every repeat_interval and delivered once;
// it is forgotten only once notifications stop carrying it.
func TestLongFiring(t *testing.T) {
	now := t0
	r, url := serve(t, alertmanager.Options{Now: func() time.Time { return now }})
	body := payload(alert("firing", "checkout", "a1", "2026-11-25T11:58:00Z"))
	for i := range 13 { // every 4h for 48h
		code, answer := post(t, url, body)
		want := `"accepted": 0`
		if i == 0 {
			want = `"accepted": 1`
		}
		if code != 200 || !strings.Contains(answer, want) {
			t.Errorf("after %v: %d %s, want %s", now.Sub(t0), code, answer, want)
		}
		now = now.Add(4 * time.Hour)
	}
	if evs := drain(t, r); len(evs) != 1 {
		t.Errorf("%d events, want 1: %+v", len(evs), evs)
	}
	// No notification for longer than the memory: forgotten.
	now = now.Add(25 * time.Hour)
	if code, answer := post(t, url, body); code != 200 || !strings.Contains(answer, `"accepted": 1`) {
		t.Errorf("after a silence past the memory: %d %s", code, answer)
	}
	drain(t, r)
}
