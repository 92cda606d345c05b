package iso8583

import (
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
)

// Errors of the codec. Every error of Unpack wraps ErrMalformed (and is a *FieldError naming
// the field); Pack wraps ErrInvalid for a field value its format cannot carry.
var (
	// ErrMalformed: a received frame does not follow the profile.
	ErrMalformed = errors.New("iso8583: malformed message")
	// ErrInvalid: a message to pack has a value its field's format cannot carry.
	ErrInvalid = errors.New("iso8583: invalid field value")
	// ErrBadMAC: field 64 is absent or does not match the MAC block.
	ErrBadMAC = errors.New("iso8583: bad MAC")
	// ErrTooLong: a frame is longer than MaxFrame.
	ErrTooLong = errors.New("iso8583: frame too long")
)

// MaxFrame is the largest frame body (the bytes after the 2-byte length) ReadFrame accepts
// and Pack produces. The largest message the profile allows is about 1.4 KB.
const MaxFrame = 4096

// MACFunc computes the 8-byte field 64 over the MAC block: the packed bytes from the MTI through
// field 63 (seed 004 appendix 2). For the UnionPay "ECB" MAC:
//
//	func(mab []byte) ([]byte, error) { return mac.UnionPayECB(mak, mab) }
type MACFunc func(mab []byte) ([]byte, error)

// Positions in a frame.
const (
	lenSize    = 2
	headerSize = 11 // TPDU 5 + application header 6
	mtiOff     = lenSize + headerSize
	minFrame   = mtiOff + 2 + 8 // length, header, MTI, bitmap
)

// Field numbers a FieldError uses for the parts of a frame that are not data elements.
const (
	FieldFrame  = -1 // the 2-byte length, the header, trailing bytes
	FieldMTI    = 0
	FieldBitmap = 1
)

// FieldError says which field of a message was malformed or invalid and why. It never holds
// the field's value (a PAN, track data or a PIN block may be in it).
type FieldError struct {
	Field  int    // data element number; FieldFrame, FieldMTI or FieldBitmap otherwise
	Reason string // what was wrong, without the value
	Err    error  // ErrMalformed or ErrInvalid
}

func (e *FieldError) Error() string {
	switch e.Field {
	case FieldFrame:
		return fmt.Sprintf("%v: frame: %s", e.Err, e.Reason)
	case FieldMTI:
		return fmt.Sprintf("%v: MTI: %s", e.Err, e.Reason)
	case FieldBitmap:
		return fmt.Sprintf("%v: bitmap: %s", e.Err, e.Reason)
	}
	return fmt.Sprintf("%v: field %d: %s", e.Err, e.Field, e.Reason)
}

func (e *FieldError) Unwrap() error { return e.Err }

func malformed(field int, reason string) error {
	return &FieldError{Field: field, Reason: reason, Err: ErrMalformed}
}

func invalid(field int, reason string) error {
	return &FieldError{Field: field, Reason: reason, Err: ErrInvalid}
}

// format is the wire format of a data element (see the table in the package comment).
type format uint8

const (
	fN    format = iota + 1 // n fixed, BCD, right-aligned (odd count: leading 0 nibble)
	fNL                     // n fixed, BCD, left-aligned (odd count: trailing 0 nibble)
	fLLN                    // n..LL, 1-byte BCD digit count, BCD left-aligned
	fLLLN                   // n..LLL, 2-byte BCD digit count, BCD left-aligned
	fLLZ                    // z..LL, track data: digit count, BCD left-aligned, '=' as D
	fLLLZ                   // z..LLL
	fA                      // an/ans fixed, ASCII
	fLLA                    // an/ans..LL, 1-byte BCD byte count
	fLLLA                   // an/ans..LLL, 2-byte BCD byte count
	fB                      // b fixed, bytes
	fLLLB                   // b..LLL, 2-byte BCD byte count
)

type fieldSpec struct {
	format format
	size   int // the fixed length or the maximum: digits for n and z, bytes otherwise
}

