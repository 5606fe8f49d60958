package audit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/immune-project/immune/rollback/audit"
)

// BenchmarkAppend: one record written and fsynced, as every decision
// and trigger call does.
func BenchmarkAppend(b *testing.B) {
	l, err := audit.Open(filepath.Join(b.TempDir(), "audit.jsonl"), audit.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	r := audit.Record{Time: t0, Kind: audit.KindRevert, DeployID: "checkout-20261125-1200", Service: "checkout",
		Version: "v2", Trigger: "zookeeper", Result: audit.ResultReverted, Attempts: 1,
		Evidence: json.RawMessage(`{"kpis":[{"name":"conversion","p":0.0004,"effect":-0.12}]}`)}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := l.Append(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpen: reading back a log of 10 000 records at start.
func BenchmarkOpen(b *testing.B) {
	path := filepath.Join(b.TempDir(), "audit.jsonl")
	l, err := audit.Open(path, audit.Options{})
	if err != nil {
		b.Fatal(err)
	}
	var data []byte
	r := audit.Record{Time: t0, Kind: audit.KindDecision, DeployID: "d", Service: "checkout", Verdict: "pass",
		Evidence: json.RawMessage(`{"kpis":[{"name":"conversion","p":0.4}]}`)}
	line, _ := json.Marshal(r)
	for range 10000 {
		data = append(append(data, line...), '\n')
	}
	l.Close()
	if err := writeFile(path, data); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		l, err := audit.Open(path, audit.Options{})
		if err != nil {
			b.Fatal(err)
		}
		l.Close()
	}
}

// BenchmarkLookup: a deploy's decisions and revert looked up in a log of
// 100 000 records of 10 000 deploys (a year of a busy fleet), as an
// analysis does when it starts or resumes.
func BenchmarkLookup(b *testing.B) {
	path := filepath.Join(b.TempDir(), "audit.jsonl")
	var data []byte
	for i := range 100000 {
		r := audit.Record{Time: t0, Kind: audit.KindDecision, DeployID: fmt.Sprintf("d%d", i%10000), Service: "checkout", Verdict: "pass"}
		line, _ := json.Marshal(r)
		data = append(append(data, line...), '\n')
	}
	if err := writeFile(path, data); err != nil {
		b.Fatal(err)
	}
	l, err := audit.Open(path, audit.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	i := 0
	for b.Loop() {
		id := fmt.Sprintf("d%d", i%10000)
		if len(l.Decisions(id)) != 10 {
			b.Fatal("not 10 decisions")
		}
		if _, ok := l.Reverted(id); ok {
			b.Fatal("reverted")
		}
		i++
	}
}
