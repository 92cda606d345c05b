// Package board describes the terminal the agent runs on: who made it, its serial number and
// which devices it has, and keeps the registry of board profiles.
//
// Board packages register themselves from init (the way periph drivers do) and the binary
// picks the ones it ships with blank imports:
//
//	import _ "github.com/posagent/posagent/board/sim"
//
// This package knows nothing of the agent; the agent opens the board named in its
// configuration and reports Identity and Devices in its statistics.
package board

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"periph.io/x/conn/v3/gpio"
)

// Board is an opened board profile.
type Board interface {
	// Name is the name the board was registered under.
	Name() string
	Identity() Identity
	// Devices is the current state of every device the board has.
	Devices() []DeviceState
	// Profile says which port and line is which device. It is shared: do not modify it.
	Profile() Profile
	// Pin is the GPIO line of function (a Line… constant), opened on first use and
	// inverted where the profile says active-low, so High always means on or active. It is
	// ErrNoLine when the board has no such line.
	Pin(function string) (gpio.PinIO, error)
	Close() error
}

// ErrNoLine is returned by Board.Pin for a function the board has no line for.
var ErrNoLine = errors.New("board: no such GPIO line")

// Identity is what the TMS knows a terminal by.
type Identity struct {
	Vendor   string `cbor:"vendor,omitempty"`
	Model    string `cbor:"model,omitempty"`
	Serial   string `cbor:"serial,omitempty"`
	Revision string `cbor:"revision,omitempty"`
}

// DeviceState is one device as the statistics show it, e.g. {"paper", "sensor", "ok", ""}.
type DeviceState struct {
	Name   string `cbor:"name"`
	Kind   string `cbor:"kind"`
	State  string `cbor:"state"`
	Detail string `cbor:"detail,omitempty"`
}

// Device kinds and common states. Boards may use others where these do not fit.
const (
	KindSensor     = "sensor"
	KindPrinter    = "printer"
	KindPINPad     = "pinpad"
	KindCardReader = "cardreader"

	StateOK      = "ok"
	StateFault   = "fault"
	StateAbsent  = "absent"
	StateUnknown = "unknown"
)

// Options are handed to a board's open function.
type Options struct {
	// Serial overrides the serial number the board would find itself.
	Serial string
	// DataDir is the agent's data directory, for boards that keep state.
	DataDir string
	// Profile describes the devices of a board whose model has no built-in profile
	// ("linux-generic"): everything from the agent's configuration. Model boards ignore it.
	Profile *Profile
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Log is o.Logger or the default logger.
func (o Options) Log() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.Default()
}

// OpenFunc opens a board.
type OpenFunc func(Options) (Board, error)

var (
	mu       sync.RWMutex
	registry = map[string]OpenFunc{}
)

// Register makes a board available under name. It panics on an empty or duplicate name or a
// nil function: both are programming errors found at start-up.
func Register(name string, open OpenFunc) {
	if name == "" || strings.TrimSpace(name) != name || open == nil {
		panic(fmt.Sprintf("board: invalid registration %q", name))
	}
	mu.Lock()
	defer mu.Unlock()
	if _, dup := registry[name]; dup {
		panic(fmt.Sprintf("board: %q registered twice", name))
	}
	registry[name] = open
}

// ErrUnknown is returned by Open for a name nobody registered.
var ErrUnknown = errors.New("board: unknown board")

// Open opens the board registered as name.
func Open(name string, o Options) (Board, error) {
	mu.RLock()
	open, ok := registry[name]
	mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w %q (known: %s)", ErrUnknown, name, strings.Join(Names(), ", "))
	}
	b, err := open(o)
	if err != nil {
		return nil, fmt.Errorf("board %s: %w", name, err)
	}
	return b, nil
}

// Names lists the registered boards, sorted.
func Names() []string {
	mu.RLock()
	defer mu.RUnlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
