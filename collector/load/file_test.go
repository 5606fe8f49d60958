package load_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/immune-project/immune/collector"
	"github.com/immune-project/immune/collector/embedded"
	"github.com/immune-project/immune/collector/load"
)

// nabDir is the NAB data of the shared benchmark (bench/README.md).
const nabDir = "../../../shared/bench/nab/data"

func openStore(t testing.TB) *embedded.Store {
	t.Helper()
	s, err := embedded.Open(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func nabFiles(t testing.TB) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(nabDir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".csv") {
			files = append(files, path)
		}
		return err
	})
	if errors.Is(err, os.ErrNotExist) {
		t.Skipf("NAB data not found at %s", nabDir)
	}
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// nabName is the series label of a NAB file: realTraffic/speed_6005.
func nabName(path string) string {
	rel, _ := filepath.Rel(nabDir, path)
	return strings.TrimSuffix(filepath.ToSlash(rel), ".csv")
}

// Every NAB file loads as the metric value; the store then holds each
// row's sample (one per time, the later row of a repeated time).
func TestLoadNAB(t *testing.T) {
	if testing.Short() {
		t.Skip("loads the whole NAB directory")
	}
	t.Run("ephemeral", func(t *testing.T) { testLoadNAB(t, embedded.Options{}) })
	// A store in a directory: WAL, 2h blocks, history behind newer
	// history through the out-of-order window, compaction running.
	t.Run("dir", func(t *testing.T) { testLoadNAB(t, embedded.Options{Dir: t.TempDir()}) })
}

func testLoadNAB(t *testing.T, opts embedded.Options) {
	files := nabFiles(t)
	if len(files) == 0 {
		t.Fatal("no NAB files")
	}
	s, err := embedded.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	ctx := context.Background()
	total := 0
	for _, f := range files {
		name := nabName(f)
		st, err := load.File(ctx, s, f, load.Options{Labels: map[string]string{"series": name}})
		if err != nil {
			t.Fatal(err)
		}
		rows, distinct := countRows(t, f)
		if st.Series != 1 || st.Samples != distinct || st.Samples+st.Duplicates != rows {
			t.Errorf("%s: %+v, want 1 series, %d samples of %d rows", name, st, distinct, rows)
		}
		total += st.Samples
		// The store holds all of them.
		q := fmt.Sprintf(`count_over_time(value{series=%q}[10y])`, name)
		v, _, err := s.Query(ctx, q, st.Last)
		if err != nil {
			t.Fatal(err)
		}
		if len(v) != 1 || int(v[0].Sample.V) != st.Samples {
			t.Errorf("%s: %s = %v, want %d", name, q, v, st.Samples)
		}
		if !v[0].Labels.Equal(collector.Labels{"series": name}) {
			t.Errorf("%s: labels %s", name, v[0].Labels)
		}
	}
	t.Logf("%d files, %d samples", len(files), total)

	// A known row: realAWSCloudwatch/ec2_cpu_utilization_5f5533.csv
	// starts with 2014-02-14 14:27:00,51.846000000000004.
	at := time.Date(2014, 2, 14, 14, 27, 0, 0, time.UTC)
	v, _, err := s.Query(ctx, `value{series="realAWSCloudwatch/ec2_cpu_utilization_5f5533"}`, at)
	if err != nil {
		t.Fatal(err)
	}
	if len(v) != 1 || v[0].Sample.V != 51.846000000000004 {
		t.Errorf("first row: got %v", v)
	}
}

// countRows counts a CSV's data rows and distinct timestamps.
func countRows(t testing.TB, path string) (rows, distinct int) {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		rows++
		ts, _, _ := strings.Cut(line, ",")
		seen[ts] = true
	}
	return rows, len(seen)
}

// A file with one bad row stores nothing.
func TestFileAllOrNothing(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.csv")
	bad := filepath.Join(dir, "bad.csv")
	write(t, good, "timestamp,value\n2024-01-01 00:00:00,1\n2024-01-01 00:01:00,2\n")
	write(t, bad, "timestamp,value\n2024-01-01 00:00:00,1\n2024-01-01 00:01:00,two\n2024-01-01 00:02:00,3\n")
	s := openStore(t)
	ctx := context.Background()
	_, err := load.File(ctx, s, bad, load.Options{Labels: map[string]string{"f": "bad"}})
	if err == nil || !strings.Contains(err.Error(), "bad.csv:3: column value: \"two\" is not a number") {
		t.Fatalf("got %v", err)
	}
	if _, err := load.File(ctx, s, good, load.Options{Labels: map[string]string{"f": "good"}}); err != nil {
		t.Fatal(err)
	}
	v, _, err := s.Query(ctx, `count_over_time(value[1h])`, time.Date(2024, 1, 1, 0, 30, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if len(v) != 1 || v[0].Labels["f"] != "good" || v[0].Sample.V != 2 {
		t.Errorf("got %v, want only the good file's 2 samples", v)
	}

	// The store refusing one sample refuses the file.
	_, err = load.File(ctx, s, good, load.Options{Labels: map[string]string{"f": "good"}})
	if err != nil {
		t.Fatalf("loading the same file twice: %v", err)
	}
	write(t, bad, "timestamp,value\n2024-01-01 00:05:00,5\n2024-01-01 00:01:00,20\n")
	_, err = load.File(ctx, s, bad, load.Options{Labels: map[string]string{"f": "good"}})
	if err == nil || !strings.Contains(err.Error(), "load "+bad) {
		t.Fatalf("conflicting reload: got %v", err)
	}
	v, _, err = s.Query(ctx, `value`, time.Date(2024, 1, 1, 0, 5, 30, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if len(v) != 1 || v[0].Sample.V != 2 {
		t.Errorf("after a refused file: got %v, want the old value 2 at 00:01 still newest", v)
	}
}

func TestFileFormats(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t)
	ctx := context.Background()
	om := filepath.Join(dir, "h.om")
	write(t, om, "a 1 1704067200\n# EOF\n")
	if st, err := load.File(ctx, s, om, load.Options{}); err != nil || st.Samples != 1 {
		t.Errorf("%s: %+v, %v", om, st, err)
	}
	prom := filepath.Join(dir, "h.prom")
	write(t, prom, "b 1 1704067200000\n")
	if st, err := load.File(ctx, s, prom, load.Options{}); err != nil || st.Samples != 1 {
		t.Errorf("%s: %+v, %v", prom, st, err)
	}
	if _, err := load.File(ctx, s, filepath.Join(dir, "h.json"), load.Options{}); err == nil || !strings.Contains(err.Error(), "unknown format") {
		t.Errorf("json: %v", err)
	}
	if _, err := load.File(ctx, s, filepath.Join(dir, "missing.csv"), load.Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
}

func write(t testing.TB, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}
