package emv_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/posagent/posagent/board/sim/cardemu"
	"github.com/posagent/posagent/drivers/emv"
)

var supportedAIDs = [][]byte{
	{0xA0, 0x00, 0x00, 0x03, 0x33}, // UnionPay (prefix: debit, credit, quasi-credit)
	{0xA0, 0x00, 0x00, 0x00, 0x03, 0x10, 0x10},
	{0xA0, 0x00, 0x00, 0x00, 0x04, 0x10, 0x10},
}

func testTerminal() emv.Terminal {
	return emv.Terminal{
		Amount: 12345, Currency: 156, Country: 156, Type: 0x00,
		Time:                time.Date(2026, 5, 17, 10, 30, 0, 0, time.UTC),
		UnpredictableNumber: [4]byte{0xCA, 0xFE, 0xBA, 0xBE},
		Capabilities:        [3]byte{0xE0, 0xE1, 0xC8},
		TerminalType:        0x22,
		CVMResults:          [3]byte{0x42, 0x03, 0x00},
		IFDSerial:           "SIM00001",
		AppVersion:          [2]byte{0x00, 0x30},
		SequenceCounter:     1,
		TTQ:                 [4]byte{0x36, 0x00, 0x40, 0x00},
	}
}

func chipOf(t *testing.T, set *cardemu.CardSet, name string, contactless bool) *cardemu.Chip {
	t.Helper()
	c, err := set.PowerOn(name, contactless)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func field55(t *testing.T, b []byte) (map[emv.Tag][]byte, []emv.Tag) {
	t.Helper()
	objs, err := emv.Parse(b)
	if err != nil {
		t.Fatalf("field 55: %v", err)
	}
	m := map[emv.Tag][]byte{}
	var order []emv.Tag
	for _, o := range objs {
		m[o.Tag] = o.Value
		order = append(order, o.Tag)
	}
	return m, order
}

// The UnionPay debit card over contact, answering like a T=0 card: the whole read, with the
// cryptogram checked against the emulator's documented algorithm over CDOL1 data built here
// by hand from its CDOL1 (amounts, country, TVR, currency, date, type, UN, time, merchant name).
func TestContactReadUnionPayDebit(t *testing.T) {
	set := cardemu.Default()
	spec, _ := set.Spec("unionpay-debit")
	rec := &recorder{t: chipOf(t, set, "unionpay-debit", false)}
	res, err := emv.Read(context.Background(), rec, emv.Config{AIDs: supportedAIDs}, testTerminal())
	if err != nil {
		t.Fatal(err)
	}
	if rec.count(0x00, 0xC0) == 0 || rec.count(0x00, 0xB2) < 4 {
		t.Errorf("a T=0 card needs GET RESPONSE and READ RECORD again with the right Le; sent %X", rec.sent)
	}
	c := res.Card
	if c.Track2.PAN() != spec.PAN || c.Track2.Expiry() != "3112" || c.Track2.ServiceCode() != "220" {
		t.Errorf("track 2 = %v", c.Track2)
	}
	if c.Track2.Data() != spec.PAN+"="+"3112"+"220"+spec.Discretion {
		t.Error("track 2 data differs from the card's")
	}
	if seq, ok := c.PANSequence(); !ok || seq != "01" {
		t.Errorf("PAN sequence %q %v", seq, ok)
	}
	if hex.EncodeToString(c.AID) != "a000000333010101" || c.Label != "UnionPay Debit" {
		t.Errorf("application %X %q", c.AID, c.Label)
	}
	if res.CryptogramType() != "ARQC" || res.ATC != spec.ATC+1 {
		t.Errorf("cryptogram %s ATC %d", res.CryptogramType(), res.ATC)
	}
	cdol1 := mustHex(t, "000000012345"+"000000000000"+"0156"+"0000000000"+"0156"+"260517"+"00"+"CAFEBABE"+"103000"+
		"0000000000000000000000000000000000000000")
	key, _ := hex.DecodeString(spec.Key)
	want, _ := cardemu.ARQC(key, cdol1, res.ATC)
	if !bytes.Equal(res.Cryptogram, want) {
		t.Errorf("ARQC %X, want %X", res.Cryptogram, want)
	}

	f, order := field55(t, res.Field55)
	wantOrder := []emv.Tag{0x9F26, 0x9F27, 0x9F10, 0x9F37, 0x9F36, 0x95, 0x9A, 0x9C, 0x9F02, 0x5F2A, 0x82,
		0x9F1A, 0x9F03, 0x9F33, 0x9F34, 0x9F35, 0x9F1E, 0x84, 0x9F09, 0x9F41, 0x5F34}
	if len(order) != len(wantOrder) {
		t.Fatalf("field 55 tags %v, want %v", order, wantOrder)
	}
	for i := range order {
		if order[i] != wantOrder[i] {
			t.Fatalf("field 55 tags %v, want %v", order, wantOrder)
		}
	}
	for tag, v := range map[emv.Tag]string{
		0x9F26: hex.EncodeToString(want), 0x9F27: "80", 0x9F10: "07010103a00000010a01000000000012345678",
		0x9F37: "cafebabe", 0x9F36: "0012", 0x95: "0000000000", 0x9A: "260517", 0x9C: "00",
		0x9F02: "000000012345", 0x5F2A: "0156", 0x82: "7c00", 0x9F1A: "0156", 0x9F03: "000000000000",
		0x9F33: "e0e1c8", 0x9F34: "420300", 0x9F35: "22", 0x9F1E: hex.EncodeToString([]byte("SIM00001")),
		0x84: "a000000333010101", 0x9F09: "0030", 0x9F41: "00000001", 0x5F34: "01",
	} {
		if hex.EncodeToString(f[tag]) != v {
			t.Errorf("field 55 %s = %X, want %s", tag, f[tag], v)
		}
	}
	if _, ok := f[emv.TagTrack2Equivalent]; ok {
		t.Error("field 55 carries tag 57")
	}
}

// Every chip card of the default set reads over both interfaces, giving the PAN its stripe has.
func TestEveryDefaultCardReads(t *testing.T) {
	set := cardemu.Default()
	for _, name := range set.Names() {
		spec, _ := set.Spec(name)
		for _, cl := range []bool{false, true} {
			chip, err := set.PowerOn(name, cl)
			if err != nil {
				continue // no such interface
			}
			res, err := emv.Read(context.Background(), chip, emv.Config{Contactless: cl, AIDs: supportedAIDs}, testTerminal())
			if name == "aid-not-found" {
				if !errors.Is(err, emv.ErrNoApplication) || !errors.Is(err, emv.ErrFileNotFound) {
					t.Errorf("%s contactless=%v: %v", name, cl, err)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s contactless=%v: %v", name, cl, err)
				continue
			}
			if res.Card.Track2.PAN() != spec.PAN || len(res.Cryptogram) != 8 {
				t.Errorf("%s contactless=%v: %v", name, cl, res.Card)
			}
		}
	}
}

// Contactless cards give their cryptogram with GPO, over the PDOL data; the Visa card leaves
// the ATC out, so the reader fetches it with GET DATA.
func TestContactlessCryptogramInGPO(t *testing.T) {
	set := cardemu.Default()
	spec, _ := set.Spec("visa")
	term := testTerminal()
	rec := &recorder{t: chipOf(t, set, "visa", true)}
	res, err := emv.Read(context.Background(), rec, emv.Config{Contactless: true}, term)
	if err != nil {
		t.Fatal(err)
	}
	if rec.count(0x80, 0xCA) != 1 || rec.count(0x80, 0xAE) != 0 {
		t.Errorf("want GET DATA and no GENERATE AC; sent %X", rec.sent)
	}
	pdol := mustHex(t, "36004000"+"000000012345"+"000000000000"+"0156"+"0000000000"+"0156"+"260517"+"00"+"CAFEBABE")
	key, _ := hex.DecodeString(spec.Key)
	want, _ := cardemu.ARQC(key, pdol, res.ATC)
	if !bytes.Equal(res.Cryptogram, want) || res.ATC != 1 {
		t.Errorf("ARQC %X ATC %d, want %X", res.Cryptogram, res.ATC, want)
	}
	if !res.Card.Contactless || hex.EncodeToString(res.Card.AID) != "a0000000031010" {
		t.Errorf("card %v", res.Card)
	}
}

// The credit card lists two applications; the one with the better priority wins, found
// through the PSE; a terminal that supports only the other gets the other.
func TestApplicationSelection(t *testing.T) {
	set := cardemu.Default()
	c, err := emv.ReadApplication(context.Background(), chipOf(t, set, "unionpay-credit", false), emv.Config{AIDs: supportedAIDs}, testTerminal())
	if err != nil || hex.EncodeToString(c.AID) != "a000000333010102" {
		t.Fatalf("selected %v, %v", c, err)
	}
	debit := [][]byte{mustHex(t, "A000000333010101")}
	c, err = emv.ReadApplication(context.Background(), chipOf(t, set, "unionpay-credit", false), emv.Config{AIDs: debit}, testTerminal())
	if err != nil || hex.EncodeToString(c.AID) != "a000000333010101" {
		t.Fatalf("selected %v, %v", c, err)
	}
	// A terminal supporting nothing the card has.
	_, err = emv.ReadApplication(context.Background(), chipOf(t, set, "unionpay-credit", true),
		emv.Config{Contactless: true, AIDs: [][]byte{mustHex(t, "A0000000651010")}}, testTerminal())
	if !errors.Is(err, emv.ErrNoApplication) {
		t.Errorf("unsupported: %v", err)
	}
}

// The expired card reads, but processing restrictions set "expired application" in the TVR
// that field 55 carries; the CVM results set between the read and GENERATE AC arrive too.
func TestExpiredCardAndTwoStepRead(t *testing.T) {
	set := cardemu.Default()
	c, err := emv.ReadApplication(context.Background(), chipOf(t, set, "expired", false), emv.Config{AIDs: supportedAIDs}, testTerminal())
	if err != nil {
		t.Fatal(err)
	}
	if !c.Expired() || !c.Track2.Expired(testTerminal().Time) {
		t.Error("expired card not seen as expired")
	}
	term := c.Terminal()
	term.CVMResults = [3]byte{0x42, 0x03, 0x02}
	res, err := c.GenerateAC(context.Background(), term)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := field55(t, res.Field55)
	if hex.EncodeToString(f[emv.TagTVR]) != "0040000000" || hex.EncodeToString(f[emv.TagCVMResults]) != "420302" {
		t.Errorf("TVR %X CVM %X", f[emv.TagTVR], f[emv.TagCVMResults])
	}
	// Asking again is refused by the card (one first GENERATE AC per transaction).
	if _, err := c.GenerateAC(context.Background(), term); !errors.Is(err, emv.ErrConditionsNotSatisfied) {
		t.Errorf("second GENERATE AC: %v", err)
	}
}

func TestCancelledContextStopsTheRead(t *testing.T) {
	set := cardemu.Default()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := emv.Read(ctx, chipOf(t, set, "visa", false), emv.Config{AIDs: supportedAIDs}, testTerminal()); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v", err)
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

// recorder passes APDUs through and keeps them.
type recorder struct {
	t    emv.Transport
	sent [][]byte
}

func (r *recorder) Transmit(ctx context.Context, apdu []byte) ([]byte, error) {
	r.sent = append(r.sent, append([]byte(nil), apdu...))
	return r.t.Transmit(ctx, apdu)
}

func (r *recorder) count(cla, ins byte) int {
	n := 0
	for _, a := range r.sent {
		if a[0] == cla && a[1] == ins {
			n++
		}
	}
	return n
}

// The EMV logic of a contact read (T=0 card, about 17 APDUs) without a serial line: what the
// read costs beyond the reader's round trips.
func BenchmarkReadInMemory(b *testing.B) {
	set := cardemu.Default()
	for b.Loop() {
		chip, err := set.PowerOn("unionpay-debit", false)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := emv.Read(context.Background(), chip, emv.Config{AIDs: supportedAIDs}, testTerminal()); err != nil {
			b.Fatal(err)
		}
	}
}
