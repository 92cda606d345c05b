package pinpademu

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/posagent/posagent/keystore/kcv"
	"github.com/posagent/posagent/keystore/mac"
	"github.com/posagent/posagent/keystore/tr31"
)

func wrapBlock(t testing.TB, kbpk []byte, version byte, usage string, alg, mode byte, key []byte) string {
	t.Helper()
	b, err := tr31.Wrap(kbpk, tr31.Header{Version: version, Usage: usage, Algorithm: alg, ModeOfUse: mode, KeyVersion: "00", Exportability: 'E'}, key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestKeyBlockPolicy(t *testing.T) {
	for _, tc := range []struct {
		h      blockHeader
		parent byte
		usage  byte
		aes    bool
		st     status
	}{
		{blockHeader{"K0", 'T', 'B', 'E'}, usageTransport, usageKEK, false, stOK},
		{blockHeader{"K1", 'A', 'D', 'N'}, usageTransport, usageKEK, true, stOK},
		{blockHeader{"K0", 'T', 'N', 'S'}, usageTransport, usageKEK, false, stOK},
		{blockHeader{"K0", 'T', 'E', 'E'}, usageTransport, 0, false, stWrongUsage},
		{blockHeader{"K0", 'T', 'B', 'E'}, usageKEK, 0, false, stWrongUsage},
		{blockHeader{"P0", 'T', 'E', 'E'}, usageKEK, usagePIK, false, stOK},
		{blockHeader{"P0", 'T', 'E', 'E'}, usageTransport, 0, false, stWrongUsage},
		{blockHeader{"P0", 'A', 'E', 'E'}, usageKEK, 0, false, stWrongUsage},
		{blockHeader{"P0", 'T', 'D', 'E'}, usageKEK, 0, false, stWrongUsage},
		{blockHeader{"M0", 'T', 'C', 'E'}, usageKEK, usageMAK, false, stOK},
		{blockHeader{"M1", 'T', 'G', 'E'}, usageKEK, usageMAK, false, stOK},
		{blockHeader{"M3", 'T', 'N', 'E'}, usageKEK, usageMAK, false, stOK},
		{blockHeader{"M3", 'T', 'V', 'E'}, usageKEK, 0, false, stWrongUsage},
		{blockHeader{"M6", 'A', 'C', 'E'}, usageKEK, 0, false, stWrongUsage},
		{blockHeader{"D0", 'T', 'D', 'E'}, usageKEK, usageTDK, false, stOK},
		{blockHeader{"D0", 'D', 'D', 'E'}, usageKEK, 0, false, stWrongUsage},
		{blockHeader{"B0", 'T', 'N', 'E'}, usageKEK, 0, false, stWrongUsage},
		{blockHeader{"", 0, 0, 0}, usageKEK, 0, false, stWrongUsage},
	} {
		u, a, st := keyBlockPolicy(tc.h, tc.parent)
		if u != tc.usage || a != tc.aes || st != tc.st {
			t.Errorf("%+v under %#x: usage %#x aes %t status %#x", tc.h, tc.parent, u, a, st)
		}
	}
}

// An AES KEK from a key block persists with its algorithm; a refused block leaves the key
// file as it was.
func TestSecureElementKeyBlocksPersist(t *testing.T) {
	file := filepath.Join(t.TempDir(), "keys.json")
	tk := unhex("00112233445566778899AABBCCDDEEFF")
	kek := unhex("8899AABBCCDDEEFF0011223344556677F0E1D2C3B4A5968778695A4B3C2D1E0F")
	mak := unhex("1C1C1C1C2A2A2A2A3B3B3B3B4D4D4D4D")
	se, err := newSecureElement(tk, true, file)
	if err != nil {
		t.Fatal(err)
	}
	r, st := se.loadBlock(1, 0, wrapBlock(t, tk, 'D', "K0", 'A', 'B', kek))
	want, _ := kcv.AES(kek, 3)
	if st != stOK || r.usage != usageKEK || r.alg != algAES || !bytes.Equal(r.kcv[:], want) {
		t.Fatalf("AES KEK: %+v %#x", r, st)
	}
	if r, st = se.loadBlock(3, 1, wrapBlock(t, kek, 'D', "M3", 'T', 'C', mak)); st != stOK || r.alg != algTDES {
		t.Fatalf("MAK: %+v %#x", r, st)
	}
	before, _ := os.ReadFile(file)
	bad := wrapBlock(t, kek, 'D', "M3", 'T', 'C', unhex("0123456789ABCDEFFEDCBA9876543210"))
	bad = bad[:len(bad)-2] + "00"
	if _, st := se.loadBlock(3, 1, bad); st != stBadKeyBlock {
		t.Fatalf("tampered: %#x", st)
	}
	if after, _ := os.ReadFile(file); !bytes.Equal(before, after) {
		t.Fatal("refused block changed the key file")
	}
	var kf keyFile
	if err := json.Unmarshal(before, &kf); err != nil || len(kf.Slots) != 2 || kf.Slots[0].Alg != "A" || kf.Slots[1].Alg != "" {
		t.Fatalf("key file %+v %v", kf, err)
	}

	se2, err := newSecureElement(tk, true, file)
	if err != nil {
		t.Fatal(err)
	}
	if ki, st := se2.kcv(1); st != stOK || ki.alg != algAES || ki.keyLen != 32 || !bytes.Equal(ki.kcv[:], want) {
		t.Fatalf("after restart: %+v %#x", ki, st)
	}
	got, st := se2.mac(3, macX919, []byte("data"))
	exp, _ := mac.X919(mak, []byte("data"))
	if st != stOK || !bytes.Equal(got, exp) {
		t.Fatalf("MAC after restart: %#x", st)
	}

	// A key file claiming an AES working key, or an unknown algorithm, is refused.
	for _, bad := range []string{
		`{"slots":[{"slot":2,"usage":2,"alg":"A","key":"00112233445566778899AABBCCDDEEFF"}]}`,
		`{"slots":[{"slot":1,"usage":1,"alg":"X","key":"00112233445566778899AABBCCDDEEFF"}]}`,
		`{"slots":[{"slot":1,"usage":1,"alg":"A","key":"0011223344556677"}]}`,
	} {
		if err := os.WriteFile(file, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := newSecureElement(tk, true, file); err == nil {
			t.Errorf("key file accepted: %s", bad)
		}
	}
}

func TestSecureElementMACRefusals(t *testing.T) {
	se, err := newSecureElement(DefaultTransportKey, false, "")
	if err != nil {
		t.Fatal(err)
	}
	kek, mak := unhex("89ABCDEF0123456776543210FEDCBA98"), unhex("1C1C1C1C2A2A2A2A3B3B3B3B4D4D4D4D")
	cv := func(k []byte) []byte { c, _ := checkValue(k); return c[:3] }
	se.load(1, usageKEK, 0, wrapKey(DefaultTransportKey, kek), cv(kek))
	se.load(3, usageMAK, 1, wrapKey(kek, mak), cv(mak))
	for _, tc := range []struct {
		slot int
		alg  byte
		n    int
		st   status
	}{
		{3, macX919, 1, stOK},
		{3, macUnionPayECB, maxMACData, stOK},
		{3, macX99, 8, stWrongUsage},
		{1, macX919, 8, stWrongUsage},
		{4, macX919, 8, stNoKey},
		{0, macX919, 8, stBadParameter},
		{16, macX919, 8, stBadParameter},
		{3, 0, 8, stBadParameter},
		{3, 4, 8, stBadParameter},
		{3, macX919, 0, stBadParameter},
		{3, macX919, maxMACData + 1, stBadParameter},
	} {
		if _, st := se.mac(tc.slot, tc.alg, make([]byte, tc.n)); st != tc.st {
			t.Errorf("slot %d alg %d, %d bytes: %#x, want %#x", tc.slot, tc.alg, tc.n, st, tc.st)
		}
	}
}

// The layouts of INFO and KEY CHECK VALUE, and parameters they refuse.
func TestInfoAndKCVLayouts(t *testing.T) {
	se, err := newSecureElement(DefaultTransportKey, false, "")
	if err != nil {
		t.Fatal(err)
	}
	e := &Emulator{opt: Options{Model: "m", Serial: "s", Firmware: "f"}, se: se}
	s := &session{e: e, open: true}
	ans := func(p ...byte) []byte {
		s.queue = nil
		s.command(0x40, p)
		if len(s.queue) != 1 {
			t.Fatalf("% X: %d answers", p, len(s.queue))
		}
		return s.queue[0].payload
	}
	head := []byte{1, 'm', 1, 's', 1, 'f', 1}
	if got := ans(cInfo); !bytes.Equal(got, append(append([]byte{0x83, 0x40, stOK}, head...), 0, usageTransport, 16)) {
		t.Errorf("INFO % X", got)
	}
	if got := ans(cInfo, 1); !bytes.Equal(got, append(append([]byte{0x83, 0x40, stOK}, head...), 0, usageTransport, 'T', 16)) {
		t.Errorf("INFO 01 % X", got)
	}
	for _, p := range [][]byte{{cInfo, 2}, {cInfo, 1, 1}, {cKCV, 0, 2}, {cKCV, 0, 1, 0}, {cKCV}} {
		if got := ans(p...); got[2] != stBadParameter {
			t.Errorf("% X: % X", p, got)
		}
	}
	if got := ans(cKCV, 0, 1); !bytes.Equal(got, []byte{0xB1, 0x40, stOK, usageTransport, 'T', 16, 0x08, 0xD7, 0xB4}) {
		t.Errorf("KCV 01 % X", got)
	}
	for _, p := range [][]byte{{cLoadTR31, 1, 0, 0, 0}, {cLoadTR31, 1, 0, 0, 5, 'A'}, {cMAC, 3, 2, 0, 2, 1}, {cMAC, 3, 2, 0}} {
		if got := ans(p...); got[2] != stBadParameter {
			t.Errorf("% X: % X", p, got)
		}
	}
}
