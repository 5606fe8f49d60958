package audit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/immune-project/immune/rollback/audit"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func writeFile(path string, data []byte) error { return os.WriteFile(path, data, 0o600) }

func rec(kind, id, result string) audit.Record {
	return audit.Record{Time: t0, Kind: kind, DeployID: id, Service: "checkout", Result: result}
}

func line(t *testing.T, r audit.Record) string {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b) + "\n"
}

func TestParse(t *testing.T) {
	good := line(t, rec(audit.KindDecision, "d1", ""))
	rev := line(t, rec(audit.KindRevert, "d1", audit.ResultReverted))
	tests := []struct {
		name     string
		in       string
		wantRecs int
		wantTorn int // line number of the torn line, 0 for none
		wantErr  string
	}{
		{"empty", "", 0, 0, ""},
		{"two records", good + rev, 2, 0, ""},
		{"whole last record without newline", good + strings.TrimSuffix(rev, "\n"), 2, 0, ""},
		{"torn last line", good + rev[:len(rev)/2], 1, 2, ""},
		{"torn first and only line", good[:10], 0, 1, ""},
		{"corrupt middle line", good + "{garbage\n" + rev, 0, 0, "a.jsonl:2: not a record"},
		{"empty middle line", good + "\n" + rev, 0, 0, "a.jsonl:2: empty line"},
		{"unknown field", `{"time":"2026-11-25T12:00:00Z","kind":"decision","deploy_id":"d","bogus":1}` + "\n", 0, 0, `a.jsonl:1: not a record: json: unknown field "bogus"`},
		{"bad kind", `{"time":"2026-11-25T12:00:00Z","kind":"maybe","deploy_id":"d"}` + "\n", 0, 0, `a.jsonl:1: kind "maybe"`},
		{"no deploy id", `{"time":"2026-11-25T12:00:00Z","kind":"revert"}` + "\n", 0, 0, "a.jsonl:1: deploy_id is empty"},
		{"no time", `{"kind":"revert","deploy_id":"d"}` + "\n", 0, 0, "a.jsonl:1: time is missing"},
		{"two objects on a line", strings.TrimSuffix(good, "\n") + good, 0, 0, "a.jsonl:1: not a record: data after"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs, _, torn, err := audit.Parse("a.jsonl", []byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want prefix %q", err, tt.wantErr)
				}
				var le *audit.LineError
				if !errors.As(err, &le) {
					t.Fatalf("err %T, want *audit.LineError", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != tt.wantRecs {
				t.Errorf("%d records, want %d", len(recs), tt.wantRecs)
			}
			switch {
			case tt.wantTorn == 0 && torn != nil:
				t.Errorf("torn %v, want none", torn)
			case tt.wantTorn != 0 && (torn == nil || torn.Line != tt.wantTorn):
				t.Errorf("torn %v, want line %d", torn, tt.wantTorn)
			}
		})
	}
}

func TestAppendReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := audit.Open(path, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ev := json.RawMessage(`{"kpis":[{"name":"conversion","p":0.001}]}`)
	d := rec(audit.KindDecision, "d1", "")
	d.Verdict, d.Evidence = "fail", ev
	v := int32(0)
	r := rec(audit.KindRevert, "d1", audit.ResultReverted)
	r.Trigger, r.ZKVersion = "zookeeper", &v
	for _, x := range []audit.Record{d, r, rec(audit.KindRevert, "d2", audit.ResultFailed)} {
		if err := l.Append(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Append(ctx, audit.Record{Kind: audit.KindRevert, DeployID: "d3"}); err == nil {
		t.Fatal("a record without time was appended")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(ctx, d); !errors.Is(err, audit.ErrClosed) {
		t.Fatalf("append after close: %v, want ErrClosed", err)
	}
	l, err = audit.Open(path, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := len(l.Records()); got != 3 {
		t.Fatalf("%d records after reopening, want 3", got)
	}
	if got, ok := l.Reverted("d1"); !ok || got.ZKVersion == nil || *got.ZKVersion != 0 || got.Trigger != "zookeeper" {
		t.Errorf("Reverted(d1) = %+v, %v", got, ok)
	}
	if _, ok := l.Reverted("d2"); ok {
		t.Error("Reverted(d2): a failed attempt counts as a revert")
	}
	decs := l.Decisions("d1")
	if len(decs) != 1 || decs[0].Verdict != "fail" || !bytes.Equal(decs[0].Evidence, ev) {
		t.Errorf("Decisions(d1) = %+v", decs)
	}
	if got := len(l.Reverts("d1")); got != 1 {
		t.Errorf("Reverts(d1): %d, want 1", got)
	}
}

// TestTornLine: a crash in the middle of a line leaves it torn; Open
// reports it, cuts it off, and the next record is whole.
func TestTornLine(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	whole := line(t, rec(audit.KindRevert, "d1", audit.ResultReverted))
	if err := os.WriteFile(path, []byte(whole+whole[:20]), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	l, err := audit.Open(path, audit.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if l.Torn() == nil || l.Torn().Line != 2 {
		t.Fatalf("Torn() = %v, want line 2", l.Torn())
	}
	if !strings.Contains(logs.String(), "torn") {
		t.Errorf("no warning logged: %q", logs.String())
	}
	if err := l.Append(ctx, rec(audit.KindRevert, "d2", audit.ResultReverted)); err != nil {
		t.Fatal(err)
	}
	l.Close()
	recs, err := audit.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[1].DeployID != "d2" {
		t.Fatalf("records after the torn line: %+v", recs)
	}
}

// TestNoNewlineAtEnd: a whole record without its newline is kept, and
// the next one goes on a line of its own.
func TestNoNewlineAtEnd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	whole := line(t, rec(audit.KindRevert, "d1", audit.ResultReverted))
	if err := os.WriteFile(path, []byte(strings.TrimSuffix(whole, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(path, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Append(context.Background(), rec(audit.KindRevert, "d2", audit.ResultReverted)); err != nil {
		t.Fatal(err)
	}
	l.Close()
	recs, err := audit.ReadFile(path)
	if err != nil || len(recs) != 2 {
		t.Fatalf("ReadFile: %d records, %v", len(recs), err)
	}
}

func TestOpenCorrupt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	whole := line(t, rec(audit.KindRevert, "d1", audit.ResultReverted))
	if err := os.WriteFile(path, []byte(whole+"oops\n"+whole), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := audit.Open(path, audit.Options{})
	if err == nil || !strings.HasPrefix(err.Error(), path+":2: ") {
		t.Fatalf("Open: %v, want an error naming %s:2", err, path)
	}
}

func TestAppendCanceled(t *testing.T) {
	l, err := audit.Open(filepath.Join(t.TempDir(), "a.jsonl"), audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Append(ctx, rec(audit.KindRevert, "d", audit.ResultReverted)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with a canceled context: %v", err)
	}
	if len(l.Records()) != 0 {
		t.Fatal("a record was appended under a canceled context")
	}
}

func FuzzParse(f *testing.F) {
	whole := `{"time":"2026-11-25T12:00:00Z","kind":"revert","deploy_id":"d1","result":"reverted"}`
	for _, s := range []string{"", whole + "\n", whole, whole + "\n" + whole[:30], "{\n", "\n\n", whole + "\n\x00\x00"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, good, torn, err := audit.Parse("f.jsonl", data)
		if err != nil {
			var le *audit.LineError
			if !errors.As(err, &le) || le.Line < 1 {
				t.Fatalf("error without a line: %v", err)
			}
			return
		}
		if good < 0 || good > len(data) {
			t.Fatalf("good %d outside [0, %d]", good, len(data))
		}
		if torn == nil && good != len(data) {
			t.Fatalf("no torn line, but only %d of %d bytes are records", good, len(data))
		}
		// The good prefix parses to the same records, without a torn line.
		again, g2, torn2, err := audit.Parse("f.jsonl", data[:good])
		if err != nil || torn2 != nil || g2 != good || len(again) != len(recs) {
			t.Fatalf("the good prefix does not parse back: %v %v %d/%d %d/%d", err, torn2, g2, good, len(again), len(recs))
		}
		for _, r := range recs {
			if r.DeployID == "" || r.Time.IsZero() {
				t.Fatalf("bad record accepted: %+v", r)
			}
		}
	})
}
