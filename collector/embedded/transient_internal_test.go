package embedded

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/prometheus/prometheus/tsdb/chunks"

	"github.com/immune-project/immune/collector"
)

// The read error of a head chunk dropped by head compaction under a query
// is transient: repeated, then reported as unavailable, never as a bad
// query.
func TestTransient(t *testing.T) {
	err := fmt.Errorf("cannot populate chunk 41943041 from block 00000000000000000000000000: %w",
		&chunks.CorruptionErr{Dir: "/tmp/x/chunks_head", FileIndex: 0, Err: errors.New("head chunk file index 0 does not exist on disk")})
	if !transient(err) {
		t.Errorf("%v: not transient", err)
	}
	if !transient(errors.New("cannot populate chunk 8 from block 0000: not found")) {
		t.Error("the message alone: not transient")
	}
	if transient(errors.New("many-to-many matching not allowed")) {
		t.Error("an execution error is transient")
	}
	qerr := queryError(context.Background(), "up", err)
	if !errors.Is(qerr, collector.ErrUnavailable) || errors.Is(qerr, collector.ErrBadQuery) {
		t.Errorf("got %v, want unavailable", qerr)
	}
}
