// Package cmac implements CMAC (NIST SP 800-38B) over a 64- or 128-bit block
// cipher. The keystore needs it with both TDES and AES: TR-31 key blocks of
// versions B and D derive their keys and compute their MACs with it, and AES
// key check values are CMACs, so one small implementation serves all three
// rather than each caller hand-rolling the subkey arithmetic.
package cmac

import (
	"crypto/cipher"
	"crypto/subtle"
	"errors"
)

// ErrBlockSize reports a cipher whose block size has no CMAC constant in
// SP 800-38B (only 64- and 128-bit blocks are defined).
var ErrBlockSize = errors.New("cmac: cipher block size must be 8 or 16 bytes")

// CMAC holds a block cipher and its two derived subkeys. Sum does not modify
// it, so one CMAC may be shared between goroutines as long as the underlying
// cipher.Block is safe for concurrent use (crypto/aes and crypto/des are).
type CMAC struct {
	b      cipher.Block
	k1, k2 []byte
}

// New returns a CMAC over b (AES or TDES); Sum(data) gives the full tag
// (b.BlockSize() bytes).
func New(b cipher.Block) (*CMAC, error) {
	var rb byte
	switch b.BlockSize() {
	case 8:
		rb = 0x1b
	case 16:
		rb = 0x87
	default:
		return nil, ErrBlockSize
	}
	l := make([]byte, b.BlockSize())
	b.Encrypt(l, l)
	k1 := dbl(l, rb)
	k2 := dbl(k1, rb)
	clear(l)
	return &CMAC{b: b, k1: k1, k2: k2}, nil
}

// dbl multiplies by x in GF(2^n): a left shift, reduced by rb when the top
// bit falls off. The reduction is applied through a mask rather than a branch
// so that the subkeys' top bits do not show in timing.
func dbl(in []byte, rb byte) []byte {
	out := make([]byte, len(in))
	var carry byte
	for i := len(in) - 1; i >= 0; i-- {
		out[i] = in[i]<<1 | carry
		carry = in[i] >> 7
	}
	out[len(out)-1] ^= rb & -carry
	return out
}

// Sum returns the CMAC tag of data, b.BlockSize() bytes long. Callers that
// want a truncated MAC take a prefix.
func (c *CMAC) Sum(data []byte) []byte {
	bs := len(c.k1)
	x := make([]byte, bs)
	last := make([]byte, bs)

	// The final block is treated apart: complete, it is masked with K1;
	// incomplete (including the empty message), padded with 10* and masked
	// with K2. That is what makes CMAC safe for variable-length messages.
	n := (len(data) + bs - 1) / bs
	if n == 0 {
		n = 1
	}
	full := len(data) > 0 && len(data)%bs == 0
	for i := 0; i < n-1; i++ {
		subtle.XORBytes(x, x, data[i*bs:(i+1)*bs])
		c.b.Encrypt(x, x)
	}
	tail := data[(n-1)*bs:]
	if full {
		subtle.XORBytes(last, tail, c.k1)
	} else {
		copy(last, tail)
		last[len(tail)] = 0x80
		subtle.XORBytes(last, last, c.k2)
	}
	subtle.XORBytes(x, x, last)
	c.b.Encrypt(x, x)
	clear(last)
	return x
}

// Sum is New(b) followed by Sum(data), for one-off tags.
func Sum(b cipher.Block, data []byte) ([]byte, error) {
	c, err := New(b)
	if err != nil {
		return nil, err
	}
	return c.Sum(data), nil
}
