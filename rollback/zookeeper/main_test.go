package zookeeper_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/immune-project/immune/internal/zktest"
)

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