// profile is the field table of host-iso8583.md; a zero entry is a field the profile does not
// define.
var profile = [65]fieldSpec{
	2:  {fLLN, 19},
	3:  {fN, 6},
	4:  {fN, 12},
	11: {fN, 6},
	12: {fN, 6},
	13: {fN, 4},
	14: {fN, 4},
	15: {fN, 4},
	22: {fNL, 3},
	23: {fN, 3},
	25: {fN, 2},
	26: {fN, 2},
	32: {fLLN, 11},
	35: {fLLZ, 37},
	36: {fLLLZ, 104},
	37: {fA, 12},
	38: {fA, 6},
	39: {fA, 2},
	41: {fA, 8},
	42: {fA, 15},
	44: {fLLA, 25},
	48: {fLLLN, 322},
	49: {fA, 3},
	52: {fB, 8},
	53: {fN, 16},
	54: {fLLLA, 20},
	55: {fLLLB, 255},
	60: {fLLLN, 17},
	61: {fLLLN, 29},
	62: {fLLLB, 512},
	63: {fLLLA, 163},
	64: {fB, 8},
}

// Field 60 and 61 layouts: the lengths their digit strings may have.
const (
	f60Type, f60Batch, f60Net = 2, 6, 3
	f61Batch, f61Trace        = 6, 6
	f61Date                   = 4
	maxAmount                 = 999_999_999_999
	maxSTAN                   = 999_999
)

// Pack builds a whole frame: 2-byte big-endian length + header (TPDU, app header) + MTI +
// bitmap + fields. With mac != nil, field 64 is added (bitmap bit 64 set) and computed over the
// MAC block (the bytes from the MTI through field 63, bit 64 set in the bitmap); m.MAC is set.
// With mac == nil, field 64 is packed as m.MAC holds it (absent when nil). The MAC function's
// error is returned wrapped; a value a field cannot carry gives a *FieldError wrapping
// ErrInvalid.
func Pack(h Header, m *Msg, mac MACFunc) ([]byte, error) {
	if m == nil {
		return nil, invalid(FieldFrame, "nil message")
	}
	buf := make([]byte, minFrame, 512)
	copy(buf[lenSize:], h.TPDU[:])
	copy(buf[lenSize+5:], h.App[:])
	if len(m.MTI) != 4 {
		return nil, invalid(FieldMTI, "not 4 digits")
	}
	// putBCD appends in place: buf[mtiOff:mtiOff] has the room of the MTI.
	if _, err := putBCD(buf[mtiOff:mtiOff], m.MTI, false); err != nil {
		return nil, invalid(FieldMTI, "not 4 digits")
	}
	var bitmap uint64
	var err error
	for bit := 2; bit <= 63; bit++ {
		n := len(buf)
		buf, err = m.appendField(buf, bit)
		if err != nil {
			return nil, err
		}
		if len(buf) != n {
			bitmap |= 1 << (64 - bit)
		}
	}
	switch {
	case mac != nil:
		bitmap |= 1
	case m.MAC != nil:
		if len(m.MAC) != 8 {
			return nil, invalid(64, "not 8 bytes")
		}
		bitmap |= 1
	}
	binary.BigEndian.PutUint64(buf[mtiOff+2:], bitmap)
	if mac != nil {
		v, err := mac(buf[mtiOff:])
		if err != nil {
			return nil, fmt.Errorf("iso8583: MAC: %w", err)
		}
		if len(v) != 8 {
			return nil, fmt.Errorf("iso8583: MAC function returned %d bytes, want 8", len(v))
		}
		m.MAC = append([]byte(nil), v...)
	}
	if bitmap&1 != 0 {
		buf = append(buf, m.MAC...)
	}
	if len(buf)-lenSize > MaxFrame {
		return nil, ErrTooLong
	}
	binary.BigEndian.PutUint16(buf, uint16(len(buf)-lenSize))
	return buf, nil
}

