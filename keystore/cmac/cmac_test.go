package cmac

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex in test vector: %v", err)
	}
	return b
}

// The messages of NIST SP 800-38B, Appendix D (the same 64-byte plaintext,
// cut to 0, 8/16, 20/40 and 32/64 bytes).
const (
	msg64 = "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51" +
		"30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710"
)

func TestNISTVectors(t *testing.T) {
	// NIST SP 800-38B, Appendix D: D.1 AES-128, D.2 AES-192, D.3 AES-256
	// (identical to RFC 4493 section 4 for AES-128), D.4 three-key TDEA and
	// D.7 two-key TDEA, with the TDEA tags as corrected in NIST's
	// "Updated_CMAC_Examples.pdf" (the 2005 printing had errors in
	// examples 14, 15, 18 and 19).
	tests := []struct {
		name, key string
		mlen      int // bytes of msg64
		tag       string
	}{
		{"D.1 ex1 AES-128 Mlen=0", "2b7e151628aed2a6abf7158809cf4f3c", 0, "bb1d6929e95937287fa37d129b756746"},
		{"D.1 ex2 AES-128 Mlen=128", "2b7e151628aed2a6abf7158809cf4f3c", 16, "070a16b46b4d4144f79bdd9dd04a287c"},
		{"D.1 ex3 AES-128 Mlen=320", "2b7e151628aed2a6abf7158809cf4f3c", 40, "dfa66747de9ae63030ca32611497c827"},
		{"D.1 ex4 AES-128 Mlen=512", "2b7e151628aed2a6abf7158809cf4f3c", 64, "51f0bebf7e3b9d92fc49741779363cfe"},
		{"D.2 ex5 AES-192 Mlen=0", "8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b", 0, "d17ddf46adaacde531cac483de7a9367"},
		{"D.2 ex8 AES-192 Mlen=512", "8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b", 64, "a1d5df0eed790f794d77589659f39a11"},
		{"D.3 ex9 AES-256 Mlen=0", "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4", 0, "028962f61b7bf89efc6b551f4667d983"},
		{"D.3 ex11 AES-256 Mlen=320", "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4", 40, "aaf3d8f1de5640c232f5b169b9c911e6"},
		{"D.4 ex13 TDEA-3 Mlen=0", "8aa83bf8cbda10620bc1bf19fbb6cd58bc313d4a371ca8b5", 0, "b7a688e122ffaf95"},
		{"D.4 ex14 TDEA-3 Mlen=64", "8aa83bf8cbda10620bc1bf19fbb6cd58bc313d4a371ca8b5", 8, "8e8f293136283797"},
		{"D.4 ex15 TDEA-3 Mlen=160", "8aa83bf8cbda10620bc1bf19fbb6cd58bc313d4a371ca8b5", 20, "743ddbe0ce2dc2ed"},
		{"D.4 ex16 TDEA-3 Mlen=256", "8aa83bf8cbda10620bc1bf19fbb6cd58bc313d4a371ca8b5", 32, "33e6b1092400eae5"},
		{"D.7 ex17 TDEA-2 Mlen=0", "4cf15134a2850dd58a3d10ba80570d384cf15134a2850dd5", 0, "bd2ebf9a3ba00361"},
		{"D.7 ex18 TDEA-2 Mlen=64", "4cf15134a2850dd58a3d10ba80570d384cf15134a2850dd5", 8, "4ff2ab813c53ce83"},
		{"D.7 ex19 TDEA-2 Mlen=160", "4cf15134a2850dd58a3d10ba80570d384cf15134a2850dd5", 20, "62dd1b471902bd4e"},
		{"D.7 ex20 TDEA-2 Mlen=256", "4cf15134a2850dd58a3d10ba80570d384cf15134a2850dd5", 32, "31b1e431dabc4eb8"},
	}
	msg := unhex(t, msg64)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := unhex(t, tc.key)
			var b cipher.Block
			var err error
			if strings.Contains(tc.name, "TDEA") {
				b, err = des.NewTripleDESCipher(key)
			} else {
				b, err = aes.NewCipher(key)
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := Sum(b, msg[:tc.mlen])
			if err != nil {
				t.Fatal(err)
			}
			if want := unhex(t, tc.tag); !bytes.Equal(got, want) {
				t.Fatalf("tag %x, want %x", got, want)
			}
		})
	}
}

func TestSubkeys(t *testing.T) {
	// NIST SP 800-38B D.1 and RFC 4493 section 4: subkeys of the AES-128 key.
	b, _ := aes.NewCipher(unhex(t, "2b7e151628aed2a6abf7158809cf4f3c"))
	c, err := New(b)
	if err != nil {
		t.Fatal(err)
	}
	if want := unhex(t, "fbeed618357133667c85e08f7236a8de"); !bytes.Equal(c.k1, want) {
		t.Errorf("K1 %x, want %x", c.k1, want)
	}
	if want := unhex(t, "f7ddac306ae266ccf90bc11ee46d513b"); !bytes.Equal(c.k2, want) {
		t.Errorf("K2 %x, want %x", c.k2, want)
	}
}

// The CMAC value is reused across calls: Sum must not carry state over.
func TestSumIsRepeatable(t *testing.T) {
	b, _ := aes.NewCipher(unhex(t, "2b7e151628aed2a6abf7158809cf4f3c"))
	c, _ := New(b)
	msg := unhex(t, msg64)
	first := c.Sum(msg[:40])
	c.Sum(msg)
	if again := c.Sum(msg[:40]); !bytes.Equal(first, again) {
		t.Fatalf("second Sum %x differs from first %x", again, first)
	}
}

type oddBlock struct{}

func (oddBlock) BlockSize() int          { return 12 }
func (oddBlock) Encrypt(dst, src []byte) { copy(dst, src) }
func (oddBlock) Decrypt(dst, src []byte) { copy(dst, src) }

func TestUnsupportedBlockSize(t *testing.T) {
	if _, err := New(oddBlock{}); !errors.Is(err, ErrBlockSize) {
		t.Fatalf("New(12-byte block) = %v, want ErrBlockSize", err)
	}
	if _, err := Sum(oddBlock{}, nil); !errors.Is(err, ErrBlockSize) {
		t.Fatalf("Sum(12-byte block) = %v, want ErrBlockSize", err)
	}
}

func BenchmarkAES128(b *testing.B) {
	blk, _ := aes.NewCipher(make([]byte, 16))
	c, _ := New(blk)
	msg := make([]byte, 64)
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		c.Sum(msg)
	}
}
