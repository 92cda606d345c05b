package cardreader

import (
	"errors"
	"fmt"

	"github.com/posagent/posagent/drivers/cardreader/wire"
	"github.com/posagent/posagent/drivers/serial"
)

// Link errors: what went wrong between the driver and the reader. A device that disappeared
// gives an error wrapping serial.ErrGone (test it with serial.IsGone).
var (
	// ErrTimeout: the reader did not acknowledge or answer within its time, after the
	// retransmissions. It wraps serial.ErrTimeout.
	ErrTimeout = fmt.Errorf("cardreader: no answer in time: %w", serial.ErrTimeout)
	// ErrNAK: the reader refused every transmission of the request.
	ErrNAK = errors.New("cardreader: request refused (NAK) on every attempt")
	// ErrChecksum: answers came but arrived corrupted (bad CRC, cut short) every time.
	ErrChecksum = errors.New("cardreader: answers arrived corrupted")
	// ErrProtocol: the reader's answer is well framed but makes no sense (wrong length,
	// unknown layout).
	ErrProtocol = errors.New("cardreader: protocol error")
	// ErrClosed: the Reader was closed.
	ErrClosed = errors.New("cardreader: closed")
)

// StatusError is a request the reader understood but could not carry out. It matches the
// sentinels below with errors.Is.
type StatusError struct {
	Cmd  string
	Code byte
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("cardreader: %s: %s", e.Cmd, statusText(e.Code))
}

// Is matches the sentinel of the same status code.
func (e *StatusError) Is(target error) bool {
	s, ok := target.(readerStatus)
	return ok && byte(s) == e.Code
}

type readerStatus byte

func (s readerStatus) Error() string { return "cardreader: " + statusText(byte(s)) }

// Reader status codes as errors.
var (
	ErrUnknownCommand error = readerStatus(wire.StatusUnknownCommand)
	ErrBadParameter   error = readerStatus(wire.StatusBadParameter)
	ErrNoCard         error = readerStatus(wire.StatusNoCard)
	ErrCardMute       error = readerStatus(wire.StatusCardMute)
	ErrDisabled       error = readerStatus(wire.StatusDisabled)
	ErrNotPowered     error = readerStatus(wire.StatusNotPowered)
	ErrBusy           error = readerStatus(wire.StatusBusy)
	ErrCardRemoved    error = readerStatus(wire.StatusCardRemoved)
)

func statusText(code byte) string {
	switch code {
	case wire.StatusUnknownCommand:
		return "unknown command"
	case wire.StatusBadParameter:
		return "bad parameter"
	case wire.StatusNoCard:
		return "no card"
	case wire.StatusCardMute:
		return "card mute"
	case wire.StatusDisabled:
		return "interface disabled"
	case wire.StatusNotPowered:
		return "card not powered"
	case wire.StatusBusy:
		return "reader busy"
	case wire.StatusCardRemoved:
		return "card removed"
	}
	return fmt.Sprintf("status %02X", code)
}
