// Package pinpad drives a PIN pad over a serial line with the framed protocol of
// docs/pinpad-protocol.md: STX/ETX frames with byte-stuffing, a length and a CRC-16, ACK or NAK
// for every frame, retransmission with limits, sequence numbers that expose retransmissions,
// CAN to abort, and unsolicited events for the pad's function keys and tamper response.
//
// A Client owns its serial.Port. Commands are served one at a time; each has a context and
// time limits of its own, and fails with a typed error: ErrTimeout, ErrNAK, ErrChecksum,
// ErrProtocol, an error wrapping serial.ErrGone when the device went away, or a *StatusError
// for what the pad reports (ErrCancelled, ErrKCVMismatch, …). The client survives all of
// them: garbage on the line is skipped, late answers are recognised and dropped, and a port
// that comes back (a reopening port) is used again.
//
//	c := pinpad.New(port, pinpad.Options{})
//	defer c.Close()
//	err := c.OpenSession(ctx)
//	blk, err := c.GetPIN(ctx, pinpad.PINRequest{PAN: pan, Slot: pikSlot})
//
// The clear PIN never leaves the pad: GetPIN returns the ISO 9564 format 0 block encrypted
// under the pad's PIN key, MAC computes X9.9, X9.19 and UnionPay ECB MACs with the pad's MAC
// key, and keys reach the pad only encrypted under their parent key (LoadKey) or in TR-31 key
// blocks (LoadKeyBlock).
// Nothing secret (PIN block, key, full PAN) appears in this package's logs, errors or
// String methods.
package pinpad
