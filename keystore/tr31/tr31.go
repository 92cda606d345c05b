// Package tr31 reads and writes ANSI X9.143 / ASC X9 TR-31 key blocks, the
// interoperable format in which hosts, HSMs and key-injection tools send
// symmetric keys to the terminal. A key block binds the key to its
// attributes (usage, algorithm, mode of use, exportability) under a MAC, so a
// PIN key cannot be replayed as a data key or a KEK. Versions B (TDES key
// block protection key) and D (AES) — the key derivation binding methods —
// are wrapped and unwrapped; the deprecated variant methods A and C are only
// parsed, never trusted.
package tr31

import (
	"bytes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
)

// Header is the clear, authenticated part of a key block.
type Header struct {
	Version       byte            // 'B' or 'D'
	Usage         string          // 2 chars: "K0" KEK, "P0" PIN encryption, "M0".."M8" MAC, "D0" data encryption, "B0" BDK, "K1" TR-31 KBPK ...
	Algorithm     byte            // 'T' TDES, 'A' AES, 'D' DES ...
	ModeOfUse     byte            // 'E' encrypt/wrap only, 'D' decrypt/unwrap, 'B' both, 'C' MAC generate+verify, 'G' generate, 'V' verify, 'N' no restrictions ...
	KeyVersion    string          // 2 chars, "00" none
	Exportability byte            // 'E' exportable, 'N' non-exportable, 'S' sensitive
	Optional      []OptionalBlock // in order (ID 2 chars, Data); parse them, keep them authenticated
}

// OptionalBlock is one optional header block. Parse returns every block in
// the order of the key block, the "PB" padding block included, so that a
// parsed header wraps back to the same bytes.
type OptionalBlock struct{ ID, Data string }

// Errors are wrapped with a short reason; test them with errors.Is. No error
// text carries key material: not the KBPK, the clear key nor the encrypted
// key field.
var (
	ErrMalformed          = errors.New("tr31: malformed key block") // framing, length, characters, optional blocks
	ErrUnsupportedVersion = errors.New("tr31: unsupported key block version")
	ErrMAC                = errors.New("tr31: key block MAC does not verify") // tampered, or wrong KBPK
	ErrKBPK               = errors.New("tr31: key block protection key of the wrong kind or length")
	ErrKeyLength          = errors.New("tr31: key length not allowed")
)

// padReader supplies the key data padding. Tests replace it to reproduce
// published blocks byte for byte; nothing else may.
var padReader io.Reader = rand.Reader

// Parse reads and checks the header and framing of a key block (length
// field matches, ASCII, hex payload, known version, sizes consistent)
// without any key. Never panics, bounded work. It accepts versions A, B, C
// and D; only B and D can be unwrapped.
func Parse(block string) (Header, error) {
	h, _, err := parse(block)
	if err != nil {
		return Header{}, err
	}
	return h, nil
}

// Unwrap verifies the block's MAC with keys derived from kbpk and returns the
// header and the clear key. The MAC is checked before anything decrypted
// is trusted (constant-time compare). kbpk: TDES 16/24 bytes for B, AES
// 16/24/32 for D.
func Unwrap(kbpk []byte, block string) (Header, []byte, error) {
	h, kd, err := unwrap(kbpk, block)
	if err != nil {
		return Header{}, nil, err
	}
	defer clear(kd)
	// From here on the key data is authenticated: its length field was
	// written by a holder of the KBPK. It is still checked, because a
	// buggy or hostile peer with the KBPK must not make us slice out of
	// range or accept a key of the wrong size for its algorithm.
	bits := int(kd[0])<<8 | int(kd[1])
	n := bits / 8
	switch {
	case bits%8 != 0:
		return Header{}, nil, fmt.Errorf("%w: key length of %d bits is not whole bytes", ErrMalformed, bits)
	case n == 0:
		return Header{}, nil, fmt.Errorf("%w: key length field is zero", ErrMalformed)
	case n > len(kd)-2:
		return Header{}, nil, fmt.Errorf("%w: key length field (%d bytes) exceeds the %d-byte key data field", ErrMalformed, n, len(kd)-2)
	}
	if err := checkKeyLength(h.Algorithm, n); err != nil {
		return Header{}, nil, err
	}
	return h, bytes.Clone(kd[2 : 2+n]), nil
}

