// Package audit is the audit log of the revert path: an append-only file
// of JSON lines, fsynced after each record, one record per decision and
// per trigger call. It is read back when opened, so that a restart
// neither forgets a decision nor repeats a revert (Reverted).
//
// A crash can leave the last line torn (written in part, without its
// newline): Open reports it (Log.Torn, and a warning in the log) and
// cuts it off, so the next record starts on a line of its own. Any other
// line that is not a record is an error naming file:line. A write that
// fails in part (a full disk) is cut off at once, so the next record does
// not continue it; when it cannot be, Append refuses every later record,
// and the next Open cuts the partial one off as torn.
package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Kinds of record.
const (
	// KindDecision: the analysis decided (Verdict, Reason, Evidence).
	KindDecision = "decision"
	// KindRevert: one call of a trigger and what came of it.
	KindRevert = "revert"
	// KindVerdict: a gate verdict written for a rollout group.
	KindVerdict = "verdict"
)

// Results of a KindRevert record.
const (
	ResultReverted = "reverted" // this call requested the revert
	ResultAlready  = "already"  // an earlier call had (this one did nothing)
	ResultShadow   = "shadow"   // shadow mode: recorded, not reverted
	ResultFailed   = "failed"   // the call failed (Error says why)
)

// Record is one line of the audit log.
type Record struct {
	Time     time.Time `json:"time"`
	Kind     string    `json:"kind"`
	DeployID string    `json:"deploy_id"`
	Service  string    `json:"service,omitempty"`
	Version  string    `json:"version,omitempty"`
	// PreviousVersion is the version a revert goes back to.
	PreviousVersion string `json:"previous_version,omitempty"`
	RuleFile        string `json:"rule_file,omitempty"`
	// Verdict is pass, fail or inconclusive (decisions), or the gate's
	// proceed or revert (verdicts).
	Verdict string `json:"verdict,omitempty"`
	Group   *int   `json:"group,omitempty"`
	Reason  string `json:"reason,omitempty"`
	// Evidence is the KPI evidence of the verdict, as the analysis gave it.
	Evidence json.RawMessage `json:"evidence,omitempty"`
	Trigger  string          `json:"trigger,omitempty"`
	Result   string          `json:"result,omitempty"`
	Attempts int             `json:"attempts,omitempty"`
	Detail   string          `json:"detail,omitempty"`
	Error    string          `json:"error,omitempty"`
	// ZKVersion is the version of the znode written or found.
	ZKVersion *int32 `json:"zk_version,omitempty"`
	// Output is a command trigger's output, bounded.
	Output   string `json:"output,omitempty"`
	Instance string `json:"instance,omitempty"`
}

// Done reports whether the record shows the deploy's revert requested
// (or, in shadow mode, recorded): a later call must not repeat it.
func (r Record) Done() bool {
	return r.Kind == KindRevert && (r.Result == ResultReverted || r.Result == ResultAlready || r.Result == ResultShadow)
}

func (r Record) check() error {
	switch {
	case r.Time.IsZero():
		return errors.New("time is missing")
	case r.DeployID == "":
		return errors.New("deploy_id is empty")
	}
	switch r.Kind {
	case KindDecision, KindRevert, KindVerdict:
	default:
		return fmt.Errorf("kind %q: want decision, revert or verdict", r.Kind)
	}
	return nil
}

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("audit log closed")

