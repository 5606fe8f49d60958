package ruletest

import (
	"fmt"
	"time"

	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"
)

// durationValue is a Prometheus duration (30s, 5m, 2h, 1d) in a test file.
type durationValue struct {
	d   time.Duration
	set bool
}

func (v *durationValue) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a duration such as 5m", n.Line)
	}
	d, err := parseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %v", n.Line, err)
	}
	if d <= 0 {
		return fmt.Errorf("line %d: duration %q must be positive", n.Line, n.Value)
	}
	v.d, v.set = d, true
	return nil
}

func parseDuration(s string) (time.Duration, error) {
	d, err := model.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	return time.Duration(d), nil
}
