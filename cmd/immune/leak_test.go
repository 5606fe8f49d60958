package main

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/immune-project/immune/internal/zktest"
)

// TestMain checks that no test of the binary leaves a goroutine behind:
// immune run and immune demo start servers, scrapers and analyses, and
// must stop them all.
func TestMain(m *testing.M) {
	code := m.Run()
	zktest.StopShared()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			println("goleak:", err.Error())
			code = 1
		}
	}
	os.Exit(code)
}
