package collector_test

import (
	"errors"
	"testing"
	"time"

	"github.com/immune-project/immune/collector"
)

func TestLabelsString(t *testing.T) {
	for _, tc := range []struct {
		l    collector.Labels
		want string
	}{
		{collector.Labels{}, "{}"},
		{collector.Labels{"__name__": "up"}, "up{}"},
		{collector.Labels{"__name__": "up", "job": "a", "instance": "x:1"}, `up{instance="x:1", job="a"}`},
		{collector.Labels{"b": `q"uote`, "a": "1"}, `{a="1", b="q\"uote"}`},
	} {
		if got := tc.l.String(); got != tc.want {
			t.Errorf("got %s, want %s", got, tc.want)
		}
	}
}

func TestLabelsEqualCompare(t *testing.T) {
	a := collector.Labels{"__name__": "up", "job": "a"}
	b := collector.Labels{"__name__": "up", "job": "a", "empty": ""}
	c := collector.Labels{"__name__": "up", "job": "b"}
	d := collector.Labels{"__name__": "up", "job": "a", "zone": "z"}
	if !a.Equal(b) || !b.Equal(a) || a.Compare(b) != 0 {
		t.Error("an empty label is no label")
	}
	if a.Equal(c) || a.Compare(c) >= 0 || c.Compare(a) <= 0 {
		t.Error("job a sorts before job b")
	}
	if a.Equal(d) || a.Compare(d) >= 0 {
		t.Error("a prefix sorts first")
	}
	// As Prometheus: by label name first ("Z" < "__name__" < "a").
	e := collector.Labels{"Z": "1", "__name__": "zzz"}
	if e.Compare(a) >= 0 {
		t.Error(`{Z="1"} sorts before {__name__=…}`)
	}
}

func TestCheckRange(t *testing.T) {
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		start, end time.Time
		step       time.Duration
		ok         bool
	}{
		{t0, t0, time.Minute, true},
		{t0, t0.Add(time.Hour), time.Minute, true},
		{t0, t0.Add(11000 * time.Second), time.Second, true},
		{t0, t0.Add(11001 * time.Second), time.Second, false},
		{t0, t0.Add(-time.Second), time.Minute, false},
		{t0, t0, 0, false},
		{t0, t0, -time.Minute, false},
	} {
		err := collector.CheckRange(tc.start, tc.end, tc.step)
		if (err == nil) != tc.ok || err != nil && !errors.Is(err, collector.ErrBadQuery) {
			t.Errorf("%v–%v step %v: got %v", tc.start, tc.end, tc.step, err)
		}
	}
}
