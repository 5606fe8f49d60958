// Package store is immune's own record of its annotations: every
// annotation also written to Grafana is kept here, persisted in an
// append-only JSON-lines file (fsynced on every write, read back on open,
// rewritten on open without the annotations past Options.Retention), and
// served at GET /api/v1/annotations with Grafana's filters and in the
// JSON shape of Grafana's annotation API, so that a Grafana JSON or
// Infinity data source can show them as well.
package store

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
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/immune-project/immune/annotator"
)

// Annotation is one annotation, in the JSON shape of Grafana's
// GET /api/annotations. Times are epoch milliseconds; every annotation is
// organisation-wide (dashboardId 0).
type Annotation struct {
	ID           int64          `json:"id"`
	AlertID      int64          `json:"alertId"`
	DashboardID  int64          `json:"dashboardId"`
	DashboardUID string         `json:"dashboardUID"`
	PanelID      int64          `json:"panelId"`
	UserID       int64          `json:"userId"`
	NewState     string         `json:"newState"`
	PrevState    string         `json:"prevState"`
	Created      int64          `json:"created"`
	Updated      int64          `json:"updated"`
	Time         int64          `json:"time"`
	TimeEnd      int64          `json:"timeEnd"`
	Text         string         `json:"text"`
	Tags         []string       `json:"tags"`
	Login        string         `json:"login"`
	Email        string         `json:"email"`
	AvatarURL    string         `json:"avatarUrl"`
	Data         map[string]any `json:"data"`
}

// Login is the author of every annotation.
const Login = "immune"

// Options configure a Store. The zero value is usable.
type Options struct {
	// ReportBaseURL is immune's address; each text links to
	// <ReportBaseURL>/deploys/<id>.
	ReportBaseURL string
	Logger        *slog.Logger
	// Retention drops, when the store opens and at Expire, the
	// annotations that ended longer ago than this; 0 means
	// DefaultRetention (90 days), a negative value keeps every annotation.
	Retention time.Duration
	// Now is the clock Retention is measured by (time.Now when nil).
	Now func() time.Time
}

// DefaultRetention is Options.Retention's default.
const DefaultRetention = 90 * 24 * time.Hour

// Store keeps annotations in memory and in a file.
type Store struct {
	path string
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	file    *os.File
	size    int64 // of the file after the last complete write
	closed  bool
	all     map[int64]*Annotation
	nextID  int64
	regions map[string]int64 // deploy id → region id
	points  map[pointKey]int64
}

type pointKey struct {
	deploy, kindTag string
	time            int64
}

var _ annotator.Annotator = (*Store)(nil)

// Open reads the file at path (created if absent) and returns the Store
// that appends to it. A last line cut short by a crash is dropped; any
// other unreadable line is an error naming the file and line. Annotations
// past opts.Retention are dropped, and the file is rewritten without them
// (and without superseded lines when most are).
func Open(path string, opts Options) (*Store, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Retention == 0 {
		opts.Retention = DefaultRetention
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Store{
		path: path, opts: opts, log: log.With("annotator", "store"),
		all: map[int64]*Annotation{}, nextID: 1, regions: map[string]int64{}, points: map[pointKey]int64{},
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open annotation store: %w", err)
	}
	lines, good, err := s.load(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open annotation store: %w", err)
	}
	if good < st.Size() {
		s.log.Warn("annotation store: dropping a last line cut short", "file", path, "bytes", st.Size()-good)
		if err := f.Truncate(good); err != nil {
			f.Close()
			return nil, fmt.Errorf("open annotation store: truncate %s: %w", path, err)
		}
	}
	expired := s.dropExpired()
	if expired > 0 || lines > 2*len(s.all)+64 {
		f.Close()
		if f, err = s.compact(); err != nil {
			return nil, err
		}
	}
	end, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open annotation store: %w", err)
	}
	s.file, s.size = f, end
	return s, nil
}

