package pinpad

import (
	"bytes"
	"crypto/des"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/posagent/posagent/drivers/internal/crc16"
	"github.com/posagent/posagent/keystore/mac"
)

func feedAll(d *decoder, p []byte) []token {
	var out []token
	for _, b := range p {
		if t, ok := d.feed(b); ok {
			out = append(out, t)
		}
	}
	return out
}

func TestFrameRoundTripEveryByte(t *testing.T) {
	payload := make([]byte, 256)
	for i := range payload {
		payload[i] = byte(i)
	}
	w := appendFrame(nil, 0x5A, payload)
	// Between STX and ETX no raw control byte remains.
	for _, b := range w[1 : len(w)-1] {
		if isControl(b) && b != dle {
			t.Fatalf("raw control byte %#02x inside a frame", b)
		}
	}
	var d decoder
	toks := feedAll(&d, w)
	if len(toks) != 1 || toks[0].kind != tokFrame || toks[0].seq != 0x5A || !bytes.Equal(toks[0].payload, payload) {
		t.Fatalf("tokens %+v", toks)
	}
}

func TestDecoderResynchronises(t *testing.T) {
	good := appendFrame(nil, 0x41, []byte{cmdInfo})
	var line []byte
	line = append(line, "garbage\xff\x10\x03"...)                // noise, a stray DLE and ETX
	line = append(line, good[:len(good)/2]...)                   // a frame cut short...
	line = append(line, good...)                                 // ...then sent again whole
	line = append(line, ack, 0x41, ack, 0x00, nak, eot, can)     // control tokens, one bad ACK
	line = append(line, stx, 0x41, 0x00, 0x01, 0x03^escXOR, etx) // a broken escape
	var d decoder
	toks := feedAll(&d, line)
	kinds := make([]tokKind, len(toks))
	for i, tk := range toks {
		kinds[i] = tk.kind
	}
	want := []tokKind{tokFrame, tokACK, tokNAK, tokEOT, tokCAN, tokBad}
	if !slicesEqual(kinds, want) {
		t.Fatalf("tokens %v, want %v", kinds, want)
	}
	if d.skipped == 0 {
		t.Fatal("garbage not counted")
	}
}

