package zookeeper_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/deploy/zookeeper"
	"github.com/immune-project/immune/internal/zktest"
)

// BenchmarkWatcherSync: a watcher starting on a tree of 200 running
// deploys with 3 groups and 2 self tests each lists and reads it all and
// delivers its 1 200 events: the cost of a start, and of a resync after
// a session expiry.
func BenchmarkWatcherSync(b *testing.B) {
	addr := zktest.Shared(b)
	layout := layoutAt(zktest.Root(b))
	wconn := dialB(b, addr)
	wc := writer{nil, wconn, layout}
	const deploys = 200
	for i := range deploys {
		svc := fmt.Sprintf("svc%d", i%5)
		id := fmt.Sprintf("d%d", i)
		mustB(b, wc.tryPut(layout.Deploy(svc, id), record(svc, id, deploy.StateRunning)))
		for n := range 3 {
			mustB(b, wc.tryPut(layout.Group(svc, id, n), deploy.GroupRecord{Group: n, StartedAt: t0}))
		}
		for _, inst := range []string{"a", "b"} {
			mustB(b, wc.tryPut(layout.SelfTests(svc, id)+"/"+inst, deploy.SelfTestRecord{Instance: inst, Passed: true, At: t0}))
		}
	}
	want := deploys * 6
	b.ResetTimer()
	for b.Loop() {
		conn := dialB(b, addr)
		w, err := zookeeper.New(conn, zookeeper.Options{Layout: layout})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		out := make(chan deploy.Event, 64)
		done := make(chan struct{})
		go func() { _ = w.Run(ctx, out); close(done) }()
		timeout := time.After(60 * time.Second)
		for got := 0; got < want; got++ {
			select {
			case <-out:
			case <-timeout:
				b.Fatalf("%d of %d events after 60 s", got, want)
			}
		}
		cancel()
		<-done
		conn.Close()
	}
	b.ReportMetric(float64(want), "events/op")
}
