// Package triggers builds immune run's revert path from its
// configuration: the trigger (zookeeper, webhook or command), shadow
// mode per service and rule file in front of it, and Once with the audit
// log around both, so that every decision handed to it is recorded and a
// deploy is reverted at most once, across restarts.
package triggers

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/immune-project/immune/rollback"
	"github.com/immune-project/immune/rollback/audit"
	"github.com/immune-project/immune/rollback/command"
	"github.com/immune-project/immune/rollback/webhook"
	"github.com/immune-project/immune/rollback/zookeeper"
)

// Kinds of trigger.
const (
	ZooKeeper = zookeeper.Name
	Webhook   = webhook.Name
	Command   = command.Name
	Shadow    = "shadow" // every deploy in shadow mode
)

// Config is the `rollback:` section of immune run's configuration:
//
//	rollback:
//	  trigger: webhook            # zookeeper | webhook | command | shadow
//	  audit_log: /var/lib/immune/audit.jsonl
//	  webhook:
//	    url: https://deploy.example/api/revert
//	    auth_file: /etc/immune/revert-token
//	  shadow:
//	    services: [search]
//	    rule_files: [experimental.yaml]
type Config struct {
	Trigger   string                `yaml:"trigger"`
	AuditLog  string                `yaml:"audit_log"`
	ZooKeeper zookeeper.Config      `yaml:"zookeeper"`
	Webhook   *webhook.Config       `yaml:"webhook"`
	Command   *command.Config       `yaml:"command"`
	Shadow    rollback.ShadowConfig `yaml:"shadow"`
}

// Validate reports every bad field, each naming its place in the file
// (rollback.…).
func (c Config) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("rollback.%w", err))
		}
	}
	if c.AuditLog == "" {
		add(errors.New("audit_log: the audit log's path is required (it is how a restart knows what was reverted)"))
	}
	switch c.Trigger {
	case ZooKeeper, Shadow:
	case Webhook:
		if c.Webhook == nil {
			add(errors.New("webhook: trigger is webhook but there is no webhook section"))
		}
	case Command:
		if c.Command == nil {
			add(errors.New("command: trigger is command but there is no command section"))
		}
	case "":
		add(errors.New("trigger: missing: want zookeeper, webhook, command or shadow"))
	default:
		add(fmt.Errorf("trigger: %q: want zookeeper, webhook, command or shadow", c.Trigger))
	}
	if c.Webhook != nil {
		add(c.Webhook.Validate())
	}
	if c.Command != nil {
		add(c.Command.Validate())
	}
	add(c.ZooKeeper.Validate())
	add(c.Shadow.Validate())
	return errors.Join(errs...)
}

// Deps are what New needs besides the configuration.
type Deps struct {
	// Owners is the ZooKeeper ownership, required by the zookeeper trigger.
	Owners *zookeeper.Owners
	// Logger, Metrics and Now are handed to the pieces; all optional.
	Logger  *slog.Logger
	Metrics *rollback.Metrics
	Now     func() time.Time
}

// Path is the revert path built by New.
type Path struct {
	// Trigger is what the analysis calls: Once(Selector(trigger)).
	Trigger *rollback.OnceTrigger
	// Gate writes the rollout gate's verdicts (zookeeper only, else nil),
	// recorded in the audit log.
	Gate rollback.Gate
	// Log is the audit log, open; Close closes it.
	Log *audit.Log
}

// Close closes the audit log.
func (p *Path) Close() error { return p.Log.Close() }

// New validates cfg, opens the audit log and builds the revert path.
func New(cfg Config, deps Deps) (*Path, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var (
		real rollback.Trigger
		gate rollback.Gate
		err  error
	)
	switch cfg.Trigger {
	case ZooKeeper:
		if deps.Owners == nil {
			return nil, errors.New("rollback.trigger zookeeper: needs a ZooKeeper connection (zookeeper.servers)")
		}
		zt := zookeeper.NewTrigger(deps.Owners)
		real, gate = zt, zt
	case Webhook:
		real, err = webhook.New(*cfg.Webhook, webhook.Options{Logger: deps.Logger, Metrics: deps.Metrics})
	case Command:
		real, err = command.New(*cfg.Command, command.Options{Logger: deps.Logger, Metrics: deps.Metrics})
	case Shadow:
		cfg.Shadow.All = true
	}
	if err != nil {
		return nil, err
	}
	log, err := audit.Open(cfg.AuditLog, audit.Options{Logger: deps.Logger})
	if err != nil {
		return nil, err
	}
	sel := &rollback.Selector{Real: real, Config: cfg.Shadow}
	if real == nil {
		sel.Real = rollback.Shadow{}
	}
	p := &Path{
		Trigger: rollback.Once(sel, log, rollback.OnceOptions{Name: cfg.Trigger, Now: deps.Now, Logger: deps.Logger, Metrics: deps.Metrics}),
		Log:     log,
	}
	if gate != nil {
		p.Gate = rollback.AuditGate(gate, log, deps.Now)
	}
	return p, nil
}
