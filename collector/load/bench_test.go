package load_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/immune-project/immune/collector/load"
)

// benchFile is a NAB file of 4032 rows (two weeks at 5 minutes).
var benchFile = filepath.Join(nabDir, "realAWSCloudwatch/ec2_cpu_utilization_5f5533.csv")

// BenchmarkLoadNAB loads one NAB file into the embedded store (read,
// parse, check, store in one transaction), each time as a new series.
//
//	go test -run '^$' -bench LoadNAB -cpu 1 ./collector/load/
func BenchmarkLoadNAB(b *testing.B) {
	if _, err := os.Stat(benchFile); err != nil {
		b.Skip(err)
	}
	s := openStore(b)
	ctx := context.Background()
	rows := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		st, err := load.File(ctx, s, benchFile, load.Options{Labels: map[string]string{"run": fmt.Sprint(i)}})
		if err != nil {
			b.Fatal(err)
		}
		rows = st.Samples
	}
	b.ReportMetric(float64(b.N*rows)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkCSV parses the same file without storing it.
func BenchmarkCSV(b *testing.B) {
	data, err := os.ReadFile(benchFile)
	if err != nil {
		b.Skip(err)
	}
	rows := 0
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		series, _, err := load.CSV("bench.csv", bytes.NewReader(data), load.Options{})
		if err != nil {
			b.Fatal(err)
		}
		rows = len(series[0].Samples)
	}
	b.ReportMetric(float64(b.N*rows)/b.Elapsed().Seconds(), "rows/s")
}