// unwrap authenticates the block and returns its header and the whole clear
// key data field (length, key, padding). The caller must clear it.
func unwrap(kbpk []byte, block string) (Header, []byte, error) {
	h, lay, err := parse(block)
	if err != nil {
		return Header{}, nil, err
	}
	if h.Version != 'B' && h.Version != 'D' {
		return Header{}, nil, fmt.Errorf("%w: version %c is parsed but not unwrapped (variant binding is deprecated)", ErrUnsupportedVersion, h.Version)
	}
	ks, err := deriveKeys(h.Version, kbpk)
	if err != nil {
		return Header{}, nil, err
	}
	defer ks.clear()

	// parse has already checked that both fields are upper-case hex of a
	// whole number of cipher blocks.
	ct := decodeHex(block[lay.hdrEnd:lay.macStart])
	mac := decodeHex(block[lay.macStart:])

	// With the derivation binding methods the MAC is computed over the
	// clear key data and doubles as the CBC IV, so the field has to be
	// decrypted before the MAC can be checked. Nothing read from the clear
	// data is looked at until the MAC has verified.
	kd := make([]byte, len(ct))
	cipher.NewCBCDecrypter(ks.enc, mac).CryptBlocks(kd, ct)
	want := ks.macOf(block[:lay.hdrEnd], kd)
	if subtle.ConstantTimeCompare(want, mac) != 1 {
		clear(kd)
		return Header{}, nil, ErrMAC
	}
	return h, kd, nil
}

// Wrap builds a block (for tests, tmsctl and the host simulator). Random
// padding from crypto/rand unless a test sets it. The key data is padded to
// the next cipher block only (no key length obfuscation), and a "PB" block
// is appended when the optional blocks need one to align the header.
func Wrap(kbpk []byte, h Header, key []byte) (string, error) {
	p, ok := versionParams(h.Version)
	if !ok || (h.Version != 'B' && h.Version != 'D') {
		return "", fmt.Errorf("%w: can wrap versions B and D only", ErrUnsupportedVersion)
	}
	if err := checkHeader(h); err != nil {
		return "", err
	}
	if err := checkKeyLength(h.Algorithm, len(key)); err != nil {
		return "", err
	}
	if len(key) > maxBlockLen/2 {
		return "", fmt.Errorf("%w: %d bytes cannot fit in a key block", ErrKeyLength, len(key))
	}
	ks, err := deriveKeys(h.Version, kbpk)
	if err != nil {
		return "", err
	}
	defer ks.clear()

	padLen := (p.bs - (2+len(key))%p.bs) % p.bs
	kd := make([]byte, 2+len(key)+padLen)
	defer clear(kd)
	kd[0], kd[1] = byte(len(key)*8>>8), byte(len(key)*8)
	copy(kd[2:], key)
	if _, err := io.ReadFull(padReader, kd[2+len(key):]); err != nil {
		return "", fmt.Errorf("tr31: reading random padding: %w", err)
	}
	hdr, err := formatHeader(h, p, len(kd))
	if err != nil {
		return "", err
	}
	mac := ks.macOf(hdr, kd)
	ct := make([]byte, len(kd))
	cipher.NewCBCEncrypter(ks.enc, mac).CryptBlocks(ct, kd)

	out := make([]byte, 0, len(hdr)+2*(len(ct)+len(mac)))
	out = append(out, hdr...)
	out = appendHex(out, ct)
	out = appendHex(out, mac)
	return string(out), nil
}

// checkKeyLength enforces the lengths that make sense for the algorithms the
// terminal uses; other algorithms (HMAC, RSA, ECC ...) carry keys of any
// length the block can hold.
func checkKeyLength(alg byte, n int) error {
	ok := n > 0
	switch alg {
	case 'T':
		ok = n == 8 || n == 16 || n == 24
	case 'D':
		ok = n == 8
	case 'A':
		ok = n == 16 || n == 24 || n == 32
	}
	if !ok {
		return fmt.Errorf("%w: %d bytes for algorithm %q", ErrKeyLength, n, alg)
	}
	return nil
}
