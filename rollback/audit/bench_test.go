package audit_test

import (
	"context"
	"encoding/json"
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
