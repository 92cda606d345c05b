package payment

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

// Sealer keeps card numbers unreadable at rest (PCI DSS requirement 3.5): the batch needs
// the PAN of each transaction for voids, reversals and the batch upload, and nothing else.
type Sealer interface {
	Seal(plain, aad []byte) ([]byte, error)
	Open(sealed, aad []byte) ([]byte, error)
}

// ErrSealed: sealed data did not open (tampered, or another device's key).
var ErrSealed = errors.New("payment: sealed card data does not open")

// gcmSealer is AES-256-GCM under a key derived from the device root key for this one use.
type gcmSealer struct{ aead cipher.AEAD }

// NewSealer derives the card-data key from the device root key (32 bytes).
func NewSealer(root []byte) (Sealer, error) {
	if len(root) < 32 {
		return nil, fmt.Errorf("payment: device root key of %d bytes", len(root))
	}
	h := sha256.New()
	h.Write([]byte("posagent payment card data v1\x00"))
	h.Write(root)
	key := h.Sum(nil)
	defer clear(key)
	blk, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(blk)
	if err != nil {
		return nil, err
	}
	return &gcmSealer{aead: aead}, nil
}

func (s *gcmSealer) Seal(plain, aad []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return s.aead.Seal(nonce, nonce, plain, aad), nil
}

func (s *gcmSealer) Open(sealed, aad []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n+s.aead.Overhead() {
		return nil, ErrSealed
	}
	out, err := s.aead.Open(nil, sealed[:n], sealed[n:], aad)
	if err != nil {
		return nil, ErrSealed
	}
	return out, nil
}
