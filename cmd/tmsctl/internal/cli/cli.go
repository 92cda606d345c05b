// Package cli implements the tmsctl subcommands. main only wires the process environment in,
// so every command runs in tests against a real broker with its output captured.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/posagent/posagent/internal/syncio"
)

// Exit statuses shared by the subcommands.
const (
	ExitOK      = 0 // done; for send: the command succeeded
	ExitFailed  = 1 // send: the command failed or was rejected
	ExitUsage   = 2 // bad usage, bad input, or no connection to the broker
	ExitTimeout = 3 // send: no final ack in time
)

// Env is what a command may touch of its process.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Getenv reads the environment (TMS_BROKER, TMS_PASSWORD).
	Getenv func(string) string
	// StderrTTY says stderr is a terminal, where progress is redrawn in place.
	StderrTTY bool
}

// OSEnv is the environment of this process.
func OSEnv() Env {
	return Env{
		Stdin:     os.Stdin,
		Stdout:    os.Stdout,
		Stderr:    os.Stderr,
		Getenv:    os.Getenv,
		StderrTTY: isTerminal(os.Stderr),
	}
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// runFunc runs a command with the arguments after its name and returns the exit status.
type runFunc = func(ctx context.Context, env Env, args []string) int

// Command is one subcommand.
type Command struct {
	Name    string
	Summary string // one line for the command list
	Run     runFunc
}

// Commands are the built-in subcommands. More (the embedded broker) are passed to Run by main.
func Commands() []Command {
	return []Command{
		{Name: "keygen", Summary: "create a command signing key pair", Run: runKeygen},
		{Name: "send", Summary: "sign and send a command, follow it to its final ack", Run: runSend},
		{Name: "watch", Summary: "print the uplink of terminals as JSON lines, checking seqs", Run: runWatch},
		{Name: "rollout", Summary: "send a command to many terminals at a pace, halting on failures", Run: runRollout},
		{Name: "license", Summary: "issue, show and send terminal licences", Run: runLicense},
		{Name: "keys", Summary: "wrap TR-31 key files, load them onto terminals, show key status", Run: runKeys},
		{Name: "release", Summary: "sign and show OTA release manifests", Run: runRelease},
		{Name: "serve", Summary: "serve files to terminals over MQTT (OTA block pull)", Run: runServe},
		{Name: "tech", Summary: "issue technician tokens for the diagnostics port", Run: runTech},
	}
}

// Run dispatches args (without the program name) to one of cmds and returns the exit status.
func Run(ctx context.Context, env Env, args []string, cmds []Command) int {
	// Commands write from several goroutines (watch handlers, the logger, progress).
	env.Stdout = syncio.NewWriter(env.Stdout)
	env.Stderr = syncio.NewWriter(env.Stderr)
	if len(args) == 0 {
		usage(env.Stderr, cmds)
		return ExitUsage
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help", "help":
		if len(args) > 1 {
			// "tmsctl help send" is "tmsctl send -h".
			return Run(ctx, env, []string{args[1], "-h"}, cmds)
		}
		usage(env.Stdout, cmds)
		return ExitOK
	}
	for _, c := range cmds {
		if c.Name == name {
			return c.Run(ctx, env, args[1:])
		}
	}
	fmt.Fprintf(env.Stderr, "tmsctl: unknown command %q\n\n", name)
	usage(env.Stderr, cmds)
	return ExitUsage
}

// dispatch runs the subcommand args[0] of the command group "tmsctl GROUP" (keys, license)
// from subs. help goes to stdout on -h, to stderr with the usage error of no or an unknown
// subcommand.
func dispatch(ctx context.Context, env Env, group, help string, args []string, subs map[string]runFunc) int {
	if len(args) == 0 {
		fmt.Fprint(env.Stderr, help)
		return ExitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(env.Stdout, help)
		return ExitOK
	}
	if run, ok := subs[args[0]]; ok {
		return run(ctx, env, args[1:])
	}
	fmt.Fprintf(env.Stderr, "tmsctl %s: unknown subcommand %q\n\n%s", group, args[0], help)
	return ExitUsage
}

// withoutCtx adapts a subcommand that needs no context to a runFunc.
func withoutCtx(run func(env Env, args []string) int) runFunc {
	return func(_ context.Context, env Env, args []string) int { return run(env, args) }
}

func usage(w io.Writer, cmds []Command) {
	fmt.Fprintln(w, "tmsctl is the TMS side of posagent: it signs and sends commands and watches uplink.")
	fmt.Fprintln(w, "\nUsage: tmsctl <command> [flags] [args]")
	fmt.Fprintln(w, "\nCommands:")
	for _, c := range cmds {
		fmt.Fprintf(w, "  %-8s %s\n", c.Name, c.Summary)
	}
	fmt.Fprintln(w, "\n\"tmsctl <command> -h\" describes a command and its flags.")
}

// newFlagSet makes a subcommand's flag set whose -h prints synopsis, description and flags.
func newFlagSet(env Env, name, synopsis, description string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: tmsctl %s %s\n\n%s\n\nFlags:\n", name, synopsis, strings.TrimSpace(description))
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args allowing flags after positional arguments ("send reboot --device X"),
// and returns the positional ones. ok is false when the command must stop with status.
func parseFlags(fs *flag.FlagSet, args []string) (pos []string, status int, ok bool) {
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, ExitOK, false
			}
			return nil, ExitUsage, false
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, 0, true
		}
		if rest[0] == "--" {
			return append(pos, rest[1:]...), 0, true
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// usageErr reports a usage problem the way flag does: message, then the command's help.
func usageErr(fs *flag.FlagSet, format string, args ...any) int {
	fmt.Fprintf(fs.Output(), "tmsctl %s: %s\n", fs.Name(), fmt.Sprintf(format, args...))
	fs.Usage()
	return ExitUsage
}

// failf prints an error of a command and returns status.
func failf(env Env, status int, format string, args ...any) int {
	fmt.Fprintf(env.Stderr, "tmsctl: "+format+"\n", args...)
	return status
}
