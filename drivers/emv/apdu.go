package emv

import (
	"context"
	"errors"
	"fmt"
)

// Transport carries one command APDU to the card and returns its whole response, status word
// included. A card reader's contact or contactless interface implements it.
type Transport interface {
	Transmit(ctx context.Context, apdu []byte) ([]byte, error)
}

// SWError is a status word other than 9000 that ends an EMV step. It matches the sentinel
// errors below with errors.Is, e.g. errors.Is(err, ErrFileNotFound) for 6A82.
type SWError struct {
	Cmd string // the command, e.g. "SELECT AID"
	SW  uint16
}

func (e *SWError) Error() string {
	if m, ok := swMeaning[e.SW]; ok {
		return fmt.Sprintf("emv: %s: card answered %04X (%s)", e.Cmd, e.SW, m)
	}
	return fmt.Sprintf("emv: %s: card answered %04X", e.Cmd, e.SW)
}

// Is matches a sentinel with the same status word.
func (e *SWError) Is(target error) bool {
	s, ok := target.(swSentinel)
	return ok && uint16(s) == e.SW
}

type swSentinel uint16

func (s swSentinel) Error() string {
	return fmt.Sprintf("emv: status %04X (%s)", uint16(s), swMeaning[uint16(s)])
}

// Status words with a meaning the payment engine may act on.
var (
	ErrAppBlocked             error = swSentinel(0x6283)
	ErrWrongLength            error = swSentinel(0x6700)
	ErrSecurityNotSatisfied   error = swSentinel(0x6982)
	ErrAuthMethodBlocked      error = swSentinel(0x6983)
	ErrConditionsNotSatisfied error = swSentinel(0x6985)
	ErrFunctionNotSupported   error = swSentinel(0x6A81)
	ErrFileNotFound           error = swSentinel(0x6A82)
	ErrRecordNotFound         error = swSentinel(0x6A83)
	ErrWrongParameters        error = swSentinel(0x6A86)
	ErrDataNotFound           error = swSentinel(0x6A88)
	ErrINSNotSupported        error = swSentinel(0x6D00)
	ErrCLANotSupported        error = swSentinel(0x6E00)
)

var swMeaning = map[uint16]string{
	0x6283: "selected file invalidated",
	0x6700: "wrong length",
	0x6982: "security status not satisfied",
	0x6983: "authentication method blocked",
	0x6985: "conditions of use not satisfied",
	0x6A81: "function not supported",
	0x6A82: "file or application not found",
	0x6A83: "record not found",
	0x6A86: "incorrect P1 P2",
	0x6A88: "referenced data not found",
	0x6D00: "instruction not supported",
	0x6E00: "class not supported",
}

// Errors of the EMV steps that are not a status word.
var (
	// ErrNoApplication: the card has no application the terminal supports (or would select).
	ErrNoApplication = errors.New("emv: no supported application on the card")
	// ErrBadResponse: the card answered, but not as EMV says it must (missing mandatory data,
	// wrong template, malformed TLV).
	ErrBadResponse = errors.New("emv: bad card response")
	// ErrCardDeclined: the card answered GENERATE AC with an AAC, declining offline.
	ErrCardDeclined = errors.New("emv: card declined (AAC)")
)

// maxGetResponse bounds the 61xx chain: a card that keeps saying "more" is broken.
const maxGetResponse = 16

// exchange sends a command and returns the response data and status word, handling the T=0
// procedure bytes the reader passes through: 61xx (more data: GET RESPONSE) and 6Cxx (wrong
// Le: send again with the length the card wants).
func exchange(ctx context.Context, t Transport, name string, apdu []byte) ([]byte, uint16, error) {
	resp, err := transmit(ctx, t, name, apdu)
	if err != nil {
		return nil, 0, err
	}
	data, sw := resp[:len(resp)-2], swOf(resp)
	if sw>>8 == 0x6C {
		if resp, err = transmit(ctx, t, name, withLe(apdu, byte(sw))); err != nil {
			return nil, 0, err
		}
		data, sw = resp[:len(resp)-2], swOf(resp)
	}
	var out []byte
	for i := 0; sw>>8 == 0x61; i++ {
		if i == maxGetResponse {
			return nil, 0, fmt.Errorf("%w: %s: more than %d GET RESPONSE", ErrBadResponse, name, maxGetResponse)
		}
		out = append(out, data...)
		if resp, err = transmit(ctx, t, name+" (GET RESPONSE)", []byte{0x00, 0xC0, 0x00, 0x00, byte(sw)}); err != nil {
			return nil, 0, err
		}
		data, sw = resp[:len(resp)-2], swOf(resp)
	}
	if out != nil {
		data = append(out, data...)
	}
	return data, sw, nil
}

func transmit(ctx context.Context, t Transport, name string, apdu []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	resp, err := t.Transmit(ctx, apdu)
	if err != nil {
		return nil, fmt.Errorf("emv: %s: %w", name, err)
	}
	if len(resp) < 2 {
		return nil, fmt.Errorf("%w: %s: %d-byte response", ErrBadResponse, name, len(resp))
	}
	return resp, nil
}

func swOf(resp []byte) uint16 { return uint16(resp[len(resp)-2])<<8 | uint16(resp[len(resp)-1]) }

// withLe is the command with its Le set to le, replacing the one it had (case 2 or 4) or
// adding one (case 1 or 3).
func withLe(apdu []byte, le byte) []byte {
	out := append([]byte(nil), apdu...)
	if len(apdu) > 4 && isCase2or4(apdu) {
		out[len(out)-1] = le
		return out
	}
	return append(out, le)
}

// isCase2or4 tells a command ending in Le (case 2: header + Le; case 4: header + Lc + data +
// Le) from a case 3 one (header + Lc + data), for short APDUs.
func isCase2or4(apdu []byte) bool {
	if len(apdu) == 5 {
		return true
	}
	lc := int(apdu[4])
	return len(apdu) == 5+lc+1
}

// command builds a short APDU; data may be empty. Le 00 asks for up to 256 bytes.
func command(cla, ins, p1, p2 byte, data []byte, withLe bool) []byte {
	out := []byte{cla, ins, p1, p2}
	if len(data) > 0 {
		out = append(out, byte(len(data)))
		out = append(out, data...)
	}
	if withLe {
		out = append(out, 0x00)
	}
	return out
}
