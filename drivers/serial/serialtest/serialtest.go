// Package serialtest gives driver tests a real serial line in one call: a pseudo-terminal
// from board/sim/pty, opened through serial.Open exactly as the agent opens hardware, with
// the emulator's end for the test to play the device.
package serialtest

import (
	"testing"
	"time"

	"github.com/posagent/posagent/board/sim/pty"
	"github.com/posagent/posagent/drivers/serial"
)

// DefaultBaud is the rate Open uses when cfg leaves it 0. A pseudo-terminal carries bytes
// at any rate; it only matters to code that derives timings from it.
const DefaultBaud = 115200

// Line makes a pseudo-terminal line in a temporary directory, removed when the test ends.
// Unplug and Replug on it simulate the device going away and coming back.
func Line(t testing.TB) *pty.Line {
	t.Helper()
	l, err := pty.Open(t.TempDir(), "tty")
	if err != nil {
		t.Fatalf("serialtest: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// Open makes a line and opens its device end with cfg (Path is filled in; Baud defaults to
// DefaultBaud). The port is closed when the test ends; the emulator's end is
// line.Emulator().
func Open(t testing.TB, cfg serial.Config) (*pty.Line, serial.Port) {
	t.Helper()
	l := Line(t)
	p, err := serial.Open(Config(l, cfg))
	if err != nil {
		t.Fatalf("serialtest: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return l, p
}

// Config is cfg pointed at line, with DefaultBaud if cfg has no rate.
func Config(line *pty.Line, cfg serial.Config) serial.Config {
	cfg.Path, cfg.USB = line.Path(), nil
	if cfg.Baud == 0 {
		cfg.Baud = DefaultBaud
	}
	return cfg
}

// Reopen is Open for a reconnecting port: the test can Unplug and Replug the line and watch
// the events. Backoff is short (a few milliseconds) unless opts sets one.
func Reopen(t testing.TB, cfg serial.Config, opts serial.ReopenOptions) (*pty.Line, *serial.Reconnecting) {
	t.Helper()
	l := Line(t)
	if opts.Backoff == nil {
		opts.Backoff = func(int) time.Duration { return 5 * time.Millisecond }
	}
	r, err := serial.Reopen(t.Context(), Config(l, cfg), opts)
	if err != nil {
		t.Fatalf("serialtest: %v", err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return l, r
}
