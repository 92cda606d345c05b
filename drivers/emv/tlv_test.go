package emv

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The FCI of a PSE as EMV Book 1 shows it: nested templates, a one-byte SFI, a language.
func TestParseNestedFCI(t *testing.T) {
	fci := mustHex(t, "6F 1A 84 0E 315041592E5359532E4444463031 A5 08 88 01 01 5F2D 02 656E")
	objs, err := Parse(fci)
	if err != nil || len(objs) != 1 || objs[0].Tag != TagFCI || !objs[0].Tag.Constructed() {
		t.Fatalf("Parse = %v, %v", objs, err)
	}
	if v, ok := Find(fci, TagSFI); !ok || !bytes.Equal(v, []byte{1}) {
		t.Errorf("SFI = %X %v", v, ok)
	}
	if v, ok := Find(fci, TagDFName); !ok || string(v) != "1PAY.SYS.DDF01" {
		t.Errorf("DF name = %q", v)
	}
	if v, ok := Find(fci, 0x5F2D); !ok || string(v) != "en" {
		t.Errorf("language = %q", v)
	}
	if _, ok := Find(fci, TagAID); ok {
		t.Error("found a tag that is not there")
	}
	d := Data{}
	if err := d.Collect(fci); err != nil || len(d) != 3 {
		t.Errorf("Collect = %v, %v", d, err)
	}
}

func TestTagsAndLengths(t *testing.T) {
	for _, tc := range []struct {
		hex  string
		tag  Tag
		l, n int
	}{
		{"9F26 08", 0x9F26, 8, 3},
		{"BF0C 81 80", 0xBF0C, 128, 4},
		{"DF8101 82 0100", 0xDF8101, 256, 6},
		{"5A 00", 0x5A, 0, 2},
		{"9F7F 83 000102", 0x9F7F, 258, 6},
	} {
		b := mustHex(t, tc.hex)
		tag, n, err := ReadTag(b)
		if err != nil || tag != tc.tag {
			t.Errorf("%s: tag %s %v", tc.hex, tag, err)
			continue
		}
		l, m, err := ReadLength(b[n:])
		if err != nil || l != tc.l || n+m != tc.n {
			t.Errorf("%s: length %d (%d bytes) %v", tc.hex, l, n+m, err)
		}
		if got := AppendLength(tag.AppendTo(nil), l); tc.hex != "9F7F 83 000102" && !bytes.Equal(got, b) {
			t.Errorf("%s: encoded as %X", tc.hex, got)
		}
	}
	if Tag(0xBF0C).String() != "BF0C" || !Tag(0xBF0C).Constructed() || Tag(0x9F26).Constructed() {
		t.Error("tag properties")
	}
}

func TestMalformedTLVIsRejected(t *testing.T) {
	for name, h := range map[string]string{
		"tag cut short":       "9F",
		"tag too long":        "9F818181 01 00",
		"length missing":      "9F26",
		"indefinite length":   "70 80 00 00",
		"length of 4 bytes":   "70 84 00000001 00",
		"long length cut":     "70 82 01",
		"value beyond end":    "9F26 08 0102",
		"nested value beyond": "70 05 9F26 08 01",
	} {
		b := mustHex(t, h)
		d := Data{}
		err := d.Collect(b)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Collect err = %v", name, err)
		}
	}
	// Padding between objects is allowed.
	objs, err := Parse(mustHex(t, "00 5A 01 12 FF FF 00 9F36 02 0001 00"))
	if err != nil || len(objs) != 2 {
		t.Errorf("padding: %v %v", objs, err)
	}
}

