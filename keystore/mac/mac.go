// Package mac computes the message authentication codes of card payments over 8-byte-block
// ciphers (DES and TDES): ANSI X9.9, ANSI X9.19 (ISO/IEC 9797-1 MAC algorithm 3) and the
// UnionPay POS "ECB" MAC.
//
// All three pad the data with zero bytes to a multiple of 8 (ISO/IEC 9797-1 padding method 1;
// empty data is one block of zeros). Keys never appear in errors.
package mac

import (
	"crypto/cipher"
	"crypto/des"
	"encoding/hex"
	"errors"
	"strings"

	"github.com/posagent/posagent/keystore/tdes"
)

// ErrKeyLength is returned for a key of a length the algorithm does not allow.
var ErrKeyLength = errors.New("mac: key length not allowed")

const blockSize = 8

// X99 is the ANSI X9.9 MAC (FIPS 113): single-DES CBC-MAC with a zero IV over the data
// zero-padded to 8 bytes. key must be 8 bytes: the left half of a longer key is never taken
// implicitly. It returns 8 bytes; callers truncate (4 bytes is usual).
func X99(key, data []byte) ([]byte, error) {
	if len(key) != 8 {
		return nil, ErrKeyLength
	}
	b, err := des.NewCipher(key)
	if err != nil {
		return nil, ErrKeyLength
	}
	out := cbcMAC(b, data)
	return out[:], nil
}

// X919 is the ANSI X9.19 retail MAC (ISO/IEC 9797-1 MAC algorithm 3): DES CBC-MAC with K1,
// then the last block is decrypted with K2 and encrypted with K3. A 16-byte key is K1‖K2 with
// K3 = K1; a 24-byte key is K1‖K2‖K3. It returns 8 bytes.
func X919(key, data []byte) ([]byte, error) {
	var k1, k2, k3 []byte
	switch len(key) {
	case 16:
		k1, k2, k3 = key[:8], key[8:], key[:8]
	case 24:
		k1, k2, k3 = key[:8], key[8:16], key[16:]
	default:
		return nil, ErrKeyLength
	}
	b1, err1 := des.NewCipher(k1)
	b2, err2 := des.NewCipher(k2)
	b3, err3 := des.NewCipher(k3)
	if err1 != nil || err2 != nil || err3 != nil {
		return nil, ErrKeyLength
	}
	out := cbcMAC(b1, data)
	b2.Decrypt(out[:], out[:])
	b3.Encrypt(out[:], out[:])
	return out[:], nil
}

// UnionPayECB is the UnionPay POS "ECB" MAC (Q/CUP POS specification, appendix 2 of the
// terminal test requirements): the XOR of all 8-byte blocks (the last zero-padded) is written
// as 16 uppercase hex characters; the first 8 are encrypted with the MAK, the result XORed with
// the last 8 and encrypted again; the first 8 hex characters (uppercase) of that are the MAC.
// key is 8 bytes (DES) or 16/24 bytes (TDES). It returns the 8 ASCII bytes.
func UnionPayECB(key, data []byte) ([]byte, error) {
	b, err := blockCipher(key)
	if err != nil {
		return nil, err
	}
	var x [blockSize]byte
	for i := 0; i < len(data); i += blockSize {
		end := min(i+blockSize, len(data))
		for j, c := range data[i:end] {
			x[j] ^= c
		}
	}
	h := hexUpper(x[:]) // 16 ASCII bytes
	var t [blockSize]byte
	b.Encrypt(t[:], h[:blockSize])
	for i := range t {
		t[i] ^= h[blockSize+i]
	}
	b.Encrypt(t[:], t[:])
	out := hexUpper(t[:])
	return out[:blockSize], nil
}

// blockCipher is DES for an 8-byte key and TDES (K3 = K1 for 16 bytes) for 16 or 24 bytes.
func blockCipher(key []byte) (cipher.Block, error) {
	b, err := tdes.New(key)
	if err != nil {
		return nil, ErrKeyLength
	}
	return b, nil
}

// cbcMAC is the CBC-MAC with a zero IV of data zero-padded to whole blocks.
func cbcMAC(b cipher.Block, data []byte) [blockSize]byte {
	var v [blockSize]byte
	if len(data) == 0 {
		b.Encrypt(v[:], v[:])
		return v
	}
	for i := 0; i < len(data); i += blockSize {
		end := min(i+blockSize, len(data))
		for j, c := range data[i:end] {
			v[j] ^= c
		}
		b.Encrypt(v[:], v[:])
	}
	return v
}

func hexUpper(p []byte) []byte {
	return []byte(strings.ToUpper(hex.EncodeToString(p)))
}
