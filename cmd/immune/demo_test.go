package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/immune-project/immune/annotator"
	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/sim"
)

// TestDemo runs `immune demo` at 5 times the speed: the good version is
// promoted with a pass, the bad one caught and reverted through the webhook.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo runs a fleet and immune for about 20 s: skipped under -short")
	}
	var out, errb bytes.Buffer
	code := run([]string{"demo", "--speed", "5", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir()}, &out, &errb)
	t.Log(out.String())
	if code != exitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, errb.String())
	}
	for _, want := range []string{
		"checkout-v2 verdict PASS",
		"checkout-v2-bad verdict FAIL",
		"fail: critical KPI conversion",
		"checkout-v2-bad revert pulled",
		"checkout-v2-bad reverted v2",
		"reverted through the webhook trigger",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the timeline lacks %q", want)
		}
	}
}

// TestDemoTimelineBlocks: a verdict's continuation lines stay under its
// head line while the manager prints from another goroutine (and, under
// -race, no write to the output goes around the lock).
func TestDemoTimelineBlocks(t *testing.T) {
	var out bytes.Buffer
	d := &demo{out: &out, clock: sim.NewClock(nil, 1)}
	d.start = d.clock.Now()
	const n = 2000
	var wg sync.WaitGroup
	wg.Add(2)
	start := make(chan struct{})
	go func() {
		defer wg.Done()
		<-start
		for i := range n {
			ev := annotator.Event{Kind: annotator.KindVerdict, Deploy: deploy.Deploy{ID: fmt.Sprintf("d%d", i)}, Verdict: "pass",
				Text: "pass: fine\nconversion: same\n\nerror_rate: same"}
			if err := (demoTimeline{d}).Annotate(context.Background(), ev); err != nil {
				t.Error(err)
			}
		}
	}()
	go func() {
		defer wg.Done()
		<-start
		for range n {
			d.say("manager: something")
		}
	}()
	close(start)
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != n*5 {
		t.Fatalf("%d lines, want %d", len(lines), n*5)
	}
	for i, l := range lines {
		if strings.Contains(l, "verdict PASS") {
			if i+3 >= len(lines) || lines[i+1] != "          pass: fine" || lines[i+2] != "          conversion: same" || lines[i+3] != "          error_rate: same" {
				t.Fatalf("verdict block cut at line %d:\n%s", i, strings.Join(lines[i:min(i+4, len(lines))], "\n"))
			}
		}
	}
}
