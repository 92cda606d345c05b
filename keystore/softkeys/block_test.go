package softkeys

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/posagent/posagent/keystore"
	"github.com/posagent/posagent/keystore/kcv"
	"github.com/posagent/posagent/keystore/mac"
	"github.com/posagent/posagent/keystore/tr31"
)

func wrap(t *testing.T, kbpk []byte, version byte, usage string, alg, mode byte, key []byte) string {
	t.Helper()
	s, err := tr31.Wrap(kbpk, tr31.Header{Version: version, Usage: usage, Algorithm: alg, ModeOfUse: mode, KeyVersion: "00", Exportability: 'N'}, key)
	if err != nil {
		t.Fatalf("wrap %c %s %c %c: %v", version, usage, alg, mode, err)
	}
	return s
}

func TestLoadBlockTDES(t *testing.T) {
	e := newEnv(t)
	if _, err := e.b.InjectTransport(bg, keystore.TDES, transportKey, false); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		slot, parent int
		kbpk         []byte
		usage        string
		mode         byte
		key          []byte
		want         keystore.Usage
	}{
		{1, 0, transportKey, "K0", 'D', kekKey, keystore.UsageKEK},
		{2, 1, kekKey, "P0", 'E', pikKey, keystore.UsagePIK},
		{3, 1, kekKey, "M3", 'C', makKey, keystore.UsageMAK},
		{4, 1, kekKey, "D0", 'B', tdkKey, keystore.UsageTDK},
		{5, 1, kekKey, "M0", 'G', mak8Key, keystore.UsageMAK},
		{6, 0, transportKey, "K1", 'B', tdkKey, keystore.UsageKEK},
		{7, 6, tdkKey, "M1", 'N', makKey, keystore.UsageMAK},
	} {
		k, err := e.b.LoadBlock(bg, c.slot, c.parent, wrap(t, c.kbpk, 'B', c.usage, 'T', c.mode, c.key))
		want := keystore.Key{Slot: c.slot, Usage: c.want, Algorithm: keystore.TDES, Length: len(c.key), KCV: kcvHex(c.key)}
		if err != nil || k != want {
			t.Fatalf("%s into %d: %+v %v, want %+v", c.usage, c.slot, k, err, want)
		}
	}
	if k := e.keys()[2]; k.KCV != "E99443" || k.Usage != keystore.UsagePIK {
		t.Fatalf("PIK %+v", k)
	}
	data := []byte("message")
	want, _ := mac.X919(makKey, data)
	for _, slot := range []int{3, 7} {
		if got, err := e.b.MAC(bg, slot, keystore.MACX919, data); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("MAC slot %d: %X %v", slot, got, err)
		}
	}
}

func TestLoadBlockAESKEK(t *testing.T) {
	e := newEnv(t)
	if _, err := e.b.InjectTransport(bg, keystore.AES, aesTransport, false); err != nil {
		t.Fatal(err)
	}
	k, err := e.b.LoadBlock(bg, 1, 0, wrap(t, aesTransport, 'D', "K1", 'A', 'B', aesKEK))
	cv, _ := kcv.AES(aesKEK, 3)
	if err != nil || k != (keystore.Key{Slot: 1, Usage: keystore.UsageKEK, Algorithm: keystore.AES, Length: 16, KCV: fmt.Sprintf("%X", cv)}) {
		t.Fatalf("AES KEK: %+v %v", k, err)
	}
	// A TDES KEK under an AES transport key too.
	if _, err := e.b.LoadBlock(bg, 9, 0, wrap(t, aesTransport, 'D', "K0", 'T', 'D', kekKey)); err != nil {
		t.Fatal(err)
	}
	if k, err := e.b.LoadBlock(bg, 2, 1, wrap(t, aesKEK, 'D', "P0", 'T', 'E', pikKey)); err != nil || k.KCV != "E99443" {
		t.Fatalf("PIK under AES KEK: %+v %v", k, err)
	}
	if _, err := e.b.LoadBlock(bg, 3, 1, wrap(t, aesKEK, 'D', "M1", 'T', 'G', makKey)); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte{0x5A}, 37)
	want, _ := mac.UnionPayECB(makKey, data)
	if got, err := e.b.MAC(bg, 3, keystore.MACUnionPayECB, data); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("MAC: %s %v", got, err)
	}
	// An AES KEK does not decrypt TDES-ECB.
	_, err = e.b.LoadEncrypted(bg, 4, 1, keystore.UsageMAK, ecb(kekKey, makKey), check(makKey, 3))
	wantErr(t, "LoadEncrypted under an AES KEK", err, keystore.ErrWrongUsage)
	e.reopen()
	if n := len(e.keys()); n != 5 {
		t.Fatalf("%d keys after reopen", n)
	}
}