// load replays the file: each line is the latest state of one annotation.
// It returns the number of lines and the offset after the last good one.
func (s *Store) load(f *os.File) (int, int64, error) {
	r := bufio.NewReader(f)
	var off int64
	for n := 1; ; n++ {
		line, err := r.ReadBytes('\n')
		if err == io.EOF {
			// A line without its newline was being written at a crash.
			return n - 1, off, nil
		}
		if err != nil {
			return 0, 0, fmt.Errorf("read annotation store %s: %w", s.path, err)
		}
		a, perr := parseLine(line)
		if perr != nil {
			return 0, 0, fmt.Errorf("annotation store %s:%d: %w", s.path, n, perr)
		}
		off += int64(len(line))
		s.apply(a)
	}
}

// parseLine reads one line of the store file.
func parseLine(line []byte) (*Annotation, error) {
	var a Annotation
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("more than one annotation on the line")
	}
	switch {
	case a.ID <= 0:
		return nil, fmt.Errorf("id %d is not positive", a.ID)
	case a.TimeEnd < a.Time:
		return nil, fmt.Errorf("annotation %d ends (%d) before it starts (%d)", a.ID, a.TimeEnd, a.Time)
	}
	return &a, nil
}

// apply makes a the current state of its id and indexes it.
func (s *Store) apply(a *Annotation) {
	s.all[a.ID] = a
	s.nextID = max(s.nextID, a.ID+1)
	deployID, kindTag := "", ""
	for _, t := range a.Tags {
		if v, ok := strings.CutPrefix(t, "deploy:"); ok && deployID == "" {
			deployID = v
		}
		if t == annotator.TagRegion || t == annotator.TagVerdict || t == annotator.TagRevert {
			kindTag = t
		}
	}
	if deployID == "" {
		return
	}
	if kindTag == annotator.TagRegion {
		s.regions[deployID] = a.ID
	} else if kindTag != "" {
		s.points[pointKey{deployID, kindTag, a.Time}] = a.ID
	}
}

// expire forgets the annotations that end before cutoff (epoch ms), but
// the one with the highest id, and returns how many: ids are never given
// twice, across restarts too.
func (s *Store) expire(cutoff int64) int {
	n := 0
	for id, a := range s.all {
		// The highest id is kept, however old: the file is all the store
		// knows of ids, and without it the next open would give that id
		// to a new annotation (a client holding the old one would then
		// patch or read the wrong annotation).
		if a.TimeEnd < cutoff && id != s.nextID-1 {
			delete(s.all, id)
			n++
		}
	}
	if n == 0 {
		return 0
	}
	for d, id := range s.regions {
		if s.all[id] == nil {
			delete(s.regions, d)
		}
	}
	for k, id := range s.points {
		if s.all[id] == nil {
			delete(s.points, k)
		}
	}
	return n
}

// Expire drops the annotations past the retention now, as Open does, from
// memory and from the file, and returns how many; a store that runs for
// months calls it from time to time (immune run: every hour). The file is
// rewritten only when something expired; if that fails, the file keeps
// them and the next Open drops them.
func (s *Store) Expire() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, fmt.Errorf("annotation store: %w", annotator.ErrClosed)
	}
	n := s.dropExpired()
	if n == 0 {
		return 0, nil
	}
	f, err := s.compact()
	if err != nil {
		return n, err
	}
	end, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return n, fmt.Errorf("annotation store: %w", err)
	}
	s.file.Close()
	s.file, s.size = f, end
	return n, nil
}

// dropExpired forgets the annotations past the retention now (none with a
// retention below 0), says so in the log, and returns how many.
func (s *Store) dropExpired() int {
	if s.opts.Retention <= 0 {
		return 0
	}
	n := s.expire(s.opts.Now().Add(-s.opts.Retention).UnixMilli())
	if n > 0 {
		s.log.Info("annotation store: dropping annotations past the retention", "file", s.path,
			"annotations", n, "retention", s.opts.Retention.String())
	}
	return n
}

// compact rewrites the file with one line per annotation: written to a
// temporary file, fsynced, renamed over the old one.
func (s *Store) compact() (*os.File, error) {
	tmp := s.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("compact annotation store: %w", err)
	}
	ids := make([]int64, 0, len(s.all))
	for id := range s.all {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	w := bufio.NewWriter(f)
	for _, id := range ids {
		b, _ := json.Marshal(s.all[id])
		w.Write(append(b, '\n'))
	}
	err = errors.Join(w.Flush(), f.Sync())
	if err == nil {
		err = os.Rename(tmp, s.path)
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("compact annotation store: %w", err)
	}
	if d, err := os.Open(filepath.Dir(s.path)); err == nil {
		d.Sync()
		d.Close()
	}
	return f, nil
}

