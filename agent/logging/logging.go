// Package logging builds the agent's logger: human-readable lines on standard error and a
// size-rotated JSON-lines file that the TMS can ask for (logs.upload), both behind a
// redacting layer that masks card numbers and drops secrets.
package logging

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"
)

// Options configure New.
type Options struct {
	Level  slog.Level
	Format string    // standard error format: "text" (default) or "json"
	Stderr io.Writer // default os.Stderr; io.Discard silences it
	// File is the JSON-lines log file; empty means no file.
	File    string
	MaxSize int64 // rotation size of File; default 1 MiB
	Keep    int   // rotated files kept besides File
	// Ring is how many recent lines to keep in memory for the diagnostics port (Recent);
	// 0 keeps none.
	Ring int
}

// Log is the agent's logger and the file behind it.
type Log struct {
	Logger *slog.Logger
	level  *slog.LevelVar
	file   *RotatingFile
	ring   *Ring
}

// ErrNoFile is returned by ReadRange when file logging is off.
var ErrNoFile = errors.New("logging: no log file configured")

// New builds the logger. The level can be changed later with SetLevel (config.apply).
func New(o Options) (*Log, error) {
	level := new(slog.LevelVar)
	level.Set(o.Level)
	hopts := &slog.HandlerOptions{Level: level}

	stderr := o.Stderr
	if stderr == nil {
		stderr = os.Stderr
	}
	var console slog.Handler
	switch o.Format {
	case "", "text":
		console = slog.NewTextHandler(stderr, hopts)
	case "json":
		console = slog.NewJSONHandler(stderr, hopts)
	default:
		return nil, fmt.Errorf("logging: unknown format %q (text or json)", o.Format)
	}

	l := &Log{level: level}
	h := console
	if o.Ring > 0 {
		l.ring = NewRing(o.Ring)
		h = slog.NewMultiHandler(h, l.ring.Handler(level))
	}
	if o.File != "" {
		maxSize := o.MaxSize
		if maxSize <= 0 {
			maxSize = 1 << 20
		}
		f, err := OpenRotating(o.File, maxSize, o.Keep)
		if err != nil {
			return nil, err
		}
		l.file = f
		h = slog.NewMultiHandler(h, slog.NewJSONHandler(f, hopts))
	}
	l.Logger = slog.New(NewRedactingHandler(h))
	return l, nil
}

// SetLevel changes the level of both outputs at once.
func (l *Log) SetLevel(level slog.Level) { l.level.Set(level) }

// Level is the current level.
func (l *Log) Level() slog.Level { return l.level.Level() }

// Recent returns at most n of the newest lines kept in memory (Options.Ring), oldest first,
// already redacted; nil when no ring is kept.
func (l *Log) Recent(n int) []string {
	if l.ring == nil {
		return nil
	}
	return l.ring.Recent(n)
}

// File is the rotating file, or nil when file logging is off.
func (l *Log) File() *RotatingFile { return l.file }

// ReadRange streams the file's lines in [from, to), oldest first; see RotatingFile.ReadRange.
// It returns ErrNoFile when file logging is off.
func (l *Log) ReadRange(from, to time.Time, fn func(line []byte) error) error {
	if l.file == nil {
		return ErrNoFile
	}
	return l.file.ReadRange(from, to, fn)
}

// Close closes the log file; the logger keeps writing to standard error afterwards.
// Closing twice is harmless.
func (l *Log) Close() error {
	if l.file == nil {
		return nil
	}
	return l.file.Close()
}

// ParseLevel parses "debug", "info", "warn" or "error" (case-insensitive).
func ParseLevel(s string) (slog.Level, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(strings.TrimSpace(s))); err != nil {
		return 0, fmt.Errorf("logging: level %q: want debug, info, warn or error", s)
	}
	return lv, nil
}
