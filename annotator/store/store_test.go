package store_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/immune-project/immune/annotator"
	"github.com/immune-project/immune/annotator/store"
	"github.com/immune-project/immune/deploy"
)

var (
	t0   = time.Date(2026, 11, 25, 2, 50, 0, 0, time.UTC)
	ck42 = deploy.Deploy{ID: "ck-42", Service: "checkout", Version: "v2.4.0", PreviousVersion: "v2.3.9", Author: "ana", Time: t0}
	pay7 = deploy.Deploy{ID: "pay-7", Service: "payments", Version: "v9", Time: t0.Add(2 * time.Hour)}
)

func events(d deploy.Deploy, verdict string, kpis ...string) []annotator.Event {
	why := "conversion fell from 3.10% to 2.41%, p=0.0004 < 0.005."
	evs := []annotator.Event{
		{Kind: annotator.KindDeploy, At: d.Time, Deploy: d},
		{Kind: annotator.KindVerdict, At: d.Time.Add(25 * time.Minute), Deploy: d, Verdict: verdict, FailingKPIs: kpis, Text: why},
	}
	if verdict == "fail" {
		evs = append(evs, annotator.Event{Kind: annotator.KindRevert, At: d.Time.Add(26 * time.Minute), Deploy: d, Verdict: verdict, FailingKPIs: kpis, Text: why})
	}
	return append(evs, annotator.Event{Kind: annotator.KindEnd, At: d.Time.Add(30 * time.Minute), Deploy: d, Verdict: verdict, FailingKPIs: kpis, Text: why})
}

// testNow is the clock of the stores the tests open: a day after t0, so
// that no annotation of t0 is past the retention whatever the date.
func testNow() time.Time { return t0.Add(24 * time.Hour) }

