package cardemu

import "fmt"

// EncodeTrack codes the characters of a track (between its sentinels) the way the reader
// module reports a swipe: start sentinel, characters, end sentinel and LRC, one byte per
// stripe character with the data bits low and the odd parity bit above them (ISO/IEC 7811:
// track 1 six bits from 0x20, tracks 2 and 3 four bits from 0x30). The LRC's data bits are
// the XOR of all characters' data bits; its parity bit is its own odd parity.
func EncodeTrack(track int, content string) ([]byte, error) {
	bits, base, ss := uint(4), byte(0x30), byte(';')
	if track == 1 {
		bits, base, ss = 6, 0x20, '%'
	} else if track != 2 && track != 3 {
		return nil, fmt.Errorf("cardemu: no track %d", track)
	}
	mask := byte(1)<<bits - 1
	chars := []byte{ss}
	chars = append(chars, content...)
	chars = append(chars, '?')
	out := make([]byte, 0, len(chars)+1)
	var lrc byte
	for i, c := range chars {
		d := c - base
		if c < base || d > mask {
			return nil, fmt.Errorf("cardemu: track %d: character %d not in the track's set", track, i)
		}
		lrc ^= d
		out = append(out, withParity(d, bits))
	}
	return append(out, withParity(lrc, bits)), nil
}

func withParity(d byte, bits uint) byte {
	ones := 0
	for i := uint(0); i < bits; i++ {
		ones += int(d >> i & 1)
	}
	if ones%2 == 0 {
		d |= 1 << bits
	}
	return d
}
