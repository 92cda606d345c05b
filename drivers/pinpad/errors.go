package pinpad

import (
	"errors"
	"fmt"
	"strings"
)

// Errors of the line. Errors of a device that went away wrap serial.ErrGone.
var (
	// ErrTimeout: no ACK or no answer within the protocol's time limits.
	ErrTimeout = errors.New("pinpad: timed out")
	// ErrNAK: the pad refused every transmission of a frame as damaged.
	ErrNAK = errors.New("pinpad: frame refused (NAK)")
	// ErrChecksum: frames from the pad arrived with a wrong CRC. It comes joined with
	// ErrTimeout when the pad gave up retransmitting.
	ErrChecksum = errors.New("pinpad: bad checksum")
	// ErrProtocol: a frame or an answer that does not follow the protocol.
	ErrProtocol = errors.New("pinpad: protocol error")
	// ErrClosed: the client was closed.
	ErrClosed = errors.New("pinpad: client closed")
)

// Outcomes the pad reports in an answer's status byte. Each arrives wrapped in a *StatusError.
var (
	ErrNotOpen          = errors.New("pinpad: session not open")
	ErrUnknownCommand   = errors.New("pinpad: unknown command")
	ErrBadParameter     = errors.New("pinpad: bad parameter")
	ErrBusy             = errors.New("pinpad: busy with another command")
	ErrNoKey            = errors.New("pinpad: no key in slot")
	ErrWrongUsage       = errors.New("pinpad: key usage does not allow this")
	ErrKCVMismatch      = errors.New("pinpad: key check value mismatch")
	ErrBadKeyBlock      = errors.New("pinpad: key block refused (malformed, failed its MAC or not under this parent key)")
	ErrCancelled        = errors.New("pinpad: cancelled by the cardholder")
	ErrEntryTimeout     = errors.New("pinpad: PIN entry timed out")
	ErrBypassNotAllowed = errors.New("pinpad: PIN bypass not allowed")
	ErrBypassed         = errors.New("pinpad: PIN bypassed")
	ErrAborted          = errors.New("pinpad: aborted")
	ErrDevice           = errors.New("pinpad: device error")
)

// Status is the status byte of an answer.
type Status byte

// Status codes (docs/pinpad-protocol.md, "Status codes").
const (
	StatusOK               Status = 0x00
	StatusNotOpen          Status = 0x01
	StatusUnknownCommand   Status = 0x02
	StatusBadParameter     Status = 0x03
	StatusBusy             Status = 0x04
	StatusNoKey            Status = 0x05
	StatusWrongUsage       Status = 0x06
	StatusKCVMismatch      Status = 0x07
	StatusBadKeyBlock      Status = 0x08
	StatusCancelled        Status = 0x10
	StatusEntryTimeout     Status = 0x11
	StatusBypassNotAllowed Status = 0x12
	StatusBypassed         Status = 0x13
	StatusAborted          Status = 0x14
	StatusDeviceError      Status = 0x7F
)

var statusErrs = map[Status]error{
	StatusNotOpen:          ErrNotOpen,
	StatusUnknownCommand:   ErrUnknownCommand,
	StatusBadParameter:     ErrBadParameter,
	StatusBusy:             ErrBusy,
	StatusNoKey:            ErrNoKey,
	StatusWrongUsage:       ErrWrongUsage,
	StatusKCVMismatch:      ErrKCVMismatch,
	StatusBadKeyBlock:      ErrBadKeyBlock,
	StatusCancelled:        ErrCancelled,
	StatusEntryTimeout:     ErrEntryTimeout,
	StatusBypassNotAllowed: ErrBypassNotAllowed,
	StatusBypassed:         ErrBypassed,
	StatusAborted:          ErrAborted,
	StatusDeviceError:      ErrDevice,
}

// StatusError is an answer whose status is not OK. errors.Is matches it against the
// ErrXxx outcome of its status.
type StatusError struct {
	Command string
	Status  Status
}

func (e *StatusError) Error() string {
	if err, ok := statusErrs[e.Status]; ok {
		return fmt.Sprintf("pinpad: %s: %s", e.Command, strings.TrimPrefix(err.Error(), "pinpad: "))
	}
	return fmt.Sprintf("pinpad: %s: status %#02x", e.Command, byte(e.Status))
}

// Unwrap gives the outcome's sentinel, or ErrProtocol for a status this driver does not know.
func (e *StatusError) Unwrap() error {
	if err, ok := statusErrs[e.Status]; ok {
		return err
	}
	return ErrProtocol
}
