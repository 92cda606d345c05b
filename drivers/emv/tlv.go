// Package emv reads a payment card's chip: BER-TLV coding as EMV uses it, and enough of an
// EMV transaction (application selection, GET PROCESSING OPTIONS, READ RECORD, GENERATE AC)
// to give the payment engine the track-2 equivalent data and the ICC data of ISO 8583 field 55.
//
// It talks to the card through a Transport (one APDU in, one response out), so the same code
// serves the contact and the contactless interface of any reader, or a card emulated in memory.
// It never logs; values that identify the card are masked in every String, LogValue and error.
package emv

import (
	"errors"
	"fmt"
)

// Tag is a BER-TLV tag read as a big-endian number of its bytes: 9F 26 is Tag(0x9F26).
type Tag uint32

// Tags this package reads or writes.
const (
	TagAID                 Tag = 0x4F   // application identifier (directory entry)
	TagAppLabel            Tag = 0x50   // application label
	TagTrack1Equivalent    Tag = 0x56   // track 1 data (contactless magstripe mode)
	TagTrack2Equivalent    Tag = 0x57   // track 2 equivalent data
	TagPAN                 Tag = 0x5A   // application PAN
	TagCardholderName      Tag = 0x5F20 // cardholder name
	TagExpiry              Tag = 0x5F24 // application expiration date YYMMDD
	TagEffective           Tag = 0x5F25 // application effective date YYMMDD
	TagCurrency            Tag = 0x5F2A // transaction currency code
	TagServiceCode         Tag = 0x5F30 // service code
	TagPANSequence         Tag = 0x5F34 // PAN sequence number
	TagDirEntry            Tag = 0x61   // application template (directory entry)
	TagFCI                 Tag = 0x6F   // file control information template
	TagRecord              Tag = 0x70   // record template
	TagResponseFormat2     Tag = 0x77   // response message template format 2
	TagResponseFormat1     Tag = 0x80   // response message template format 1
	TagAIP                 Tag = 0x82   // application interchange profile
	TagCommandTemplate     Tag = 0x83   // command template (GPO data)
	TagDFName              Tag = 0x84   // dedicated file name
	TagPriority            Tag = 0x87   // application priority indicator
	TagSFI                 Tag = 0x88   // short file identifier (PSE directory)
	TagCDOL1               Tag = 0x8C   // card risk management data object list 1
	TagAFL                 Tag = 0x94   // application file locator
	TagTVR                 Tag = 0x95   // terminal verification results
	TagTransactionDate     Tag = 0x9A   // YYMMDD
	TagTransactionType     Tag = 0x9C   // transaction type
	TagFCIProprietary      Tag = 0xA5   // FCI proprietary template
	TagFCIIssuerData       Tag = 0xBF0C // FCI issuer discretionary data
	TagAmount              Tag = 0x9F02 // amount, authorised
	TagAmountOther         Tag = 0x9F03 // amount, other
	TagAppVersionTerminal  Tag = 0x9F09 // application version number (terminal)
	TagIAD                 Tag = 0x9F10 // issuer application data
	TagTrack1Discretionary Tag = 0x9F1F // track 1 discretionary data
	TagTrack2Discretionary Tag = 0x9F20 // track 2 discretionary data
	TagCountry             Tag = 0x9F1A // terminal country code
	TagIFDSerial           Tag = 0x9F1E // interface device serial number
	TagTransactionTime     Tag = 0x9F21 // HHMMSS
	TagCryptogram          Tag = 0x9F26 // application cryptogram
	TagCID                 Tag = 0x9F27 // cryptogram information data
	TagTerminalCaps        Tag = 0x9F33 // terminal capabilities
	TagCVMResults          Tag = 0x9F34 // cardholder verification method results
	TagTerminalType        Tag = 0x9F35 // terminal type
	TagATC                 Tag = 0x9F36 // application transaction counter
	TagUnpredictableNumber Tag = 0x9F37 // unpredictable number
	TagPDOL                Tag = 0x9F38 // processing options data object list
	TagAddTerminalCaps     Tag = 0x9F40 // additional terminal capabilities
	TagSequenceCounter     Tag = 0x9F41 // transaction sequence counter
	TagTTQ                 Tag = 0x9F66 // terminal transaction qualifiers (contactless)
	TagTrack2Data          Tag = 0x9F6B // track 2 data (contactless magstripe mode)
)

// Constructed reports whether the tag introduces a template of further TLVs (bit 6 of its
// first byte).
func (t Tag) Constructed() bool {
	b := t.first()
	return b&0x20 != 0
}

func (t Tag) first() byte {
	switch {
	case t > 0xFFFFFF:
		return byte(t >> 24)
	case t > 0xFFFF:
		return byte(t >> 16)
	case t > 0xFF:
		return byte(t >> 8)
	}
	return byte(t)
}

// AppendTo appends the tag's bytes.
func (t Tag) AppendTo(dst []byte) []byte {
	switch {
	case t > 0xFFFFFF:
		return append(dst, byte(t>>24), byte(t>>16), byte(t>>8), byte(t))
	case t > 0xFFFF:
		return append(dst, byte(t>>16), byte(t>>8), byte(t))
	case t > 0xFF:
		return append(dst, byte(t>>8), byte(t))
	}
	return append(dst, byte(t))
}

