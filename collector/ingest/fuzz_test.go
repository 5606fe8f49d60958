package ingest

import (
	"errors"
	"net/http"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/prometheus/model/labels"
)

// checkParsed holds what every parser guarantees: an error is a 4xx
// reason (never a storage error), and an accepted body gives series
// that pass the label checks, and samples of those series only.
func checkParsed(t *testing.T, p *pushParser, err error) {
	t.Helper()
	if err != nil {
		if _, code := classify(err); code/100 != 4 {
			t.Fatalf("error %v gives HTTP %d", err, code)
		}
		return
	}
	if err := p.b.sortAndDedupe(); err != nil && !errors.Is(err, ErrDuplicateSample) {
		t.Fatalf("dedupe: %v", err)
	}
	c := labelChecker{l: p.c.l}
	for _, ls := range p.b.series {
		c.reset()
		ls.Range(func(l labels.Label) { c.add(l.Name, l.Value) })
		if _, err := c.labels(); err != nil {
			t.Fatalf("accepted series fails the checks: %v", err)
		}
	}
	for _, f := range p.b.floats {
		if f.s < 0 || f.s >= len(p.b.series) {
			t.Fatalf("sample of series %d, of %d", f.s, len(p.b.series))
		}
	}
}

func newParser() *pushParser {
	l := Limits{}.withDefaults()
	return &pushParser{b: &batch{}, c: labelChecker{l: &l}, now: 1_700_000_000_000, index: map[uint64][]int{}}
}

func FuzzPushJSON(f *testing.F) {
	for _, s := range []string{
		`[{"name":"a","labels":{"b":"c"},"value":1,"timestamp":5}]`,
		`[{"labels":{"__name__":"a"},"value":"NaN","timestamp":"2024-01-01T00:00:00Z"}]`,
		`[]`, `[{"name":"a","value":1},{"name":"a","value":2}]`, `[{"name":"\u00e9","value":1e400}]`, `{`, `[{"name":1}]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p := newParser()
		checkParsed(t, p, p.parseJSON(body))
	})
}

func FuzzPushText(f *testing.F) {
	for _, s := range []string{
		"a 1\n", "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 2\nh_count 1\n", "# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum 1\ns_count 1\n",
		"a{b=\"c\"} 1 1000\n", "{\"utf.8\"} 3\n", "a{b=\"\\xff\"} 1\n", "a 1\na 2\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p := newParser()
		checkParsed(t, p, p.parseExposition(body, expfmt.FmtText))
		q := newParser()
		h := http.Header{}
		h.Set("Content-Type", "application/openmetrics-text; version=1.0.0")
		checkParsed(t, q, q.parseExposition(body, expfmt.ResponseFormat(h)))
	})
}
