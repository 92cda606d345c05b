package cardemu

import (
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/posagent/posagent/board/sim/pty"
	"github.com/posagent/posagent/drivers/cardreader/wire"
)

func TestDefaultSetIsTheTestdataFile(t *testing.T) {
	s, err := LoadCards("testdata/cards.json")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"unionpay-debit", "unionpay-credit", "visa", "mastercard", "expired", "magstripe-only", "aid-not-found"}
	if !slices.Equal(s.Names(), want) || !slices.Equal(Default().Names(), want) {
		t.Errorf("cards %v", s.Names())
	}
}

func TestBadCardFilesAreRejected(t *testing.T) {
	for name, doc := range map[string]string{
		"unknown field":   `{"cards":[{"name":"x","pan":"4761739001010010","expiry":"2912","service_code":"201","holder":"A/B","interfaces":["magstripe"],"colour":"red"}]}`,
		"bad PAN":         `{"cards":[{"name":"x","pan":"47617","expiry":"2912","service_code":"201","holder":"A/B","interfaces":["magstripe"]}]}`,
		"bad month":       `{"cards":[{"name":"x","pan":"4761739001010010","expiry":"2913","service_code":"201","holder":"A/B","interfaces":["magstripe"]}]}`,
		"chip, no apps":   `{"cards":[{"name":"x","pan":"4761739001010010","expiry":"2912","service_code":"201","holder":"A/B","interfaces":["contact"]}]}`,
		"bad hex":         `{"cards":[{"name":"x","pan":"4761739001010010","expiry":"2912","service_code":"201","holder":"A/B","interfaces":["contact"],"apps":[{"aid":"A0XX"}]}]}`,
		"bad interface":   `{"cards":[{"name":"x","pan":"4761739001010010","expiry":"2912","service_code":"201","holder":"A/B","interfaces":["nfc"]}]}`,
		"lower-case name": `{"cards":[{"name":"x","pan":"4761739001010010","expiry":"2912","service_code":"201","holder":"a/b","interfaces":["magstripe"]}]}`,
		"twice": `{"cards":[{"name":"x","pan":"4761739001010010","expiry":"2912","service_code":"201","holder":"A/B","interfaces":["magstripe"]},
			{"name":"x","pan":"4761739001010010","expiry":"2912","service_code":"201","holder":"A/B","interfaces":["magstripe"]}]}`,
	} {
		if _, err := ParseCards([]byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestEncodeTrack(t *testing.T) {
	// Computed with an independent implementation of ISO/IEC 7811 parity and LRC.
	got, err := EncodeTrack(2, "6250947000000014=3006201")
	if err != nil || hex.EncodeToString(got) != "0b16021510190407101010101010100104"+"0d13101016021001"+"1f01" {
		t.Errorf("track 2 % X %v", got, err)
	}
	if _, err := EncodeTrack(2, "62509A"); err == nil {
		t.Error("letters on track 2")
	}
	if _, err := EncodeTrack(4, "1"); err == nil {
		t.Error("track 4")
	}
}

func TestARQCIsDeterministicAndCoversItsInputs(t *testing.T) {
	key := bytes.Repeat([]byte{0x11}, 16)
	a, _ := ARQC(key, []byte("cdol1 data"), 1)
	b, _ := ARQC(key, []byte("cdol1 data"), 1)
	c, _ := ARQC(key, []byte("cdol1 data"), 2)
	d, _ := ARQC(key, []byte("cdol1 datb"), 1)
	if len(a) != 8 || !bytes.Equal(a, b) || bytes.Equal(a, c) || bytes.Equal(a, d) {
		t.Errorf("%X %X %X %X", a, b, c, d)
	}
	if _, err := ARQC(key[:8], nil, 0); err == nil {
		t.Error("short key accepted")
	}
}

// The card's answers to commands out of order or malformed.
func TestChipRefusesWhatACardRefuses(t *testing.T) {
	chip, err := Default().PowerOn("mastercard", false)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ apdu, sw string }{
		{"00A4040007A000000004101000", "9000"},
		{"80AE80000100", "6985"},       // GENERATE AC before GPO
		{"00B2010400", "6A83"},         // SFI 0
		{"00B2010800", "6A86"},         // P2 without 4
		{"80A80000028300", "9000"},     // GPO (no PDOL)
		{"80A80000028300", "6985"},     // twice
		{"80AE8000020000", "6700"},     // CDOL1 data of the wrong length
		{"80CA9F1700", "9000"},         // PIN try counter
		{"80CA9F4F00", "6A88"},         // not kept
		{"00C0000010", "6985"},         // nothing to GET RESPONSE
		{"0012000000", "6D00"},         // unknown instruction
		{"A0A4040000", "6E00"},         // unknown class
		{"00A40400", "6A82"},           // no name
		{"00A4040005A0000000", "6700"}, // Lc longer than the data
	} {
		resp, _ := chip.Transmit(context.Background(), mustHex(t, tc.apdu))
		if got := hex.EncodeToString(resp[len(resp)-2:]); !strings.EqualFold(got, tc.sw) {
			t.Errorf("%s → %s, want %s", tc.apdu, got, tc.sw)
		}
	}
	if _, err := Default().PowerOn("magstripe-only", false); err == nil {
		t.Error("a stripe-only card powered on")
	}
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The emulator on a real line, spoken to with raw bytes: ACK then the response, NAK for a
// bad frame, the same response again (not a second execution) for a retransmission, and an
// event that is sent again until it is acknowledged.
func TestWireBehaviour(t *testing.T) {
	line, err := pty.Open(t.TempDir(), "cr")
	if err != nil {
		t.Fatal(err)
	}
	defer line.Close()
	e := Start(line, nil, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), AckTimeout: 50 * time.Millisecond})
	defer e.Close()
	dev, err := os.OpenFile(line.Path(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	var dec wire.Decoder
	next := func() wire.Item {
		t.Helper()
		buf := make([]byte, 256)
		for {
			if it, ok := dec.Next(); ok {
				return it
			}
			_ = dev.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, err := dev.Read(buf)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			dec.Write(buf[:n])
		}
	}
	status := wire.AppendFrame(nil, wire.Frame{Seq: 9, Type: wire.CmdStatus})
	_, _ = dev.Write(status)
	if it := next(); it.Kind != wire.KindACK {
		t.Fatalf("got %+v, want ACK", it)
	}
	it := next()
	if it.Kind != wire.KindFrame || it.Frame.Seq != 9 || it.Frame.Type != wire.CmdStatus|wire.Response || !bytes.Equal(it.Frame.Data, []byte{0, 0, 0, 0}) {
		t.Fatalf("response %+v", it)
	}
	_, _ = dev.Write([]byte{wire.ACK})
	// The same frame again: answered again, carried out once.
	_, _ = dev.Write(status)
	if it := next(); it.Kind != wire.KindACK {
		t.Fatalf("got %+v, want ACK", it)
	}
	if it := next(); it.Kind != wire.KindFrame || it.Frame.Seq != 9 {
		t.Fatalf("repeat %+v", it)
	}
	_, _ = dev.Write([]byte{wire.ACK})
	if e.Served() != 1 {
		t.Errorf("served %d", e.Served())
	}
	// A corrupted frame is NAKed.
	bad := append([]byte(nil), status...)
	bad[len(bad)-1] ^= 1
	_, _ = dev.Write(bad)
	if it := next(); it.Kind != wire.KindNAK {
		t.Fatalf("got %+v, want NAK", it)
	}
	// An event not acknowledged comes again, then stops after the retries.
	if err := e.Insert("visa"); err != nil {
		t.Fatal(err)
	}
	first := next()
	if first.Kind != wire.KindFrame || first.Frame.Type != wire.EvtInserted {
		t.Fatalf("event %+v", first)
	}
	if again := next(); again.Kind != wire.KindFrame || again.Frame.Seq != first.Frame.Seq {
		t.Fatalf("repeat %+v", again)
	}
	_, _ = dev.Write([]byte{wire.ACK})
}
