package tr31

import (
	"bytes"
	"crypto/cipher"
	"errors"
	"io"
	"regexp"
	"strings"
	"testing"
)

// Published blocks used as the base for tampering (TR-31:2018 A.7.2.2 and A.7.4).
const (
	blockB = "B0080P0TE00E000094B420079CC80BA3461F86FE26EFC4A3B8E4FA4C5F5341176EED7B727B8A248E"
	kbpkB  = "DD7515F2BFC17F85CE48F3CA25CB21F6"
	blockD = "D0112P0AE00E0000B82679114F470F540165EDFBF7E250FCEA43F810D215F8D207E2E417C07156A27E8E31DA05F7425509593D03A457DC34"
	kbpkD  = "88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6"
)

// setAt replaces the character at i.
func setAt(s string, i int, c string) string { return s[:i] + c + s[i+1:] }

// withLength rewrites the 4-digit length field to match s.
func withLength(s string) string {
	l := len(s)
	return s[:1] + string([]byte{'0' + byte(l/1000), '0' + byte(l/100%10), '0' + byte(l/10%10), '0' + byte(l%10)}) + s[5:]
}

// hexRun finds anything that could be key material in an error text.
var hexRun = regexp.MustCompile(`[0-9A-Fa-f]{8,}`)

func checkErr(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error %v, want %v", err, want)
	}
	if m := hexRun.FindString(err.Error()); m != "" {
		t.Fatalf("error text %q carries hex %q", err, m)
	}
}

