package promtest

import (
	"net/http"
	"testing"
)

// TestStartStoppable: the stop stops the server, and calling it again
// (and the test's cleanup) does nothing more.
func TestStartStoppable(t *testing.T) {
	url, stop := StartStoppable(t, "global:\n  scrape_interval: 1s\n")
	resp, err := http.Get(url + "/-/ready")
	if err != nil {
		t.Fatalf("started Prometheus: %v", err)
	}
	resp.Body.Close()
	stop()
	stop()
	if resp, err := http.Get(url + "/-/ready"); err == nil {
		resp.Body.Close()
		t.Fatal("Prometheus still answers after its stop")
	}
}
