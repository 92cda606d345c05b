package tdes

import (
	"bytes"
	"crypto/des"
	"encoding/hex"
	"errors"
	"testing"
)

// Each length gives the cipher of its expansion; a single-length key is plain DES.
func TestLengths(t *testing.T) {
	k1, _ := hex.DecodeString("0123456789ABCDEF")
	k2, _ := hex.DecodeString("FEDCBA9876543210")
	k3, _ := hex.DecodeString("89ABCDEF01234567")
	block := make([]byte, 8)
	for _, c := range []struct {
		key, full []byte
	}{
		{k1, bytes.Join([][]byte{k1, k1, k1}, nil)},
		{append(append([]byte{}, k1...), k2...), bytes.Join([][]byte{k1, k2, k1}, nil)},
		{bytes.Join([][]byte{k1, k2, k3}, nil), bytes.Join([][]byte{k1, k2, k3}, nil)},
	} {
		b, err := New(c.key)
		if err != nil {
			t.Fatal(err)
		}
		ref, _ := des.NewTripleDESCipher(c.full)
		got, want := make([]byte, 8), make([]byte, 8)
		b.Encrypt(got, block)
		ref.Encrypt(want, block)
		if !bytes.Equal(got, want) {
			t.Errorf("%d-byte key: %X, want %X", len(c.key), got, want)
		}
	}
	// A single-length key is DES: E(0123456789ABCDEF, 0…0) begins D5D44F (kcv vectors).
	b, _ := New(k1)
	out := make([]byte, 8)
	b.Encrypt(out, block)
	if hex.EncodeToString(out[:3]) != "d5d44f" {
		t.Errorf("DES of zeros %X", out)
	}
	for _, n := range []int{0, 7, 9, 15, 17, 23, 25, 32} {
		if _, err := New(make([]byte, n)); !errors.Is(err, ErrKeyLength) {
			t.Errorf("%d bytes: %v", n, err)
		}
	}
}