// LineError is a line of the file that is not a record.
type LineError struct {
	File string
	Line int
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// Options of Open.
type Options struct {
	// Logger receives the torn-line warning; discard when nil.
	Logger *slog.Logger
}

// Log is an open audit log. It is safe for concurrent use.
type Log struct {
	path string
	log  *slog.Logger
	mu   sync.Mutex
	f    file
	size int64 // of the whole records written: where the next one goes
	// broken is set when a failed write could not be undone: the file
	// may end in part of a record, and no other is appended after it.
	broken error
	recs   []Record
	// byDeploy indexes recs by deploy id, oldest first: a lookup reads
	// one deploy's records, not the whole log.
	byDeploy map[string][]int
	torn     *LineError
}

// file is what the log needs of its *os.File (a test fails its writes).
type file interface {
	io.Writer
	io.Seeker
	Truncate(size int64) error
	Sync() error
	Close() error
}

// Open opens (creating it if needed) the audit log at path and reads its
// records back.
func Open(path string, opts Options) (*Log, error) {
	l := &Log{path: path, log: opts.Logger}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("read audit log %s: %w", path, err)
	}
	recs, good, torn, err := Parse(path, data)
	if err != nil {
		f.Close()
		return nil, err
	}
	if torn != nil {
		l.torn = torn
		l.log.Warn("audit log: torn last line skipped and cut off", "file", path, "line", torn.Line, "err", torn.Err.Error())
		if err := f.Truncate(int64(good)); err != nil {
			f.Close()
			return nil, fmt.Errorf("cut the torn line of audit log %s: %w", path, err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, fmt.Errorf("sync audit log %s: %w", path, err)
		}
	}
	if _, err := f.Seek(int64(good), io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("seek audit log %s: %w", path, err)
	}
	size := int64(good)
	if good > 0 && data[good-1] != '\n' {
		if _, err := f.Write([]byte{'\n'}); err != nil {
			f.Close()
			return nil, fmt.Errorf("write audit log %s: %w", path, err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, fmt.Errorf("sync audit log %s: %w", path, err)
		}
		size++
	}
	l.f, l.size, l.recs = f, size, recs
	l.byDeploy = make(map[string][]int)
	for i, r := range recs {
		l.byDeploy[r.DeployID] = append(l.byDeploy[r.DeployID], i)
	}
	return l, nil
}

// Parse reads the records of an audit log's content. good is the length
// of the prefix made of whole records; torn is the last line when it was
// written in part (no newline at its end and not a record), which is
// skipped. Any other bad line is an error naming file:line.
func Parse(file string, data []byte) (recs []Record, good int, torn *LineError, err error) {
	line := 0
	for off := 0; off < len(data); {
		line++
		end := bytes.IndexByte(data[off:], '\n')
		last := end < 0
		if last {
			end = len(data) - off
		}
		raw := data[off : off+end]
		r, perr := parseLine(raw)
		if perr != nil {
			if last {
				return recs, good, &LineError{file, line, fmt.Errorf("torn record: %w", perr)}, nil
			}
			return nil, 0, nil, &LineError{file, line, perr}
		}
		recs = append(recs, r)
		off += end
		if !last {
			off++ // the newline
		}
		// A whole last record without its newline is kept; Open adds
		// the newline before the next append.
		good = off
	}
	return recs, good, nil, nil
}

func parseLine(raw []byte) (Record, error) {
	var r Record
	if len(bytes.TrimSpace(raw)) == 0 {
		return r, errors.New("empty line")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return r, fmt.Errorf("not a record: %w", err)
	}
	if dec.More() {
		return r, errors.New("not a record: data after the JSON object")
	}
	if err := r.check(); err != nil {
		return r, err
	}
	return r, nil
}

// Torn is the torn last line found at Open, or nil.
func (l *Log) Torn() *LineError { return l.torn }

// Path is the file's path.
func (l *Log) Path() string { return l.path }

// Append writes one record and fsyncs the file before it returns. A
// record without time is refused, as is one without deploy id or kind.
func (l *Log) Append(ctx context.Context, r Record) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if err := r.check(); err != nil {
		return fmt.Errorf("audit record: %w", err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("audit record: %w", err)
	}
	b = append(b, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return ErrClosed
	}
	if l.broken != nil {
		return l.broken
	}
	if _, err := l.f.Write(b); err != nil {
		// Part of the record may be in the file (a full disk): cut it
		// off, so that the next record does not continue it and the file
		// still opens. When that fails too, append nothing more.
		if uerr := l.undo(); uerr != nil {
			l.broken = fmt.Errorf("audit log %s unusable since a failed write could not be undone (%w); restart immune to cut the partial record off", l.path, uerr)
			l.log.Error("audit log: a failed write could not be undone; no more records", "file", l.path, "err", uerr.Error())
			return fmt.Errorf("write audit log %s: %w; %w", l.path, err, l.broken)
		}
		return fmt.Errorf("write audit log %s: %w", l.path, err)
	}
	l.size += int64(len(b))
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("sync audit log %s: %w", l.path, err)
	}
	l.byDeploy[r.DeployID] = append(l.byDeploy[r.DeployID], len(l.recs))
	l.recs = append(l.recs, r)
	return nil
}

// undo cuts the file back to its whole records after a failed write.
func (l *Log) undo() error {
	if err := l.f.Truncate(l.size); err != nil {
		return err
	}
	_, err := l.f.Seek(l.size, io.SeekStart)
	return err
}

// Records returns every record, oldest first.
func (l *Log) Records() []Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Record(nil), l.recs...)
}

// Deploy returns the records of one deploy, oldest first.
func (l *Log) Deploy(deployID string) []Record {
	return l.filter(deployID, func(Record) bool { return true })
}

// Decisions returns the decision records of one deploy, oldest first.
func (l *Log) Decisions(deployID string) []Record {
	return l.filter(deployID, func(r Record) bool { return r.Kind == KindDecision })
}

// Reverts returns the trigger records of one deploy, oldest first.
func (l *Log) Reverts(deployID string) []Record {
	return l.filter(deployID, func(r Record) bool { return r.Kind == KindRevert })
}

// Reverted returns the first record showing the deploy's revert
// requested (or recorded in shadow mode), if any.
func (l *Log) Reverted(deployID string) (Record, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, i := range l.byDeploy[deployID] {
		if r := l.recs[i]; r.Done() {
			return r, true
		}
	}
	return Record{}, false
}

// filter returns the records of one deploy that keep keeps, oldest first.
func (l *Log) filter(deployID string, keep func(Record) bool) []Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Record
	for _, i := range l.byDeploy[deployID] {
		if r := l.recs[i]; keep(r) {
			out = append(out, r)
		}
	}
	return out
}

// Close closes the file.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	if err != nil {
		return fmt.Errorf("close audit log %s: %w", l.path, err)
	}
	return nil
}

// ReadFile reads the records of an audit log file without opening it
// for writing (a torn last line is skipped).
func ReadFile(path string) ([]Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(bufio.NewReader(f))
	if err != nil {
		return nil, fmt.Errorf("read audit log %s: %w", path, err)
	}
	recs, _, _, err := Parse(path, data)
	return recs, err
}
