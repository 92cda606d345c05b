package escpos

import (
	"errors"
	"fmt"

	"github.com/posagent/posagent/drivers/serial"
)

// Errors. A device that went away yields errors wrapping serial.ErrGone; check with
// serial.IsGone.
var (
	// ErrTimeout: the printer did not answer in time (silent, too slow, replies lost). It
	// also matches serial.ErrTimeout.
	ErrTimeout = fmt.Errorf("escpos: printer did not answer in time: %w", serial.ErrTimeout)
	// ErrProtocol: bytes came back, but not the answer asked for (garbled or corrupted).
	ErrProtocol = errors.New("escpos: unexpected reply from the printer")
	// ErrPaperOut: the roll is empty.
	ErrPaperOut = errors.New("escpos: paper out")
	// ErrCoverOpen: the cover is open.
	ErrCoverOpen = errors.New("escpos: cover open")
	// ErrPrinterFault: the printer reports an error (autocutter, unrecoverable, recoverable).
	ErrPrinterFault = errors.New("escpos: printer error")
	// ErrOffline: the printer is offline for another reason (e.g. paper being fed by hand).
	ErrOffline = errors.New("escpos: printer offline")
	// ErrBadJob: the job cannot be printed as built (bad data, too wide for the paper).
	ErrBadJob = errors.New("escpos: bad job")
)

// JobError is how Print and Resume fail. The job keeps its progress: Done elements were
// printed and confirmed by the printer, and Resume continues with element Done.
type JobError struct {
	Err         error  // one of the errors above, a serial.ErrGone error, or the context's error
	Done, Total int    // elements confirmed printed, of Total
	Status      Status // the printer status that stopped the job, when one was read
	// Sent: bytes of this attempt reached the port. When false, the printer was never sent
	// anything (it failed the status check before the job, or the port was gone).
	Sent bool
}

func (e *JobError) Error() string {
	return fmt.Sprintf("escpos: job stopped after %d of %d elements: %v", e.Done, e.Total, e.Err)
}

func (e *JobError) Unwrap() error { return e.Err }

// stopError carries the status that made a running job stop.
type stopError struct {
	cause  error
	status Status
}

func (e *stopError) Error() string { return e.cause.Error() }
func (e *stopError) Unwrap() error { return e.cause }
