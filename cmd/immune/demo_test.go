package main

import (
	"bytes"
	"strings"
	"testing"
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
