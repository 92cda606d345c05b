package kcv

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex in test vector: %v", err)
	}
	return b
}

func TestTDES(t *testing.T) {
	tests := []struct {
		source, key, kcv string
	}{
		// The ANSI X9 test key; KCV as published by EFTlab and IDTech and used
		// in docs/pinpad-protocol.md (transport key).
		{"ANSI test key / docs/pinpad-protocol.md", "0123456789ABCDEF FEDCBA9876543210", "08D7B4"},
		// docs/pinpad-protocol.md: KEK and PIK test keys.
		{"docs/pinpad-protocol.md KEK", "89ABCDEF01234567 76543210FEDCBA98", "EB7A8D"},
		{"docs/pinpad-protocol.md PIK", "F1E2D3C4B5A69788 796A5B4C3D2E1F00", "E99443"},
		// Single-length DES key, KCV D5D44F (Stack Overflow "Calculating KCV
		// with DES Key"; also the FIPS 81 / classic DES zero-block value
		// D5D44FF720683D0D).
		{"single DES 0123456789ABCDEF", "0123456789ABCDEF", "D5D44FF720683D0D"},
		// ASC X9 TR-31:2018 annex A.7 worked examples: KCVs of the wrapped
		// TDES keys (A.7.2.1, A.7.2.2, A.7.3.1, A.7.3.2).
		{"TR-31:2018 A.7.2.1", "F039121BEC83D26B169BDCD5B22AAF8F", "CB9DEA"},
		{"TR-31:2018 A.7.2.2", "3F419E1CB7079442AA37474C2EFBF8B8", "57C409"},
		{"TR-31:2018 A.7.3.1", "EDB380DD340BC2620247D445F5B8D678", "F4B08D"},
		{"TR-31:2018 A.7.3.2", "E8BC63E5479455E26577F715D587FE68", "9A4212"},
		// crypto.stackexchange.com question 37379 "Calculating 3DES Key Check
		// Value (KCV)": a PC Crypto key component with a 4-byte KCV.
		{"crypto.SE 37379", "E6F1081FEA4C402CC192B65DE367EC3E", "212CF915"},
		// Three-key form of the ANSI test key gives the same value.
		{"ANSI test key as 3-key", "0123456789ABCDEF FEDCBA9876543210 0123456789ABCDEF", "08D7B4"},
	}
	for _, tc := range tests {
		t.Run(tc.source, func(t *testing.T) {
			want := unhex(t, tc.kcv)
			got, err := TDES(unhex(t, tc.key), len(want))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("KCV %X, want %X", got, want)
			}
		})
	}
}

func TestAES(t *testing.T) {
	tests := []struct {
		source, key, kcv string
	}{
		// ANSI X9.143:2021 section 8.1: the wrapped AES-128 key's 5-byte CMAC
		// KCV (also TR-31:2018 A.7.4, which prints its first 3 bytes 08793E).
		{"X9.143:2021 8.1 key", "3F419E1CB7079442AA37474C2EFBF8B8", "08793E25AB"},
		// ANSI X9.143:2021 section 8.5: KBPK check value carried in the
		// example's KP optional block ("01" = CMAC method, then the KCV).
		{"X9.143:2021 8.5 KBPK", "FA36E44278DB3AB5F298F9F7DA8F1F88", "D77F007724"},
		// ANSI X9.143:2021 section 8.6: the AES-256 KBPK's KP block.
		{"X9.143:2021 8.6 KBPK", "88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6", "2331550BC9"},
	}
	for _, tc := range tests {
		t.Run(tc.source, func(t *testing.T) {
			want := unhex(t, tc.kcv)
			got, err := AES(unhex(t, tc.key), len(want))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("KCV %X, want %X", got, want)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	for _, n := range []int{8, 16, 24} {
		if _, err := TDES(make([]byte, n), 0); !errors.Is(err, ErrCheckLength) {
			t.Errorf("TDES n=0: %v", err)
		}
		if _, err := TDES(make([]byte, n), 9); !errors.Is(err, ErrCheckLength) {
			t.Errorf("TDES n=9: %v", err)
		}
	}
	for _, l := range []int{0, 7, 15, 32} {
		if _, err := TDES(make([]byte, l), 3); !errors.Is(err, ErrKeyLength) {
			t.Errorf("TDES key %d bytes: %v", l, err)
		}
	}
	for _, l := range []int{0, 8, 15, 20, 33} {
		if _, err := AES(make([]byte, l), 5); !errors.Is(err, ErrKeyLength) {
			t.Errorf("AES key %d bytes: %v", l, err)
		}
	}
	if _, err := AES(make([]byte, 16), 17); !errors.Is(err, ErrCheckLength) {
		t.Errorf("AES n=17: %v", err)
	}
	if _, err := AES(make([]byte, 16), 0); !errors.Is(err, ErrCheckLength) {
		t.Errorf("AES n=0: %v", err)
	}
}

// The check value must not alias or expose the caller's key buffer.
func TestDoesNotTouchKey(t *testing.T) {
	key := unhex(t, "0123456789ABCDEFFEDCBA9876543210")
	orig := bytes.Clone(key)
	v, _ := TDES(key, 8)
	if !bytes.Equal(key, orig) {
		t.Fatal("TDES modified the key")
	}
	if cap(v) != 8 {
		t.Fatalf("cap %d: the result should not expose more than n bytes", cap(v))
	}
}
