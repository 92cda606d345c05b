package tr31

import (
	"fmt"
	"strconv"
)

// maxBlockLen is what the 4-digit length field can express; it also bounds
// the work Parse does on hostile input.
const maxBlockLen = 9999

// headerLen is the fixed part: version, length, usage, algorithm, mode of
// use, key version, exportability, number of optional blocks, reserved.
const headerLen = 16

// params are what the version fixes about the layout.
type params struct {
	bs     int // cipher block size: header and key data are multiples of it
	macLen int // MAC bytes at the end of the block
}

func versionParams(v byte) (params, bool) {
	switch v {
	case 'A', 'C': // TDES variant binding, 4-byte MAC
		return params{bs: 8, macLen: 4}, true
	case 'B': // TDES derivation binding, 8-byte CMAC
		return params{bs: 8, macLen: 8}, true
	case 'D': // AES derivation binding, 16-byte CMAC
		return params{bs: 16, macLen: 16}, true
	}
	return params{}, false
}

// layout locates the hex fields that follow the header.
type layout struct {
	hdrEnd   int // end of the header and optional blocks; the encrypted key data starts here
	macStart int
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

func parse(s string) (Header, layout, error) {
	var h Header
	if len(s) < headerLen {
		return h, layout{}, malformed("%d characters, shorter than the %d-character header", len(s), headerLen)
	}
	if len(s) > maxBlockLen {
		return h, layout{}, malformed("longer than %d characters", maxBlockLen)
	}
	// Everything in a key block is printable ASCII; checking that once up
	// front means every later index is a character index.
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return h, layout{}, malformed("non-printable or non-ASCII byte at offset %d", i)
		}
	}
	p, ok := versionParams(s[0])
	if !ok {
		return h, layout{}, fmt.Errorf("%w: %q", ErrUnsupportedVersion, s[0])
	}
	n, ok := decimal(s[1:5])
	if !ok {
		return h, layout{}, malformed("length field is not 4 digits")
	}
	if n != len(s) {
		return h, layout{}, malformed("length field says %d, block has %d characters", n, len(s))
	}
	h.Version = s[0]
	h.Usage = s[5:7]
	h.Algorithm = s[7]
	h.ModeOfUse = s[8]
	h.KeyVersion = s[9:11]
	h.Exportability = s[11]
	if !upperAlnum(s[5:12]) {
		return h, layout{}, malformed("header attributes must be upper-case letters and digits")
	}
	count, ok := decimal(s[12:14])
	if !ok {
		return h, layout{}, malformed("number of optional blocks is not 2 digits")
	}
	if s[14:16] != "00" {
		return h, layout{}, malformed("reserved field is not 00")
	}

	pos := headerLen
	for i := range count {
		ob, next, err := parseOptional(s, pos, i)
		if err != nil {
			return h, layout{}, err
		}
		if i > 0 && h.Optional[i-1].ID == "PB" {
			return h, layout{}, malformed("optional block %d follows the PB padding block, which must be last", i+1)
		}
		h.Optional = append(h.Optional, ob)
		pos = next
	}
	if pos%p.bs != 0 {
		return h, layout{}, malformed("header with optional blocks is %d characters, not a multiple of %d", pos, p.bs)
	}

	macStart := len(s) - 2*p.macLen
	keyHex := macStart - pos
	if keyHex <= 0 || keyHex%(2*p.bs) != 0 {
		return h, layout{}, malformed("encrypted key field of %d characters is not a whole number of %d-byte blocks", max(keyHex, 0), p.bs)
	}
	for i := pos; i < len(s); i++ {
		if !upperHex(s[i]) {
			return h, layout{}, malformed("encrypted key or MAC has a character that is not upper-case hex at offset %d", i)
		}
	}
	return h, layout{hdrEnd: pos, macStart: macStart}, nil
}

// parseOptional reads the optional block at s[pos:]: ID, 2 hex digits of
// length counting the whole block, data. A length of "00" announces the
// extended form: 2 hex digits giving the number of bytes of the length,
// then the length in that many bytes of hex.
func parseOptional(s string, pos, i int) (OptionalBlock, int, error) {
	rest := len(s) - pos
	if rest < 4 {
		return OptionalBlock{}, 0, malformed("optional block %d is truncated", i+1)
	}
	id := s[pos : pos+2]
	if !upperAlnum(id) {
		return OptionalBlock{}, 0, malformed("optional block %d has an ID that is not 2 upper-case letters or digits", i+1)
	}
	l, ok := hexNum(s[pos+2 : pos+4])
	if !ok {
		return OptionalBlock{}, 0, malformed("optional block %s: length is not 2 upper-case hex digits", id)
	}
	hdr := 4
	if l == 0 {
		if rest < 6 {
			return OptionalBlock{}, 0, malformed("optional block %s: extended length is truncated", id)
		}
		ll, ok := hexNum(s[pos+4 : pos+6])
		// Four bytes is far more than 9999 needs; the cap keeps the
		// arithmetic below in range.
		if !ok || ll == 0 || ll > 4 {
			return OptionalBlock{}, 0, malformed("optional block %s: length of length is not 01 to 04", id)
		}
		hdr = 6 + 2*ll
		if rest < hdr {
			return OptionalBlock{}, 0, malformed("optional block %s: extended length is truncated", id)
		}
		if l, ok = hexNum(s[pos+6 : pos+hdr]); !ok {
			return OptionalBlock{}, 0, malformed("optional block %s: extended length is not upper-case hex", id)
		}
	}
	if l < hdr {
		return OptionalBlock{}, 0, malformed("optional block %s: length %d does not cover its own ID and length", id, l)
	}
	if l > rest {
		return OptionalBlock{}, 0, malformed("optional block %s: length %d runs past the end of the block", id, l)
	}
	return OptionalBlock{ID: id, Data: s[pos+hdr : pos+l]}, pos + l, nil
}

