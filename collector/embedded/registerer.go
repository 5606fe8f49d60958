package embedded

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// registerer passes the TSDB's and the engine's metrics to the caller's
// Registerer, remembers them so that Close can take them back (a store
// reopened on the same Registerer registers afresh), and turns the
// engine's MustRegister panics into an error of Open.
type registerer struct {
	inner prometheus.Registerer

	mu   sync.Mutex
	cs   []prometheus.Collector
	errs []error
}

func (r *registerer) Register(c prometheus.Collector) error {
	if err := r.inner.Register(c); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cs = append(r.cs, c)
	return nil
}

func (r *registerer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			r.mu.Lock()
			r.errs = append(r.errs, err)
			r.mu.Unlock()
		}
	}
}

func (r *registerer) Unregister(c prometheus.Collector) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, have := range r.cs {
		if have == c {
			r.cs = append(r.cs[:i], r.cs[i+1:]...)
			break
		}
	}
	return r.inner.Unregister(c)
}

// err is what MustRegister could not register.
func (r *registerer) err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return errors.Join(r.errs...)
}

// unregisterAll takes back every metric still registered.
func (r *registerer) unregisterAll() {
	r.mu.Lock()
	cs := r.cs
	r.cs = nil
	r.mu.Unlock()
	for _, c := range cs {
		r.inner.Unregister(c)
	}
}
