package ingest

import (
	"sync"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
)

// DefaultSeriesCacheSize is the number of series the remote-write
// receiver remembers by default.
const DefaultSeriesCacheSize = 100_000

// seriesCache remembers, for the protobuf bytes of a remote-write series'
// labels, the checked label set and the store's reference to the series,
// as Prometheus's scrape cache does for exposition lines: a series sent
// again (every scrape interval) is neither decoded, nor checked, nor
// looked up again. A reference the store no longer knows (the series was
// dropped from the head) is looked up by the labels: the store's
// references never name another series.
type seriesCache struct {
	mu  sync.RWMutex // held for reading while a request is decoded
	m   map[string]cached
	max int
}

type cached struct {
	ls  labels.Labels
	ref storage.SeriesRef
}

func newSeriesCache(size int) *seriesCache {
	switch {
	case size < 0:
		return nil
	case size == 0:
		size = DefaultSeriesCacheSize
	}
	return &seriesCache{m: map[string]cached{}, max: size}
}

// put remembers the batch's new series after its commit. A full cache is
// emptied first: the series sent since fill it again.
func (c *seriesCache) put(b *batch) {
	n := 0
	for _, k := range b.keys {
		if k != "" {
			n++
		}
	}
	if n == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m)+n > c.max {
		clear(c.m)
	}
	for i, k := range b.keys {
		if k != "" && len(c.m) < c.max {
			c.m[k] = cached{ls: b.series[i], ref: b.refs[i]}
		}
	}
}

func (c *seriesCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
