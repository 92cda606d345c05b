package pinblock

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func TestFormat0PublishedExamples(t *testing.T) {
	for _, v := range []struct {
		source, pin, pan, want string
	}{
		// Thales payShield host command reference, PIN block format 01 (= ISO 9564-1 format
		// 0), as in docs/pinpad-protocol.md: PIN field 0592389FFFFFFFFF, account field
		// 0000400000123456.
		{"Thales payShield", "92389", "4000001234562", "0592789FFFEDCBA9"},
		// EFTlab BP-Tools "PIN blocks" example (reproduced in ID TECH's knowledge base):
		// PAN 43219876543210987, PIN 1234.
		{"EFTlab", "1234", "43219876543210987", "0412AC89ABCDEF67"},
	} {
		blk, err := Format0(v.pin, v.pan)
		if err != nil {
			t.Fatalf("%s: %v", v.source, err)
		}
		if got := strings.ToUpper(hex.EncodeToString(blk[:])); got != v.want {
			t.Errorf("%s: block %s, want %s", v.source, got, v.want)
		}
		pin, err := PIN(blk, v.pan)
		if err != nil || pin != v.pin {
			t.Errorf("%s: PIN back: %v", v.source, err)
		}
	}
}

func TestRoundTripLengths(t *testing.T) {
	pans := []string{"4000001234562", "5413330089020011", "6221234567890123456"}
	for n := MinPINLen; n <= MaxPINLen; n++ {
		pin := "987654321098"[:n]
		for _, pan := range pans {
			blk, err := Format0(pin, pan)
			if err != nil {
				t.Fatalf("PIN of %d: %v", n, err)
			}
			if got, err := PIN(blk, pan); err != nil || got != pin {
				t.Fatalf("PIN of %d: round trip failed (%v)", n, err)
			}
		}
	}
}

func TestBadInputs(t *testing.T) {
	const pan = "4000001234562"
	for _, tc := range []struct {
		name, pin, pan string
		want           error
	}{
		{"PIN of 3", "123", pan, ErrBadPIN},
		{"PIN of 13", "1234567890123", pan, ErrBadPIN},
		{"empty PIN", "", pan, ErrBadPIN},
		{"PIN not digits", "12a4", pan, ErrBadPIN},
		{"PAN of 12", "1234", "400000123456", ErrBadPAN},
		{"PAN of 20", "1234", "40000012345623456789", ErrBadPAN},
		{"PAN not digits", "1234", "40000012345x2", ErrBadPAN},
		{"PAN with spaces", "1234", "4000 0012 3456 2", ErrBadPAN},
	} {
		_, err := Format0(tc.pin, tc.pan)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	good, _ := Format0("92389", pan)
	if _, err := PIN(good, "400000123456"); !errors.Is(err, ErrBadPAN) {
		t.Errorf("PIN with a short PAN: %v", err)
	}
}

func TestMalformedBlocks(t *testing.T) {
	const pan = "4000001234562"
	good, _ := Format0("92389", pan) // 0592789FFFEDCBA9
	mut := func(f func(b *[8]byte)) [8]byte { b := good; f(&b); return b }
	for name, blk := range map[string][8]byte{
		"format 1 control nibble": mut(func(b *[8]byte) { b[0] ^= 0x10 }),
		"length 3":                mut(func(b *[8]byte) { b[0] = 0x03 }),
		"length 13":               mut(func(b *[8]byte) { b[0] = 0x0D }),
		"digit A":                 mut(func(b *[8]byte) { b[1] = 0xA2 }),
		"padding not F":           mut(func(b *[8]byte) { b[7] ^= 0x01 }),
		"length 6 over F":         mut(func(b *[8]byte) { b[0] = 0x06 }),
	} {
		if _, err := PIN(blk, pan); !errors.Is(err, ErrBadBlock) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// The block of one PAN read with another PAN is refused (its padding no longer is F).
	if _, err := PIN(good, "4000009876543"); !errors.Is(err, ErrBadBlock) {
		t.Errorf("other PAN: %v", err)
	}
}

func TestErrorsCarryNoSecrets(t *testing.T) {
	const pin, pan = "739146", "43219876543210987"
	blk, _ := Format0(pin, pan)
	bad := blk
	bad[7] ^= 1
	var errs []error
	_, err := Format0(pin+"x", pan)
	errs = append(errs, err)
	_, err = Format0(pin, pan+"x")
	errs = append(errs, err)
	_, err = PIN(bad, pan)
	errs = append(errs, err)
	for _, err := range errs {
		if err == nil {
			t.Fatal("no error")
		}
		s := strings.ToLower(err.Error())
		for _, secret := range []string{pin, pan, pan[6:13], hex.EncodeToString(blk[:]), hex.EncodeToString(bad[:])} {
			if strings.Contains(s, strings.ToLower(secret)) {
				t.Errorf("%q carries a secret", err)
			}
		}
	}
}
