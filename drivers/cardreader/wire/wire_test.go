package wire

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCRC16CheckValue(t *testing.T) {
	// The catalogued check value of CRC-16/CCITT-FALSE (a.k.a. CRC-16/IBM-3740).
	if got := CRC16([]byte("123456789")); got != 0x29B1 {
		t.Fatalf("CRC16 = %04X", got)
	}
}

// The examples of docs/cardreader-protocol.md, byte for byte; the CRCs were computed with an
// independent implementation.
func TestDocumentedFrames(t *testing.T) {
	for _, tc := range []struct {
		f   Frame
		hex string
	}{
		{Frame{Seq: 0x01, Type: CmdStatus}, "02 0002 01 01 03 C806"},
		{Frame{Seq: 0x01, Type: CmdStatus | Response, Data: []byte{StatusOK, 0x07, 0x02, 0x00}}, "02 0006 01 81 00070200 03 BE76"},
		{Frame{Seq: 0x02, Type: CmdEnable, Data: []byte{0x07}}, "02 0003 02 10 07 03 E73D"},
		{Frame{Seq: 0x05, Type: CmdAPDU, Data: mustHex(t, "02 00A404000E315041592E5359532E444446303100")}, "02 0017 05 21 0200A404000E315041592E5359532E444446303100 03 B8C2"},
		{Frame{Seq: 0x09, Type: EvtInserted, Data: []byte{IfContact}}, "02 0003 09 41 02 03 6F29"},
		{Frame{Seq: 0x03, Type: CmdPowerOn, Data: []byte{IfContact}}, "02 0003 03 20 02 03 ABD9"},
		{Frame{Seq: 0x03, Type: CmdPowerOn | Response, Data: mustHex(t, "00 3B6800000073C84013009000")}, "02 000F 03 A0 00 3B6800000073C84013009000 03 9336"},
		{Frame{Seq: 0x06, Type: CmdPowerOn | Response, Data: []byte{StatusNoCard}}, "02 0003 06 A0 03 03 1FF7"},
		{Frame{Seq: 0x05, Type: CmdAPDU | Response, Data: mustHex(t, "00 6120")}, "02 0005 05 A1 00 6120 03 1173"},
		{Frame{Seq: 0x0B, Type: EvtTapped, Data: mustHex(t, "04 07 04A1B2C3D4E5F6")}, "02 000B 0B 44 04 07 04A1B2C3D4E5F6 03 051C"},
		{Frame{Seq: 0x0A, Type: EvtSwiped, Data: mustHex(t, "00 1B 0B16021510190407101010101010100104 0D13101016021001 1F01 00")},
			"02 0020 0A 43 00 1B 0B16021510190407101010101010100104 0D13101016021001 1F01 00 03 00C2"},
	} {
		got := AppendFrame(nil, tc.f)
		if want := mustHex(t, tc.hex); !bytes.Equal(got, want) {
			t.Errorf("frame %+v = % X, want % X", tc.f, got, want)
		}
	}
}

func decodeAll(d *Decoder) []Item {
	var out []Item
	for {
		it, ok := d.Next()
		if !ok {
			return out
		}
		out = append(out, it)
	}
}

func TestDecoderSkipsGarbageAndSplitsNothing(t *testing.T) {
	f1 := AppendFrame(nil, Frame{Seq: 7, Type: CmdAPDU | Response, Data: []byte{0, 0x90, 0x00}})
	f2 := AppendFrame(nil, Frame{Seq: 1, Type: EvtRemoved, Data: []byte{IfContactless}})
	stream := append([]byte{0xFF, 0x00, 0x41}, f1...)
	stream = append(stream, ACK, 0x99, NAK)
	stream = append(stream, f2...)
	// Fed one byte at a time, the same items come out.
	var d Decoder
	var items []Item
	for _, b := range stream {
		d.Write([]byte{b})
		items = append(items, decodeAll(&d)...)
	}
	kinds := []Kind{KindFrame, KindACK, KindNAK, KindFrame}
	if len(items) != len(kinds) {
		t.Fatalf("items %+v", items)
	}
	for i, k := range kinds {
		if items[i].Kind != k {
			t.Fatalf("item %d kind %v, want %v", i, items[i].Kind, k)
		}
	}
	if items[0].Frame.Seq != 7 || !bytes.Equal(items[0].Frame.Data, []byte{0, 0x90, 0x00}) || items[3].Frame.Type != EvtRemoved {
		t.Errorf("frames %+v %+v", items[0].Frame, items[3].Frame)
	}
	if d.Garbage() != 4 || d.Pending() {
		t.Errorf("garbage %d pending %v", d.Garbage(), d.Pending())
	}
}

// A corrupted frame costs only its STX: a good frame behind it (even one its bogus length
// swallowed) is still found.
func TestDecoderResynchronises(t *testing.T) {
	good := AppendFrame(nil, Frame{Seq: 3, Type: CmdStatus | Response, Data: []byte{0, 1, 0, 0}})
	bad := append([]byte(nil), good...)
	bad[6] ^= 0x10
	cut := good[:5]
	var d Decoder
	d.Write(bad)
	d.Write(cut)
	d.Write(good)
	items := decodeAll(&d)
	if len(items) < 2 || items[0].Kind != KindBad || !errors.Is(items[0].Err, ErrCRC) {
		t.Fatalf("items %+v", items)
	}
	last := items[len(items)-1]
	if last.Kind != KindFrame || last.Frame.Seq != 3 {
		t.Fatalf("last item %+v", last)
	}

	// A frame cut short and followed by silence: Expire gives it up.
	d = Decoder{}
	d.Write(cut)
	if _, ok := d.Next(); ok || !d.Pending() {
		t.Fatal("cut frame decoded")
	}
	if it, ok := d.Expire(); !ok || !errors.Is(it.Err, ErrTruncated) || d.Pending() {
		t.Errorf("Expire = %+v %v", it, ok)
	}
	// An absurd length is not a frame start: skipped at once rather than waited for.
	d = Decoder{}
	d.Write([]byte{STX, 0xFF, 0xFF, 1, 5, ACK})
	if it, ok := d.Next(); !ok || it.Kind != KindACK || d.Garbage() != 5 {
		t.Errorf("long length: %+v, %d garbage", it, d.Garbage())
	}
	// Bad ETX.
	e := append([]byte(nil), good...)
	e[len(e)-3] = 0x04
	d = Decoder{}
	d.Write(e)
	if it, ok := d.Next(); !ok || !errors.Is(it.Err, ErrETX) {
		t.Errorf("bad ETX: %+v", it)
	}
}

func TestDecoderBufferDoesNotGrow(t *testing.T) {
	f := AppendFrame(nil, Frame{Seq: 1, Type: CmdAPDU | Response, Data: make([]byte, 200)})
	var d Decoder
	for range 1000 {
		d.Write(f[:100])
		decodeAll(&d)
		d.Write(f[100:])
		if n := len(decodeAll(&d)); n != 1 {
			t.Fatalf("%d items", n)
		}
	}
	if cap(d.buf) > 4*len(f) {
		t.Errorf("buffer grew to %d", cap(d.buf))
	}
}
