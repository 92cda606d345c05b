// Package wire is the card reader's serial protocol (docs/cardreader-protocol.md): the frame
// format, its CRC, the control bytes and the command, event and status codes. Both ends use it:
// the driver in drivers/cardreader and the reader emulator in board/sim/cardemu.
package wire

import (
	"errors"

	"github.com/posagent/posagent/drivers/internal/crc16"
)

// Control bytes. ACK and NAK travel alone, between frames.
const (
	STX = 0x02
	ETX = 0x03
	ACK = 0x06
	NAK = 0x15
)

// MaxBody is the largest SEQ+TYPE+DATA a frame may carry: an extended APDU is not needed by
// EMV, and a short response (256 + SW) with its status byte fits easily.
const MaxBody = 1024

// Overhead is the frame bytes around the body: STX, LEN(2), ETX, CRC(2).
const Overhead = 6

// Commands (host → reader). The response to a command carries TYPE = command | Response.
const (
	CmdStatus   = 0x01
	CmdInfo     = 0x02
	CmdEnable   = 0x10
	CmdDisable  = 0x11
	CmdPowerOn  = 0x20
	CmdAPDU     = 0x21
	CmdPowerOff = 0x22

	Response = 0x80
)

// Events (reader → host, unsolicited).
const (
	EvtInserted = 0x41
	EvtRemoved  = 0x42
	EvtSwiped   = 0x43
	EvtTapped   = 0x44
)

// IsEvent reports whether a frame type is an unsolicited event.
func IsEvent(typ byte) bool { return typ >= 0x40 && typ < 0x80 }

// Status codes: the first data byte of every response.
const (
	StatusOK             = 0x00
	StatusUnknownCommand = 0x01
	StatusBadParameter   = 0x02
	StatusNoCard         = 0x03
	StatusCardMute       = 0x04
	StatusDisabled       = 0x05
	StatusNotPowered     = 0x06
	StatusBusy           = 0x07
	StatusCardRemoved    = 0x08
)

// Interface bits, in ENABLE/DISABLE masks and STATUS, and as the interface byte of
// POWER ON, APDU, POWER OFF and the card events.
const (
	IfMagstripe   = 0x01
	IfContact     = 0x02
	IfContactless = 0x04
)

// Frame is one decoded frame.
type Frame struct {
	Seq  byte
	Type byte
	Data []byte
}

// AppendFrame codes f after dst: STX, LEN (big-endian, SEQ+TYPE+DATA), SEQ, TYPE, DATA, ETX,
// CRC-16 over LEN…ETX.
func AppendFrame(dst []byte, f Frame) []byte {
	n := 2 + len(f.Data)
	start := len(dst)
	dst = append(dst, STX, byte(n>>8), byte(n), f.Seq, f.Type)
	dst = append(dst, f.Data...)
	dst = append(dst, ETX)
	crc := CRC16(dst[start+1:])
	return append(dst, byte(crc>>8), byte(crc))
}

// CRC16 is the frame checksum, CRC-16/CCITT-FALSE. CRC16("123456789") = 0x29B1.
func CRC16(b []byte) uint16 { return crc16.Checksum(b) }

// Kind says what the decoder found.
type Kind int

const (
	// KindFrame is a frame whose length, ETX and CRC are right.
	KindFrame Kind = iota + 1
	KindACK
	KindNAK
	// KindBad is something that began as a frame but was not one (bad ETX or CRC, or cut
	// short); the receiver answers it with NAK.
	KindBad
)

// Item is one thing read off the line.
type Item struct {
	Kind  Kind
	Frame Frame // KindFrame
	Err   error // KindBad: why
}

// Errors a KindBad item carries.
var (
	ErrETX       = errors.New("cardreader wire: ETX missing")
	ErrCRC       = errors.New("cardreader wire: CRC mismatch")
	ErrTruncated = errors.New("cardreader wire: frame cut short")
)

// Decoder turns a byte stream into items. Garbage between frames is skipped; a bad frame
// costs only its STX, so a good frame that was swallowed by a bad header is found on the next
// scan. It keeps at most one frame's worth of bytes beyond what it has decoded.
type Decoder struct {
	buf     []byte // buf[head:] is still to decode
	head    int
	garbage int
}

// Write adds received bytes.
func (d *Decoder) Write(p []byte) {
	if d.head > 0 && d.head >= len(d.buf)/2 {
		n := copy(d.buf, d.buf[d.head:])
		d.buf, d.head = d.buf[:n], 0
	}
	d.buf = append(d.buf, p...)
}

// Garbage is the number of bytes skipped so far that were neither frames nor control bytes.
func (d *Decoder) Garbage() int { return d.garbage }

// Pending reports whether an incomplete frame waits for more bytes.
func (d *Decoder) Pending() bool { b := d.buf[d.head:]; return len(b) > 0 && b[0] == STX }

// Next returns the next complete item, or false when more bytes are needed.
func (d *Decoder) Next() (Item, bool) {
	for d.head < len(d.buf) {
		b := d.buf[d.head:]
		switch b[0] {
		case ACK:
			d.drop(1)
			return Item{Kind: KindACK}, true
		case NAK:
			d.drop(1)
			return Item{Kind: KindNAK}, true
		case STX:
			if len(b) < 3 {
				return Item{}, false
			}
			n := int(b[1])<<8 | int(b[2])
			if n < 2 || n > MaxBody {
				// Not a frame start: an STX in garbage or inside a damaged frame. No NAK,
				// which would only make the other end repeat a frame that may be fine.
				d.garbage++
				d.drop(1)
				continue
			}
			total := n + Overhead
			if len(b) < total {
				return Item{}, false
			}
			f := b[:total]
			if f[3+n] != ETX {
				d.drop(1)
				return Item{Kind: KindBad, Err: ErrETX}, true
			}
			if CRC16(f[1:4+n]) != uint16(f[4+n])<<8|uint16(f[5+n]) {
				d.drop(1)
				return Item{Kind: KindBad, Err: ErrCRC}, true
			}
			fr := Frame{Seq: f[3], Type: f[4], Data: append([]byte(nil), f[5:3+n]...)}
			d.drop(total)
			return Item{Kind: KindFrame, Frame: fr}, true
		default:
			d.garbage++
			d.drop(1)
		}
	}
	return Item{}, false
}

// Expire gives up on an incomplete frame (the line went quiet in its middle): its STX is
// dropped so that the scan resumes after it, and the item to answer with NAK is returned.
func (d *Decoder) Expire() (Item, bool) {
	if !d.Pending() {
		return Item{}, false
	}
	d.drop(1)
	return Item{Kind: KindBad, Err: ErrTruncated}, true
}

// Reset forgets everything buffered.
func (d *Decoder) Reset() { d.buf, d.head = d.buf[:0], 0 }

func (d *Decoder) drop(n int) {
	d.head += n
	if d.head == len(d.buf) {
		d.Reset()
	}
}
