package escpos

import (
	"fmt"
	"strings"
)

// Status is the printer's real-time status, read with DLE EOT n for n = 1..4.
type Status struct {
	Online       bool
	CoverOpen    bool
	PaperNearEnd bool
	PaperOut     bool
	// FeedButton: paper is being fed with the feed button (the printer is offline meanwhile).
	FeedButton bool
	// DrawerPin3 is the level of pin 3 of the drawer kick-out connector (drawer sensor).
	DrawerPin3 bool
	// Errors.
	CutterError          bool
	UnrecoverableError   bool
	AutoRecoverableError bool
	// OtherError: the offline cause says "error" without an error cause bit.
	OtherError bool
}

// Printable reports whether a job can start.
func (s Status) Printable() bool { return s.Err() == nil }

// Err is the typed error that keeps the printer from printing, or nil.
func (s Status) Err() error {
	switch {
	case s.CoverOpen:
		return ErrCoverOpen
	case s.PaperOut:
		return ErrPaperOut
	case s.CutterError, s.UnrecoverableError, s.AutoRecoverableError, s.OtherError:
		return fmt.Errorf("%w: %s", ErrPrinterFault, s.errorNames())
	case !s.Online:
		return ErrOffline
	}
	return nil
}

func (s Status) errorNames() string {
	var names []string
	if s.CutterError {
		names = append(names, "autocutter")
	}
	if s.UnrecoverableError {
		names = append(names, "unrecoverable")
	}
	if s.AutoRecoverableError {
		names = append(names, "auto-recoverable")
	}
	if len(names) == 0 {
		names = append(names, "unspecified")
	}
	return strings.Join(names, ",")
}

// State is a one-word summary for statistics: "ok", "paper-near-end", "paper-out",
// "cover-open", "error" or "offline".
func (s Status) State() string {
	switch {
	case s.CoverOpen:
		return "cover-open"
	case s.PaperOut:
		return "paper-out"
	case s.CutterError, s.UnrecoverableError, s.AutoRecoverableError, s.OtherError:
		return "error"
	case !s.Online:
		return "offline"
	case s.PaperNearEnd:
		return "paper-near-end"
	}
	return "ok"
}

// statusShape: in every DLE EOT reply bits 1 and 4 are on and bits 0 and 7 off. The shape
// also tells a status byte from XON (0x11), XOFF (0x13) and the 0x37 header of a framed reply.
func statusShape(b byte) bool { return b&0x93 == 0x12 }

// DecodeStatus decodes the replies to DLE EOT 1, 2, 3 and 4, in that order.
func DecodeStatus(b []byte) (Status, error) {
	if len(b) != 4 {
		return Status{}, fmt.Errorf("%w: %d status bytes, want 4", ErrProtocol, len(b))
	}
	for i, c := range b {
		if !statusShape(c) {
			return Status{}, fmt.Errorf("%w: status %d is %#02x", ErrProtocol, i+1, c)
		}
	}
	printer, offline, errs, paper := b[0], b[1], b[2], b[3]
	s := Status{
		DrawerPin3:           printer&0x04 != 0,
		Online:               printer&0x08 == 0,
		FeedButton:           offline&0x08 != 0,
		CoverOpen:            offline&0x04 != 0,
		PaperOut:             offline&0x20 != 0 || paper&0x60 != 0,
		PaperNearEnd:         paper&0x0C != 0,
		CutterError:          errs&0x08 != 0,
		UnrecoverableError:   errs&0x20 != 0,
		AutoRecoverableError: errs&0x40 != 0,
	}
	s.OtherError = offline&0x40 != 0 && !s.CutterError && !s.UnrecoverableError && !s.AutoRecoverableError
	return s, nil
}

// Reply kinds the printer sends on its own or in answer.
type replyKind uint8

const (
	replyGarbage   replyKind = iota // bytes that fit nothing
	replyXON                        // 0x11: send on
	replyXOFF                       // 0x13: stop sending
	replyStatus                     // one DLE EOT answer
	replyProcessID                  // 37 22 d1 d2 d3 d4 00: GS ( H fn=48 answered
	replyCleared                    // 37 25 00: DLE DC4 fn=8 done
)

type reply struct {
	kind replyKind
	b    byte // the status byte
	id   int  // the process ID, 0..9999
	n    int  // garbage byte count
}

// Control bytes on the printer-to-host line.
const (
	xon         = 0x11
	xoff        = 0x13
	frameHeader = 0x37
	idProcess   = 0x22
	idCleared   = 0x25
)

// replyParser splits the printer-to-host byte stream. It never blocks and never fails: bytes
// that fit nothing are reported as garbage and it resynchronises on the next byte that
// starts something (a status shape, XON/XOFF or a frame header).
type replyParser struct {
	frame [6]byte
	n     int // bytes in frame; 0: not in a frame
}

func (p *replyParser) feed(b byte, emit func(reply)) {
	if p.n > 0 {
		if p.frameByte(b, emit) {
			return
		}
		// b broke the frame: the frame was garbage and b starts afresh.
		emit(reply{kind: replyGarbage, n: p.n})
		p.n = 0
	}
	switch {
	case b == xon:
		emit(reply{kind: replyXON})
	case b == xoff:
		emit(reply{kind: replyXOFF})
	case b == frameHeader:
		p.frame[0], p.n = b, 1
	case statusShape(b):
		emit(reply{kind: replyStatus, b: b})
	default:
		emit(reply{kind: replyGarbage, n: 1})
	}
}

// frameByte takes one byte of a frame; false means b does not belong to it.
func (p *replyParser) frameByte(b byte, emit func(reply)) bool {
	switch {
	case p.n == 1:
		if b != idProcess && b != idCleared {
			return false
		}
	case b == 0x00:
		switch {
		case p.frame[1] == idCleared && p.n == 2:
			emit(reply{kind: replyCleared})
		case p.frame[1] == idProcess && p.n == 6:
			f := p.frame
			emit(reply{kind: replyProcessID, id: int(f[2]-'0')*1000 + int(f[3]-'0')*100 + int(f[4]-'0')*10 + int(f[5]-'0')})
		default:
			return false
		}
		p.n = 0
		return true
	case p.frame[1] == idCleared || p.n == 6 || b < '0' || b > '9':
		return false
	}
	p.frame[p.n] = b
	p.n++
	return true
}