// appendField appends field bit of m when it is set and leaves dst alone otherwise.
func (m *Msg) appendField(dst []byte, bit int) ([]byte, error) {
	switch bit {
	case 2:
		return appendText(dst, bit, m.PAN)
	case 3:
		return appendText(dst, bit, m.ProcCode)
	case 4:
		if !m.HasAmount {
			return dst, nil
		}
		if m.Amount < 0 || m.Amount > maxAmount {
			return nil, invalid(bit, "amount out of range")
		}
		var d [12]byte
		return appendText(dst, bit, digits(d[:], uint64(m.Amount)))
	case 11:
		if m.STAN == 0 {
			return dst, nil
		}
		if m.STAN < 0 || m.STAN > maxSTAN {
			return nil, invalid(bit, "trace number out of range")
		}
		var d [6]byte
		return appendText(dst, bit, digits(d[:], uint64(m.STAN)))
	case 12:
		return appendText(dst, bit, m.LocalTime)
	case 13:
		return appendText(dst, bit, m.LocalDate)
	case 14:
		return appendText(dst, bit, m.Expiry)
	case 15:
		return appendText(dst, bit, m.SettleDate)
	case 22:
		return appendText(dst, bit, m.EntryMode)
	case 23:
		return appendText(dst, bit, m.CardSeq)
	case 25:
		return appendText(dst, bit, m.CondCode)
	case 26:
		return appendText(dst, bit, m.PINCapture)
	case 32:
		return appendText(dst, bit, m.AcqInst)
	case 35:
		return appendText(dst, bit, m.Track2)
	case 36:
		return appendText(dst, bit, m.Track3)
	case 37:
		return appendText(dst, bit, m.RRN)
	case 38:
		return appendText(dst, bit, m.AuthCode)
	case 39:
		return appendText(dst, bit, m.RespCode)
	case 41:
		return appendText(dst, bit, m.TID)
	case 42:
		return appendText(dst, bit, m.MID)
	case 44:
		return appendText(dst, bit, m.AddResp)
	case 48:
		return appendText(dst, bit, m.AddData)
	case 49:
		return appendText(dst, bit, m.Currency)
	case 52:
		return appendBytes(dst, bit, m.PINBlock)
	case 53:
		return appendText(dst, bit, m.SecCtrl)
	case 54:
		return appendText(dst, bit, m.Balance)
	case 55:
		return appendBytes(dst, bit, m.ICC)
	case 60:
		if m.F60 == (F60{}) {
			return dst, nil
		}
		var d [32]byte
		s, ok := joinParts(d[:0], f60Parts(&m.F60))
		if !ok {
			return nil, invalid(bit, "subfields 60.1 n2, 60.2 n6, 60.3 n3 must be complete before the next")
		}
		return appendText(dst, bit, s)
	case 61:
		if m.F61 == (F61{}) {
			return dst, nil
		}
		var d [48]byte
		s, ok := joinParts(d[:0], f61Parts(&m.F61))
		if !ok {
			return nil, invalid(bit, "subfields 61.1 n6, 61.2 n6, 61.3 n4 must be complete before the next")
		}
		return appendText(dst, bit, s)
	case 62:
		return appendBytes(dst, bit, m.F62)
	case 63:
		return appendText(dst, bit, m.F63)
	}
	return dst, nil
}

// digits writes v as len(d) decimal digits, leading zeros included.
func digits(d []byte, v uint64) []byte {
	for i := len(d) - 1; i >= 0; i-- {
		d[i] = byte('0' + v%10)
		v /= 10
	}
	return d
}

type part struct {
	s    string
	size int // 0: the rest, any length
}

func f60Parts(f *F60) [4]part {
	return [4]part{{f.Type, f60Type}, {f.Batch, f60Batch}, {f.NetCode, f60Net}, {f.Rest, 0}}
}