func TestUnwrapBadInput(t *testing.T) {
	kb, kd := unhex(t, kbpkB), unhex(t, kbpkD)
	tests := []struct {
		name  string
		kbpk  []byte
		block string
		want  error
	}{
		{"tampered exportability", kb, setAt(blockB, 11, "N"), ErrMAC},
		{"tampered usage", kb, setAt(blockB, 6, "1"), ErrMAC},
		{"tampered key version", kb, setAt(blockB, 10, "1"), ErrMAC},
		{"tampered key field B", kb, setAt(blockB, 20, "5"), ErrMAC},
		{"tampered key field D", kd, setAt(blockD, 40, "0"), ErrMAC},
		{"tampered last key block D", kd, setAt(blockD, 16+63, "0"), ErrMAC},
		{"tampered MAC", kb, setAt(blockB, len(blockB)-1, "F"), ErrMAC},
		{"wrong KBPK B", unhex(t, "1D22BF32387C600AD97F9B97A51311AC"), blockB, ErrMAC},
		{"wrong KBPK D", bytes.Repeat([]byte{0x41}, 32), blockD, ErrMAC},
		{"right KBPK as AES-128 prefix", kd[:16], blockD, ErrMAC},
		{"B KBPK 8 bytes", kb[:8], blockB, ErrKBPK},
		{"B KBPK 32 bytes", kd, blockB, ErrKBPK},
		{"B KBPK nil", nil, blockB, ErrKBPK},
		{"D KBPK 20 bytes", kd[:20], blockD, ErrKBPK},
		{"D KBPK 8 bytes", kd[:8], blockD, ErrKBPK},
		{"truncated by one", kb, blockB[:len(blockB)-1], ErrMalformed},
		{"truncated header", kb, blockB[:10], ErrMalformed},
		{"empty", kb, "", ErrMalformed},
		{"truncated, length fixed", kb, withLength(blockB[:len(blockB)-2]), ErrMalformed},
		{"length field too big", kb, setAt(blockB, 2, "1"), ErrMalformed},
		{"length field not digits", kb, setAt(blockB, 2, "X"), ErrMalformed},
		{"odd hex", kb, withLength(blockB[:30] + blockB[31:]), ErrMalformed},
		{"half a cipher block", kb, withLength(blockB[:30] + blockB[32:]), ErrMalformed},
		{"no key field", kb, withLength(blockB[:16] + blockB[len(blockB)-16:]), ErrMalformed},
		{"non-hex in key field", kb, setAt(blockB, 20, "G"), ErrMalformed},
		{"lowercase hex in key field", kb, setAt(blockB, 17, "b"), ErrMalformed},
		{"lowercase hex in MAC", kd, blockD[:len(blockD)-32] + strings.ToLower(blockD[len(blockD)-32:]), ErrMalformed},
		{"lowercase usage", kb, setAt(blockB, 5, "p"), ErrMalformed},
		{"lowercase version", kb, setAt(blockB, 0, "b"), ErrUnsupportedVersion},
		{"unknown version", kb, setAt(blockB, 0, "Z"), ErrUnsupportedVersion},
		{"proprietary version", kb, setAt(blockB, 0, "1"), ErrUnsupportedVersion},
		{"non-ASCII", kb, setAt(blockB, 20, "é"), ErrMalformed},
		{"non-ASCII, length fixed", kb, withLength(setAt(blockB, 20, "é")), ErrMalformed},
		{"NUL byte", kb, setAt(blockB, 20, "\x00"), ErrMalformed},
		{"space in header", kb, setAt(blockB, 8, " "), ErrMalformed},
		{"reserved not 00", kb, setAt(blockB, 15, "1"), ErrMalformed},
		{"block count not digits", kb, setAt(blockB, 13, "A"), ErrMalformed},
		{"block count without blocks", kb, setAt(blockB, 13, "1"), ErrMalformed},
		{"optional block overflow", kb, withLength("B0000P0TE00N0100KSFF" + "00000000000000000000" + blockB[16:]), ErrMalformed},
		{"optional block too short", kb, withLength("B0000P0TE00N0100KS02" + blockB[16:]), ErrMalformed},
		{"optional block ID lowercase", kb, withLength("B0000P0TE00N0100ks08ABCD" + blockB[16:]), ErrMalformed},
		{"optional block length lowercase", kb, withLength("B0000P0TE00N0100KS0a" + strings.Repeat("0", 6) + blockB[16:]), ErrMalformed},
		{"extended length of length 0", kb, withLength("B0000P0TE00N0100KS0000" + "00" + blockB[16:]), ErrMalformed},
		{"extended length of length 5", kb, withLength("B0000P0TE00N0100KS0005" + "00" + blockB[16:]), ErrMalformed},
		{"extended length overflow", kb, withLength("B0000P0TE00N0100KS0002FFFF" + "000000" + blockB[16:]), ErrMalformed},
		{"extended length truncated", kb, withLength("B0000P0TE00N0100KS000")[:20], ErrMalformed},
		{"header not aligned", kb, withLength("B0000P0TE00N0100KS0C12345678" + blockB[16:]), ErrMalformed},
		{"PB not last", kb, withLength("B0000P0TE00N0200PB0800KS0800" + "0000" + blockB[16:]), ErrMalformed},
		{"longer than 9999", kb, "B9999" + strings.Repeat("0", 9995+1), ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, key, err := Unwrap(tc.kbpk, tc.block)
			checkErr(t, err, tc.want)
			if key != nil || !equalHeader(h, Header{}) {
				t.Fatalf("Unwrap returned %+v, %d key bytes with an error", h, len(key))
			}
			if tc.want == ErrMalformed || tc.want == ErrUnsupportedVersion {
				if _, err := Parse(tc.block); !errors.Is(err, tc.want) {
					t.Fatalf("Parse = %v, want %v", err, tc.want)
				}
			}
		})
	}
}

// wrapRaw seals arbitrary clear key data, to reach the checks that only run
// after the MAC has verified.
func wrapRaw(t *testing.T, kbpk []byte, h Header, kd []byte) string {
	t.Helper()
	p, _ := versionParams(h.Version)
	ks, err := deriveKeys(h.Version, kbpk)
	if err != nil {
		t.Fatal(err)
	}
	hdr, err := formatHeader(h, p, len(kd))
	if err != nil {
		t.Fatal(err)
	}
	mac := ks.macOf(hdr, kd)
	ct := make([]byte, len(kd))
	cipher.NewCBCEncrypter(ks.enc, mac).CryptBlocks(ct, kd)
	return hdr + string(appendHex(appendHex(nil, ct), mac))
}

