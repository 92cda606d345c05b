// Command fleetsim runs a fleet of simulated payment terminals, each with the agent's real TMS
// link, outbox, command journal, configuration store and updater, against an MQTT broker, and
// measures what a fleet costs and survives: steady state, a reconnect storm after a broker
// restart, a partition of part of the fleet, a fleet-wide config push, an OTA rollout, and
// the idle traffic a terminal costs per month. See -h for the flags, and docs/fleet.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/posagent/posagent/internal/syncio"
)

// Exit statuses.
const (
	exitOK     = 0
	exitFailed = 1 // the run failed, or a scenario missed an invariant (see the report)
	exitUsage  = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv})
	stop()
	os.Exit(code)
}

// env is the process's surroundings, replaced in tests.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}

func run(ctx context.Context, args []string, e env) int {
	// Loggers, workers and the live line share stderr: whole lines only.
	e.stderr = syncio.NewWriter(e.stderr)
	if len(args) > 0 && args[0] == "render" {
		return runRender(args[1:], e.stdout, e.stderr)
	}
	cfg, err := parseFlags(args, e.getenv, e.stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case err != nil:
		fmt.Fprintf(e.stderr, "fleetsim: %v\n", err)
		return exitUsage
	}
	if cfg.Worker != "" {
		return runWorker(ctx, cfg.Worker, cfg.Verbose, e.stdin, e.stdout, e.stderr)
	}
	if cfg.WritePasswd != "" {
		if err := writePasswd(cfg); err != nil {
			fmt.Fprintf(e.stderr, "fleetsim: %v\n", err)
			return exitFailed
		}
		return exitOK
	}
	rep, err := simulate(ctx, cfg, e.stderr)
	if rep != nil && cfg.Report != "" {
		if werr := rep.write(cfg.Report, e.stdout); werr != nil {
			fmt.Fprintf(e.stderr, "fleetsim: %v\n", werr)
			return exitFailed
		}
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "fleetsim: %v\n", err)
		return exitFailed
	}
	if len(rep.Failures) > 0 {
		for _, f := range rep.Failures {
			fmt.Fprintf(e.stderr, "fleetsim: FAILED: %s\n", f)
		}
		return exitFailed
	}
	return exitOK
}
