// Package pinblock builds and reads clear ISO 9564-1 format 0 PIN blocks (ANSI X9.8), the
// PIN block of UnionPay field 52 and of most ISO 8583 hosts.
//
// A clear PIN block is as secret as the PIN: errors never carry the PIN, the PAN or the block.
package pinblock

import "errors"

// Errors; none of them carries the value it refuses.
var (
	// ErrBadPIN: the PIN is not 4 to 12 decimal digits.
	ErrBadPIN = errors.New("pinblock: PIN must be 4 to 12 digits")
	// ErrBadPAN: the PAN is not 13 to 19 decimal digits.
	ErrBadPAN = errors.New("pinblock: PAN must be 13 to 19 digits")
	// ErrBadBlock: the block is not a well-formed format 0 block for this PAN.
	ErrBadBlock = errors.New("pinblock: not a well-formed ISO 9564 format 0 block")
)

// Limits of format 0.
const (
	MinPINLen = 4
	MaxPINLen = 12
	MinPANLen = 13
	MaxPANLen = 19
)

// Format0 builds the clear format 0 block: the PIN field 0 L P P P P P/F … F (L the PIN
// length, F padding) XOR the account field 0 0 0 0 followed by the 12 rightmost PAN digits
// excluding the check digit. pin is 4..12 digits, pan 13..19 digits.
func Format0(pin, pan string) ([8]byte, error) {
	var blk [8]byte
	if len(pin) < MinPINLen || len(pin) > MaxPINLen || !digits(pin) {
		return blk, ErrBadPIN
	}
	acct, err := accountField(pan)
	if err != nil {
		return blk, err
	}
	var f [16]byte // PIN field, one nibble a byte
	f[1] = byte(len(pin))
	for i := 2; i < 16; i++ {
		f[i] = 0xF
	}
	for i := range len(pin) {
		f[2+i] = pin[i] - '0'
	}
	for i := range blk {
		blk[i] = (f[2*i]<<4 | f[2*i+1]) ^ acct[i]
	}
	clear(f[:])
	return blk, nil
}

// PIN recovers the PIN from a clear format 0 block and its PAN. A block whose PIN field is
// not 0, a length of 4..12, that many decimal digits and F padding is ErrBadBlock (a block
// of another format, of another PAN, or decrypted under the wrong key, almost always is).
func PIN(block [8]byte, pan string) (string, error) {
	acct, err := accountField(pan)
	if err != nil {
		return "", err
	}
	var f [16]byte
	defer clear(f[:])
	for i := range block {
		b := block[i] ^ acct[i]
		f[2*i], f[2*i+1] = b>>4, b&0x0F
	}
	n := int(f[1])
	if f[0] != 0 || n < MinPINLen || n > MaxPINLen {
		return "", ErrBadBlock
	}
	pin := make([]byte, n)
	for i := range n {
		d := f[2+i]
		if d > 9 {
			clear(pin)
			return "", ErrBadBlock
		}
		pin[i] = '0' + d
	}
	for i := 2 + n; i < 16; i++ {
		if f[i] != 0xF {
			clear(pin)
			return "", ErrBadBlock
		}
	}
	return string(pin), nil
}

// accountField is 0000 followed by the 12 rightmost PAN digits excluding the check digit,
// packed in 8 bytes.
func accountField(pan string) ([8]byte, error) {
	var a [8]byte
	if len(pan) < MinPANLen || len(pan) > MaxPANLen || !digits(pan) {
		return a, ErrBadPAN
	}
	d := pan[len(pan)-13 : len(pan)-1]
	for i := range 6 {
		a[2+i] = (d[2*i]-'0')<<4 | (d[2*i+1] - '0')
	}
	return a, nil
}

func digits(s string) bool {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
