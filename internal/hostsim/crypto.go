package hostsim

import (
	"crypto/cipher"
	"errors"
	"fmt"
	"io"

	keytdes "github.com/posagent/posagent/keystore/tdes"

	"github.com/posagent/posagent/keystore/kcv"
	"github.com/posagent/posagent/keystore/mac"
	"github.com/posagent/posagent/keystore/pinblock"
)

// tdes is DES for an 8-byte key, TDES (K1K2K1) for 16 bytes, TDES for 24.
func tdes(key []byte) (cipher.Block, error) {
	b, err := keytdes.New(key)
	if err != nil {
		return nil, fmt.Errorf("hostsim: key length %d", len(key))
	}
	return b, nil
}

// ecb encrypts or decrypts whole 8-byte blocks.
func ecb(key, data []byte, decrypt bool) ([]byte, error) {
	if len(data)%8 != 0 {
		return nil, errors.New("hostsim: ECB data is not whole blocks")
	}
	b, err := tdes(key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, len(data))
	for i := 0; i < len(data); i += 8 {
		if decrypt {
			b.Decrypt(out[i:i+8], data[i:i+8])
		} else {
			b.Encrypt(out[i:i+8], data[i:i+8])
		}
	}
	return out, nil
}

// newKey is a random DES key of n bytes with odd parity.
func newKey(r io.Reader, n int) ([]byte, error) {
	k := make([]byte, n)
	if _, err := io.ReadFull(r, k); err != nil {
		return nil, err
	}
	for i, c := range k {
		c &^= 1
		p := c ^ c>>4
		p ^= p >> 2
		p ^= p >> 1
		if p&1 == 0 {
			c |= 1
		}
		k[i] = c
	}
	return k, nil
}

// workingKeys are a terminal's keys after a sign-in.
type workingKeys struct {
	PIK, MAK, TDK []byte
}

// issueKeys makes new working keys for layout and field 62: each key encrypted under the
// KEK (TDES-ECB) followed by its 4-byte check value. In the double layouts the MAK is a
// single-DES key sent as its 8 encrypted bytes and 8 zero bytes (UnionPay practice, read
// by keystore.SignInKeys).
func issueKeys(r io.Reader, kek []byte, layout string) (workingKeys, []byte, error) {
	var wk workingKeys
	pikLen := 16
	if layout == LayoutSingle {
		pikLen = 8
	}
	var err error
	if wk.PIK, err = newKey(r, pikLen); err != nil {
		return wk, nil, err
	}
	if wk.MAK, err = newKey(r, 8); err != nil {
		return wk, nil, err
	}
	if layout == LayoutDoubleTDK {
		if wk.TDK, err = newKey(r, 16); err != nil {
			return wk, nil, err
		}
	}
	var f62 []byte
	add := func(key []byte, width int) error {
		enc, err := ecb(kek, key, false)
		if err != nil {
			return err
		}
		cv, err := kcv.TDES(key, 4)
		if err != nil {
			return err
		}
		f62 = append(f62, enc...)
		f62 = append(f62, make([]byte, width-len(enc))...)
		f62 = append(f62, cv...)
		return nil
	}
	width := 16
	if layout == LayoutSingle {
		width = 8
	}
	if err := add(wk.PIK, width); err != nil {
		return wk, nil, err
	}
	if err := add(wk.MAK, width); err != nil {
		return wk, nil, err
	}
	if wk.TDK != nil {
		if err := add(wk.TDK, width); err != nil {
			return wk, nil, err
		}
	}
	return wk, f62, nil
}

// macFunc is the UnionPay ECB MAC under mak, in the codec's MACFunc shape.
func macFunc(mak []byte) func([]byte) ([]byte, error) {
	return func(mab []byte) ([]byte, error) { return mac.UnionPayECB(mak, mab) }
}

// badMACFunc is macFunc with the result spoiled (the bad-MAC fault).
func badMACFunc(mak []byte) func([]byte) ([]byte, error) {
	return func(mab []byte) ([]byte, error) {
		var m []byte
		var err error
		if len(mak) > 0 {
			m, err = mac.UnionPayECB(mak, mab)
		} else {
			m = []byte("00000000")
		}
		if err != nil {
			return nil, err
		}
		if m[0] == '0' { // still a hex digit, never the right one
			m[0] = '1'
		} else {
			m[0] = '0'
		}
		return m, nil
	}
}

// pinOf recovers the PIN of an encrypted field 52 with the PIK.
func pinOf(pik, block []byte, pan string) (string, error) {
	if len(block) != 8 {
		return "", pinblock.ErrBadBlock
	}
	clear8, err := ecb(pik, block, true)
	if err != nil {
		return "", err
	}
	var b [8]byte
	copy(b[:], clear8)
	clear(clear8)
	defer clear(b[:])
	return pinblock.PIN(b, pan)
}