func f61Parts(f *F61) [4]part {
	return [4]part{{f.Batch, f61Batch}, {f.Trace, f61Trace}, {f.Date, f61Date}, {f.Rest, 0}}
}

// joinParts concatenates subfields; each present one must have its full size and follow only
// present ones.
func joinParts(dst []byte, parts [4]part) ([]byte, bool) {
	ended := false
	for _, p := range parts {
		if p.s == "" {
			ended = true
			continue
		}
		if ended || (p.size > 0 && len(p.s) != p.size) {
			return nil, false
		}
		dst = append(dst, p.s...)
	}
	return dst, true
}

// appendText appends a field carried as digits, track data or text. An empty value is an
// absent field.
func appendText[S ~string | ~[]byte](dst []byte, bit int, s S) ([]byte, error) {
	if len(s) == 0 {
		return dst, nil
	}
	sp := profile[bit]
	switch sp.format {
	case fN, fNL, fA:
		if len(s) != sp.size {
			return nil, invalid(bit, fmt.Sprintf("length %d, want %d", len(s), sp.size))
		}
	default:
		if len(s) > sp.size {
			return nil, invalid(bit, fmt.Sprintf("length %d over the maximum %d", len(s), sp.size))
		}
	}
	switch sp.format {
	case fLLN, fLLZ, fLLA:
		dst = append(dst, bcdByte(len(s)))
	case fLLLN, fLLLZ, fLLLA:
		dst = append(dst, bcdByte(len(s)/100), bcdByte(len(s)%100))
	}
	var err error
	switch sp.format {
	case fN:
		if len(s)%2 == 1 {
			// right-aligned: a leading zero nibble
			if !isDigit(s[0]) {
				return nil, invalid(bit, "not a digit")
			}
			dst = append(dst, s[0]-'0')
			s = s[1:]
		}
		dst, err = putBCD(dst, s, false)
	case fNL, fLLN, fLLLN:
		dst, err = putBCD(dst, s, false)
	case fLLZ, fLLLZ:
		dst, err = putBCD(dst, s, true)
	case fA, fLLA, fLLLA:
		for i := 0; i < len(s); i++ {
			if !isText(s[i]) {
				return nil, invalid(bit, "control character")
			}
		}
		dst = append(dst, s...)
	}
	if err != nil {
		return nil, invalid(bit, err.Error())
	}
	return dst, nil
}

// appendBytes appends a binary field; nil is an absent field.
func appendBytes(dst []byte, bit int, b []byte) ([]byte, error) {
	if b == nil {
		return dst, nil
	}
	sp := profile[bit]
	switch sp.format {
	case fB:
		if len(b) != sp.size {
			return nil, invalid(bit, fmt.Sprintf("length %d, want %d", len(b), sp.size))
		}
	case fLLLB:
		if len(b) > sp.size {
			return nil, invalid(bit, fmt.Sprintf("length %d over the maximum %d", len(b), sp.size))
		}
		dst = append(dst, bcdByte(len(b)/100), bcdByte(len(b)%100))
	}
	return append(dst, b...), nil
}

var errDigit = errors.New("not a digit")

// putBCD appends s packed two digits a byte, left-aligned: an odd count ends with a zero
// nibble. With track, '=' is packed as the nibble D.
func putBCD[S ~string | ~[]byte](dst []byte, s S, track bool) ([]byte, error) {
	for i := 0; i < len(s); i += 2 {
		hi, ok := nibble(s[i], track)
		if !ok {
			return nil, errDigit
		}
		var lo byte
		if i+1 < len(s) {
			if lo, ok = nibble(s[i+1], track); !ok {
				return nil, errDigit
			}
		}
		dst = append(dst, hi<<4|lo)
	}
	return dst, nil
}

