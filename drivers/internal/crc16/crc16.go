// Package crc16 is CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF, no reflection,
// no final XOR; check value 0x29B1 for "123456789"), the checksum of the PIN pad and card reader
// frames.
package crc16

// Init is the initial value; pass it to Update for a fresh checksum.
const Init = 0xFFFF

var table = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i) << 8
		for range 8 {
			if c&0x8000 != 0 {
				c = c<<1 ^ 0x1021
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}()

// Update continues crc over p, so a checksum can cover pieces without joining them.
func Update(crc uint16, p []byte) uint16 {
	for _, b := range p {
		crc = crc<<8 ^ table[byte(crc>>8)^b]
	}
	return crc
}

// Checksum is the CRC of p.
func Checksum(p []byte) uint16 { return Update(Init, p) }
