package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/immune-project/immune/deploy"
)

// LogFile is the name of the log of accepted deploys in Options.DataDir.
const LogFile = "deploys.jsonl"

// entry is one line of the log: an accepted deploy, group or self test.
type entry struct {
	Op       string                 `json:"op"` // deploy | group | selftest
	DeployID string                 `json:"deploy_id,omitempty"`
	Deploy   *deploy.DeployRecord   `json:"deploy,omitempty"`
	Group    *deploy.GroupRecord    `json:"group,omitempty"`
	SelfTest *deploy.SelfTestRecord `json:"selftest,omitempty"`
	State    string                 `json:"state,omitempty"`
}

const (
	opDeploy   = "deploy"
	opGroup    = "group"
	opSelfTest = "selftest"
	opState    = "state"
)

// store is the append-only JSON-lines log, fsynced after every line.
type store struct {
	path string
	f    *os.File
	size int64
}

// readLog reads the log's entries. A last line cut short (a crash while
// writing) is dropped and reported in truncated; any other bad line is
// an error naming file:line.
func readLog(path string) (entries []entry, truncated bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read deploy log: %w", err)
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	for i, line := range lines {
		last := i == len(lines)-1 || (i == len(lines)-2 && len(lines[len(lines)-1]) == 0)
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var e entry
		if err := json.Unmarshal(line, &e); err != nil || !bytes.HasSuffix(line, []byte("\n")) {
			if last {
				return entries, true, nil
			}
			if err == nil {
				err = errors.New("no newline")
			}
			return nil, false, fmt.Errorf("%w: %s:%d: %w", deploy.ErrMalformed, path, i+1, err)
		}
		if err := e.check(); err != nil {
			return nil, false, fmt.Errorf("%w: %s:%d: %w", deploy.ErrMalformed, path, i+1, err)
		}
		entries = append(entries, e)
	}
	return entries, false, nil
}

func (e entry) check() error {
	switch {
	case e.Op == opDeploy && e.Deploy != nil:
		return e.Deploy.Check("log")
	case e.Op == opGroup && e.Group != nil && e.DeployID != "":
	case e.Op == opSelfTest && e.SelfTest != nil && e.DeployID != "":
	case e.Op == opState && e.State != "" && e.DeployID != "":
	default:
		return fmt.Errorf("op %q: want deploy, group, selftest or state with its record", e.Op)
	}
	return nil
}

// openStore opens the log for appending, first rewriting it with only
// entries when they differ from what it holds (compaction).
func openStore(path string, entries []entry, rewrite bool) (*store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("deploy log: %w", err)
	}
	if rewrite {
		tmp := path + ".tmp"
		if err := writeAll(tmp, entries); err != nil {
			return nil, err
		}
		if err := os.Rename(tmp, path); err != nil {
			return nil, fmt.Errorf("deploy log: %w", err)
		}
		if err := syncDir(filepath.Dir(path)); err != nil {
			return nil, err
		}
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("deploy log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("deploy log: %w", err)
	}
	return &store{path: path, f: f, size: st.Size()}, nil
}

func writeAll(path string, entries []entry) error {
	var buf bytes.Buffer
	for _, e := range entries {
		b, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("deploy log: %w", err)
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("deploy log: %w", err)
	}
	if _, err := f.Write(buf.Bytes()); err != nil {
		f.Close()
		return fmt.Errorf("deploy log: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("deploy log: %w", err)
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("deploy log: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("deploy log: sync %s: %w", dir, err)
	}
	return nil
}

// append writes one entry and fsyncs it. On failure the file is cut
// back to where it was, so that a half-written line never sits between
// two good ones.
func (s *store) append(e entry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("deploy log: %w", err)
	}
	b = append(b, '\n')
	if _, err := s.f.Write(b); err != nil {
		_ = s.f.Truncate(s.size)
		return fmt.Errorf("deploy log: write %s: %w", s.path, err)
	}
	if err := s.f.Sync(); err != nil {
		_ = s.f.Truncate(s.size)
		return fmt.Errorf("deploy log: sync %s: %w", s.path, err)
	}
	s.size += int64(len(b))
	return nil
}

func (s *store) close() error { return s.f.Close() }

// keep reports whether a deploy started at t is kept at now under
// retention (negative keeps everything).
func keep(t, now time.Time, retention time.Duration) bool {
	return retention < 0 || !t.Before(now.Add(-retention))
}
