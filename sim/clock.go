package sim

import (
	"sync"
	"time"
)

// Clock maps the wall clock to the simulated clock: from the moment it
// is created, simulated time runs speed times as fast as the wall clock.
// At speed 1 the two are the same.
type Clock struct {
	now   func() time.Time
	speed float64
	once  sync.Once
	wall0 time.Time
}

// NewClock returns a clock running at speed (values <= 0 mean 1) over
// the wall clock now (time.Now when nil). The origin is the first call of
// Now.
func NewClock(now func() time.Time, speed float64) *Clock {
	if now == nil {
		now = time.Now
	}
	if speed <= 0 {
		speed = 1
	}
	return &Clock{now: now, speed: speed}
}

// Speed is how many simulated seconds pass per wall-clock second.
func (c *Clock) Speed() float64 { return c.speed }

// Wall is the wall clock's time.
func (c *Clock) Wall() time.Time { return c.now() }

// Now is the simulated time: the origin plus speed times the wall-clock
// time elapsed since.
func (c *Clock) Now() time.Time {
	w := c.now()
	c.once.Do(func() { c.wall0 = w })
	return c.wall0.Add(time.Duration(float64(w.Sub(c.wall0)) * c.speed))
}