func TestLoadBlockErrors(t *testing.T) {
	e := newEnv(t)
	e.standard()
	if _, err := e.b.LoadBlock(bg, 6, 0, wrap(t, transportKey, 'B', "K0", 'T', 'D', tdkKey)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.b.LoadEncrypted(bg, 8, 0, keystore.UsageKEK, ecb(transportKey, mak8Key), check(mak8Key, 3)); err != nil {
		t.Fatal(err)
	}
	before := e.keys()
	good := wrap(t, kekKey, 'B', "P0", 'T', 'E', pik2Key)
	tampered := []byte(good)
	// A hex digit of the encrypted key changed to another hex digit: still a well-formed
	// block, and its MAC fails.
	if tampered[len(tampered)-20] == '0' {
		tampered[len(tampered)-20] = '1'
	} else {
		tampered[len(tampered)-20] = '0'
	}
	for _, c := range []struct {
		name         string
		slot, parent int
		block        string
		want, cause  error
	}{
		{"slot 0", 0, 1, good, keystore.ErrBadSlot, nil},
		{"slot past max", 16, 1, good, keystore.ErrBadSlot, nil},
		{"parent past max", 2, 16, good, keystore.ErrBadSlot, nil},
		{"empty parent", 2, 9, good, keystore.ErrNoKey, nil},
		{"PIK parent", 7, 2, wrap(t, pikKey, 'B', "P0", 'T', 'E', pik2Key), keystore.ErrWrongUsage, nil},
		{"MAK parent", 7, 3, wrap(t, makKey, 'B', "M3", 'T', 'C', pik2Key), keystore.ErrWrongUsage, nil},
		{"KEK under KEK", 7, 1, wrap(t, kekKey, 'B', "K0", 'T', 'D', pik2Key), keystore.ErrWrongUsage, nil},
		{"PIK under transport", 2, 0, wrap(t, transportKey, 'B', "P0", 'T', 'E', pik2Key), keystore.ErrWrongUsage, nil},
		{"BDK usage", 2, 1, wrap(t, kekKey, 'B', "B0", 'T', 'X', pik2Key), keystore.ErrWrongUsage, nil},
		{"AES PIK", 2, 1, wrap(t, kekKey, 'B', "P0", 'A', 'E', aesKEK), keystore.ErrWrongUsage, nil},
		{"DES KEK", 7, 0, wrap(t, transportKey, 'B', "K0", 'D', 'D', mak8Key), keystore.ErrWrongUsage, nil},
		{"encrypt-only KEK", 7, 0, wrap(t, transportKey, 'B', "K0", 'T', 'E', pik2Key), keystore.ErrWrongUsage, nil},
		{"decrypt-only PIK", 2, 1, wrap(t, kekKey, 'B', "P0", 'T', 'D', pik2Key), keystore.ErrWrongUsage, nil},
		{"verify-only MAK", 3, 1, wrap(t, kekKey, 'B', "M3", 'T', 'V', pik2Key), keystore.ErrWrongUsage, nil},
		{"MAC-mode TDK", 4, 1, wrap(t, kekKey, 'B', "D0", 'T', 'C', pik2Key), keystore.ErrWrongUsage, nil},
		{"tampered", 2, 1, string(tampered), keystore.ErrBadKeyBlock, tr31.ErrMAC},
		{"wrong KBPK", 2, 1, wrap(t, makKey, 'B', "P0", 'T', 'E', pik2Key), keystore.ErrBadKeyBlock, tr31.ErrMAC},
		{"other KEK", 2, 6, good, keystore.ErrBadKeyBlock, tr31.ErrMAC},
		{"version D under TDES", 2, 1, wrap(t, aesKEK, 'D', "P0", 'T', 'E', pik2Key), keystore.ErrBadKeyBlock, tr31.ErrMAC},
		{"single-DES KBPK", 2, 8, good, keystore.ErrBadKeyBlock, tr31.ErrKBPK},
		{"malformed", 2, 1, "B0016P0TE00N0000", keystore.ErrBadKeyBlock, tr31.ErrMalformed},
		{"empty", 2, 1, "", keystore.ErrBadKeyBlock, nil},
		{"truncated", 2, 1, good[:len(good)-2], keystore.ErrBadKeyBlock, nil},
	} {
		k, err := e.b.LoadBlock(bg, c.slot, c.parent, c.block)
		wantErr(t, c.name, err, c.want)
		if c.cause != nil && !errors.Is(err, c.cause) {
			t.Errorf("%s: %v does not wrap %v", c.name, err, c.cause)
		}
		if k != (keystore.Key{}) {
			t.Errorf("%s: key with an error", c.name)
		}
	}
	if after := e.keys(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("a refused block changed the slots:\n%v\n%v", before, after)
	}
}
