package pinpad

import (
	"fmt"

	"github.com/posagent/posagent/drivers/internal/crc16"
)

// Line control bytes. Inside a frame every one of them is escaped, so a raw control byte on the
// line always means the same thing, whatever state the receiver believed it was in: that is
// what lets a receiver resynchronise after garbage or a cut frame.
const (
	stx = 0x02 // start of frame
	etx = 0x03 // end of frame
	eot = 0x04 // the pad's answer to CAN when nothing was pending
	ack = 0x06 // followed by the SEQ of the frame acknowledged
	dle = 0x10 // escape: the next byte is a control byte XOR 0x20
	nak = 0x15 // the last frame arrived damaged: send it again
	can = 0x18 // abort the pending command (host to pad)

	escXOR = 0x20
)

func isControl(b byte) bool {
	switch b {
	case stx, etx, eot, ack, dle, nak, can:
		return true
	}
	return false
}

// Sequence numbers live in 0x40..0x7F so that the byte after an ACK never needs escaping.
const (
	seqMin = 0x40
	seqMax = 0x7F
)

func validSeq(b byte) bool { return b >= seqMin && b <= seqMax }

func nextSeq(s byte) byte {
	if !validSeq(s) || s == seqMax {
		return seqMin
	}
	return s + 1
}

// MaxPayload bounds a frame's payload; no command or answer comes near it.
const MaxPayload = 1024

// maxBody is SEQ + LEN + payload + CRC, unescaped.
const maxBody = 1 + 2 + MaxPayload + 2

// appendFrame appends the wire image of one frame carrying payload.
func appendFrame(dst []byte, seq byte, payload []byte) []byte {
	hdr := [3]byte{seq, byte(len(payload) >> 8), byte(len(payload))}
	crc := crc16.Update(crc16.Update(crc16.Init, hdr[:]), payload)
	dst = append(dst, stx)
	dst = appendStuffed(dst, hdr[:])
	dst = appendStuffed(dst, payload)
	dst = appendStuffed(dst, []byte{byte(crc >> 8), byte(crc)})
	return append(dst, etx)
}

func appendStuffed(dst, p []byte) []byte {
	for _, b := range p {
		if isControl(b) {
			dst = append(dst, dle, b^escXOR)
		} else {
			dst = append(dst, b)
		}
	}
	return dst
}

type tokKind uint8

const (
	tokFrame tokKind = iota + 1 // a well-formed frame
	tokBad                      // a complete but damaged frame: answer NAK
	tokACK
	tokNAK
	tokEOT
	tokCAN
	tokErr // the port failed (pump only)
)

// token is one thing the line said.
type token struct {
	kind    tokKind
	seq     byte
	crc     uint16 // of a frame: with seq, recognises a retransmission
	payload []byte // of a frame; owned by the token
	err     error  // why a frame was bad, or the port error
}

type decState uint8

const (
	hunting decState = iota // between frames: garbage is skipped
	inFrame
	afterACK // an ACK byte was seen; its SEQ follows
)

// decoder turns line bytes into tokens. It never fails: damage becomes a tokBad (for a frame
// that reached its ETX) or is skipped (garbage, frames cut short by a control byte), and
// decoding carries on with the next STX.
type decoder struct {
	state   decState
	esc     bool
	damaged error // first fault seen in the current frame
	buf     []byte
	skipped int // garbage and cut-short frames, for the statistics
}

func (d *decoder) reset() {
	d.state, d.esc, d.damaged, d.buf = hunting, false, nil, d.buf[:0]
}

// feed consumes one byte and reports a token when one is complete.
func (d *decoder) feed(b byte) (token, bool) {
	switch d.state {
	case afterACK:
		d.state = hunting
		if validSeq(b) {
			return token{kind: tokACK, seq: b}, true
		}
		d.skipped++
		return d.feed(b)
	case inFrame:
		return d.feedFrame(b)
	}
	switch b {
	case stx:
		d.startFrame()
	case ack:
		d.state = afterACK
	case nak:
		return token{kind: tokNAK}, true
	case eot:
		return token{kind: tokEOT}, true
	case can:
		return token{kind: tokCAN}, true
	default:
		d.skipped++
	}
	return token{}, false
}

func (d *decoder) startFrame() {
	d.state, d.esc, d.damaged, d.buf = inFrame, false, nil, d.buf[:0]
}

func (d *decoder) feedFrame(b byte) (token, bool) {
	switch {
	case b == etx:
		d.state = hunting
		if d.esc && d.damaged == nil {
			d.damaged = fmt.Errorf("%w: escape at end of frame", ErrProtocol)
		}
		return d.finish(), true
	case b == stx:
		// A new frame began before this one ended: this one was cut short. Its sender times
		// out waiting for our ACK and sends it again.
		d.skipped++
		d.startFrame()
		return token{}, false
	case isControl(b) && b != dle:
		d.skipped++
		d.state = hunting
		return d.feed(b)
	case b == dle:
		if d.esc && d.damaged == nil {
			d.damaged = fmt.Errorf("%w: double escape", ErrProtocol)
		}
		d.esc = true
		return token{}, false
	}
	if d.esc {
		d.esc = false
		b ^= escXOR
		if !isControl(b) && d.damaged == nil {
			d.damaged = fmt.Errorf("%w: needless escape", ErrProtocol)
		}
	}
	if len(d.buf) >= maxBody {
		if d.damaged == nil {
			d.damaged = fmt.Errorf("%w: frame longer than %d bytes", ErrProtocol, maxBody)
		}
		return token{}, false
	}
	d.buf = append(d.buf, b)
	return token{}, false
}

func (d *decoder) finish() token {
	bad := func(err error) token { return token{kind: tokBad, err: err} }
	if d.damaged != nil {
		return bad(d.damaged)
	}
	body := d.buf
	if len(body) < 5 {
		return bad(fmt.Errorf("%w: frame of %d bytes", ErrProtocol, len(body)))
	}
	n := int(body[1])<<8 | int(body[2])
	if n != len(body)-5 {
		return bad(fmt.Errorf("%w: length field %d, payload %d", ErrProtocol, n, len(body)-5))
	}
	got := uint16(body[len(body)-2])<<8 | uint16(body[len(body)-1])
	if crc16.Checksum(body[:len(body)-2]) != got {
		return bad(ErrChecksum)
	}
	if !validSeq(body[0]) {
		return bad(fmt.Errorf("%w: sequence byte %#02x", ErrProtocol, body[0]))
	}
	return token{kind: tokFrame, seq: body[0], crc: got, payload: append([]byte(nil), body[3:len(body)-2]...)}
}