// Annotate records ev: the deploy's region at deploy (once), extended at
// end to ev.At with the final tags and text; a point at verdict and revert
// (once per deploy, kind and time). The file is fsynced before Annotate
// returns.
func (s *Store) Annotate(ctx context.Context, ev annotator.Event) error {
	if err := ev.Check(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	tags := annotator.Tags(ev)
	text := annotator.Text(ev, annotator.ReportURL(s.opts.ReportBaseURL, ev.Deploy.ID))
	at := ev.At.UnixMilli()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("annotation store: %w", annotator.ErrClosed)
	}
	var a Annotation
	switch ev.Kind {
	case annotator.KindDeploy, annotator.KindEnd:
		start := ev.Start().UnixMilli()
		if id, ok := s.regions[ev.Deploy.ID]; ok {
			if ev.Kind == annotator.KindDeploy {
				return nil
			}
			a = *s.all[id]
			a.Updated = at
		} else {
			a = Annotation{ID: s.nextID, Created: at, Updated: at, Login: Login, Data: map[string]any{}}
		}
		a.Time, a.TimeEnd = start, max(start, at)
		if ev.Kind == annotator.KindDeploy {
			a.TimeEnd = start
		}
	default:
		if _, ok := s.points[pointKey{ev.Deploy.ID, annotator.KindTag(ev.Kind), at}]; ok {
			return nil
		}
		a = Annotation{ID: s.nextID, Created: at, Updated: at, Time: at, TimeEnd: at, Login: Login, Data: map[string]any{}}
	}
	a.Tags, a.Text = tags, text
	if err := s.write(&a); err != nil {
		return err
	}
	s.apply(&a)
	return nil
}

func (s *Store) write(a *Annotation) error {
	b, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("annotation store: %w", err)
	}
	b = append(b, '\n')
	_, err = s.file.Write(b)
	if err == nil {
		err = s.file.Sync()
	}
	if err != nil {
		// Cut what was written of the line, so that the next one does not
		// follow half a line.
		if terr := s.file.Truncate(s.size); terr == nil {
			_, _ = s.file.Seek(s.size, io.SeekStart)
		}
		return fmt.Errorf("annotation store: write %s: %w", s.path, err)
	}
	s.size += int64(len(b))
	return nil
}

// Query filters annotations as Grafana's GET /api/annotations does.
type Query struct {
	// From and To (epoch ms, 0 for open) keep annotations that overlap
	// [From, To].
	From, To int64
	// Tags must all be on an annotation, or one of them with MatchAny.
	Tags     []string
	MatchAny bool
	// Limit is the most returned (100 when 0).
	Limit int
	// AlertsOnly asks for alert annotations, of which immune writes none.
	AlertsOnly bool
}

// DefaultLimit is the Limit of a Query that gives none, as in Grafana.
const DefaultLimit = 100

// Find returns the annotations matching q, newest first.
func (s *Store) Find(_ context.Context, q Query) []Annotation {
	if q.Limit <= 0 {
		q.Limit = DefaultLimit
	}
	if q.AlertsOnly {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Annotation
	for _, a := range s.all {
		if (q.From != 0 && a.TimeEnd < q.From) || (q.To != 0 && a.Time > q.To) || !matchTags(a.Tags, q.Tags, q.MatchAny) {
			continue
		}
		c := *a
		c.Tags = slices.Clone(a.Tags)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Time != out[j].Time {
			return out[i].Time > out[j].Time
		}
		return out[i].ID > out[j].ID
	})
	if len(out) > q.Limit {
		out = out[:q.Limit]
	}
	return out
}

func matchTags(have, want []string, any bool) bool {
	if len(want) == 0 {
		return true
	}
	n := 0
	for _, t := range want {
		if slices.Contains(have, t) {
			n++
		}
	}
	if any {
		return n > 0
	}
	return n == len(want)
}

// Close closes the file. Annotate fails with annotator.ErrClosed after.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.file.Close()
}