func TestUnwrapBadKeyData(t *testing.T) {
	kb, kd := unhex(t, kbpkB), unhex(t, kbpkD)
	hT := Header{Version: 'B', Usage: "P0", Algorithm: 'T', ModeOfUse: 'E', KeyVersion: "00", Exportability: 'E'}
	hA := Header{Version: 'D', Usage: "D0", Algorithm: 'A', ModeOfUse: 'B', KeyVersion: "00", Exportability: 'N'}
	data := func(bits int, n int) []byte {
		b := bytes.Repeat([]byte{0x5A}, n)
		b[0], b[1] = byte(bits>>8), byte(bits)
		return b
	}
	tests := []struct {
		name string
		kbpk []byte
		h    Header
		kd   []byte
		want error
	}{
		{"length field larger than the field", kb, hT, data(0xFFF8, 24), ErrMalformed},
		{"length field one byte too long", kb, hT, data(23*8, 24), ErrMalformed},
		{"length field all ones", kd, hA, data(0xFFFF, 32), ErrMalformed},
		{"length field zero", kb, hT, data(0, 24), ErrMalformed},
		{"length not whole bytes", kb, hT, data(12, 24), ErrMalformed},
		{"TDES key of 15 bytes", kb, hT, data(15*8, 24), ErrKeyLength},
		{"TDES key of 32 bytes", kd, Header{Version: 'D', Usage: "P0", Algorithm: 'T', ModeOfUse: 'E', KeyVersion: "00", Exportability: 'E'}, data(32*8, 48), ErrKeyLength},
		{"AES key of 20 bytes", kd, hA, data(20*8, 32), ErrKeyLength},
		{"DES key of 16 bytes", kb, Header{Version: 'B', Usage: "D0", Algorithm: 'D', ModeOfUse: 'B', KeyVersion: "00", Exportability: 'E'}, data(16*8, 24), ErrKeyLength},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			block := wrapRaw(t, tc.kbpk, tc.h, tc.kd)
			if _, err := Parse(block); err != nil {
				t.Fatalf("Parse: %v", err)
			}
			_, key, err := Unwrap(tc.kbpk, block)
			checkErr(t, err, tc.want)
			if key != nil {
				t.Fatal("key returned with an error")
			}
		})
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }

