package zookeeper

import (
	"errors"
	"strings"
	"testing"

	"github.com/immune-project/immune/deploy"
)

// FuzzDecode: no znode content makes a decoder panic; what a decoder
// accepts fits the znode's path, and what it refuses is ErrMalformed
// naming the path.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"id":"d1","service":"checkout","version":"v2","started_at":"2026-11-25T12:00:00Z","groups":[1,2],"state":"running"}`,
		`{"version":"v2","started_at":"2026-11-25T12:00:00Z"}`,
		`{"group":1,"instances":["a"],"started_at":"2026-11-25T12:00:00Z"}`,
		`{"instance":"i-1","passed":false,"at":"2026-11-25T12:00:00Z"}`,
		`{"groups":[0]}`, `[]`, `null`, `{`, ``,
	} {
		f.Add([]byte(s))
	}
	const p = "/deploys/checkout/d1"
	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(err error) {
			if err != nil && (!errors.Is(err, deploy.ErrMalformed) || !strings.Contains(err.Error(), p)) {
				t.Fatalf("error %v: want ErrMalformed naming %s", err, p)
			}
		}
		d, err := decodeDeploy(p, "checkout", "d1", data)
		check(err)
		if err == nil && (d.ID != "d1" || d.Service != "checkout" || d.Version == "" || d.StartedAt.IsZero()) {
			t.Fatalf("accepted %+v", d)
		}
		g, err := decodeGroup(p+"/groups/1", 1, data)
		check(err)
		if err == nil && g.Group != 1 {
			t.Fatalf("accepted group %d for groups/1", g.Group)
		}
		s, err := decodeSelfTest(p+"/selftest/i-1", "i-1", data)
		check(err)
		if err == nil && s.Instance != "i-1" {
			t.Fatalf("accepted instance %q for selftest/i-1", s.Instance)
		}
	})
}