func TestDeepNestingIsBounded(t *testing.T) {
	b := AppendTLV(nil, 0x5A, []byte{1})
	for range 20 {
		b = AppendTLV(nil, 0x70, b)
	}
	if err := (Data{}).Collect(b); !errors.Is(err, ErrMalformed) {
		t.Errorf("Collect of 20 levels = %v", err)
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	long := bytes.Repeat([]byte{0xAB}, 300)
	b := Encode(TLV{0x9F26, []byte{1, 2, 3, 4, 5, 6, 7, 8}}, TLV{0xDF8101, long}, TLV{0x95, make([]byte, 5)})
	objs, err := Parse(b)
	if err != nil || len(objs) != 3 || objs[1].Tag != 0xDF8101 || !bytes.Equal(objs[1].Value, long) {
		t.Fatalf("round trip: %v", err)
	}
}

func TestDOL(t *testing.T) {
	dol, err := ParseDOL(mustHex(t, "9F02 06 9F1A 02 95 05 9F37 04 9F4E 14 5F2A 01"))
	if err != nil || len(dol) != 6 || DOLLen(dol) != 38 {
		t.Fatalf("ParseDOL = %v %v", dol, err)
	}
	term := Terminal{Amount: 12345, Country: 156, Currency: 156, UnpredictableNumber: [4]byte{1, 2, 3, 4}, TVR: [5]byte{0, 0x40}}
	got := BuildDOL(dol, term.Value)
	want := mustHex(t, "000000012345 0156 0040000000 01020304"+strings.Repeat("00", 20)+"56")
	if !bytes.Equal(got, want) {
		t.Errorf("BuildDOL =\n%X want\n%X", got, want)
	}
	// Non-numeric data longer than asked is cut on the right, shorter padded on the right.
	if got := BuildDOL([]DOLEntry{{0x9F1E, 4}, {TagTVR, 7}}, term.Value); !bytes.Equal(got, mustHex(t, "00000000 00400000000000")) {
		t.Errorf("fit: %X", got)
	}
	if _, err := ParseDOL(mustHex(t, "9F02")); !errors.Is(err, ErrMalformed) {
		t.Errorf("cut DOL: %v", err)
	}
}

func TestTerminalValues(t *testing.T) {
	term := Terminal{Amount: 100, Type: 0x00, Time: time.Date(2026, 3, 9, 14, 5, 7, 0, time.UTC), IFDSerial: "SN1", SequenceCounter: 42}
	for tag, want := range map[Tag]string{
		TagAmount: "000000000100", TagTransactionDate: "260309", TagTransactionTime: "140507",
		TagIFDSerial: hex.EncodeToString([]byte("SN1     ")), TagSequenceCounter: "00000042",
	} {
		v, ok := term.Value(tag)
		if !ok || hex.EncodeToString(v) != strings.ToLower(want) {
			t.Errorf("%s = %X %v, want %s", tag, v, ok, want)
		}
	}
	if _, ok := term.Value(TagAppVersionTerminal); ok {
		t.Error("zero 9F09 should be absent")
	}
}

func TestTrack2(t *testing.T) {
	const pan = "6228480000000012344"
	t2, err := ParseTrack2(pan + "=31122200000123")
	if err != nil {
		t.Fatal(err)
	}
	if t2.PAN() != pan || t2.Expiry() != "3112" || t2.ServiceCode() != "220" || !t2.ChipCard() {
		t.Errorf("parsed %q %q %q", t2.Expiry(), t2.ServiceCode(), t2.Data())
	}
	if t2.Data() != pan+"=31122200000123" {
		t.Error("Data")
	}
	back, err := Track2FromBCD(t2.BCD())
	if err != nil || back != t2 {
		t.Errorf("BCD round trip: %v", err)
	}
	if got := fmt.Sprintf("%v %+v %#v %s %d %x", t2, t2, t2, t2, t2, t2); strings.Contains(got, pan) || strings.Contains(got, "3112") {
		t.Errorf("printing leaks: %s", got)
	}
	if !strings.Contains(t2.String(), "622848*********2344") {
		t.Errorf("String = %s", t2)
	}
	if !t2.Expired(time.Date(2032, 1, 1, 0, 0, 0, 0, time.UTC)) || t2.Expired(time.Date(2031, 12, 31, 0, 0, 0, 0, time.UTC)) {
		t.Error("Expired")
	}
	for _, bad := range []string{"", "6228480000000012344", "12345=3112220", "6228480000000012344=3113220",
		"6228480000000012344=31", "622848000000001234A=3112220", "6228480000000012344=3112220X",
		"6228480000000012344=3112220123456789012345"} {
		if _, err := ParseTrack2(bad); !errors.Is(err, ErrTrack2) {
			t.Errorf("ParseTrack2(%q) = %v", bad, err)
		} else if len(bad) > 12 && strings.Contains(err.Error(), bad[:12]) {
			t.Errorf("error quotes the data: %v", err)
		}
	}
}

func TestMaskAndLuhn(t *testing.T) {
	if MaskPAN("4761739001010010") != "476173******0010" || MaskPAN("12345") != "*****" {
		t.Error(MaskPAN("4761739001010010"))
	}
	if !LuhnValid("4761739001010010") || LuhnValid("4761739001010011") || LuhnValid("x") {
		t.Error("Luhn")
	}
}

func TestDataPrintsMasked(t *testing.T) {
	d := Data{TagPAN: mustHex(t, "4761739001010010"), TagCardholderName: []byte("SMITH/J"), TagATC: []byte{0, 7}}
	got := fmt.Sprintf("%v %+v %#v %d", d, d, d, d)
	if strings.Contains(got, "4761739001010010") || strings.Contains(got, "SMITH") || !strings.Contains(got, "9F36:0007") {
		t.Errorf("Data printed as %s", got)
	}
}

// script is a transport that answers from a list and records the commands.
type script struct {
	answers [][]byte
	sent    [][]byte
}

func (s *script) Transmit(_ context.Context, apdu []byte) ([]byte, error) {
	s.sent = append(s.sent, append([]byte(nil), apdu...))
	if len(s.answers) == 0 {
		return nil, errors.New("script: no more answers")
	}
	a := s.answers[0]
	s.answers = s.answers[1:]
	return a, nil
}

func TestT0ProcedureBytes(t *testing.T) {
	// 61xx: the data comes through GET RESPONSE, possibly in pieces.
	s := &script{answers: [][]byte{mustHex(t, "6104"), mustHex(t, "01020304 6102"), mustHex(t, "0506 9000")}}
	data, sw, err := exchange(context.Background(), s, "TEST", mustHex(t, "80A8000002830000"))
	if err != nil || sw != 0x9000 || !bytes.Equal(data, mustHex(t, "010203040506")) {
		t.Fatalf("61xx: %X %04X %v", data, sw, err)
	}
	if !bytes.Equal(s.sent[1], mustHex(t, "00C0000004")) || !bytes.Equal(s.sent[2], mustHex(t, "00C0000002")) {
		t.Errorf("GET RESPONSE commands %X", s.sent)
	}
	// 6Cxx: the same command again with the Le the card wants.
	s = &script{answers: [][]byte{mustHex(t, "6C1D"), mustHex(t, "70 00 9000")}}
	if _, sw, err := exchange(context.Background(), s, "TEST", mustHex(t, "00B2010C00")); err != nil || sw != 0x9000 {
		t.Fatalf("6Cxx: %04X %v", sw, err)
	}
	if !bytes.Equal(s.sent[1], mustHex(t, "00B2010C1D")) {
		t.Errorf("resent as %X", s.sent[1])
	}
	// A card that never stops saying "more" is cut off.
	s = &script{}
	for range 20 {
		s.answers = append(s.answers, mustHex(t, "00 6101"))
	}
	if _, _, err := exchange(context.Background(), s, "TEST", mustHex(t, "00A4040000")); !errors.Is(err, ErrBadResponse) {
		t.Errorf("endless 61xx: %v", err)
	}
	// One byte is not a response.
	s = &script{answers: [][]byte{{0x90}}}
	if _, _, err := exchange(context.Background(), s, "TEST", mustHex(t, "00A4040000")); !errors.Is(err, ErrBadResponse) {
		t.Errorf("short answer: %v", err)
	}
}

func TestSWErrorsMatchSentinels(t *testing.T) {
	var err error = &SWError{Cmd: "SELECT AID", SW: 0x6A82}
	if !errors.Is(err, ErrFileNotFound) || errors.Is(err, ErrConditionsNotSatisfied) {
		t.Error("Is")
	}
	if !strings.Contains(err.Error(), "6A82") || !strings.Contains(err.Error(), "not found") {
		t.Error(err)
	}
}
