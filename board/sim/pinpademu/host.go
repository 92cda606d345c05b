package pinpademu

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
