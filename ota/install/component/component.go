// Package component installs an OTA system component (secure-processor firmware, a vendor
// service) with the board profile's installer command (board.Profile.Installer).
//
// The command is run directly, never through a shell: the placeholders are replaced inside
// each argument, so a file name with spaces or quotes stays one argument.
package component

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Placeholders replaced in every argument after the program.
const (
	PlaceholderFile    = "{file}"
	PlaceholderName    = "{name}"
	PlaceholderVersion = "{version}"
)

// DefaultTimeout bounds one installer run when Hook.Timeout is zero. Firmware writes to a
// secure processor are slow, but a hook that never ends must not hold the update forever.
const DefaultTimeout = 10 * time.Minute

// MaxOutput is how much of the installer's combined output (its end) is kept for the error.
const MaxOutput = 4 << 10

// ErrNoInstaller is returned when the model's profile names no installer.
var ErrNoInstaller = errors.New("component: this model has no system component installer")

// HookError is an installer run that did not succeed: it exited non-zero, was killed, or
// did not finish within its timeout.
type HookError struct {
	Program  string
	ExitCode int    // -1 when killed by a signal (the timeout included)
	TimedOut bool   // the run exceeded Hook.Timeout and was killed
	Output   string // the last MaxOutput bytes of stdout and stderr, interleaved
	Err      error  // the underlying cause (an *exec.ExitError, context.DeadlineExceeded, …)
}

func (e *HookError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "component: installer %s", e.Program)
	switch {
	case e.TimedOut:
		b.WriteString(" timed out")
	case e.ExitCode >= 0:
		fmt.Fprintf(&b, " exited with status %d", e.ExitCode)
	default:
		fmt.Fprintf(&b, " failed: %v", e.Err)
	}
	if out := strings.TrimSpace(e.Output); out != "" {
		b.WriteString(": ")
		b.WriteString(out)
	}
	return b.String()
}

func (e *HookError) Unwrap() error { return e.Err }

// Hook is the installer command of a board model.
type Hook struct {
	// Argv is the profile's installer: the program, then arguments with placeholders.
	Argv []string
	// Timeout bounds one run (default DefaultTimeout).
	Timeout time.Duration
	// Env is added to the agent's environment for the run ("KEY=value").
	Env    []string
	Logger *slog.Logger
}

// Command returns the command line for installing file as component name at version. The
// program (Argv[0]) is taken literally; placeholders are replaced in one pass, so a value
// that itself contains a placeholder is not expanded again.
func (h Hook) Command(file, name, version string) ([]string, error) {
	if len(h.Argv) == 0 || h.Argv[0] == "" {
		return nil, ErrNoInstaller
	}
	r := strings.NewReplacer(PlaceholderFile, file, PlaceholderName, name, PlaceholderVersion, version)
	argv := make([]string, len(h.Argv))
	argv[0] = h.Argv[0]
	for i, a := range h.Argv[1:] {
		argv[i+1] = r.Replace(a)
	}
	return argv, nil
}

// Install runs the installer for file and returns nil when it exits with status 0. A failed
// run is a *HookError; the end of ctx (not the timeout) is returned as ctx's error, wrapped.
func (h Hook) Install(ctx context.Context, file, name, version string) error {
	argv, err := h.Command(file, name, version)
	if err != nil {
		return err
	}
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	log := h.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "ota.component", "name", name, "version", version)

	runCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out := &tail{max: MaxOutput}
	cmd := exec.CommandContext(runCtx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = out, out
	if len(h.Env) > 0 {
		cmd.Env = append(os.Environ(), h.Env...)
	}
	killGroup(cmd)
	// A grandchild that keeps the output pipe open must not keep Wait waiting after a kill.
	cmd.WaitDelay = 5 * time.Second

	start := time.Now()
	log.Info("running system component installer", "program", argv[0])
	err = cmd.Run()
	if err == nil {
		log.Info("system component installed", "took", time.Since(start).Round(time.Millisecond))
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("component: installer %s: %w", argv[0], ctx.Err())
	}
	he := &HookError{Program: argv[0], ExitCode: -1, Output: out.String(), Err: err}
	var exit *exec.ExitError
	switch {
	case runCtx.Err() != nil:
		he.TimedOut, he.Err = true, fmt.Errorf("%w after %s: %w", context.DeadlineExceeded, timeout, err)
	case errors.As(err, &exit):
		he.ExitCode = exit.ExitCode()
	}
	log.Warn("system component installer failed", "exit", he.ExitCode, "timedOut", he.TimedOut)
	return he
}

// tail keeps the last max bytes written to it. exec calls Write from one goroutine at a time
// when Stdout and Stderr are the same writer.
type tail struct {
	max int
	buf []byte
	cut bool
}

func (t *tail) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) >= t.max {
		t.buf = append(t.buf[:0], p[len(p)-t.max:]...)
		t.cut = true
		return n, nil
	}
	if over := len(t.buf) + len(p) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
		t.cut = true
	}
	t.buf = append(t.buf, p...)
	return n, nil
}

func (t *tail) String() string {
	s := strings.ToValidUTF8(string(t.buf), "")
	if t.cut {
		return "…" + s
	}
	return s
}