func TestWrapBadInput(t *testing.T) {
	kb, kd := unhex(t, kbpkB), unhex(t, kbpkD)
	ok := Header{Version: 'B', Usage: "P0", Algorithm: 'T', ModeOfUse: 'E', KeyVersion: "00", Exportability: 'E'}
	with := func(f func(*Header)) Header { h := ok; f(&h); return h }
	key16 := bytes.Repeat([]byte{0x3C}, 16)
	many := make([]OptionalBlock, 100)
	for i := range many {
		many[i] = OptionalBlock{ID: string([]byte{'0' + byte(i/10), '0' + byte(i%10)}), Data: "PPPP"}
	}
	tests := []struct {
		name string
		kbpk []byte
		h    Header
		key  []byte
		want error
	}{
		{"version A", kb, with(func(h *Header) { h.Version = 'A' }), key16, ErrUnsupportedVersion},
		{"version C", kb, with(func(h *Header) { h.Version = 'C' }), key16, ErrUnsupportedVersion},
		{"version zero", kb, with(func(h *Header) { h.Version = 0 }), key16, ErrUnsupportedVersion},
		{"B with AES KBPK", kd, ok, key16, ErrKBPK},
		{"B with 8-byte KBPK", kb[:8], ok, key16, ErrKBPK},
		{"D with 8-byte KBPK", kd[:8], with(func(h *Header) { h.Version = 'D' }), key16, ErrKBPK},
		{"TDES key 15 bytes", kb, ok, key16[:15], ErrKeyLength},
		{"TDES key empty", kb, ok, nil, ErrKeyLength},
		{"AES key 8 bytes", kd, with(func(h *Header) { h.Version = 'D'; h.Algorithm = 'A' }), key16[:8], ErrKeyLength},
		{"HMAC key empty", kd, with(func(h *Header) { h.Version = 'D'; h.Algorithm = 'H' }), nil, ErrKeyLength},
		{"HMAC key too big", kd, with(func(h *Header) { h.Version = 'D'; h.Algorithm = 'H' }), make([]byte, 5000), ErrKeyLength},
		{"HMAC key fills more than 9999", kd, with(func(h *Header) { h.Version = 'D'; h.Algorithm = 'H' }), make([]byte, 4980), ErrMalformed},
		{"usage lowercase", kb, with(func(h *Header) { h.Usage = "p0" }), key16, ErrMalformed},
		{"usage 1 char", kb, with(func(h *Header) { h.Usage = "P" }), key16, ErrMalformed},
		{"key version 3 chars", kb, with(func(h *Header) { h.KeyVersion = "000" }), key16, ErrMalformed},
		{"exportability unset", kb, with(func(h *Header) { h.Exportability = 0 }), key16, ErrMalformed},
		{"optional ID lowercase", kb, with(func(h *Header) { h.Optional = []OptionalBlock{{ID: "ks", Data: "0000"}} }), key16, ErrMalformed},
		{"optional ID 3 chars", kb, with(func(h *Header) { h.Optional = []OptionalBlock{{ID: "KSX", Data: "0000"}} }), key16, ErrMalformed},
		{"optional data newline", kb, with(func(h *Header) { h.Optional = []OptionalBlock{{ID: "KS", Data: "00\n0"}} }), key16, ErrMalformed},
		{"PB not last", kb, with(func(h *Header) { h.Optional = []OptionalBlock{{ID: "PB", Data: "0000"}, {ID: "KS", Data: "0000"}} }), key16, ErrMalformed},
		{"PB leaves header unaligned", kb, with(func(h *Header) { h.Optional = []OptionalBlock{{ID: "PB", Data: "00"}} }), key16, ErrMalformed},
		{"100 optional blocks", kb, with(func(h *Header) { h.Optional = many }), key16, ErrMalformed},
		{"optional blocks too big", kb, with(func(h *Header) { h.Optional = []OptionalBlock{{ID: "T0", Data: strings.Repeat("P", 9990)}} }), key16, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			block, err := Wrap(tc.kbpk, tc.h, tc.key)
			checkErr(t, err, tc.want)
			if block != "" {
				t.Fatal("block returned with an error")
			}
		})
	}

	t.Run("padding source fails", func(t *testing.T) {
		saved := padReader
		padReader = failingReader{}
		defer func() { padReader = saved }()
		if _, err := Wrap(kb, ok, key16); err == nil {
			t.Fatal("Wrap succeeded without padding")
		}
	})
}

// Wrap and Unwrap must leave the caller's buffers alone.
func TestBuffersUntouched(t *testing.T) {
	kbpk := unhex(t, kbpkB)
	key := bytes.Repeat([]byte{0x3C}, 16)
	k0, key0 := bytes.Clone(kbpk), bytes.Clone(key)
	h := Header{Version: 'B', Usage: "P0", Algorithm: 'T', ModeOfUse: 'E', KeyVersion: "00", Exportability: 'E'}
	block, err := Wrap(kbpk, h, key)
	if err != nil {
		t.Fatal(err)
	}
	_, got, err := Unwrap(kbpk, block)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(kbpk, k0) || !bytes.Equal(key, key0) {
		t.Fatal("caller's KBPK or key modified")
	}
	got[0] ^= 0xFF
	if _, again, _ := Unwrap(kbpk, block); !bytes.Equal(again, key0) {
		t.Fatal("returned key aliases internal state")
	}
}