// checkHeader validates a caller's header for Wrap with the same rules Parse
// applies, so that whatever Wrap writes, Parse reads back.
func checkHeader(h Header) error {
	if len(h.Usage) != 2 || len(h.KeyVersion) != 2 ||
		!upperAlnum(h.Usage) || !upperAlnum(h.KeyVersion) ||
		!upperAlnum(string([]byte{h.Algorithm, h.ModeOfUse, h.Exportability})) {
		return malformed("header attributes must be upper-case letters and digits of the right length")
	}
	for i, ob := range h.Optional {
		if len(ob.ID) != 2 || !upperAlnum(ob.ID) {
			return malformed("optional block %d has an ID that is not 2 upper-case letters or digits", i+1)
		}
		for j := 0; j < len(ob.Data); j++ {
			if ob.Data[j] < 0x20 || ob.Data[j] > 0x7e {
				return malformed("optional block %s: data is not printable ASCII", ob.ID)
			}
		}
		if ob.ID == "PB" && i != len(h.Optional)-1 {
			return malformed("the PB padding block must be last")
		}
	}
	return nil
}

// formatHeader writes the header and optional blocks for a key data field of
// kdLen bytes, adding a PB block if the caller's blocks leave the header
// unaligned.
func formatHeader(h Header, p params, kdLen int) (string, error) {
	b := make([]byte, 0, 64)
	b = append(b, h.Version, '0', '0', '0', '0')
	b = append(b, h.Usage...)
	b = append(b, h.Algorithm, h.ModeOfUse)
	b = append(b, h.KeyVersion...)
	b = append(b, h.Exportability, '0', '0', '0', '0')
	for _, ob := range h.Optional {
		if len(b)+4+len(ob.Data) > maxBlockLen {
			return "", malformed("optional blocks do not fit in a key block")
		}
		b = appendOptional(b, ob.ID, ob.Data)
	}
	count := len(h.Optional)
	if r := len(b) % p.bs; r != 0 {
		if count > 0 && h.Optional[count-1].ID == "PB" {
			return "", malformed("the caller's PB block leaves the header at %d characters, not a multiple of %d", len(b), p.bs)
		}
		pad := p.bs - r
		if pad < 4 {
			pad += p.bs
		}
		b = appendOptional(b, "PB", zeros[:pad-4])
		count++
	}
	if count > 99 {
		return "", malformed("%d optional blocks, at most 99 fit", count)
	}
	b[12], b[13] = '0'+byte(count/10), '0'+byte(count%10)
	total := len(b) + 2*kdLen + 2*p.macLen
	if total > maxBlockLen {
		return "", malformed("key block would be %d characters, more than %d", total, maxBlockLen)
	}
	copy(b[1:5], fmt.Sprintf("%04d", total))
	return string(b), nil
}

// zeros fills PB blocks; the standard only asks for printable characters.
const zeros = "0000000000000000000000"

func appendOptional(b []byte, id, data string) []byte {
	b = append(b, id...)
	if n := 4 + len(data); n <= 0xFF {
		b = appendHex(b, []byte{byte(n)})
	} else {
		// Extended form: "00", 2 bytes of length, then the length.
		n = 10 + len(data)
		b = append(b, "0002"...)
		b = appendHex(b, []byte{byte(n >> 8), byte(n)})
	}
	return append(b, data...)
}

func decimal(s string) (int, bool) {
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, true
}

// hexNum parses up to 8 upper-case hex digits.
func hexNum(s string) (int, bool) {
	if len(s) == 0 || len(s) > 8 {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 16, 32)
	if err != nil {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if !upperHex(s[i]) {
			return 0, false
		}
	}
	return int(v), true
}

func upperAlnum(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'A' || c > 'Z') {
			return false
		}
	}
	return true
}

func upperHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F')
}

const hexDigits = "0123456789ABCDEF"

func appendHex(b, src []byte) []byte {
	for _, c := range src {
		b = append(b, hexDigits[c>>4], hexDigits[c&0x0f])
	}
	return b
}

// decodeHex decodes upper-case hex that parse has already validated.
func decodeHex(s string) []byte {
	out := make([]byte, len(s)/2)
	for i := range out {
		out[i] = unhexDigit(s[2*i])<<4 | unhexDigit(s[2*i+1])
	}
	return out
}

func unhexDigit(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c - 'A' + 10
}
