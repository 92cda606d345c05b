package pinpademu

import (
	"bytes"
	"crypto/des"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func unhex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func TestCRCCheckValue(t *testing.T) {
	if got := crc16([]byte("123456789")); got != 0x29B1 {
		t.Fatalf("crc %#04x", got)
	}
}

func pushAll(r *reader, p []byte) []lineEvent {
	var out []lineEvent
	for _, b := range p {
		if ev, ok := r.push(b); ok {
			if ev.kind == evFrame {
				ev.payload = bytes.Clone(ev.payload)
			}
			out = append(out, ev)
		}
	}
	return out
}

func TestReaderTakesTheDocumentedINFO(t *testing.T) {
	var r reader
	// docs/pinpad-protocol.md, INFO with SEQ 41; then ACK 61, noise, a cut frame, NAK, CAN.
	evs := pushAll(&r, unhex("0241000110239FBA03"+"0661"+"FF00"+"02410001"+"15"+"18"))
	if len(evs) != 4 || evs[0].kind != evFrame || evs[0].seq != 0x41 || !bytes.Equal(evs[0].payload, []byte{cInfo}) ||
		evs[1].kind != evACK || evs[1].seq != 0x61 || evs[2].kind != evNAK || evs[3].kind != evCAN {
		t.Fatalf("events %+v", evs)
	}
	if r.dropped == 0 {
		t.Fatal("garbage not counted")
	}
	if got := wire(frameBody(0x41, []byte{cInfo})); !bytes.Equal(got, unhex("0241000110239FBA03")) {
		t.Fatalf("wire % X", got)
	}
}

func TestReaderRefusesDamage(t *testing.T) {
	good := wire(frameBody(0x50, []byte{cKCV, 0}))
	badCRC := frameBody(0x50, []byte{cKCV, 0})
	badCRC[len(badCRC)-1] ^= 1
	for name, line := range map[string][]byte{
		"crc":      wire(badCRC),
		"escape":   {bSTX, 0x50, 0, 1, bDLE, 'A', 0, 0, bETX},
		"length":   wire(append([]byte{0x50, 0, 9}, 1, 2, 3)),
		"sequence": wire(func() []byte { b := frameBody(0x20, []byte{1}); return b }()),
		"too long": append(append([]byte{bSTX}, bytes.Repeat([]byte{'A'}, maxRaw+5)...), bETX),
	} {
		var r reader
		evs := pushAll(&r, append(line, good...))
		if len(evs) != 2 || evs[0].kind != evBad || evs[1].kind != evFrame {
			t.Errorf("%s: %+v", name, evs)
		}
	}
}

func TestKnownCheckValues(t *testing.T) {
	for key, want := range map[string]string{
		// Widely published KCVs of the classic test keys (TDES and single DES).
		"0123456789ABCDEFFEDCBA9876543210": "08d7b4",
		"0123456789ABCDEF":                 "d5d44f",
	} {
		cv, err := checkValue(unhex(key))
		if err != nil || hex.EncodeToString(cv[:3]) != want {
			t.Errorf("%s: %x %v", key, cv[:3], err)
		}
	}
}

func TestFormatZeroPublishedExamples(t *testing.T) {
	for _, v := range []struct{ pin, pan, want string }{
		// Thales payShield host command reference, PIN block format 01 (ISO 9564-1 format 0).
		{"92389", "4000001234562", "0592789fffedcba9"},
		// EFTlab BP-Tools example, reproduced in ID TECH's knowledge base.
		{"1234", "43219876543210987", "0412ac89abcdef67"},
	} {
		blk, ok := formatZero([]byte(v.pin), v.pan)
		if !ok || hex.EncodeToString(blk[:]) != v.want {
			t.Errorf("PIN block %x, want %s", blk, v.want)
		}
	}
	for _, bad := range []struct{ pin, pan string }{{"123", "4000001234562"}, {"1234567890123", "4000001234562"}, {"12a4", "4000001234562"}, {"1234", "400000123456"}, {"1234", "40000012345x2"}} {
		if _, ok := formatZero([]byte(bad.pin), bad.pan); ok {
			t.Errorf("accepted PIN of %d, PAN of %d", len(bad.pin), len(bad.pan))
		}
	}
}

func wrapKey(parent, key []byte) []byte {
	b, err := tdes(parent)
	if err != nil {
		panic(err)
	}
	out := make([]byte, len(key))
	for i := 0; i < len(key); i += 8 {
		b.Encrypt(out[i:i+8], key[i:i+8])
	}
	return out
}

func TestSecureElementLoadsPersistsAndRefuses(t *testing.T) {
	file := filepath.Join(t.TempDir(), "keys.json")
	se, err := newSecureElement(DefaultTransportKey, false, file)
	if err != nil {
		t.Fatal(err)
	}
	kek, pik := unhex("89ABCDEF0123456776543210FEDCBA98"), unhex("F1E2D3C4B5A69788796A5B4C3D2E1F00")
	kcv := func(k []byte) []byte { cv, _ := checkValue(k); return cv[:3] }
	if _, st := se.load(1, usageKEK, 0, wrapKey(DefaultTransportKey, kek), kcv(kek)); st != stOK {
		t.Fatalf("KEK: status %#x", st)
	}
	if _, st := se.load(2, usagePIK, 1, wrapKey(kek, pik), kcv(pik)); st != stOK {
		t.Fatalf("PIK: status %#x", st)
	}
	if _, st := se.load(2, usagePIK, 1, wrapKey(kek, kek), kcv(pik)); st != stKCVMismatch {
		t.Fatalf("wrong KCV: status %#x", st)
	}
	if ki, _ := se.kcv(2); !bytes.Equal(ki.kcv[:], kcv(pik)) {
		t.Fatal("refused load changed the slot")
	}
	st, err := os.Stat(file)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st, err)
	}
	// A restarted emulator finds its keys.
	se2, err := newSecureElement(DefaultTransportKey, false, file)
	if err != nil {
		t.Fatal(err)
	}
	if ki, st := se2.kcv(2); st != stOK || ki.usage != usagePIK || ki.keyLen != 16 || ki.alg != algTDES || !bytes.Equal(ki.kcv[:], kcv(pik)) {
		t.Fatalf("after restart: %+v %#x", ki, st)
	}
	blk, st2 := se2.pinBlock(2, []byte("1234"), "43219876543210987")
	if st2 != stOK {
		t.Fatalf("pin block: %#x", st2)
	}
	b, _ := des.NewTripleDESCipher(append(bytes.Clone(pik), pik[:8]...))
	clearBlk := make([]byte, 8)
	b.Decrypt(clearBlk, blk[:])
	if hex.EncodeToString(clearBlk) != "0412ac89abcdef67" {
		t.Fatalf("clear block %x", clearBlk)
	}
	if se2.erase(false) != stOK || len(se2.info()) != 1 {
		t.Fatalf("erase: %+v", se2.info())
	}
	if data, _ := os.ReadFile(file); bytes.Contains(data, []byte(hex.EncodeToString(pik))) {
		t.Fatal("erased key still in the file")
	}
	if err := os.WriteFile(file, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := newSecureElement(DefaultTransportKey, false, file); err == nil {
		t.Fatal("corrupt key file accepted")
	}
}

