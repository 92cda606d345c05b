package pinpad_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/posagent/posagent/board/sim/pinpademu"
	"github.com/posagent/posagent/drivers/pinpad"
	"github.com/posagent/posagent/keystore/kcv"
	"github.com/posagent/posagent/keystore/mac"
	"github.com/posagent/posagent/keystore/pinblock"
	"github.com/posagent/posagent/keystore/tr31"
)

var (
	// Published UnionPay MAC example (keystore/mac has its source): a 0200 message and its TAK.
	upMAB = unhex("0200302004C020C0981100000000000000005100183402100006324392260009942820D131210112" +
		"0084393136363838303134303030303030303030303030303031313536ACF46E73838A82F92600000000" +
		"000000000822000001")
	upTAK = unhex("C24A8FB57AA20123")

	aesTransport = unhex("00112233445566778899AABBCCDDEEFF0123456789ABCDEFFEDCBA9876543210")
	aesKEK       = unhex("8899AABBCCDDEEFF0011223344556677F0E1D2C3B4A5968778695A4B3C2D1E0F")
)

func header(version byte, usage string, alg, mode byte) tr31.Header {
	return tr31.Header{Version: version, Usage: usage, Algorithm: alg, ModeOfUse: mode, KeyVersion: "00", Exportability: 'E'}
}

func keyBlock(t testing.TB, kbpk []byte, h tr31.Header, key []byte) string {
	t.Helper()
	b, err := tr31.Wrap(kbpk, h, key)
	if err != nil {
		t.Fatalf("wrap %s: %v", h.Usage, err)
	}
	return b
}

