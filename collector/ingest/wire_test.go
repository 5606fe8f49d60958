package ingest

import (
	"errors"
	"math"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
)

func seedRequests() []*prompb.WriteRequest {
	return []*prompb.WriteRequest{
		{Timeseries: []prompb.TimeSeries{
			{Labels: []prompb.Label{{Name: "__name__", Value: "a"}, {Name: "b", Value: "c"}}, Samples: []prompb.Sample{{Value: 1, Timestamp: 5}, {Value: math.NaN(), Timestamp: -7}}},
			{Labels: []prompb.Label{{Name: "b", Value: ""}, {Name: "__name__", Value: "z"}},
				Exemplars: []prompb.Exemplar{{Labels: []prompb.Label{{Name: "trace_id", Value: "x"}}, Value: 1, Timestamp: 5}}},
		}, Metadata: []prompb.MetricMetadata{{MetricFamilyName: "a", Help: "h"}}},
		{Timeseries: []prompb.TimeSeries{{Labels: []prompb.Label{{Name: "b", Value: "c"}}, Samples: []prompb.Sample{{Value: 1}}}}},
		{Timeseries: []prompb.TimeSeries{{Labels: []prompb.Label{{Name: "__name__", Value: "h"}},
			Histograms: []prompb.Histogram{{Count: &prompb.Histogram_CountInt{CountInt: 1}, Timestamp: 3}}}}},
	}
}

func decodeBoth(t *testing.T, data []byte) {
	l := Limits{}.withDefaults()
	r := &Receiver{limits: l}
	var gogo, wire batch
	gerr := r.decodeV1(data, &gogo)
	werr := r.decodeV1Wire(data, &wire)
	if errors.Is(werr, errFallback) || errors.Is(werr, ErrParse) {
		// serveWrite asks the generated decoder then.
		return
	}
	switch {
	case gerr != nil && werr == nil:
		t.Fatalf("wire decoder takes it, generated decoder says %v", gerr)
	case werr != nil:
		if gerr == nil || gerr.Error() != werr.Error() {
			t.Fatalf("generated: %v; wire: %v", gerr, werr)
		}
		if gogo.samples() != wire.samples() {
			t.Fatalf("refused samples: generated %d, wire %d", gogo.samples(), wire.samples())
		}
		return
	}
	if len(gogo.series) != len(wire.series) || len(gogo.floats) != len(wire.floats) {
		t.Fatalf("generated %d series %d samples, wire %d %d", len(gogo.series), len(gogo.floats), len(wire.series), len(wire.floats))
	}
	for i := range gogo.series {
		if !labels.Equal(gogo.series[i], wire.series[i]) {
			t.Fatalf("series %d: %s vs %s", i, gogo.series[i], wire.series[i])
		}
	}
	for i := range gogo.floats {
		g, w := gogo.floats[i], wire.floats[i]
		if g.s != w.s || g.t != w.t || math.Float64bits(g.v) != math.Float64bits(w.v) {
			t.Fatalf("sample %d: %+v vs %+v", i, g, w)
		}
	}

	// Again through the series cache, filled from the first decoding:
	// the same batch, with the cached references.
	r.cache = newSeriesCache(0)
	for i := range wire.refs {
		wire.refs[i] = storage.SeriesRef(i + 1)
	}
	r.cache.put(&wire)
	var again batch
	if err := r.decodeV1Wire(data, &again); err != nil {
		t.Fatalf("through the cache: %v", err)
	}
	if len(again.series) != len(gogo.series) || len(again.floats) != len(gogo.floats) {
		t.Fatalf("through the cache: %d series %d samples, want %d %d", len(again.series), len(again.floats), len(gogo.series), len(gogo.floats))
	}
	for i := range gogo.series {
		if !labels.Equal(gogo.series[i], again.series[i]) {
			t.Fatalf("through the cache, series %d: %s vs %s", i, gogo.series[i], again.series[i])
		}
		if ref := again.refs[i]; ref != 0 && (int(ref) < 1 || !labels.Equal(wire.series[ref-1], again.series[i])) {
			t.Fatalf("series %d: cached reference %d of another series", i, ref)
		}
	}
	for i := range gogo.floats {
		if g, w := gogo.floats[i], again.floats[i]; g.s != w.s || g.t != w.t || math.Float64bits(g.v) != math.Float64bits(w.v) {
			t.Fatalf("through the cache, sample %d: %+v vs %+v", i, g, w)
		}
	}
}

// Whatever the wire decoder decides (a request, or a refusal for its
// labels), the generated decoder decides the same; what it cannot decode
// is left to the generated one.
func FuzzDecodeV1(f *testing.F) {
	for _, r := range seedRequests() {
		b, err := r.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x0a, 0x02, 0x08, 0x01})
	f.Fuzz(decodeBoth)
}

// The label sets the wire decoder builds do not share the request's
// memory, which goes back to a pool.
func TestDecodedLabelsOwnTheirMemory(t *testing.T) {
	data, err := seedRequests()[0].Marshal()
	if err != nil {
		t.Fatal(err)
	}
	r := &Receiver{limits: Limits{}.withDefaults()}
	var b batch
	if err := r.decodeV1Wire(data, &b); err != nil {
		t.Fatal(err)
	}
	clear(data)
	if got := b.series[0].String(); got != `{__name__="a", b="c"}` {
		t.Errorf("got %s after the buffer was cleared", got)
	}
}
