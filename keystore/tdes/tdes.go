// Package tdes builds the triple-DES cipher of the payment keys, whatever their length: a
// single-length key is DES (K1 = K2 = K3), a double-length key is K1 K2 K1, a triple-length
// key is itself. Every key user (check values, MACs, TR-31 version B, the software backend,
// the host simulator) takes its cipher from here, so the rule lives in one place. The device
// emulators keep their own on purpose: an independent implementation is what tests them.
package tdes

import (
	"crypto/cipher"
	"crypto/des"
	"errors"
	"fmt"
)

// ErrKeyLength: a TDES key is 8, 16 or 24 bytes.
var ErrKeyLength = errors.New("tdes: key length not 8, 16 or 24 bytes")

// New is the cipher of an 8-, 16- or 24-byte key. The expanded key is wiped before return.
func New(key []byte) (cipher.Block, error) {
	var k [24]byte
	defer clear(k[:])
	switch len(key) {
	case 8:
		copy(k[:], key)
		copy(k[8:], key)
		copy(k[16:], key)
	case 16:
		copy(k[:], key)
		copy(k[16:], key[:8])
	case 24:
		copy(k[:], key)
	default:
		return nil, fmt.Errorf("%w: %d", ErrKeyLength, len(key))
	}
	return des.NewTripleDESCipher(k[:])
}