func TestParseEntry(t *testing.T) {
	for in, want := range map[string]Entry{
		"1234": {Outcome: EnterPIN, PIN: "1234"}, "cancel": {Outcome: Cancel}, "timeout": {Outcome: TimeOut},
		"bypass": {Outcome: Bypass}, "wait 1.5s": {Outcome: Wait, Delay: 1500 * time.Millisecond},
	} {
		if got, err := ParseEntry(in); err != nil || got != want {
			t.Errorf("%q: %+v %v", in, got, err)
		}
	}
	for _, bad := range []string{"123", "1234567890123", "12a4", "wait", "wait -1s", "later"} {
		if _, err := ParseEntry(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// The pad on its own, driven byte by byte as the document describes, without the driver.
func TestRawWireConversation(t *testing.T) {
	e, err := New(Options{Dir: t.TempDir(), AckTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	dev, err := os.OpenFile(e.Path(), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	expect := func(want []byte) {
		t.Helper()
		_ = dev.SetReadDeadline(time.Now().Add(3 * time.Second))
		got := make([]byte, len(want))
		if _, err := io.ReadFull(dev, got); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("read % X (%v), want % X", got, err, want)
		}
	}
	write := func(p []byte) {
		t.Helper()
		if _, err := dev.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	readFrame := func() lineEvent {
		t.Helper()
		var r reader
		buf := make([]byte, 1)
		_ = dev.SetReadDeadline(time.Now().Add(3 * time.Second))
		for {
			if _, err := dev.Read(buf); err != nil {
				t.Fatal(err)
			}
			if ev, ok := r.push(buf[0]); ok {
				return ev
			}
		}
	}

	write(unhex("0241000110239FBA03")) // INFO, SEQ 41
	expect([]byte{bACK, 0x41})
	ans := readFrame()
	if ans.kind != evFrame || ans.payload[0] != 0x83 || ans.payload[1] != 0x41 || ans.payload[2] != stOK {
		t.Fatalf("INFO answer %+v", ans)
	}
	// Not acknowledged: the pad sends the same frame again after its ACK timeout.
	again := readFrame()
	if again.seq != ans.seq || again.crc != ans.crc {
		t.Fatalf("retransmission %+v", again)
	}
	write([]byte{bACK, ans.seq})

	// The same INFO again is a retransmission: ACK, and no second answer.
	write(unhex("0241000110239FBA03"))
	expect([]byte{bACK, 0x41})
	// A damaged frame gets NAK; CAN with nothing pending gets EOT.
	write(unhex("0242000110239FBB03"))
	expect([]byte{bNAK})
	write([]byte{bCAN})
	expect([]byte{bEOT})
	// DISPLAY before OPEN: NOT_OPEN.
	write(wire(frameBody(0x43, []byte{cDisplay, 1, 'x', 0})))
	expect([]byte{bACK, 0x43})
	if a := readFrame(); a.payload[0] != cDisplay|0x80 || a.payload[2] != stNotOpen {
		t.Fatalf("DISPLAY answer % X", a.payload)
	}
	if c := e.Counters(); c.Duplicates != 1 || c.BadFrames != 1 || c.Retransmissions < 1 {
		t.Fatalf("counters %+v", c)
	}
}

// FuzzReader: the pad's frame reader takes any line without panicking, keeps its buffer
// bounded and finds a good frame after any garbage.
func FuzzReader(f *testing.F) {
	f.Add(unhex("0241000110239FBA03"))
	f.Add([]byte{bACK, 0x41, bNAK, bCAN, bSTX, 0x41, bDLE})
	f.Fuzz(func(t *testing.T, line []byte) {
		var r reader
		for _, ev := range pushAll(&r, line) {
			if ev.kind == evFrame && len(ev.payload) > maxPayload {
				t.Fatalf("payload of %d bytes", len(ev.payload))
			}
		}
		if len(r.raw) > maxRaw+1 {
			t.Fatalf("raw buffer %d", len(r.raw))
		}
		evs := pushAll(&r, wire(frameBody(0x60, []byte{cKCV, 1})))
		if len(evs) == 0 || evs[len(evs)-1].kind != evFrame {
			t.Fatalf("no resynchronisation: %+v", evs)
		}
	})
}

// FuzzCommand: any command payload gets exactly one answer (or starts a PIN entry), never a
// panic.
func FuzzCommand(f *testing.F) {
	f.Add([]byte{cInfo})
	f.Add(unhex("2002040C1E000D343030303030313233343536320450494E3A"))
	f.Add(unhex("30010100104230EF1CB268495597F4494DD23D8A7203EB7A8D"))
	f.Add([]byte{cDisplay, 2, 0xD0, 0xA1, 0})
	f.Add([]byte{cInfo, 1})
	f.Add([]byte{cKCV, 1, 1})
	f.Add([]byte{cMAC, 3, 3, 0, 4, '0', '2', '0', '0'})
	f.Add(append([]byte{cLoadTR31, 4, 1, 0, 16}, "B0016P0TE00E0000"...))
	f.Fuzz(func(t *testing.T, p []byte) {
		if len(p) == 0 {
			return
		}
		se, err := newSecureElement(DefaultTransportKey, false, "")
		if err != nil {
			t.Fatal(err)
		}
		kek, pik := unhex("89ABCDEF0123456776543210FEDCBA98"), unhex("F1E2D3C4B5A69788796A5B4C3D2E1F00")
		kcv := func(k []byte) []byte { cv, _ := checkValue(k); return cv[:3] }
		se.load(1, usageKEK, 0, wrapKey(DefaultTransportKey, kek), kcv(kek))
		se.load(2, usagePIK, 1, wrapKey(kek, pik), kcv(pik))
		mak := unhex("1C1C1C1C2A2A2A2A3B3B3B3B4D4D4D4D")
		se.load(3, usageMAK, 1, wrapKey(kek, mak), kcv(mak))
		e := &Emulator{opt: Options{Model: "m", Serial: "s", Firmware: "f"}, se: se}
		s := &session{e: e, open: true}
		s.command(0x40, p)
		if s.pin == nil && len(s.queue) != 1 {
			t.Fatalf("%d answers", len(s.queue))
		}
	})
}