func slicesEqual[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestDecoderDamage(t *testing.T) {
	good := appendFrame(nil, 0x41, []byte{cmdKCV, 0x02})
	body := func(seq byte, n int, payload []byte, crcDelta uint16) []byte {
		hdr := []byte{seq, byte(n >> 8), byte(n)}
		crc := crc16.Update(crc16.Update(crc16.Init, hdr), payload) + crcDelta
		b := append(append(hdr, payload...), byte(crc>>8), byte(crc))
		return append(appendStuffed([]byte{stx}, b), etx)
	}
	cases := []struct {
		name string
		line []byte
		want error
	}{
		{"wrong CRC", body(0x41, 2, []byte{1, 2}, 1), ErrChecksum},
		{"length field", body(0x41, 3, []byte{1, 2}, 0), ErrProtocol},
		{"sequence out of range", body(0x20, 2, []byte{1, 2}, 0), ErrProtocol},
		{"too short", []byte{stx, 0x41, 0, etx}, ErrProtocol},
		{"needless escape", append(append([]byte{}, good[:2]...), append([]byte{dle, 'A' ^ escXOR}, good[2:]...)...), ErrProtocol},
		{"escape at the end", []byte{stx, 0x41, 0, 0, 0, 0, dle, etx}, ErrProtocol},
		{"too long", append(append([]byte{stx}, bytes.Repeat([]byte{'A'}, maxBody+10)...), etx), ErrProtocol},
	}
	for _, tc := range cases {
		var d decoder
		toks := feedAll(&d, tc.line)
		if len(toks) != 1 || toks[0].kind != tokBad || !errors.Is(toks[0].err, tc.want) {
			t.Errorf("%s: %+v", tc.name, toks)
		}
		// And the decoder carries on.
		if toks := feedAll(&d, good); len(toks) != 1 || toks[0].kind != tokFrame {
			t.Errorf("%s: next frame lost: %+v", tc.name, toks)
		}
	}
}

// The examples of docs/pinpad-protocol.md, byte for byte: each wire image is what the encoder
// produces, and the document shows it.
func TestDocumentExamples(t *testing.T) {
	raw, err := os.ReadFile("../../docs/pinpad-protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.Join(strings.Fields(string(raw)), " ")
	hexs := func(s string) []byte {
		b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	must := func(p []byte, err error) []byte {
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	tk, kek, pik := hexs("0123456789ABCDEFFEDCBA9876543210"), hexs("89ABCDEF0123456776543210FEDCBA98"), hexs("F1E2D3C4B5A69788796A5B4C3D2E1F00")
	ecb := func(key, p []byte) []byte {
		b, err := des.NewTripleDESCipher(append(append([]byte(nil), key...), key[:8]...))
		if err != nil {
			t.Fatal(err)
		}
		out := make([]byte, len(p))
		for i := 0; i < len(p); i += 8 {
			b.Encrypt(out[i:i+8], p[i:i+8])
		}
		return out
	}
	kcv := func(k []byte) []byte { return ecb(k, make([]byte, 8))[:3] }
	info := []byte{cmdInfo | answerBit, 0x41, 0}
	for _, s := range []string{"SIM-PINPAD", "PP00000001", "1.0.0"} {
		info = append(append(info, byte(len(s))), s...)
	}
	info = append(info, 1, 0, 0, 16)
	infoAlg := []byte{cmdInfo | answerBit, 0x4B, 0}
	for _, s := range []string{"SIM-PINPAD", "PP00000001", "1.0.0"} {
		infoAlg = append(append(infoAlg, byte(len(s))), s...)
	}
	infoAlg = append(infoAlg, 1, 0, 0, algTDES, 16)
	// The MAC example: the published UnionPay 0200 message and TAK (keystore/mac has the
	// source); the answer is what keystore/mac computes, and the published MAC.
	mab := hexs("0200302004C020C0981100000000000000005100183402100006324392260009942820D1312101120084393136363838303134303030303030303030303030303031313536ACF46E73838A82F92600000000000000000822000001")
	macOut := must(mac.UnionPayECB(hexs("C24A8FB57AA20123"), mab))
	if string(macOut) != "8A9E91B8" {
		t.Fatalf("example MAC %q", macOut)
	}
	block := ecb(pik, hexs("0592789FFFEDCBA9"))
	if !bytes.Equal(block, hexs("44E13184ED0BBC4A")) {
		t.Fatalf("example PIN block % X", block)
	}

	cases := []struct {
		name    string
		seq     byte
		payload []byte
		wire    string
	}{
		{"OPEN", 0x40, []byte{cmdOpen}, "02 40 00 01 01 C9 4C 03"},
		{"OPEN answer", 0x60, []byte{cmdOpen | answerBit, 0x40, 0}, "02 60 00 10 23 81 40 00 CB 72 03"},
		{"CLOSE", 0x49, []byte{cmdClose}, "02 49 00 01 10 22 0A 58 03"},
		{"INFO", 0x41, []byte{cmdInfo}, "02 41 00 01 10 23 9F BA 03"},
		{"INFO answer", 0x61, info, "02 61 00 23 83 41 00 0A 53 49 4D 2D 50 49 4E 50 41 44 0A 50 50 30 30 30 30 30 30 30 31 05 31 2E 30 2E 30 01 00 00 10 30 A0 2A 03"},
		{"DISPLAY", 0x45, must(encodeDisplay("Сумма 150.00", "")), "02 45 00 14 10 30 11 D0 A1 D1 83 D0 BC D0 BC D0 B0 20 31 35 30 2E 30 30 00 19 DB 03"},
		{"BEEP", 0x46, must(encodeBeep(100*time.Millisecond, 2)), "02 46 00 10 24 11 00 64 10 22 8E BE 03"},
		{"GET PIN", 0x47, must(encodeGetPIN(PINRequest{PAN: "4000001234562", Slot: 2, MinLen: 4, MaxLen: 12, Timeout: 30 * time.Second, Prompt: "PIN:"})),
			"02 47 00 19 20 10 22 10 24 0C 1E 00 0D 34 30 30 30 30 30 31 32 33 34 35 36 32 10 24 50 49 4E 3A 46 AB 03"},
		{"GET PIN answer", 0x65, append([]byte{cmdGetPIN | answerBit, 0x47, 0}, block...), "02 65 00 0B A0 47 00 44 E1 31 84 ED 0B BC 4A AD 6F 03"},
		{"GET PIN cancelled", 0x65, []byte{cmdGetPIN | answerBit, 0x47, byte(StatusCancelled)}, "02 65 00 10 23 A0 47 10 30 B2 23 03"},
		{"LOAD KEY KEK", 0x43, must(encodeLoadKey(KeyLoad{Slot: 1, Usage: UsageKEK, Parent: 0, Encrypted: ecb(tk, kek), CheckValue: kcv(kek)})),
			"02 43 00 19 30 01 01 00 10 30 42 30 EF 1C B2 68 49 55 97 F4 49 4D D2 3D 8A 72 10 23 EB 7A 8D 0E B7 03"},
		{"LOAD KEY KEK answer", 0x63, append([]byte{cmdLoadKey | answerBit, 0x43, 0}, kcv(kek)...), "02 63 00 10 26 B0 43 00 EB 7A 8D 9F 57 03"},
		{"LOAD KEY PIK", 0x44, must(encodeLoadKey(KeyLoad{Slot: 2, Usage: UsagePIK, Parent: 1, Encrypted: ecb(kek, pik), CheckValue: kcv(pik)})),
			"02 44 00 19 30 10 22 10 22 01 10 30 09 BA 42 45 73 EC DD E0 26 60 E1 01 4D FF 99 B1 10 23 E9 94 43 AA E0 03"},
		{"LOAD KEY PIK answer", 0x64, append([]byte{cmdLoadKey | answerBit, 0x44, 0}, kcv(pik)...), "02 64 00 10 26 B0 44 00 E9 94 43 2C 77 03"},
		{"KCV", 0x42, []byte{cmdKCV, 0}, "02 42 00 10 22 31 00 1C 23 03"},
		{"KCV answer", 0x62, append([]byte{cmdKCV | answerBit, 0x42, 0, 0, 16}, kcv(tk)...), "02 62 00 08 B1 42 00 00 10 30 08 D7 B4 2B 84 03"},
		{"ERASE", 0x48, []byte{cmdErase, 0}, "02 48 00 10 22 32 00 0F DE 03"},
		{"INFO layout 01", 0x4B, []byte{cmdInfo, infoLayout1}, "02 4B 00 10 22 10 23 01 C7 89 03"},
		{"INFO layout 01 answer", 0x6B, infoAlg, "02 6B 00 24 83 4B 00 0A 53 49 4D 2D 50 49 4E 50 41 44 0A 50 50 30 30 30 30 30 30 30 31 05 31 2E 30 2E 30 01 00 00 54 10 30 0E E4 03"},
		{"KCV layout 01", 0x4C, []byte{cmdKCV, 0, infoLayout1}, "02 4C 00 10 23 31 00 01 16 8B 03"},
		{"KCV layout 01 answer", 0x6C, append([]byte{cmdKCV | answerBit, 0x4C, 0, 0, algTDES, 16}, kcv(tk)...), "02 6C 00 09 B1 4C 00 00 54 10 30 08 D7 B4 10 26 42 03"},
		{"LOAD KEY BLOCK refused", 0x6D, []byte{cmdLoadTR31 | answerBit, 0x4D, byte(StatusBadKeyBlock)}, "02 6D 00 10 23 B3 4D 08 D9 A0 03"},
		{"MAC", 0x4A, must(encodeMAC(3, MACUnionPayECB, mab)),
			"02 4A 00 60 34 10 23 10 23 00 5B 10 22 00 30 20 10 24 C0 20 C0 98 11 00 00 00 00 00 00 00 00 51 00 10 38 34 10 22 10 30 00 10 26 32 43 92 26 00 09 94 28 20 D1 31 21 01 12 00 84 39 31 36 36 38 38 30 31 34 30 30 30 30 30 30 30 30 30 30 30 30 30 30 31 31 35 36 AC F4 6E 73 83 8A 82 F9 26 00 00 00 00 00 00 00 00 08 22 00 00 01 46 11 03"},
		{"MAC answer", 0x6A, append([]byte{cmdMAC | answerBit, 0x4A, 0}, macOut...), "02 6A 00 0B B4 4A 00 38 41 39 45 39 31 42 38 44 D1 03"},
		{"cancel key event", 0x66, []byte{evtCode, evtKey, byte(KeyCancel)}, "02 66 00 10 23 C0 01 10 22 72 B1 03"},
	}
	for _, tc := range cases {
		if got := appendFrame(nil, tc.seq, tc.payload); !bytes.Equal(got, hexs(tc.wire)) {
			t.Errorf("%s: wire % X, expected % X", tc.name, got, hexs(tc.wire))
		}
		if !strings.Contains(doc, tc.wire) {
			t.Errorf("%s: the document does not show %s", tc.name, tc.wire)
		}
	}
}

// FuzzDecoder: whatever the line carries, the decoder neither panics nor grows without bound,
// what it accepts re-encodes to itself, and a good frame after any garbage is decoded.
func FuzzDecoder(f *testing.F) {
	f.Add(appendFrame(nil, 0x41, []byte{cmdInfo}))
	f.Add(append([]byte("noise\x10\x03"), appendFrame(nil, 0x7F, []byte{0x02, 0x03, 0x10, 0x18})...))
	f.Add([]byte{ack, 0x41, nak, eot, can, stx, 0x41, 0, 1, dle})
	f.Fuzz(func(t *testing.T, line []byte) {
		var d decoder
		for _, tk := range feedAll(&d, line) {
			if tk.kind != tokFrame {
				continue
			}
			if len(tk.payload) > MaxPayload {
				t.Fatalf("payload of %d bytes", len(tk.payload))
			}
			var d2 decoder
			again := feedAll(&d2, appendFrame(nil, tk.seq, tk.payload))
			if len(again) != 1 || again[0].kind != tokFrame || !bytes.Equal(again[0].payload, tk.payload) || again[0].crc != tk.crc {
				t.Fatalf("re-encoding changed the frame")
			}
		}
		if cap(d.buf) > 2*maxBody {
			t.Fatalf("buffer grew to %d", cap(d.buf))
		}
		want := []byte{cmdKCV, 0x02}
		toks := feedAll(&d, appendFrame(nil, 0x55, want))
		if len(toks) == 0 || toks[len(toks)-1].kind != tokFrame || !bytes.Equal(toks[len(toks)-1].payload, want) {
			t.Fatalf("no resynchronisation: %+v", toks)
		}
	})
}

// FuzzAnswers: the decoders of answer and event payloads take anything without panicking.
func FuzzAnswers(f *testing.F) {
	f.Add([]byte{10, 'S', 'I', 'M', '-', 'P', 'I', 'N', 'P', 'A', 'D', 1, '1', 1, '2', 1, 0, 0, 16})
	f.Add([]byte{evtCode, evtKey, 1})
	f.Add([]byte{0, algTDES, 16, 0x08, 0xD7, 0xB4})
	f.Add([]byte{byte(UsageKEK), algAES, 1, 2, 3})
	f.Fuzz(func(t *testing.T, p []byte) {
		for _, withAlg := range []bool{false, true} {
			in, err := decodeInfo(p, withAlg)
			if err == nil && len(in.Slots) > 255 {
				t.Fatal("too many slots")
			}
		}
		if s, _, err := decodeKeyInfo(1, p); err == nil && (len(p) != 6 || s.AES != (p[1] == algAES)) {
			t.Fatalf("key info % X accepted as %+v", p, s)
		}
		if r, err := decodeKeyBlockResult(p); err == nil && (len(p) != 5 || r.AES != (p[1] == algAES)) {
			t.Fatalf("key block result % X accepted as %+v", p, r)
		}
		_, _ = parseEvent(p)
		if len(p) >= 3 {
			_ = (&Client{}).answer(p[0]&^answerBit, p)
		}
	})
}