func open(t *testing.T, path string) *store.Store {
	t.Helper()
	s, err := store.Open(path, store.Options{ReportBaseURL: "https://immune.example", Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func annotate(t *testing.T, s *store.Store, evs ...annotator.Event) {
	t.Helper()
	for _, ev := range evs {
		if err := s.Annotate(t.Context(), ev); err != nil {
			t.Fatalf("Annotate(%s %s): %v", ev.Kind, ev.Deploy.ID, err)
		}
	}
}

func summary(as []store.Annotation) []string {
	var out []string
	for _, a := range as {
		out = append(out, fmt.Sprintf("#%d %d..%d %s", a.ID, (a.Time-t0.UnixMilli())/60000, (a.TimeEnd-t0.UnixMilli())/60000, strings.Join(a.Tags, ",")))
	}
	return out
}

func TestRegionAndPoints(t *testing.T) {
	path := filepath.Join(t.TempDir(), "annotations.jsonl")
	s := open(t, path)
	annotate(t, s, events(ck42, "fail", "conversion")[:1]...)
	got := s.Find(t.Context(), store.Query{})
	if want := []string{"#1 0..0 immune,immune:region,deploy:ck-42,service:checkout,version:v2.4.0"}; !slices.Equal(summary(got), want) {
		t.Errorf("after deploy: %q, want %q", summary(got), want)
	}
	annotate(t, s, events(ck42, "fail", "conversion")...) // the deploy again: no second region
	got = s.Find(t.Context(), store.Query{})
	want := []string{
		"#3 26..26 immune,immune:revert,deploy:ck-42,service:checkout,version:v2.4.0,verdict:fail,kpi:conversion",
		"#2 25..25 immune,immune:verdict,deploy:ck-42,service:checkout,version:v2.4.0,verdict:fail,kpi:conversion",
		"#1 0..30 immune,immune:region,deploy:ck-42,service:checkout,version:v2.4.0,verdict:fail,kpi:conversion",
	}
	if !slices.Equal(summary(got), want) {
		t.Errorf("annotations:\n%s\nwant:\n%s", strings.Join(summary(got), "\n"), strings.Join(want, "\n"))
	}
	r := got[2]
	if r.Login != "immune" || r.Created != t0.UnixMilli() || r.Updated != t0.Add(30*time.Minute).UnixMilli() {
		t.Errorf("region login/created/updated = %q %d %d", r.Login, r.Created, r.Updated)
	}
	if !strings.Contains(r.Text, "p=0.0004 &lt; 0.005") || !strings.Contains(r.Text, `href="https://immune.example/deploys/ck-42"`) {
		t.Errorf("region text = %q", r.Text)
	}

	// Reopened: the same annotations, and the region is found again.
	s.Close()
	s2 := open(t, path)
	if got2 := s2.Find(t.Context(), store.Query{}); !slices.Equal(summary(got2), want) {
		t.Errorf("after reopen: %q, want %q", summary(got2), want)
	}
	annotate(t, s2, events(ck42, "fail", "conversion")...)
	annotate(t, s2, events(pay7, "pass")...)
	got = s2.Find(t.Context(), store.Query{Tags: []string{"deploy:pay-7"}})
	if want := []string{
		"#5 145..145 immune,immune:verdict,deploy:pay-7,service:payments,version:v9,verdict:pass",
		"#4 120..150 immune,immune:region,deploy:pay-7,service:payments,version:v9,verdict:pass",
	}; !slices.Equal(summary(got), want) {
		t.Errorf("pay-7: %q, want %q", summary(got), want)
	}
	if n := len(s2.Find(t.Context(), store.Query{})); n != 5 {
		t.Errorf("%d annotations, want 5", n)
	}
	s2.Close()
	if err := s2.Annotate(t.Context(), events(pay7, "pass")[0]); !errors.Is(err, annotator.ErrClosed) {
		t.Errorf("Annotate after Close = %v, want ErrClosed", err)
	}
}

func TestCrashSafety(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "annotations.jsonl")
	s := open(t, path)
	annotate(t, s, events(ck42, "fail", "conversion")...)
	s.Close()
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	// A crash in the middle of a write leaves a line without its newline.
	if err := os.WriteFile(path, append(slices.Clone(good), []byte(`{"id":4,"time":17`)...), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	s2, err := store.Open(path, store.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil)), Now: testNow})
	if err != nil {
		t.Fatalf("Open after a torn write: %v", err)
	}
	if !strings.Contains(logs.String(), "cut short") {
		t.Errorf("no warning about the torn line: %q", logs.String())
	}
	annotate(t, s2, events(pay7, "pass")...)
	s2.Close()
	s3 := open(t, path)
	if n := len(s3.Find(t.Context(), store.Query{})); n != 5 {
		t.Errorf("after torn write and more events: %d annotations, want 5", n)
	}
	s3.Close()

	// A bad line that is not the last is an error naming the line.
	lines := strings.SplitAfter(string(good), "\n")
	lines[1] = `{"id":2,"time":"yesterday"}` + "\n"
	if err := os.WriteFile(path, []byte(strings.Join(lines, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = store.Open(path, store.Options{Now: testNow})
	if err == nil || !strings.Contains(err.Error(), path+":2:") {
		t.Errorf("Open of a corrupt file = %v, want an error at %s:2", err, path)
	}
}

func TestCompaction(t *testing.T) {
	path := filepath.Join(t.TempDir(), "annotations.jsonl")
	s := open(t, path)
	d := ck42
	for i := range 120 {
		annotate(t, s, annotator.Event{Kind: annotator.KindEnd, At: t0.Add(time.Duration(i+1) * time.Minute), Deploy: d, Verdict: "pass"})
	}
	annotate(t, s, events(pay7, "pass")...)
	want := summary(s.Find(t.Context(), store.Query{}))
	s.Close()
	before := countLines(t, path)
	s2 := open(t, path)
	after := countLines(t, path)
	if before != 123 || after != 3 {
		t.Errorf("lines before and after compaction = %d, %d, want 123, 3", before, after)
	}
	if got := summary(s2.Find(t.Context(), store.Query{})); !slices.Equal(got, want) {
		t.Errorf("after compaction %q, want %q", got, want)
	}
	annotate(t, s2, annotator.Event{Kind: annotator.KindEnd, At: t0.Add(3 * time.Hour), Deploy: d, Verdict: "pass"})
	if got := countLines(t, path); got != 4 {
		t.Errorf("lines after one more write = %d, want 4", got)
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temporary file left: %v", err)
	}
}

func TestRetention(t *testing.T) {
	path := filepath.Join(t.TempDir(), "annotations.jsonl")
	later := pay7
	later.Time = t0.Add(100 * 24 * time.Hour)
	s := open(t, path)
	annotate(t, s, events(ck42, "fail", "conversion")...)
	annotate(t, s, events(later, "pass")...)
	s.Close()
	if n := countLines(t, path); n != 7 {
		t.Fatalf("%d lines written, want 7", n)
	}

	// Opened an hour after the later deploy: ck42 ended more than 90 days
	// ago (the default retention) and is dropped, from memory and file.
	var logs bytes.Buffer
	now := func() time.Time { return later.Time.Add(time.Hour) }
	s2, err := store.Open(path, store.Options{Now: now, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	all := s2.Find(t.Context(), store.Query{})
	for _, a := range all {
		if slices.Contains(a.Tags, annotator.DeployTag(ck42.ID)) {
			t.Errorf("kept %d of %s past the retention: %v", a.ID, ck42.ID, a.Tags)
		}
	}
	if len(all) != 2 {
		t.Errorf("%d annotations kept, want the 2 of %s", len(all), later.ID)
	}
	if n := countLines(t, path); n != 2 {
		t.Errorf("%d lines after dropping, want 2", n)
	}
	if !strings.Contains(logs.String(), "annotations=3") {
		t.Errorf("no log of the 3 dropped: %q", logs.String())
	}
	// ck42's region was forgotten too: an end writes a new one, with an
	// id above those of the file.
	annotate(t, s2, annotator.Event{Kind: annotator.KindEnd, At: now(), Deploy: ck42, Verdict: "fail"})
	got := s2.Find(t.Context(), store.Query{Tags: []string{annotator.DeployTag(ck42.ID)}})
	if len(got) != 1 || got[0].ID <= all[0].ID {
		t.Errorf("new region of %s = %+v, want one with an id above %d", ck42.ID, got, all[0].ID)
	}
	s2.Close()

	// A negative retention keeps everything, however old.
	s3, err := store.Open(path, store.Options{Retention: -1, Now: func() time.Time { return now().Add(10 * 365 * 24 * time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	defer s3.Close()
	if n := len(s3.Find(t.Context(), store.Query{})); n != 3 {
		t.Errorf("retention < 0 kept %d annotations, want 3", n)
	}
}

// TestRetentionNeverReusesIDs: when every annotation is past the
// retention, the one with the highest id stays, so that the next
// annotation, after this open and after the next, gets a new id.
func TestRetentionNeverReusesIDs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "annotations.jsonl")
	s := open(t, path)
	annotate(t, s, events(ck42, "fail", "conversion")...)
	before := s.Find(t.Context(), store.Query{})
	s.Close()
	top := int64(0)
	for _, a := range before {
		top = max(top, a.ID)
	}
	now := func() time.Time { return ck42.Time.Add(200 * 24 * time.Hour) }
	for round := range 2 {
		s, err := store.Open(path, store.Options{Now: now})
		if err != nil {
			t.Fatal(err)
		}
		kept := s.Find(t.Context(), store.Query{})
		if len(kept) != 1 || kept[0].ID != top {
			t.Fatalf("round %d: kept %+v, want only the highest id %d", round, kept, top)
		}
		d := pay7
		d.ID = fmt.Sprintf("pay-%d", 100+round)
		annotate(t, s, annotator.Event{Kind: annotator.KindDeploy, At: now(), Deploy: d})
		got := s.Find(t.Context(), store.Query{Tags: []string{annotator.DeployTag(d.ID)}})
		s.Close()
		if len(got) == 0 || got[len(got)-1].ID <= top {
			t.Fatalf("round %d: new annotation %+v, want an id above %d", round, got, top)
		}
		top = got[len(got)-1].ID
		now = func() time.Time { return pay7.Time.Add(time.Duration(200*(round+2)) * 24 * time.Hour) }
	}
}

// TestExpireWhileRunning: a store that stays open drops the annotations
// past the retention at Expire, from memory and from the file, and goes
// on appending to the rewritten file.
func TestExpireWhileRunning(t *testing.T) {
	path := filepath.Join(t.TempDir(), "annotations.jsonl")
	now := t0
	s, err := store.Open(path, store.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	annotate(t, s, events(ck42, "fail", "conversion")...)
	if n, err := s.Expire(); n != 0 || err != nil {
		t.Fatalf("Expire with nothing old: %d, %v", n, err)
	}
	later := pay7
	later.Time = t0.Add(100 * 24 * time.Hour)
	now = later.Time
	annotate(t, s, events(later, "pass")...)
	n, err := s.Expire()
	if err != nil || n != 3 {
		t.Fatalf("Expire: %d, %v; want the 3 annotations of %s", n, err, ck42.ID)
	}
	if got := s.Find(t.Context(), store.Query{Tags: []string{annotator.DeployTag(ck42.ID)}}); len(got) != 0 {
		t.Errorf("kept %d annotations of %s past the retention", len(got), ck42.ID)
	}
	if n := countLines(t, path); n != 2 {
		t.Errorf("%d lines after Expire, want 2", n)
	}
	// Appends go on, to the rewritten file, and survive a reopen.
	third := pay7
	third.ID, third.Time = "pay-8", later.Time.Add(time.Hour)
	annotate(t, s, events(third, "pass")...)
	s.Close()
	s2, err := store.Open(path, store.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got := s2.Find(t.Context(), store.Query{}); len(got) != 4 {
		t.Errorf("%d annotations after reopening, want 4 (2 of %s, 2 of %s)", len(got), later.ID, third.ID)
	}
	if _, err := s2.Expire(); err != nil {
		t.Fatal(err)
	}
	s2.Close()
	if _, err := s2.Expire(); err == nil {
		t.Error("Expire on a closed store: no error")
	}
}

func countLines(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(b, []byte("\n"))
}

func TestHTTP(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "a.jsonl"))
	annotate(t, s, events(ck42, "fail", "conversion", "latency")...)
	annotate(t, s, events(pay7, "pass")...)
	mux := http.NewServeMux()
	s.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ms := func(d time.Duration) string { return fmt.Sprint(t0.Add(d).UnixMilli()) }
	for _, tc := range []struct {
		name  string
		query string
		code  int
		ids   []int64
		err   string
	}{
		{"all, newest first", "", 200, []int64{5, 4, 3, 2, 1}, ""},
		{"tags all match", "tags=immune&tags=verdict:fail&tags=kpi:latency", 200, []int64{3, 2, 1}, ""},
		{"tags any", "tags=deploy:pay-7&tags=immune:revert&matchAny=true", 200, []int64{5, 4, 3}, ""},
		{"regions", "tags=immune:region", 200, []int64{4, 1}, ""},
		{"overlapping a time range", "from=" + ms(20*time.Minute) + "&to=" + ms(25*time.Minute), 200, []int64{2, 1}, ""},
		{"from only", "from=" + ms(100*time.Minute), 200, []int64{5, 4}, ""},
		{"limit", "limit=2", 200, []int64{5, 4}, ""},
		{"type annotation", "type=annotation&limit=1", 200, []int64{5}, ""},
		{"type alert", "type=alert", 200, []int64{}, ""},
		{"no match", "tags=service:nope", 200, []int64{}, ""},
		{"bad from", "from=yesterday", 400, nil, `from: \"yesterday\" is not a time in epoch milliseconds`},
		{"to before from", "from=10&to=5", 400, nil, "to: 5 is before from 10"},
		{"bad limit", "limit=0", 400, nil, "limit: \\\"0\\\" is not a number from 1 to 10000"},
		{"bad matchAny", "matchAny=yes", 400, nil, "matchAny"},
		{"bad type", "type=dashboard", 400, nil, "type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Get(srv.URL + "/api/v1/annotations?" + tc.query)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.code || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("status %d %s, want %d application/json", resp.StatusCode, resp.Header.Get("Content-Type"), tc.code)
			}
			var buf bytes.Buffer
			buf.ReadFrom(resp.Body)
			if tc.code != 200 {
				if !strings.Contains(buf.String(), `"status":"error"`) || !strings.Contains(buf.String(), tc.err) {
					t.Errorf("body %s, want status error and %q", buf.String(), tc.err)
				}
				return
			}
			var got []map[string]any
			if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
				t.Fatalf("body %s: %v", buf.String(), err)
			}
			ids := []int64{}
			for _, a := range got {
				ids = append(ids, int64(a["id"].(float64)))
				for _, k := range []string{"id", "alertId", "dashboardId", "dashboardUID", "panelId", "time", "timeEnd", "text", "tags", "login", "data"} {
					if _, ok := a[k]; !ok {
						t.Errorf("annotation %v lacks Grafana's field %q", a["id"], k)
					}
				}
			}
			if !slices.Equal(ids, tc.ids) {
				t.Errorf("ids %v, want %v", ids, tc.ids)
			}
		})
	}
}

func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"", "from=1&to=2&tags=a&tags=b&limit=3", "matchAny=true&type=alert", "limit=-1", "from=9999999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, err := store.ParseQuery(v)
		if err != nil {
			if err.Error() == "" {
				t.Error("empty error")
			}
			return
		}
		if q.Limit < 0 || q.Limit > store.MaxLimit || q.From < 0 || (q.To != 0 && q.To < q.From) {
			t.Errorf("ParseQuery(%q) = %+v accepted out of range", raw, q)
		}
	})
}

func FuzzOpen(f *testing.F) {
	f.Add([]byte(`{"id":1,"time":5,"timeEnd":9,"tags":["immune","immune:region","deploy:x"]}` + "\n"))
	f.Add([]byte(`{"id":1,"time":5,"timeEnd":9}` + "\n" + `{"id":2`))
	f.Add([]byte("{}\n"))
	f.Add([]byte(`{"id":3,"time":9,"timeEnd":5}` + "\n"))
	f.Fuzz(func(t *testing.T, content []byte) {
		path := filepath.Join(t.TempDir(), "a.jsonl")
		if err := os.WriteFile(path, content, 0o644); err != nil {
			t.Fatal(err)
		}
		// At the epoch, the retention keeps what the seeds hold.
		s, err := store.Open(path, store.Options{Now: func() time.Time { return time.UnixMilli(0) }})
		if err != nil {
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
			return
		}
		defer s.Close()
		for _, a := range s.Find(t.Context(), store.Query{Limit: store.MaxLimit}) {
			if a.ID <= 0 || a.TimeEnd < a.Time {
				t.Errorf("loaded a bad annotation %+v", a)
			}
		}
		if err := s.Annotate(t.Context(), events(ck42, "pass")[0]); err != nil {
			t.Errorf("Annotate after Open: %v", err)
		}
	})
}

// BenchmarkAnnotate is one event written and fsynced.
func BenchmarkAnnotate(b *testing.B) {
	s, err := store.Open(filepath.Join(b.TempDir(), "a.jsonl"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	d := ck42
	i := 0
	for b.Loop() {
		i++
		d.ID = fmt.Sprint("d", i)
		if err := s.Annotate(context.Background(), annotator.Event{Kind: annotator.KindDeploy, At: t0, Deploy: d}); err != nil {
			b.Fatal(err)
		}
	}
}
