package scrape

import (
	"testing"

	"github.com/prometheus/common/model"
)

// FuzzParse: any body in either format parses or fails with ErrParse,
// never panics, and every series it keeps carries the target's labels.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"a 1\nb{x=\"y\"} 2 1700000000000\n",
		"# TYPE a counter\na_total 1\na_created 1.7e9\n# EOF\n",
		"a{service=\"x\",exported_service=\"y\"} NaN\n",
		"# HELP a x\n# TYPE a histogram\na_bucket{le=\"+Inf\"} 1\na_sum 1\na_count 1\n",
		"{\"a.b\"} 1\n", "a{", "a 1 2 3\n", "",
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	o := newSettings(Options{SeriesLimit: 1000})
	f.Fuzz(func(t *testing.T, body []byte, om bool) {
		s := newScraper(Target{Address: "h:1", Labels: map[string]string{"service": "s", "instance": "i"}}, nil, o)
		s.iter = 1
		s.buf.Write(body)
		ct := textType
		if om {
			ct = omType
		}
		if _, err := s.parse(ct); err != nil {
			return
		}
		for _, p := range s.pending {
			if p.e.ls.Get("service") != "s" || p.e.ls.Get("instance") != "i" || p.e.ls.Get(model.MetricNameLabel) == "" {
				t.Fatalf("series %s lacks the target labels or a name", p.e.ls)
			}
		}
	})
}