func nibble(c byte, track bool) (byte, bool) {
	switch {
	case isDigit(c):
		return c - '0', true
	case track && c == '=':
		return 0xD, true
	}
	return 0, false
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// isText: an and ans fields carry any byte but control characters (bytes from 0x80 pass:
// field 63 of an answer may hold GB2312 text).
func isText(c byte) bool { return c >= 0x20 && c != 0x7F }

func bcdByte(v int) byte { return byte(v/10<<4 | v%10) }

// Unpack parses a whole frame (with its 2-byte length) into header, message and the MAC block
// (nil when field 64 is absent; it aliases frame). It never panics and works in one pass over
// the frame; every error is a *FieldError wrapping ErrMalformed. The message's strings and
// slices do not alias frame.
func Unpack(frame []byte) (Header, *Msg, []byte, error) {
	var h Header
	if len(frame) < lenSize {
		return h, nil, nil, malformed(FieldFrame, "shorter than its length")
	}
	if n := int(binary.BigEndian.Uint16(frame)); n != len(frame)-lenSize {
		return h, nil, nil, malformed(FieldFrame, fmt.Sprintf("length %d, %d bytes follow", n, len(frame)-lenSize))
	}
	if len(frame) < mtiOff {
		return h, nil, nil, malformed(FieldFrame, "header cut")
	}
	copy(h.TPDU[:], frame[lenSize:])
	copy(h.App[:], frame[lenSize+5:])
	if len(frame) < mtiOff+2 {
		return h, nil, nil, malformed(FieldMTI, "cut")
	}
	m := &Msg{}
	mti, err := getBCD(frame[mtiOff:mtiOff+2], 4, false)
	if err != nil {
		return h, nil, nil, malformed(FieldMTI, err.Error())
	}
	m.MTI = mti
	if len(frame) < minFrame {
		return h, nil, nil, malformed(FieldBitmap, "cut")
	}
	bitmap := binary.BigEndian.Uint64(frame[mtiOff+2:])
	if bitmap&(1<<63) != 0 {
		return h, nil, nil, malformed(FieldBitmap, "secondary bitmap (bit 1) is not in the profile")
	}
	off := minFrame
	var mab []byte
	for bit := 2; bit <= 64; bit++ {
		if bitmap&(1<<(64-bit)) == 0 {
			continue
		}
		if profile[bit].format == 0 {
			return h, nil, nil, malformed(bit, "not defined by the profile")
		}
		if bit == 64 {
			mab = frame[mtiOff:off:off]
		}
		n, err := m.decodeField(bit, frame[off:])
		if err != nil {
			return h, nil, nil, err
		}
		off += n
	}
	if off != len(frame) {
		return h, nil, nil, malformed(FieldFrame, fmt.Sprintf("%d bytes after the last field", len(frame)-off))
	}
	return h, m, mab, nil
}

// decodeField reads field bit from the start of src into m and returns the bytes it took.
func (m *Msg) decodeField(bit int, src []byte) (int, error) {
	sp := profile[bit]
	n, pre := sp.size, 0 // n: digits, characters or bytes of the value
	switch sp.format {
	case fLLN, fLLZ, fLLA:
		pre = 1
	case fLLLN, fLLLZ, fLLLA, fLLLB:
		pre = 2
	}
	if len(src) < pre {
		return 0, malformed(bit, "length prefix cut")
	}
	if pre > 0 {
		var ok bool
		if n, ok = decodeLen(src[:pre]); !ok {
			return 0, malformed(bit, "length prefix not BCD")
		}
		if n > sp.size {
			return 0, malformed(bit, fmt.Sprintf("length %d over the maximum %d", n, sp.size))
		}
		if n == 0 && sp.format != fLLLB {
			return 0, malformed(bit, "empty")
		}
	}
	size := n // bytes on the wire
	switch sp.format {
	case fN, fNL, fLLN, fLLLN, fLLZ, fLLLZ:
		size = (n + 1) / 2
	}
	if len(src)-pre < size {
		return 0, malformed(bit, fmt.Sprintf("%d bytes announced, %d left", size, len(src)-pre))
	}
	v := src[pre : pre+size]
	var s string
	var err error
	switch sp.format {
	case fN:
		if n%2 == 1 {
			if v[0]>>4 != 0 {
				return 0, malformed(bit, "pad nibble not 0")
			}
			s, err = getBCD(v, n+1, false)
			s = s[min(1, len(s)):]
		} else {
			s, err = getBCD(v, n, false)
		}
	case fNL, fLLN, fLLLN:
		s, err = getBCD(v, n, false)
	case fLLZ, fLLLZ:
		s, err = getBCD(v, n, true)
	case fA, fLLA, fLLLA:
		for _, c := range v {
			if !isText(c) {
				return 0, malformed(bit, "control character")
			}
		}
		s = string(v)
	case fB, fLLLB:
		b := append([]byte{}, v...)
		switch bit {
		case 52:
			m.PINBlock = b
		case 55:
			m.ICC = b
		case 62:
			m.F62 = b
		case 64:
			m.MAC = b
		}
		return pre + size, nil
	}
	if err != nil {
		return 0, malformed(bit, err.Error())
	}
	if err := m.setText(bit, s); err != nil {
		return 0, err
	}
	return pre + size, nil
}

// setText stores a decoded text field in m.
func (m *Msg) setText(bit int, s string) error {
	switch bit {
	case 2:
		m.PAN = s
	case 3:
		m.ProcCode = s
	case 4:
		m.Amount, m.HasAmount = int64(atoi(s)), true
	case 11:
		m.STAN = int(atoi(s))
		if m.STAN == 0 {
			return malformed(bit, "trace number 000000")
		}
	case 12:
		m.LocalTime = s
	case 13:
		m.LocalDate = s
	case 14:
		m.Expiry = s
	case 15:
		m.SettleDate = s
	case 22:
		m.EntryMode = s
	case 23:
		m.CardSeq = s
	case 25:
		m.CondCode = s
	case 26:
		m.PINCapture = s
	case 32:
		m.AcqInst = s
	case 35:
		m.Track2 = s
	case 36:
		m.Track3 = s
	case 37:
		m.RRN = s
	case 38:
		m.AuthCode = s
	case 39:
		m.RespCode = s
	case 41:
		m.TID = s
	case 42:
		m.MID = s
	case 44:
		m.AddResp = s
	case 48:
		m.AddData = s
	case 49:
		m.Currency = s
	case 53:
		m.SecCtrl = s
	case 54:
		m.Balance = s
	case 60:
		p, ok := splitParts(s, f60Type, f60Batch, f60Net)
		if !ok {
			return malformed(bit, fmt.Sprintf("%d digits do not end on a subfield", len(s)))
		}
		m.F60 = F60{Type: p[0], Batch: p[1], NetCode: p[2], Rest: p[3]}
	case 61:
		p, ok := splitParts(s, f61Batch, f61Trace, f61Date)
		if !ok {
			return malformed(bit, fmt.Sprintf("%d digits do not end on a subfield", len(s)))
		}
		m.F61 = F61{Batch: p[0], Trace: p[1], Date: p[2], Rest: p[3]}
	case 63:
		m.F63 = s
	}
	return nil
}

// splitParts cuts s into three fixed subfields and the rest; s must end after a complete one.
func splitParts(s string, a, b, c int) ([4]string, bool) {
	var p [4]string
	for i, size := range [3]int{a, b, c} {
		if s == "" {
			return p, true
		}
		if len(s) < size {
			return p, false
		}
		p[i], s = s[:size], s[size:]
	}
	p[3] = s
	return p, true
}

func atoi(s string) uint64 {
	var v uint64
	for i := 0; i < len(s); i++ {
		v = v*10 + uint64(s[i]-'0')
	}
	return v
}

// getBCD unpacks n digits, left-aligned, from src (len(src) == (n+1)/2); the pad nibble of an
// odd count must be 0. With track, the nibble D is '='.
func getBCD(src []byte, n int, track bool) (string, error) {
	var tmp [512]byte // the longest is field 48 (322 digits): one allocation, the string
	out := tmp[:n]
	for i := range n {
		c := src[i/2]
		if i%2 == 0 {
			c >>= 4
		} else {
			c &= 0x0F
		}
		switch {
		case c <= 9:
			out[i] = '0' + c
		case track && c == 0xD:
			out[i] = '='
		default:
			return "", errDigit
		}
	}
	if n%2 == 1 && src[n/2]&0x0F != 0 {
		return "", errors.New("pad nibble not 0")
	}
	return string(out), nil
}

// decodeLen reads a 1- or 2-byte BCD length prefix.
func decodeLen(p []byte) (int, bool) {
	v := 0
	for _, c := range p {
		hi, lo := c>>4, c&0x0F
		if hi > 9 || lo > 9 {
			return 0, false
		}
		v = v*100 + int(hi)*10 + int(lo)
	}
	return v, true
}

// VerifyMAC recomputes field 64 over mab (as Unpack returned it) and compares it with m.MAC in
// constant time: ErrBadMAC when field 64 is absent or differs. An error of the MAC function
// (no key, say) is returned wrapped, not as ErrBadMAC.
func VerifyMAC(m *Msg, mab []byte, mac MACFunc) error {
	if m == nil || len(m.MAC) != 8 || mab == nil {
		return fmt.Errorf("%w: field 64 absent", ErrBadMAC)
	}
	if mac == nil {
		return errors.New("iso8583: no MAC function")
	}
	v, err := mac(mab)
	if err != nil {
		return fmt.Errorf("iso8583: MAC: %w", err)
	}
	if len(v) != 8 || subtle.ConstantTimeCompare(v, m.MAC) != 1 {
		return ErrBadMAC
	}
	return nil
}

// ReadFrame reads one frame: the 2-byte big-endian length, then that many bytes. It returns the
// whole frame, length included, as Unpack takes it. A length over MaxFrame is ErrTooLong (the
// body is not read); a zero length is ErrMalformed. io.EOF before the first byte is returned as
// is; a frame cut later is io.ErrUnexpectedEOF.
func ReadFrame(r io.Reader) ([]byte, error) {
	var l [lenSize]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(l[:]))
	if n > MaxFrame {
		return nil, fmt.Errorf("%w: %d bytes announced", ErrTooLong, n)
	}
	if n == 0 {
		return nil, malformed(FieldFrame, "empty frame")
	}
	frame := make([]byte, lenSize+n)
	copy(frame, l[:])
	if _, err := io.ReadFull(r, frame[lenSize:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return frame, nil
}

// NewHeader makes the header of a request: the TPDU from 10 hex digits ("60" + destination +
// source, e.g. "6000030000") and the application header 60 31, terminal state 0 (normal) or 1
// (test) in the high nibble of its third byte, processing requirement 0, reserved bytes 0.
func NewHeader(tpdu string, test bool) (Header, error) {
	var h Header
	if len(tpdu) != 10 {
		return h, fmt.Errorf("%w: TPDU must be 10 hex digits", ErrInvalid)
	}
	if _, err := hex.Decode(h.TPDU[:], []byte(tpdu)); err != nil || h.TPDU[0] != 0x60 {
		return h, fmt.Errorf("%w: TPDU must be 10 hex digits starting with 60", ErrInvalid)
	}
	h.App = [6]byte{0x60, 0x31}
	if test {
		h.App[2] = 0x10
	}
	return h, nil
}

// Test reports whether the terminal state of the application header is 1 (test transaction).
func (h Header) Test() bool { return h.App[2]>>4 == 1 }

// Reply is the header of the answer to a message with header h: the TPDU's destination and
// source swapped, the application header kept.
func (h Header) Reply() Header {
	r := h
	copy(r.TPDU[1:3], h.TPDU[3:5])
	copy(r.TPDU[3:5], h.TPDU[1:3])
	return r
}
