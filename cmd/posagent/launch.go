package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/posagent/posagent/ota/slots"
)

const launchUsage = `usage: posagent launch [--slots DIR] [--max-backoff 30s] -- <agent arguments>

Runs the agent from the A/B slot the boot state in DIR names (DIR/boot.cbor; the launcher's own
binary when no update was committed), judges trial boots of an update and rolls back those that
crash or do not commit within their deadline. The service manager starts this, from the
binary's fixed path, instead of "posagent run", e.g.

  posagent launch --slots /data/posagent/slots -- run --config /etc/posagent.toml

DIR is <data_dir>/slots of the agent's configuration; --slots may be left out when the
environment variable POSAGENT_SLOTS gives it. SIGTERM or SIGINT stops the agent (SIGTERM
forwarded) and then the launcher, with exit code 0.

flags:
`

// launchCommand is `posagent launch`. It deliberately reads no agent configuration and
// touches nothing of the agent but the slots directory: it is the code that must still work
// when an update broke everything else.
func launchCommand(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("posagent launch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, launchUsage)
		fs.PrintDefaults()
	}
	dir := fs.String("slots", os.Getenv("POSAGENT_SLOTS"), "the slots directory, <data_dir>/slots (default $POSAGENT_SLOTS)")
	maxBackoff := fs.Duration("max-backoff", 30*time.Second, "longest wait before restarting an agent that keeps exiting")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	agentArgs := fs.Args()
	if *dir == "" {
		fmt.Fprintln(stderr, "posagent launch: --slots (or POSAGENT_SLOTS) is required")
		return 2
	}
	if len(agentArgs) == 0 {
		fmt.Fprintln(stderr, "posagent launch: no agent arguments (e.g. -- run --config FILE)")
		return 2
	}
	if *maxBackoff < time.Second {
		fmt.Fprintln(stderr, "posagent launch: --max-backoff must be at least 1s")
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	s, err := slots.Open(*dir)
	if err != nil {
		fmt.Fprintln(stderr, "posagent launch:", err)
		return 1
	}
	s.Logger = log
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stderr, "posagent launch: own binary:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	l := &slots.Launcher{Slots: s, Factory: exe, Args: agentArgs, MaxBackoff: *maxBackoff, Logger: log}
	if err := l.Run(ctx); err != nil {
		fmt.Fprintln(stderr, "posagent launch:", err)
		return 1
	}
	return 0
}

// restart is the agent's clean restart after agent.ErrRestart. Under the launcher it exits
// with slots.ExitRestart, so that the launcher boots what the slot state now says (a trial just
// started, a commit, a rollback); without one it re-executes the same binary in place (same
// pid under a service manager). Everything durable was committed before.
func restart(stderr io.Writer) int {
	if _, under := slots.Current(); under {
		return slots.ExitRestart
	}
	exe, err := os.Executable()
	if err == nil {
		err = syscall.Exec(exe, os.Args, os.Environ())
	}
	fmt.Fprintln(stderr, "posagent: restart failed:", err)
	return 1
}
