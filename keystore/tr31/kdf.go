package tr31

import (
	"crypto/aes"
	"crypto/cipher"
	"fmt"

	"github.com/posagent/posagent/keystore/tdes"

	"github.com/posagent/posagent/keystore/cmac"
)

// keys are the two keys derived from the KBPK: the KBPK itself never
// encrypts or MACs anything, so a weakness in one use cannot leak into the
// other.
type keys struct {
	enc      cipher.Block // KBEK: CBC encryption of the key data
	mac      *cmac.CMAC   // KBAK: CMAC over header and clear key data
	material [][]byte     // derived key bytes, cleared after use
}

func (k *keys) clear() {
	for _, m := range k.material {
		clear(m)
	}
}

// macOf is the CMAC of the header characters followed by the clear key data.
func (k *keys) macOf(hdr string, kd []byte) []byte {
	buf := make([]byte, 0, len(hdr)+len(kd))
	buf = append(append(buf, hdr...), kd...)
	defer clear(buf)
	return k.mac.Sum(buf)
}

// Key usage indicators of the derivation data (TR-31:2018 5.3.2.1 / 5.3.2.3).
const (
	usageEnc = 0x0000
	usageMAC = 0x0001
)

// deriveKeys implements the CMAC-based key derivation of TR-31:2018 section
// 5.3.2 (SP 800-108 counter mode with CMAC as the PRF). Each 8-byte input is
// counter (from 1) ‖ key usage indicator (2) ‖ separator 00 ‖ algorithm
// indicator (2) ‖ length of the derived key in bits (2), and the CMAC outputs
// are concatenated until the derived key, as long as the KBPK, is complete.
func deriveKeys(version byte, kbpk []byte) (keys, error) {
	var algo uint16
	switch {
	case version == 'B' && len(kbpk) == 16:
		algo = 0x0000 // 2-key TDES
	case version == 'B' && len(kbpk) == 24:
		algo = 0x0001 // 3-key TDES
	case version == 'D' && len(kbpk) == 16:
		algo = 0x0002 // AES-128
	case version == 'D' && len(kbpk) == 24:
		algo = 0x0003 // AES-192
	case version == 'D' && len(kbpk) == 32:
		algo = 0x0004 // AES-256
	case version == 'B':
		return keys{}, fmt.Errorf("%w: version B needs a 16- or 24-byte TDES key, got %d bytes", ErrKBPK, len(kbpk))
	default:
		return keys{}, fmt.Errorf("%w: version D needs a 16-, 24- or 32-byte AES key, got %d bytes", ErrKBPK, len(kbpk))
	}
	prf, err := newCMAC(version, kbpk)
	if err != nil {
		return keys{}, err
	}
	bits := uint16(len(kbpk) * 8)
	derive := func(usage uint16) []byte {
		out := make([]byte, 0, len(kbpk)+aes.BlockSize)
		for ctr := byte(1); len(out) < len(kbpk); ctr++ {
			in := [8]byte{ctr, byte(usage >> 8), byte(usage), 0x00, byte(algo >> 8), byte(algo), byte(bits >> 8), byte(bits)}
			out = append(out, prf.Sum(in[:])...)
		}
		clear(out[len(kbpk):cap(out)]) // AES-192 keeps 24 of 32 bytes
		return out[:len(kbpk)]
	}
	kbek, kbak := derive(usageEnc), derive(usageMAC)
	k := keys{material: [][]byte{kbek, kbak}}
	if k.enc, err = newBlock(version, kbek); err != nil {
		k.clear()
		return keys{}, err
	}
	if k.mac, err = newCMAC(version, kbak); err != nil {
		k.clear()
		return keys{}, err
	}
	return k, nil
}

// newBlock is TDES for version B (a 16-byte key is K1K2K1; a single-length DES key is no
// key block protection key) and AES for D.
func newBlock(version byte, key []byte) (cipher.Block, error) {
	var (
		b   cipher.Block
		err error
	)
	if version == 'B' {
		if len(key) == 8 {
			return nil, fmt.Errorf("%w: single-length DES", ErrKBPK)
		}
		b, err = tdes.New(key)
	} else {
		b, err = aes.NewCipher(key)
	}
	if err != nil {
		// The standard library's messages carry only the length.
		return nil, fmt.Errorf("%w: %v", ErrKBPK, err)
	}
	return b, nil
}

func newCMAC(version byte, key []byte) (*cmac.CMAC, error) {
	b, err := newBlock(version, key)
	if err != nil {
		return nil, err
	}
	return cmac.New(b)
}
