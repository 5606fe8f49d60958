package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/deploy/httpapi"
)

// BenchmarkPostDeploy: POST /api/v1/deploys through the handler, with
// the record appended to the log and fsynced before the answer.
func BenchmarkPostDeploy(b *testing.B) {
	api, err := httpapi.New(httpapi.Options{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer api.Close()
	mux := http.NewServeMux()
	api.Register(mux)
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan deploy.Event, 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		go func() {
			for range out {
			}
		}()
		_ = api.Run(ctx, out)
		close(out)
	}()
	i := 0
	for b.Loop() {
		i++
		body := fmt.Sprintf(`{"id":"d%d","service":"checkout","version":"v2","previous_version":"v1","groups":[1,2,4]}`, i)
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("POST", "/api/v1/deploys", strings.NewReader(body)))
		if rec.Code != http.StatusCreated {
			b.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
	cancel()
	<-done
}
