package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/immune-project/immune/internal/config"
	"github.com/immune-project/immune/rules"
)

const runUsage = `Usage: immune run [--config immune.yaml] [--listen ADDR] [--rules FILE|GLOB]... [--check] [flags]

Watches deploys, analyses each against its service's rule file, and pulls
the revert path when one hurts. With no config file it runs on embedded
defaults, on 127.0.0.1: the embedded metric store, the HTTP deploy and push
APIs, the Prometheus query API, the built-in annotations and the pages, and
the shadow trigger (decide and record, never revert).

SIGHUP reloads the rule files (they are also reloaded when they change); a
bad file keeps the rules in force. SIGTERM or SIGINT stops it cleanly
(exit 0). Every field of the config is in docs/configuration.md.

Flags:
`

func runRun(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("immune run", runUsage, stderr)
	cfgFile := fs.String("config", "", "the config file (default: embedded defaults)")
	listen := fs.String("listen", "", "the HTTP address, overriding the config's listen (default 127.0.0.1:9797)")
	dataDir := fs.String("data-dir", "", "the data directory, overriding the config's data_dir (default ./immune-data)")
	logLevel := fs.String("log.level", "", "debug, info, warn or error, overriding the config's log.level")
	logFormat := fs.String("log.format", "", "text or json, overriding the config's log.format")
	var rulePatterns stringList
	fs.Var(&rulePatterns, "rules", "a rule file or glob, added to the config's rules (repeatable)")
	check := fs.Bool("check", false, "check the config and its rule files, print what would run, and exit (0 ok, 2 not)")
	pos, code, done := parseFlags(fs, args)
	if done {
		return code
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "immune run: unexpected argument %q\n", pos[0])
		return exitUsage
	}
	var cfg *config.Config
	if *cfgFile != "" {
		c, err := config.Load(*cfgFile)
		if err != nil {
			fmt.Fprintf(stderr, "immune run: %v\n", err)
			return exitUsage
		}
		cfg = c
	} else {
		cfg = config.Default()
	}
	if *listen != "" {
		if _, _, err := net.SplitHostPort(*listen); err != nil {
			fmt.Fprintf(stderr, "immune run: --listen %q: want host:port\n", *listen)
			return exitUsage
		}
		if cfg.ExternalURL == "http://"+cfg.Listen {
			cfg.ExternalURL = "http://" + *listen
		}
		cfg.Listen = *listen
	}
	if *dataDir != "" {
		cfg.DataDir = *dataDir
	}
	if *logLevel != "" {
		cfg.Log.Level = *logLevel
	}
	if *logFormat != "" {
		cfg.Log.Format = *logFormat
	}
	log, err := newLogger(stderr, cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		fmt.Fprintf(stderr, "immune run: %v\n", err)
		return exitUsage
	}
	if *check {
		return checkRun(cfg, rulePatterns, stdout, stderr)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer func() {
		// No delivery after Stop returns: closing ends the goroutine below.
		signal.Stop(hup)
		close(hup)
	}()
	reload := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default:
			}
		}
	}()

	s, err := newServer(ctx, cfg, serverOptions{RulePatterns: rulePatterns, Log: log})
	if err != nil {
		fmt.Fprintf(stderr, "immune run: %v\n", err)
		return exitFail
	}
	defer s.Close()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		fmt.Fprintf(stderr, "immune run: listen: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(stdout, "immune %s: serving on http://%s (pages at %s/deploys)\n", version, ln.Addr(), cfg.ExternalURL)
	if err := s.Run(ctx, ln, reload); err != nil {
		fmt.Fprintf(stderr, "immune run: %v\n", err)
		return exitFail
	}
	log.Info("immune stopped")
	return exitOK
}

// checkRun checks a config and its rule files without starting anything.
func checkRun(cfg *config.Config, extra []string, stdout, stderr io.Writer) int {
	patterns := append(append([]string(nil), cfg.Rules...), extra...)
	n := 0
	if len(patterns) > 0 {
		set, errs := rules.LoadSet(patterns)
		if len(errs) > 0 {
			for _, err := range errs {
				fmt.Fprintf(stderr, "immune run: %v\n", err)
			}
			return exitUsage
		}
		n = len(set.Files())
	}
	zk := "no"
	if cfg.ZooKeeper != nil {
		zk = strings.Join(cfg.ZooKeeper.Servers, ",")
	}
	fmt.Fprintf(stdout, "ok: listen %s, metrics %s, zookeeper %s, trigger %s, %d rule files, data in %s\n",
		cfg.Listen, cfg.Metrics.Source, zk, cfg.Rollback.Trigger, n, cfg.DataDir)
	return exitOK
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", format)
}
