package main

import (
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/immune-project/immune/collector/load"
)

// nabFiles returns the CSV files under dir, sorted.
func nabFiles(dir string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.EqualFold(filepath.Ext(path), ".csv") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("nab: %w", err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("nab: no CSV files under %s", dir)
	}
	slices.Sort(files)
	return files, nil
}

// fileInfo is what reading a file found, for the report's notes.
type fileInfo struct {
	Name       string
	Samples    int
	Step       time.Duration
	Irregular  int // intervals of the original timestamps other than Step
	Duplicates int // rows dropped by the loader (same timestamp twice)
}

// readNAB reads a NAB CSV with immune's own CSV loader (the one `immune
// backtest --data` uses: two rows at the same time keep the later one)
// and puts its samples on a regular clock.
//
// The clock's step Δ is the median interval between the file's
// timestamps; sample i is placed at first + i·Δ. The protocol counts in
// samples (deploys every L+W samples, windows of W samples), and so does
// the clock: each deploy has exactly L baseline and W window samples even
// where the original timestamps had gaps or jitter. Irregular records
// which intervals were not Δ.
func readNAB(dir, path string) (*series, fileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fileInfo{}, fmt.Errorf("nab: %w", err)
	}
	defer f.Close()
	ss, st, err := load.CSV(path, f, load.Options{})
	if err != nil {
		return nil, fileInfo{}, err
	}
	if len(ss) != 1 || len(ss[0].Samples) < 2 {
		return nil, fileInfo{}, fmt.Errorf("nab %s: want one series of at least two samples, got %d series", path, len(ss))
	}
	rel, err := filepath.Rel(dir, path)
	if err != nil {
		rel = filepath.Base(path)
	}
	name := strings.TrimSuffix(filepath.ToSlash(rel), filepath.Ext(rel))
	smp := ss[0].Samples
	gaps := make([]time.Duration, len(smp)-1)
	for i := range gaps {
		gaps[i] = smp[i+1].T.Sub(smp[i].T)
	}
	sorted := slices.Clone(gaps)
	slices.Sort(sorted)
	step := sorted[(len(sorted)-1)/2] // a real interval: the lower median
	s := &series{Name: name, Start: smp[0].T, Step: step, Values: make([]float64, len(smp)), Irregular: make([]bool, len(gaps))}
	info := fileInfo{Name: name, Samples: len(smp), Step: step, Duplicates: st.Duplicates}
	for i, p := range smp {
		s.Values[i] = p.V
	}
	for i, g := range gaps {
		if g != step {
			s.Irregular[i] = true
			info.Irregular++
		}
	}
	return s, info, nil
}

// gaussStart is the synthetic series' first timestamp, and gaussStep their
// interval.
var gaussStart = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

const gaussStep = 5 * time.Minute

// gaussSeries returns synthetic series i: n i.i.d. N(0, 1) values from a
// generator seeded by (seed, i), so the same arguments give the same
// series on every run.
func gaussSeries(seed uint64, i, n int) *series {
	r := rand.New(rand.NewPCG(seed, uint64(i)))
	s := &series{Name: fmt.Sprintf("gauss/%03d", i), Start: gaussStart, Step: gaussStep, Values: make([]float64, n)}
	for j := range s.Values {
		s.Values[j] = r.NormFloat64()
	}
	return s
}
