package rollback

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
)

// Shadow is the trigger of shadow mode: it decides and records (through
// Once, in the audit log), and never reverts.
type Shadow struct{}

var _ Trigger = Shadow{}

// Revert records nothing by itself and reverts nothing: Result.Shadow.
func (Shadow) Revert(ctx context.Context, req Request) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{Trigger: "shadow", ZKVersion: -1}, fmt.Errorf("shadow revert: %w", err)
	}
	if req.Deploy.ID == "" {
		return Result{Trigger: "shadow", ZKVersion: -1}, fmt.Errorf("shadow revert: %w: no deploy id", ErrBadRequest)
	}
	return Result{Trigger: "shadow", Shadow: true, ZKVersion: -1, Detail: "shadow mode: would revert"}, nil
}

// ShadowConfig says which deploys run in shadow mode: all of them, those
// of some services, or those judged by some rule files.
type ShadowConfig struct {
	All       bool
	Services  []string
	RuleFiles []string
}

// Shadowed reports whether req is in shadow mode.
func (c ShadowConfig) Shadowed(req Request) bool {
	return req.Shadow || c.All || slices.Contains(c.Services, req.Deploy.Service) ||
		(req.RuleFile != "" && slices.ContainsFunc(c.RuleFiles, func(f string) bool {
			return filepath.Clean(f) == filepath.Clean(req.RuleFile)
		}))
}

// Selector sends a request in shadow mode to Shadow, any other to Real.
type Selector struct {
	Real   Trigger
	Shadow Trigger // Shadow{} when nil
	Config ShadowConfig
}

var _ Trigger = (*Selector)(nil)

// Revert picks the trigger for req and calls it.
func (s *Selector) Revert(ctx context.Context, req Request) (Result, error) {
	if s.Config.Shadowed(req) {
		if s.Shadow == nil {
			return Shadow{}.Revert(ctx, req)
		}
		return s.Shadow.Revert(ctx, req)
	}
	return s.Real.Revert(ctx, req)
}
