// Package serial is how every serial device driver talks to its device: a small Port
// interface, errors that say "timed out" and "device gone" plainly, and Open, which finds a
// port by path or by USB identity.
//
// Drivers depend on Port only, never on a device file, so the same driver runs against real
// hardware, a device emulator on the other end of a pseudo-terminal (board/sim), or, in the
// innermost unit tests, a fake.
//
// Open sets a port up from a Config (go.bug.st/serial underneath); Reopen gives a
// Reconnecting port that outlives unplugs and reports them; serialtest opens a
// pseudo-terminal line as a Port for driver tests. After a port's own Close every call
// returns ErrClosed, which is not ErrGone.
package serial

import (
	"errors"
	"io"
	"time"
)

// Port is an open serial port.
//
// Read differs from go.bug.st/serial in one way that matters: when no byte arrives within the
// read timeout it returns ErrTimeout, never (0, nil), so io.ReadFull and friends cannot spin.
// A port whose device went away (unplugged, undocked, pseudo-terminal closed) returns errors
// that wrap ErrGone from then on.
type Port interface {
	io.ReadWriter
	// SetReadTimeout bounds each Read; 0 means wait forever.
	SetReadTimeout(d time.Duration) error
	// Drain waits until everything written has left the port.
	Drain() error
	// ResetInputBuffer discards bytes received but not read, to resynchronise after garbage.
	ResetInputBuffer() error
	Close() error
}

// ModemLines is implemented by ports with modem control lines. Pseudo-terminals have none,
// so drivers must treat it as optional.
type ModemLines interface {
	SetDTR(bool) error
	SetRTS(bool) error
	CTS() (bool, error)
}

var (
	// ErrTimeout is returned by Read when nothing arrived within the read timeout.
	ErrTimeout = errors.New("serial: read timed out")
	// ErrGone is wrapped by every error of a port whose device disappeared.
	ErrGone = errors.New("serial: device gone")
)

// IsGone reports whether err means the device disappeared (as opposed to a timeout or bad data).
func IsGone(err error) bool { return errors.Is(err, ErrGone) }