func (t Tag) String() string { return fmt.Sprintf("%X", t.AppendTo(nil)) }

// TLV is one data object. Value aliases the bytes it was parsed from.
type TLV struct {
	Tag   Tag
	Value []byte
}

// ErrMalformed is wrapped by every error about badly coded TLV or DOL data.
var ErrMalformed = errors.New("emv: malformed data")

// maxTagBytes keeps a tag inside a Tag; EMV uses at most three.
const maxTagBytes = 4

// maxDepth bounds template nesting: EMV goes four deep (6F A5 BF0C 61); anything far deeper is
// an attack on the stack, not a card.
const maxDepth = 8

func malformed(off int, format string, a ...any) error {
	return fmt.Errorf("%w at byte %d: %s", ErrMalformed, off, fmt.Sprintf(format, a...))
}

// ReadTag reads the tag at the start of b and says how many bytes it took.
func ReadTag(b []byte) (Tag, int, error) {
	if len(b) == 0 {
		return 0, 0, malformed(0, "tag missing")
	}
	t := Tag(b[0])
	if b[0]&0x1F != 0x1F {
		return t, 1, nil
	}
	// Subsequent bytes follow while bit 8 is set.
	for i := 1; ; i++ {
		if i >= len(b) {
			return 0, 0, malformed(i, "tag cut short")
		}
		if i >= maxTagBytes {
			return 0, 0, malformed(i, "tag longer than %d bytes", maxTagBytes)
		}
		t = t<<8 | Tag(b[i])
		if b[i]&0x80 == 0 {
			return t, i + 1, nil
		}
	}
}

// ReadLength reads a BER length (short form, or long form of one to three bytes).
func ReadLength(b []byte) (int, int, error) {
	if len(b) == 0 {
		return 0, 0, malformed(0, "length missing")
	}
	if b[0] < 0x80 {
		return int(b[0]), 1, nil
	}
	n := int(b[0] & 0x7F)
	if n == 0 {
		return 0, 0, malformed(0, "indefinite length")
	}
	if n > 3 {
		return 0, 0, malformed(0, "length of %d bytes", n)
	}
	if len(b) < 1+n {
		return 0, 0, malformed(0, "length cut short")
	}
	l := 0
	for _, c := range b[1 : 1+n] {
		l = l<<8 | int(c)
	}
	return l, 1 + n, nil
}

// Parse splits b into the data objects at its top level. Padding bytes 00 and FF between
// objects, which cards may leave in records, are skipped. Every length is checked against the
// bytes that remain.
func Parse(b []byte) ([]TLV, error) {
	var out []TLV
	for off := 0; off < len(b); {
		if b[off] == 0x00 || b[off] == 0xFF {
			off++
			continue
		}
		tag, n, err := ReadTag(b[off:])
		if err != nil {
			return nil, shift(err, off)
		}
		l, m, err := ReadLength(b[off+n:])
		if err != nil {
			return nil, shift(err, off+n)
		}
		start := off + n + m
		if l > len(b)-start {
			return nil, malformed(off, "tag %s says %d bytes, %d remain", tag, l, len(b)-start)
		}
		out = append(out, TLV{Tag: tag, Value: b[start : start+l : start+l]})
		off = start + l
	}
	return out, nil
}

// shift re-reports an error of a sub-slice at its offset in the whole; only the message moves.
func shift(err error, off int) error {
	if off == 0 {
		return err
	}
	return fmt.Errorf("%w (object at byte %d)", err, off)
}

// Find returns the value of the first object with the tag, searching templates depth-first.
func Find(b []byte, tag Tag) ([]byte, bool) {
	v, ok, _ := find(b, tag, 0)
	return v, ok
}

func find(b []byte, tag Tag, depth int) ([]byte, bool, error) {
	if depth > maxDepth {
		return nil, false, malformed(0, "templates nested deeper than %d", maxDepth)
	}
	objs, err := Parse(b)
	if err != nil {
		return nil, false, err
	}
	for _, o := range objs {
		if o.Tag == tag {
			return o.Value, true, nil
		}
		if o.Tag.Constructed() {
			if v, ok, _ := find(o.Value, tag, depth+1); ok {
				return v, true, nil
			}
		}
	}
	return nil, false, nil
}

// AppendTLV appends one data object with the shortest length coding.
func AppendTLV(dst []byte, tag Tag, value []byte) []byte {
	dst = tag.AppendTo(dst)
	dst = AppendLength(dst, len(value))
	return append(dst, value...)
}

// AppendLength appends a BER length.
func AppendLength(dst []byte, n int) []byte {
	switch {
	case n < 0x80:
		return append(dst, byte(n))
	case n <= 0xFF:
		return append(dst, 0x81, byte(n))
	case n <= 0xFFFF:
		return append(dst, 0x82, byte(n>>8), byte(n))
	}
	return append(dst, 0x83, byte(n>>16), byte(n>>8), byte(n))
}

// Encode codes the objects one after the other.
func Encode(objs ...TLV) []byte {
	var out []byte
	for _, o := range objs {
		out = AppendTLV(out, o.Tag, o.Value)
	}
	return out
}
