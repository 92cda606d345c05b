package pinpademu

import (
	"errors"
	"fmt"
)

// The pad's side of the framing (docs/pinpad-protocol.md), written apart from the driver's so
// that the two check each other: a misreading of the document shows up as a failing test
// instead of agreeing with itself.

const (
	bSTX = 0x02
	bETX = 0x03
	bEOT = 0x04
	bACK = 0x06
	bDLE = 0x10
	bNAK = 0x15
	bCAN = 0x18
)

var controls = [256]bool{bSTX: true, bETX: true, bEOT: true, bACK: true, bDLE: true, bNAK: true, bCAN: true}

const (
	firstSeq   = 0x40
	lastSeq    = 0x7F
	maxPayload = 1024
	// maxRaw bounds an escaped frame: every body byte escaped.
	maxRaw = 2 * (5 + maxPayload)
)

var (
	errCRC    = errors.New("checksum")
	errFormat = errors.New("malformed frame")
)

// crc16 is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF), bit by bit.
func crc16(p []byte) uint16 {
	crc := uint16(0xFFFF)
	for _, b := range p {
		crc ^= uint16(b) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// frameBody is SEQ, LEN, payload and CRC, before escaping.
func frameBody(seq byte, payload []byte) []byte {
	body := make([]byte, 0, len(payload)+5)
	body = append(body, seq, byte(len(payload)>>8), byte(len(payload)))
	body = append(body, payload...)
	crc := crc16(body)
	return append(body, byte(crc>>8), byte(crc))
}

// wire escapes a body and frames it.
func wire(body []byte) []byte {
	out := make([]byte, 0, len(body)+8)
	out = append(out, bSTX)
	for _, b := range body {
		if controls[b] {
			out = append(out, bDLE, b^0x20)
			continue
		}
		out = append(out, b)
	}
	return append(out, bETX)
}

type evKind int

const (
	evFrame evKind = iota + 1
	evBad
	evACK
	evNAK
	evCAN
	evEOT
)

type lineEvent struct {
	kind    evKind
	seq     byte
	crc     uint16
	payload []byte
	err     error
}

// reader collects the raw bytes of a frame and checks them as a whole at ETX.
type reader struct {
	raw     []byte
	in      bool // between STX and ETX
	ackNext bool // the previous byte was ACK
	dropped int
}

func (r *reader) push(b byte) (lineEvent, bool) {
	if r.ackNext {
		r.ackNext = false
		if b >= firstSeq && b <= lastSeq {
			return lineEvent{kind: evACK, seq: b}, true
		}
	}
	if r.in && (!controls[b] || b == bDLE) {
		// Kept up to one byte past the longest frame: enough to know it is too long at ETX,
		// bounded whatever the line sends (escapes included).
		if len(r.raw) < maxRaw+1 {
			r.raw = append(r.raw, b)
		}
		return lineEvent{}, false
	}
	if r.in && b == bETX {
		r.in = false
		return r.check(), true
	}
	if r.in {
		// Any other control byte ends a frame that was cut short.
		r.in = false
		r.dropped++
	}
	switch b {
	case bSTX:
		r.in, r.raw = true, r.raw[:0]
	case bACK:
		r.ackNext = true
	case bNAK:
		return lineEvent{kind: evNAK}, true
	case bCAN:
		return lineEvent{kind: evCAN}, true
	case bEOT:
		return lineEvent{kind: evEOT}, true
	default:
		r.dropped++
	}
	return lineEvent{}, false
}

func (r *reader) check() lineEvent {
	bad := func(err error) lineEvent { return lineEvent{kind: evBad, err: err} }
	if len(r.raw) > maxRaw {
		return bad(fmt.Errorf("%w: too long", errFormat))
	}
	body := make([]byte, 0, len(r.raw))
	for i := 0; i < len(r.raw); i++ {
		b := r.raw[i]
		if b == bDLE {
			i++
			if i == len(r.raw) || !controls[r.raw[i]^0x20] {
				return bad(fmt.Errorf("%w: bad escape", errFormat))
			}
			b = r.raw[i] ^ 0x20
		}
		body = append(body, b)
	}
	if len(body) < 5 || int(body[1])<<8|int(body[2]) != len(body)-5 {
		return bad(fmt.Errorf("%w: length", errFormat))
	}
	n := len(body)
	crc := uint16(body[n-2])<<8 | uint16(body[n-1])
	if crc16(body[:n-2]) != crc {
		return bad(errCRC)
	}
	if body[0] < firstSeq || body[0] > lastSeq {
		return bad(fmt.Errorf("%w: sequence", errFormat))
	}
	return lineEvent{kind: evFrame, seq: body[0], crc: crc, payload: body[3 : n-2]}
}
