// Package kcv computes key check values: the short, non-secret fingerprints
// that hosts, HSMs and the PIN pad send beside a key so that both ends can
// confirm they hold the same clear key without revealing it. TDES keys use
// the classic "encrypt eight zero bytes" value; AES keys use the CMAC-based
// value of ANSI X9.24-1:2017, because encrypting zeros with AES would leak a
// known plaintext/ciphertext pair for the key.
package kcv

import (
	"crypto/aes"
	"crypto/des"
	"errors"
	"fmt"

	"github.com/posagent/posagent/keystore/tdes"

	"github.com/posagent/posagent/keystore/cmac"
)

var (
	// ErrKeyLength reports a key that is not a valid length for the algorithm.
	ErrKeyLength = errors.New("kcv: key length not allowed")
	// ErrCheckLength reports a check value length outside 1..block size.
	ErrCheckLength = errors.New("kcv: check value length out of range")
)

// TDES returns the first n bytes (n 1..8, usually 3 or 4) of
// TDES-ECB(key, 8 zero bytes). key is 8, 16 or 24 bytes; an 8-byte key is
// single DES, which is TDES with K1=K2=K3, and a 16-byte key is K1K2K1.
func TDES(key []byte, n int) ([]byte, error) {
	if n < 1 || n > des.BlockSize {
		return nil, fmt.Errorf("%w: %d bytes for TDES", ErrCheckLength, n)
	}
	b, err := tdes.New(key)
	if err != nil {
		return nil, fmt.Errorf("%w: %d bytes for TDES", ErrKeyLength, len(key))
	}
	out := make([]byte, des.BlockSize)
	b.Encrypt(out, out)
	return out[:n:n], nil
}

// AES returns the first n bytes (1..16, usually 5 per ANSI X9.24-1:2017) of
// AES-CMAC(key, 16 zero bytes), the CMAC-based KCV. key is 16, 24 or 32 bytes.
func AES(key []byte, n int) ([]byte, error) {
	if n < 1 || n > aes.BlockSize {
		return nil, fmt.Errorf("%w: %d bytes for AES", ErrCheckLength, n)
	}
	switch len(key) {
	case 16, 24, 32:
	default:
		return nil, fmt.Errorf("%w: %d bytes for AES", ErrKeyLength, len(key))
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeyLength, err)
	}
	tag, err := cmac.Sum(b, make([]byte, aes.BlockSize))
	if err != nil {
		return nil, err
	}
	return tag[:n:n], nil
}
