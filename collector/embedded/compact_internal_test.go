package embedded

import (
	"testing"
	"time"

	"github.com/immune-project/immune/collector"
)

// A commit wakes the compactor only when the head can be compacted: every
// wake runs DB.Compact, which reads every block's meta.json.
func TestCompactSoonOnlyWhenHeadCompactable(t *testing.T) {
	s, err := Open(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Stop the compactor so that a wake stays in the channel.
	s.stopCompactor()
	<-s.compactorDone
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	write := func(ts ...time.Time) {
		t.Helper()
		ser := collector.Series{Labels: collector.Labels{collector.MetricName: "m"}}
		for _, at := range ts {
			ser.Samples = append(ser.Samples, collector.Sample{T: at, V: 1})
		}
		if err := s.Write(t.Context(), []collector.Series{ser}); err != nil {
			t.Fatal(err)
		}
	}
	write(t0, t0.Add(time.Minute))
	if len(s.compactc) != 0 {
		t.Error("a commit to a small head woke the compactor")
	}
	write(t0.Add(time.Duration(s.blockRange) * time.Millisecond * 2))
	if len(s.compactc) != 1 {
		t.Error("a commit to a compactable head did not wake the compactor")
	}
}
