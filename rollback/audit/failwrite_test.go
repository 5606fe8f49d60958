package audit

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// failingFile writes half of a record, then fails (a full disk), a
// given number of times; its Truncate fails when told to.
type failingFile struct {
	*os.File
	failWrites   int
	failTruncate bool
}

func (f *failingFile) Write(p []byte) (int, error) {
	if f.failWrites > 0 {
		f.failWrites--
		n, _ := f.File.Write(p[:len(p)/2])
		return n, syscall.ENOSPC
	}
	return f.File.Write(p)
}

func (f *failingFile) Truncate(size int64) error {
	if f.failTruncate {
		return syscall.EIO
	}
	return f.File.Truncate(size)
}

func testRecord(id string) Record {
	return Record{Time: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC), Kind: KindRevert, DeployID: id, Result: ResultFailed}
}

func ids(recs []Record) string {
	var s []string
	for _, r := range recs {
		s = append(s, r.DeployID)
	}
	return strings.Join(s, " ")
}

// TestPartialWrite: a write that fails half-way leaves no part of its
// record in the file: the next record starts on a line of its own and
// the file opens again.
func TestPartialWrite(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Append(ctx, testRecord("d1")); err != nil {
		t.Fatal(err)
	}
	l.f = &failingFile{File: l.f.(*os.File), failWrites: 1}
	if err := l.Append(ctx, testRecord("d2")); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Append on a full disk: %v, want ENOSPC", err)
	}
	if err := l.Append(ctx, testRecord("d3")); err != nil {
		t.Fatalf("Append after a failed write: %v", err)
	}
	if got := ids(l.Records()); got != "d1 d3" {
		t.Errorf("records %q, want d1 d3", got)
	}
	l.Close()
	l2, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("reopen after a failed write: %v", err)
	}
	defer l2.Close()
	if got := ids(l2.Records()); got != "d1 d3" || l2.Torn() != nil {
		t.Errorf("reopened: records %q, torn %v; want d1 d3, not torn", got, l2.Torn())
	}
}

// TestPartialWriteNotUndone: when the partial record cannot be cut off,
// nothing more is appended after it (it stays the last line, which the
// next Open cuts off as torn).
func TestPartialWriteNotUndone(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Append(ctx, testRecord("d1")); err != nil {
		t.Fatal(err)
	}
	l.f = &failingFile{File: l.f.(*os.File), failWrites: 1, failTruncate: true}
	if err := l.Append(ctx, testRecord("d2")); !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "unusable") {
		t.Fatalf("Append on a full disk, truncate failing: %v", err)
	}
	if err := l.Append(ctx, testRecord("d3")); err == nil || !strings.Contains(err.Error(), "unusable") {
		t.Fatalf("Append after an undone failed write: %v, want a refusal", err)
	}
	l.Close()
	l2, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer l2.Close()
	if got := ids(l2.Records()); got != "d1" || l2.Torn() == nil {
		t.Errorf("reopened: records %q, torn %v; want d1 and the partial record cut off", got, l2.Torn())
	}
}
