package emv

import "fmt"

// DOLEntry is one element of a data object list: the card names a tag and the length it wants.
type DOLEntry struct {
	Tag Tag
	Len int
}

// ParseDOL reads a data object list (PDOL, CDOL1 …): tags with lengths, no values.
func ParseDOL(b []byte) ([]DOLEntry, error) {
	var out []DOLEntry
	for off := 0; off < len(b); {
		tag, n, err := ReadTag(b[off:])
		if err != nil {
			return nil, shift(err, off)
		}
		l, m, err := ReadLength(b[off+n:])
		if err != nil {
			return nil, shift(err, off+n)
		}
		// A DOL asks for at most a short command's worth of data per object.
		if l > 252 {
			return nil, malformed(off, "DOL asks %d bytes for tag %s", l, tag)
		}
		out = append(out, DOLEntry{Tag: tag, Len: l})
		off += n + m
	}
	return out, nil
}

// DOLLen is the number of bytes BuildDOL produces for the list.
func DOLLen(dol []DOLEntry) int {
	n := 0
	for _, e := range dol {
		n += e.Len
	}
	return n
}

// numeric tags are format n: right-aligned BCD, so they are cut and padded on the left
// (EMV Book 3, 5.4).
var numeric = map[Tag]bool{
	TagAmount: true, TagAmountOther: true, TagCurrency: true, TagCountry: true,
	TagTransactionDate: true, TagTransactionType: true, TagTransactionTime: true,
	TagSequenceCounter: true, TagPANSequence: true, 0x9F15: true, 0x5F36: true, 0x9F3C: true,
}

// cn tags are compressed numeric: left-aligned, padded with F.
var compressedNumeric = map[Tag]bool{TagPAN: true, 0x9F20: true}

// BuildDOL concatenates the values the list asks for, in its order, each fitted to the
// requested length by the rules of EMV Book 3 §5.4. A tag lookup does not know is sent as
// zeros, as the specification requires.
func BuildDOL(dol []DOLEntry, lookup func(Tag) ([]byte, bool)) []byte {
	out := make([]byte, 0, DOLLen(dol))
	for _, e := range dol {
		v, ok := lookup(e.Tag)
		if !ok || e.Tag.Constructed() {
			out = append(out, make([]byte, e.Len)...)
			continue
		}
		out = append(out, fit(e.Tag, v, e.Len)...)
	}
	return out
}

func fit(t Tag, v []byte, n int) []byte {
	out := make([]byte, n)
	switch {
	case numeric[t]:
		if len(v) >= n {
			copy(out, v[len(v)-n:])
		} else {
			copy(out[n-len(v):], v)
		}
	case compressedNumeric[t]:
		for i := range out {
			out[i] = 0xFF
		}
		copy(out, v)
	default:
		copy(out, v)
	}
	return out
}

// String is the list in the tag(len) notation of the specifications.
func (e DOLEntry) String() string { return fmt.Sprintf("%s(%d)", e.Tag, e.Len) }