func TestMAC(t *testing.T) {
	t.Parallel()
	r := newRig(t, pinpademu.Options{}, pinpad.Options{})
	r.loadKeys(t)
	c, ctx := r.client, ctxT(t)
	const single = 5
	if _, err := c.LoadKey(ctx, pinpad.KeyLoad{Slot: single, Usage: pinpad.UsageMAK, Parent: kekSlot, Encrypted: wrap(kekClear, upTAK), CheckValue: kcvOf(upTAK)}); err != nil {
		t.Fatal(err)
	}

	// The published UnionPay example, end to end.
	got, err := c.MAC(ctx, single, pinpad.MACUnionPayECB, upMAB)
	if err != nil || string(got) != "8A9E91B8" {
		t.Fatalf("UnionPay ECB: %q %v", got, err)
	}
	long := bytes.Repeat([]byte("0200 MAC data "), 65)[:pinpad.MaxMACData]
	for _, tc := range []struct {
		slot int
		alg  pinpad.MACAlgorithm
		key  []byte
		f    func(key, data []byte) ([]byte, error)
		data []byte
	}{
		{single, pinpad.MACX99, upTAK, mac.X99, upMAB},
		{makSlot, pinpad.MACX919, makClear, mac.X919, upMAB},
		{makSlot, pinpad.MACUnionPayECB, makClear, mac.UnionPayECB, upMAB},
		{makSlot, pinpad.MACX919, makClear, mac.X919, long},
		{makSlot, pinpad.MACX919, makClear, mac.X919, []byte{0x42}},
	} {
		want, err := tc.f(tc.key, tc.data)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.MAC(ctx, tc.slot, tc.alg, tc.data)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s on slot %d, %d bytes: %X %v, want %X", tc.alg, tc.slot, len(tc.data), got, err, want)
		}
	}

	for _, tc := range []struct {
		name string
		slot int
		alg  pinpad.MACAlgorithm
		data []byte
		want error
	}{
		{"X9.9 with a double-length MAK", makSlot, pinpad.MACX99, upMAB, pinpad.ErrWrongUsage},
		{"X9.19 with a single-length MAK", single, pinpad.MACX919, upMAB, pinpad.ErrWrongUsage},
		{"PIK", pikSlot, pinpad.MACX919, upMAB, pinpad.ErrWrongUsage},
		{"KEK", kekSlot, pinpad.MACX919, upMAB, pinpad.ErrWrongUsage},
		{"empty slot", 9, pinpad.MACX919, upMAB, pinpad.ErrNoKey},
		{"transport slot", 0, pinpad.MACX919, upMAB, pinpad.ErrBadParameter},
		{"no data", makSlot, pinpad.MACX919, nil, pinpad.ErrBadParameter},
		{"too much data", makSlot, pinpad.MACX919, make([]byte, pinpad.MaxMACData+1), pinpad.ErrBadParameter},
		{"unknown algorithm", makSlot, 9, upMAB, pinpad.ErrBadParameter},
	} {
		if _, err := c.MAC(ctx, tc.slot, tc.alg, tc.data); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

// TR-31 B blocks under a TDES transport key and KEK: the keys land with their usages and work.
func TestLoadKeyBlock(t *testing.T) {
	t.Parallel()
	r := newRig(t, pinpademu.Options{}, pinpad.Options{})
	c, ctx := r.client, ctxT(t)
	if err := c.OpenSession(ctx); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		slot, parent int
		h            tr31.Header
		kbpk, key    []byte
		usage        pinpad.Usage
	}{
		{kekSlot, pinpad.TransportSlot, header('B', "K0", 'T', 'D'), transportKey, kekClear, pinpad.UsageKEK},
		{pikSlot, kekSlot, header('B', "P0", 'T', 'E'), kekClear, pikClear, pinpad.UsagePIK},
		{makSlot, kekSlot, header('B', "M3", 'T', 'C'), kekClear, makClear, pinpad.UsageMAK},
		{4, kekSlot, header('B', "D0", 'T', 'B'), kekClear, pik2Clear, pinpad.UsageTDK},
	} {
		res, err := c.LoadKeyBlock(ctx, tc.slot, tc.parent, keyBlock(t, tc.kbpk, tc.h, tc.key))
		if err != nil {
			t.Fatalf("%s: %v", tc.h.Usage, err)
		}
		if res.Usage != tc.usage || res.AES || !bytes.Equal(res.KCV[:], kcvOf(tc.key)) {
			t.Fatalf("%s: %+v", tc.h.Usage, res)
		}
		si, cv, err := c.KeyInfo(ctx, tc.slot)
		if err != nil || si != (pinpad.SlotInfo{Slot: tc.slot, Usage: tc.usage, KeyLen: len(tc.key)}) || cv != res.KCV {
			t.Fatalf("%s: key info %+v %s %v", tc.h.Usage, si, cv, err)
		}
	}

	// GET PIN under the PIK from the key block: the block decrypts to the format 0 block, and
	// the host simulator's reading of it gives the PIN back.
	_ = r.emu.ScriptPIN("92389")
	blk, err := c.GetPIN(ctx, pinpad.PINRequest{PAN: "4000001234562", Slot: pikSlot, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	clearBlk := [8]byte(unwrapBlock(pikClear, blk))
	if hex.EncodeToString(clearBlk[:]) != "0592789fffedcba9" {
		t.Fatalf("clear block %x", clearBlk)
	}
	if pin, err := pinblock.PIN(clearBlk, "4000001234562"); err != nil || pin != "92389" {
		t.Fatalf("PIN from the block: %v", err)
	}
	// The MAK from the key block computes MACs.
	want, _ := mac.X919(makClear, upMAB)
	if got, err := c.MAC(ctx, makSlot, pinpad.MACX919, upMAB); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("MAC with the MAK from the key block: %X %v", got, err)
	}

	good := keyBlock(t, kekClear, header('B', "P0", 'T', 'E'), pik2Clear)
	tamper := func(at int) string {
		b := []byte(good)
		if b[at] == '0' {
			b[at] = '1'
		} else {
			b[at] = '0'
		}
		return string(b)
	}
	nonExportable := header('B', "P0", 'T', 'E')
	nonExportable.Exportability = 'N'
	cases := []struct {
		name         string
		slot, parent int
		block        string
		want         error
	}{
		{"tampered MAC", pikSlot, kekSlot, tamper(len(good) - 1), pinpad.ErrBadKeyBlock},
		{"tampered key", pikSlot, kekSlot, tamper(20), pinpad.ErrBadKeyBlock},
		{"tampered header", pikSlot, kekSlot, strings.Replace(good, "P0", "D0", 1), pinpad.ErrBadKeyBlock},
		{"wrong KBPK", pikSlot, kekSlot, keyBlock(t, makClear, header('B', "P0", 'T', 'E'), pik2Clear), pinpad.ErrBadKeyBlock},
		{"not a key block", pikSlot, kekSlot, "hello", pinpad.ErrBadKeyBlock},
		{"truncated", pikSlot, kekSlot, good[:len(good)-8], pinpad.ErrBadKeyBlock},
		{"D block under a TDES KEK", pikSlot, kekSlot, keyBlock(t, aesKEK, header('D', "P0", 'T', 'E'), pik2Clear), pinpad.ErrBadKeyBlock},
		{"PIK under the transport key", pikSlot, pinpad.TransportSlot, keyBlock(t, transportKey, header('B', "P0", 'T', 'E'), pik2Clear), pinpad.ErrWrongUsage},
		{"KEK under a KEK", pikSlot, kekSlot, keyBlock(t, kekClear, header('B', "K0", 'T', 'B'), pik2Clear), pinpad.ErrWrongUsage},
		{"BDK", pikSlot, kekSlot, keyBlock(t, kekClear, header('B', "B0", 'T', 'N'), pik2Clear), pinpad.ErrWrongUsage},
		{"PIK for decryption only", pikSlot, kekSlot, keyBlock(t, kekClear, header('B', "P0", 'T', 'D'), pik2Clear), pinpad.ErrWrongUsage},
		{"MAK for verification only", pikSlot, kekSlot, keyBlock(t, kekClear, header('B', "M3", 'T', 'V'), pik2Clear), pinpad.ErrWrongUsage},
		{"AES KEK under a TDES transport key", 6, pinpad.TransportSlot, keyBlock(t, transportKey, header('B', "K0", 'A', 'B'), aesKEK), pinpad.ErrWrongUsage},
		{"KEK for wrapping only", 6, pinpad.TransportSlot, keyBlock(t, transportKey, header('B', "K0", 'T', 'E'), pik2Clear), pinpad.ErrWrongUsage},
		{"under a PIK", pikSlot, pikSlot, keyBlock(t, pikClear, header('B', "P0", 'T', 'E'), pik2Clear), pinpad.ErrWrongUsage},
		{"under a MAK", pikSlot, makSlot, keyBlock(t, makClear, header('B', "P0", 'T', 'E'), pik2Clear), pinpad.ErrWrongUsage},
		{"empty parent", pikSlot, 9, good, pinpad.ErrNoKey},
		{"transport slot", pinpad.TransportSlot, pinpad.TransportSlot, good, pinpad.ErrBadParameter},
		{"slot out of range", 16, kekSlot, good, pinpad.ErrBadParameter},
		{"empty block", pikSlot, kekSlot, "", pinpad.ErrBadParameter},
		{"control characters", pikSlot, kekSlot, good[:10] + "\x03" + good[11:], pinpad.ErrBadParameter},
	}
	for _, tc := range cases {
		if _, err := c.LoadKeyBlock(ctx, tc.slot, tc.parent, tc.block); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if _, cv, err := c.KeyCheckValue(ctx, pikSlot); err != nil || !bytes.Equal(cv[:], kcvOf(pikClear)) {
			t.Fatalf("%s: PIK changed: %s %v", tc.name, cv, err)
		}
	}
	if _, ok := r.emu.KCV(6); ok {
		t.Fatal("refused KEK stored")
	}

	// A non-exportable PIK is fine (the pad exports nothing), and replaces the old one.
	res, err := c.LoadKeyBlock(ctx, pikSlot, kekSlot, keyBlock(t, kekClear, nonExportable, pik2Clear))
	if err != nil || res.Usage != pinpad.UsagePIK || !bytes.Equal(res.KCV[:], kcvOf(pik2Clear)) {
		t.Fatalf("non-exportable PIK: %+v %v", res, err)
	}
}

// An AES transport key delivers an AES KEK in a D block, which delivers TDES working keys in
// D blocks.
func TestLoadKeyBlockAES(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := newRig(t, pinpademu.Options{TransportKey: aesTransport, TransportKeyAES: true, KeyFile: dir + "/keys.json"}, pinpad.Options{})
	c, ctx := r.client, ctxT(t)
	if err := c.OpenSession(ctx); err != nil {
		t.Fatal(err)
	}
	in, err := c.Info(ctx)
	if err != nil || len(in.Slots) != 1 || in.Slots[0] != (pinpad.SlotInfo{Slot: 0, Usage: pinpad.UsageTransport, AES: true, KeyLen: 32}) {
		t.Fatalf("info %+v %v", in, err)
	}
	aesKCV := func(k []byte) []byte {
		cv, err := kcv.AES(k, 5)
		if err != nil {
			t.Fatal(err)
		}
		return cv[:3]
	}
	if _, cv, err := c.KeyCheckValue(ctx, 0); err != nil || !bytes.Equal(cv[:], aesKCV(aesTransport)) {
		t.Fatalf("AES transport KCV %s %v", cv, err)
	}

	res, err := c.LoadKeyBlock(ctx, kekSlot, pinpad.TransportSlot, keyBlock(t, aesTransport, header('D', "K0", 'A', 'B'), aesKEK))
	if err != nil || res.Usage != pinpad.UsageKEK || !res.AES || !bytes.Equal(res.KCV[:], aesKCV(aesKEK)) {
		t.Fatalf("AES KEK: %+v %v", res, err)
	}
	res, err = c.LoadKeyBlock(ctx, pikSlot, kekSlot, keyBlock(t, aesKEK, header('D', "P0", 'T', 'E'), pikClear))
	if err != nil || res.Usage != pinpad.UsagePIK || res.AES || !bytes.Equal(res.KCV[:], kcvOf(pikClear)) {
		t.Fatalf("PIK under the AES KEK: %+v %v", res, err)
	}
	res, err = c.LoadKeyBlock(ctx, makSlot, kekSlot, keyBlock(t, aesKEK, header('D', "M1", 'T', 'G'), makClear))
	if err != nil || res.Usage != pinpad.UsageMAK {
		t.Fatalf("MAK under the AES KEK: %+v %v", res, err)
	}

	_ = r.emu.ScriptPIN("1234")
	blk, err := c.GetPIN(ctx, pinpad.PINRequest{PAN: "43219876543210987", Slot: pikSlot, Timeout: 5 * time.Second})
	if err != nil || hex.EncodeToString(unwrapBlock(pikClear, blk)) != "0412ac89abcdef67" {
		t.Fatalf("GET PIN with the PIK from a D block: %v", err)
	}
	want, _ := mac.UnionPayECB(makClear, upMAB)
	if got, err := c.MAC(ctx, makSlot, pinpad.MACUnionPayECB, upMAB); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("MAC: %q %v", got, err)
	}

	for _, tc := range []struct {
		name         string
		slot, parent int
		block        string
		want         error
	}{
		{"B block under an AES KEK", 4, kekSlot, keyBlock(t, kekClear, header('B', "D0", 'T', 'B'), pik2Clear), pinpad.ErrBadKeyBlock},
		{"AES PIK", 4, kekSlot, keyBlock(t, aesKEK, header('D', "P0", 'A', 'E'), aesTransport[:16]), pinpad.ErrWrongUsage},
		{"AES KEK under an AES KEK", 4, kekSlot, keyBlock(t, aesKEK, header('D', "K0", 'A', 'B'), aesTransport), pinpad.ErrWrongUsage},
		{"single-length TDES", 4, kekSlot, keyBlock(t, aesKEK, header('D', "D0", 'T', 'B'), upTAK), pinpad.ErrBadKeyBlock},
	} {
		if _, err := c.LoadKeyBlock(ctx, tc.slot, tc.parent, tc.block); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, ok := r.emu.KCV(4); ok {
		t.Fatal("refused key stored")
	}
	// LOAD KEY's TDES-ECB cryptograms are not for AES keys.
	if _, err := c.LoadKey(ctx, pinpad.KeyLoad{Slot: 4, Usage: pinpad.UsageTDK, Parent: kekSlot, Encrypted: make([]byte, 16), CheckValue: []byte{1, 2, 3}}); !errors.Is(err, pinpad.ErrWrongUsage) {
		t.Fatalf("LOAD KEY under an AES KEK: %v", err)
	}

	in, err = c.Info(ctx)
	if err != nil || len(in.Slots) != 4 || in.Slots[1] != (pinpad.SlotInfo{Slot: kekSlot, Usage: pinpad.UsageKEK, AES: true, KeyLen: 32}) ||
		in.Slots[2] != (pinpad.SlotInfo{Slot: pikSlot, Usage: pinpad.UsagePIK, KeyLen: 16}) {
		t.Fatalf("info %+v %v", in, err)
	}

	// The AES KEK survives a restart of the pad with its algorithm.
	if err := r.emu.Close(); err != nil {
		t.Fatal(err)
	}
	r2 := newRig(t, pinpademu.Options{TransportKey: aesTransport, TransportKeyAES: true, KeyFile: dir + "/keys.json"}, pinpad.Options{})
	if err := r2.client.OpenSession(ctx); err != nil {
		t.Fatal(err)
	}
	si, cv, err := r2.client.KeyInfo(ctx, kekSlot)
	if err != nil || !si.AES || si.KeyLen != 32 || !bytes.Equal(cv[:], aesKCV(aesKEK)) {
		t.Fatalf("AES KEK after restart: %+v %s %v", si, cv, err)
	}

	// A factory injection after ERASE of everything.
	if err := r2.client.Erase(ctx, pinpad.EraseAll); err != nil {
		t.Fatal(err)
	}
	if err := r2.emu.InjectTransportKey(transportKey, false); err != nil {
		t.Fatal(err)
	}
	if si, _, err := r2.client.KeyInfo(ctx, 0); err != nil || si.AES || si.Usage != pinpad.UsageTransport || si.KeyLen != 16 {
		t.Fatalf("injected transport key: %+v %v", si, err)
	}
	if err := r2.emu.InjectTransportKey(make([]byte, 12), true); err == nil {
		t.Fatal("AES key of 12 bytes injected")
	}
}
