// Command posagent is the terminal agent: `posagent run` starts it, `posagent version` says
// what it is.
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

	"github.com/posagent/posagent/agent"
	"github.com/posagent/posagent/agent/buildinfo"
	"github.com/posagent/posagent/agent/config"
	"github.com/posagent/posagent/agent/logging"

	// Boards register themselves.
	_ "github.com/posagent/posagent/board/generic"
	_ "github.com/posagent/posagent/board/profiles"
	_ "github.com/posagent/posagent/board/sim"
)

const usage = `usage: posagent <command> [flags]

commands:
  run       run the agent (flags: posagent run -h)
  launch    run the agent from its A/B update slots, with rollback (posagent launch -h)
  selftest  test the terminal's devices, with the agent stopped (same flags as run)
  ecr       act as a cash register on the terminal's ECR API (posagent ecr -h)
  diag      talk to a running agent's diagnostics port, as a technician (posagent diag -h)
  version   print version, commit, build date and target
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return runAgent(args[1:], stderr)
	case "launch":
		return launchCommand(args[1:], stderr)
	case "selftest":
		return selfTest(args[1:], stdout, stderr)
	case "ecr":
		return ecrCommand(args[1:], stdout, stderr)
	case "diag":
		return diagCommand(args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, buildinfo.String())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "posagent: unknown command %q\n%s", args[0], usage)
		return 2
	}
}

// loadConfig parses a subcommand's flags and loads the configuration. With ok false the
// subcommand returns code: 0 after -h, 2 for bad flags or configuration.
func loadConfig(name string, args []string, stderr io.Writer) (cfg *config.Config, code int, ok bool) {
	fs := flag.NewFlagSet("posagent "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg, err := config.FromArgs(args, fs)
	if errors.Is(err, flag.ErrHelp) {
		return nil, 0, false
	}
	if err != nil {
		fmt.Fprintln(stderr, "posagent:", err)
		return nil, 2, false
	}
	return cfg, 0, true
}

func runAgent(args []string, stderr io.Writer) int {
	cfg, code, ok := loadConfig("run", args, stderr)
	if !ok {
		return code
	}
	logs, err := logging.New(logging.Options{
		Level: cfg.LogLevel(), Format: cfg.Log.Format, File: cfg.LogFile(),
		MaxSize: int64(cfg.Log.MaxSize), Keep: cfg.Log.Keep, Stderr: stderr, Ring: logging.DefaultRingLines,
	})
	if err != nil {
		fmt.Fprintln(stderr, "posagent:", err)
		return 1
	}
	defer logs.Close()
	log := logs.Logger
	// The diagnostics port shows the newest lines and may change the level live.
	opts := agent.Options{Logger: log, Recent: logs.Recent, Level: logs}
	if cfg.LogFile() != "" {
		opts.Logs = logs
	}

	// SIGTERM/SIGINT end the context; the agent then stops its services in order and commits
	// what it holds before returning.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	err = agent.Run(ctx, cfg, opts)
	if errors.Is(err, agent.ErrRestart) {
		stop()
		logs.Close()
		return restart(stderr)
	}
	if err != nil {
		log.Error("agent failed", "err", err)
		return 1
	}
	return 0
}
