package pinpademu

import "fmt"

// The host side of a key load, for tests and the demo: what a key-loading system does before
// it sends LOAD KEY. A terminal never has these keys in clear; the emulator's callers do.

// WrapKey encrypts key (8, 16 or 24 bytes) under parent with TDES-ECB, as LOAD KEY carries it.
func WrapKey(parent, key []byte) ([]byte, error) {
	b, err := tdes(parent)
	if err != nil {
		return nil, err
	}
	out := make([]byte, len(key))
	for i := 0; i+8 <= len(key); i += 8 {
		b.Encrypt(out[i:i+8], key[i:i+8])
	}
	return out, nil
}

// KeyCheckValue is the 3-byte ANSI check value of key, E(K, 0…0).
func KeyCheckValue(key []byte) ([]byte, error) {
	cv, err := checkValue(key)
	if err != nil {
		return nil, err
	}
	return cv[:3], nil
}

// InjectTransportKey is the factory key injection: it replaces the transport key in slot 00
// (after a tamper or an ERASE of everything, it gives the pad one again). key is TDES of 8,
// 16 or 24 bytes, or AES of 16, 24 or 32 bytes with isAES; an AES transport key unwraps TR-31
// key blocks (version D) only. Like Options.TransportKey it is not written to the key file.
func (e *Emulator) InjectTransportKey(key []byte, isAES bool) error {
	if err := e.se.injectTransport(key, isAES); err != nil {
		return fmt.Errorf("pinpademu: transport key: %w", err)
	}
	return nil
}
