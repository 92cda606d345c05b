package iso8583

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func mustPack(t testing.TB, h Header, m *Msg, mac MACFunc) []byte {
	t.Helper()
	f, err := Pack(h, m, mac)
	if err != nil {
		t.Fatalf("Pack %s: %v", m.MTI, err)
	}
	return f
}

func TestRoundTripMessageSet(t *testing.T) {
	for _, s := range samples() {
		t.Run(s.name, func(t *testing.T) {
			h := testHeader(t, strings.HasPrefix(s.name, "test"))
			m := s.m
			var macf MACFunc
			if s.withMAC {
				macf = macECB
			}
			frame := mustPack(t, h, &m, macf)
			if s.withMAC != (m.MAC != nil) {
				t.Fatalf("MAC set %v", m.MAC != nil)
			}
			h2, m2, mab, err := Unpack(frame)
			if err != nil {
				t.Fatal(err)
			}
			if h2 != h {
				t.Fatalf("header %X, want %X", h2, h)
			}
			if !reflect.DeepEqual(m2, &m) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", m2, &m)
			}
			if s.withMAC {
				if err := VerifyMAC(m2, mab, macECB); err != nil {
					t.Fatal(err)
				}
			} else if mab != nil {
				t.Fatal("MAC block without field 64")
			}
			// Packing what was unpacked gives the same bytes (field 64 carried as is).
			if again := mustPack(t, h2, m2, nil); !bytes.Equal(again, frame) {
				t.Fatalf("repack differs:\n%X\n%X", again, frame)
			}
			if s.m.AddData != "" && strings.HasPrefix(s.m.MTI, "05") {
				if _, err := ParseTotals(m2.AddData); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// The published 0200 of keystore/mac's worked example (MAB, TAK, MAC 8A9E91B8), framed with
// a TPDU and header: our codec parses it field by field and rebuilds it byte for byte.
func TestPublishedPurchaseFrame(t *testing.T) {
	mab := unhexT("0200302004C020C0981100000000000000005100183402100006324392260009942820D131210112" +
		"0084393136363838303134303030303030303030303030303031313536ACF46E73838A82F926000000" +
		"00000000000822000001")
	body := append(unhexT("6000030000 603100000000"), mab...)
	body = append(body, "8A9E91B8"...)
	frame := binary.BigEndian.AppendUint16(nil, uint16(len(body)))
	frame = append(frame, body...)

	h, m, gotMAB, err := Unpack(frame)
	if err != nil {
		t.Fatal(err)
	}
	want := &Msg{MTI: "0200", ProcCode: "000000", Amount: 51, HasAmount: true, STAN: 1834,
		EntryMode: "021", CondCode: "00", PINCapture: "06", Track2: "4392260009942820=131210112008439",
		TID: "16688014", MID: "000000000000001", Currency: "156", PINBlock: unhexT("ACF46E73838A82F9"),
		SecCtrl: "2600000000000000", F60: F60{Type: "22", Batch: "000001"}, MAC: []byte("8A9E91B8")}
	// The dump: 3 000000, 4 000000000051, 11 001834, 22 021 as 0210 (left-aligned), 35 with D.
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("got  %+v\nwant %+v", m, want)
	}
	if !bytes.Equal(gotMAB, mab) {
		t.Fatal("MAC block is not MTI … field 63")
	}
	if err := VerifyMAC(m, gotMAB, macECB); err != nil {
		t.Fatalf("published MAC: %v", err)
	}
	m.MAC = nil
	if again := mustPack(t, h, m, macECB); !bytes.Equal(again, frame) {
		t.Fatalf("rebuilt frame differs:\n%X\n%X", again, frame)
	}
	if string(m.MAC) != "8A9E91B8" {
		t.Fatalf("Pack's MAC %s", m.MAC)
	}
}

// fieldBytes packs m with only the given field set and returns that field's bytes.
func fieldBytes(t *testing.T, m Msg) []byte {
	t.Helper()
	m.MTI = "0800"
	f := mustPack(t, Header{}, &m, nil)
	return f[minFrame:]
}

func TestHandWorkedEncodings(t *testing.T) {
	big := bytes.Repeat([]byte{0xAB}, 300)
	cases := []struct {
		name string
		m    Msg
		want string
	}{
		{"PAN even", Msg{PAN: "6225881234567890"}, "16 6225881234567890"},
		{"PAN odd: right pad 0", Msg{PAN: "6225881234567890123"}, "19 62258812345678901230"},
		{"track 2 '=' as D", Msg{Track2: "6225881234567890=2512101"}, "24 6225881234567890D2512101"},
		{"track 2 odd", Msg{Track2: "6225881234567890=251210123"}, "26 6225881234567890D2512101 23"},
		{"track 3 LLL", Msg{Track3: "99123=4"}, "0007 99123D40"},
		{"amount n12", Msg{Amount: 12345, HasAmount: true}, "000000012345"},
		{"amount 0", Msg{HasAmount: true}, "000000000000"},
		{"STAN", Msg{STAN: 42}, "000042"},
		{"entry mode n3 left-aligned", Msg{EntryMode: "051"}, "0510"},
		{"card sequence n3 right-aligned", Msg{CardSeq: "001"}, "0001"},
		{"acquirer n..11", Msg{AcqInst: "48020000"}, "08 48020000"},
		{"an fixed", Msg{RespCode: "00"}, "3030"},
		{"an LLVAR byte count", Msg{AddResp: "0303"}, "04 30333033"},
		{"LLLVAR binary", Msg{ICC: []byte{0x9F, 0x26, 0x01}}, "0003 9F2601"},
		{"LLLVAR binary 300", Msg{F62: big}, "0300" + strings.Repeat("AB", 300)},
		{"LLLVAR binary empty", Msg{F62: []byte{}}, "0000"},
		{"field 48 n..322", Msg{AddData: "123"}, "0003 1230"},
		{"field 60 odd", Msg{F60: F60{Type: "22", Batch: "000001", NetCode: "000"}}, "0011 220000010000"},
		{"field 60 type+batch", Msg{F60: F60{Type: "22", Batch: "000001"}}, "0008 22000001"},
		{"field 61", Msg{F61: F61{Batch: "000001", Trace: "001834", Date: "1123"}}, "0016 0000010018341123"},
		{"field 63 ans", Msg{F63: "CUP"}, "0003 435550"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got, want := fieldBytes(t, c.m), unhexT(c.want); !bytes.Equal(got, want) {
				t.Fatalf("%X, want %X", got, want)
			}
		})
	}
}

func TestFrameLayout(t *testing.T) {
	m := Msg{MTI: "0820", TID: "16688014"}
	f := mustPack(t, testHeader(t, true), &m, nil)
	want := unhexT("001D 6000030000 603110000000 0820 0000000000800000") // bit 41
	want = append(want, "16688014"...)
	if !bytes.Equal(f, want) {
		t.Fatalf("%X\n%X", f, want)
	}
}

func TestMACBlock(t *testing.T) {
	m := purchase()
	var seen []byte
	f := mustPack(t, testHeader(t, false), &m, func(mab []byte) ([]byte, error) {
		seen = bytes.Clone(mab)
		return macECB(mab)
	})
	// MTI … field 63: from after the header to before the 8 bytes of field 64.
	if !bytes.Equal(seen, f[mtiOff:len(f)-8]) {
		t.Fatal("MAC block is not MTI … field 63")
	}
	if seen[2+7]&1 != 1 {
		t.Fatal("bit 64 not set in the MAC block's bitmap")
	}
	if !bytes.Equal(f[len(f)-8:], m.MAC) {
		t.Fatal("field 64 is not m.MAC")
	}
	_, m2, mab, err := Unpack(f)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mab, seen) {
		t.Fatal("Unpack's MAC block differs from Pack's")
	}
	if err := VerifyMAC(m2, mab, macECB); err != nil {
		t.Fatal(err)
	}
	// Any byte of the block or of the MAC changed: ErrBadMAC.
	for i := range mab {
		bad := bytes.Clone(mab)
		bad[i] ^= 0x01
		if err := VerifyMAC(m2, bad, macECB); !errors.Is(err, ErrBadMAC) {
			t.Fatalf("byte %d changed: %v", i, err)
		}
	}
	m3 := *m2
	m3.MAC = bytes.Clone(m2.MAC)
	m3.MAC[7] ^= 1
	if err := VerifyMAC(&m3, mab, macECB); !errors.Is(err, ErrBadMAC) {
		t.Fatal(err)
	}
	// Field 64 absent.
	m3.MAC = nil
	if err := VerifyMAC(&m3, mab, macECB); !errors.Is(err, ErrBadMAC) {
		t.Fatal(err)
	}
	if err := VerifyMAC(m2, nil, macECB); !errors.Is(err, ErrBadMAC) {
		t.Fatal(err)
	}
	// No key: the MAC function's error, not ErrBadMAC, and no key material.
	noKey := errors.New("keystore: no MAK loaded")
	err = VerifyMAC(m2, mab, func([]byte) ([]byte, error) { return nil, noKey })
	if !errors.Is(err, noKey) || errors.Is(err, ErrBadMAC) {
		t.Fatal(err)
	}
	if _, err := Pack(Header{}, &m3, func([]byte) ([]byte, error) { return nil, noKey }); !errors.Is(err, noKey) {
		t.Fatal(err)
	}
	if _, err := Pack(Header{}, &m3, func([]byte) ([]byte, error) { return []byte{1}, nil }); err == nil {
		t.Fatal("short MAC accepted")
	}
}

func TestPackInvalid(t *testing.T) {
	cases := map[string]struct {
		m     Msg
		field int
	}{
		"MTI short":          {Msg{MTI: "200"}, FieldMTI},
		"MTI letters":        {Msg{MTI: "02A0"}, FieldMTI},
		"PAN letter":         {Msg{MTI: "0200", PAN: "62258812345678X"}, 2},
		"PAN too long":       {Msg{MTI: "0200", PAN: strings.Repeat("1", 20)}, 2},
		"proc code short":    {Msg{MTI: "0200", ProcCode: "00000"}, 3},
		"amount negative":    {Msg{MTI: "0200", Amount: -1, HasAmount: true}, 4},
		"amount too big":     {Msg{MTI: "0200", Amount: 1e12, HasAmount: true}, 4},
		"STAN too big":       {Msg{MTI: "0200", STAN: 1000000}, 11},
		"STAN negative":      {Msg{MTI: "0200", STAN: -1}, 11},
		"entry mode letter":  {Msg{MTI: "0200", EntryMode: "05x"}, 22},
		"card seq letter":    {Msg{MTI: "0200", CardSeq: "x01"}, 23},
		"track 2 D":          {Msg{MTI: "0200", Track2: "6225D2512"}, 35},
		"track 2 too long":   {Msg{MTI: "0200", Track2: strings.Repeat("1", 38)}, 35},
		"track 3 too long":   {Msg{MTI: "0200", Track3: strings.Repeat("1", 105)}, 36},
		"RRN short":          {Msg{MTI: "0200", RRN: "12345"}, 37},
		"TID control":        {Msg{MTI: "0200", TID: "1234567\n"}, 41},
		"MID short":          {Msg{MTI: "0200", MID: "898"}, 42},
		"add resp too long":  {Msg{MTI: "0210", AddResp: strings.Repeat("1", 26)}, 44},
		"add data letter":    {Msg{MTI: "0500", AddData: "12a"}, 48},
		"PIN block short":    {Msg{MTI: "0200", PINBlock: []byte{1, 2, 3}}, 52},
		"sec ctrl short":     {Msg{MTI: "0200", SecCtrl: "26"}, 53},
		"ICC too long":       {Msg{MTI: "0200", ICC: make([]byte, 256)}, 55},
		"F60 batch short":    {Msg{MTI: "0200", F60: F60{Type: "22", Batch: "1"}}, 60},
		"F60 gap":            {Msg{MTI: "0200", F60: F60{Type: "22", NetCode: "000"}}, 60},
		"F60 no type":        {Msg{MTI: "0200", F60: F60{Batch: "000001"}}, 60},
		"F60 too long":       {Msg{MTI: "0200", F60: F60{Type: "22", Batch: "000001", NetCode: "000", Rest: "1234567"}}, 60},
		"F61 letter":         {Msg{MTI: "0200", F61: F61{Batch: "00000a"}}, 61},
		"F62 too long":       {Msg{MTI: "0810", F62: make([]byte, 513)}, 62},
		"F63 too long":       {Msg{MTI: "0200", F63: strings.Repeat("a", 164)}, 63},
		"MAC given, 7 bytes": {Msg{MTI: "0200", MAC: make([]byte, 7)}, 64},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Pack(Header{}, &c.m, nil)
			var fe *FieldError
			if !errors.Is(err, ErrInvalid) || !errors.As(err, &fe) || fe.Field != c.field {
				t.Fatalf("%v, want ErrInvalid on field %d", err, c.field)
			}
			if strings.Contains(err.Error(), "6225") {
				t.Fatal("value in the error")
			}
		})
	}
	if _, err := Pack(Header{}, nil, nil); !errors.Is(err, ErrInvalid) {
		t.Fatal(err)
	}
}

// frameOf wraps a body (from the MTI on) in a length and a header.
func frameOf(body []byte) []byte {
	f := binary.BigEndian.AppendUint16(nil, uint16(headerSize+len(body)))
	f = append(f, unhexT("6000030000 603100000000")...)
	return append(f, body...)
}

func bitmapOf(bits ...int) []byte {
	var v uint64
	for _, b := range bits {
		v |= 1 << (64 - b)
	}
	return binary.BigEndian.AppendUint64(nil, v)
}

func body(mti string, bits []int, fields string) []byte {
	b := append(unhexT(mti), bitmapOf(bits...)...)
	return append(b, unhexT(fields)...)
}

func TestUnpackMalformed(t *testing.T) {
	cases := map[string]struct {
		frame []byte
		field int
	}{
		"empty":                    {nil, FieldFrame},
		"one byte":                 {[]byte{0}, FieldFrame},
		"length over the rest":     {append([]byte{0, 40}, make([]byte, 30)...), FieldFrame},
		"length under the rest":    {append([]byte{0, 20}, make([]byte, 30)...), FieldFrame},
		"header only":              {frameOf(nil), FieldMTI},
		"MTI not BCD":              {frameOf(body("02A0", nil, "")), FieldMTI},
		"bitmap cut":               {frameOf(unhexT("0200 00000000")), FieldBitmap},
		"secondary bitmap":         {frameOf(body("0200", []int{1}, "")), FieldBitmap},
		"undefined bit 5":          {frameOf(body("0200", []int{5}, "000000000000")), 5},
		"undefined bit 7":          {frameOf(body("0200", []int{3, 7}, "000000 0000000000")), 7},
		"undefined bit 24":         {frameOf(body("0200", []int{24}, "0000")), 24},
		"undefined bit 59":         {frameOf(body("0200", []int{59}, "0000")), 59},
		"PAN length not BCD":       {frameOf(body("0200", []int{2}, "1A 1234567890")), 2},
		"PAN length over 19":       {frameOf(body("0200", []int{2}, "20 12345678901234567890")), 2},
		"PAN length over rest":     {frameOf(body("0200", []int{2}, "16 12345678")), 2},
		"PAN empty":                {frameOf(body("0200", []int{2}, "00")), 2},
		"PAN nibble A":             {frameOf(body("0200", []int{2}, "04 12A4")), 2},
		"PAN odd pad F":            {frameOf(body("0200", []int{2}, "03 123F")), 2},
		"PAN odd pad 5":            {frameOf(body("0200", []int{2}, "03 1235")), 2},
		"proc code nibble F":       {frameOf(body("0200", []int{3}, "00000F")), 3},
		"proc code cut":            {frameOf(body("0200", []int{3}, "0000")), 3},
		"STAN zero":                {frameOf(body("0200", []int{11}, "000000")), 11},
		"entry mode pad":           {frameOf(body("0200", []int{22}, "0511")), 22},
		"card seq pad":             {frameOf(body("0200", []int{23}, "1001")), 23},
		"track 2 nibble E":         {frameOf(body("0200", []int{35}, "04 12E4")), 35},
		"track 2 length 38":        {frameOf(body("0200", []int{35}, "38"+strings.Repeat("11", 19))), 35},
		"track 3 LLL not BCD":      {frameOf(body("0200", []int{36}, "00A1 11")), 36},
		"track 3 LLL over 104":     {frameOf(body("0200", []int{36}, "0105"+strings.Repeat("11", 53))), 36},
		"RRN control":              {frameOf(body("0200", []int{37}, "313233343536373839300A31")), 37},
		"RRN cut":                  {frameOf(body("0200", []int{37}, "3132")), 37},
		"field 48 over 322":        {frameOf(body("0500", []int{48}, "0323"+strings.Repeat("11", 162))), 48},
		"PIN block cut":            {frameOf(body("0200", []int{52}, "01020304")), 52},
		"ICC length 256":           {frameOf(body("0200", []int{55}, "0256"+strings.Repeat("11", 256))), 55},
		"ICC prefix cut":           {frameOf(body("0200", []int{55}, "00")), 55},
		"ICC prefix over rest":     {frameOf(body("0200", []int{55}, "0099 9F2601")), 55},
		"field 60 five digits":     {frameOf(body("0200", []int{60}, "0005 220000")), 60},
		"field 60 ten digits":      {frameOf(body("0200", []int{60}, "0010 2200000100")), 60},
		"field 61 seven digits":    {frameOf(body("0200", []int{61}, "0007 00000100")), 61},
		"field 62 over 512":        {frameOf(body("0810", []int{62}, "0513"+strings.Repeat("11", 513))), 62},
		"field 63 control":         {frameOf(body("0200", []int{63}, "0003 43001B")), 63},
		"field 64 without its key": {frameOf(body("0200", []int{64}, "")), 64},
		"field 64 cut":             {frameOf(body("0200", []int{64}, "38413945")), 64},
		"trailing bytes":           {frameOf(body("0200", []int{3}, "000000 00")), FieldFrame},
		"bits without data":        {frameOf(body("0200", []int{3, 4, 11}, "")), 3},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, m, mab, err := Unpack(c.frame)
			var fe *FieldError
			if !errors.Is(err, ErrMalformed) || !errors.As(err, &fe) || fe.Field != c.field {
				t.Fatalf("%v, want ErrMalformed on field %d", err, c.field)
			}
			if m != nil || mab != nil {
				t.Fatal("message returned with an error")
			}
		})
	}
}

// Every valid frame cut at every byte (with its length prefix left or fixed up) is malformed.
func TestUnpackTruncated(t *testing.T) {
	for _, s := range samples() {
		m := s.m
		f := mustPack(t, testHeader(t, false), &m, macECB)
		for n := range len(f) {
			cut := bytes.Clone(f[:n])
			if _, _, _, err := Unpack(cut); !errors.Is(err, ErrMalformed) {
				t.Fatalf("%s cut at %d: %v", s.name, n, err)
			}
			if n >= lenSize {
				binary.BigEndian.PutUint16(cut, uint16(n-lenSize))
				if _, _, _, err := Unpack(cut); !errors.Is(err, ErrMalformed) {
					t.Fatalf("%s cut at %d, length fixed: %v", s.name, n, err)
				}
			}
		}
	}
}

func TestNoSecretsInErrors(t *testing.T) {
	m := purchase()
	f := mustPack(t, testHeader(t, false), &m, nil)
	pan := unhexT("6225881234567890")
	for i := range len(f) {
		bad := bytes.Clone(f)
		bad[i] ^= 0xFF
		_, _, _, err := Unpack(bad)
		if err == nil {
			continue
		}
		for _, secret := range []string{"6225881234", "ACF46E73", "acf46e73", string(pan)} {
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("byte %d: error shows a secret: %v", i, err)
			}
		}
	}
}

func TestHeader(t *testing.T) {
	h, err := NewHeader("6000030000", false)
	if err != nil {
		t.Fatal(err)
	}
	if h.TPDU != [5]byte{0x60, 0, 3, 0, 0} || h.App != [6]byte{0x60, 0x31} || h.Test() {
		t.Fatalf("%X", h)
	}
	ht, _ := NewHeader("600003ABCD", true)
	if !ht.Test() || ht.App[2] != 0x10 {
		t.Fatalf("%X", ht)
	}
	r := ht.Reply()
	if r.TPDU != [5]byte{0x60, 0xAB, 0xCD, 0, 3} || r.App != ht.App || r.Reply() != ht {
		t.Fatalf("reply %X", r)
	}
	for _, bad := range []string{"", "60000300", "600003000000", "6000030g00", "7000030000"} {
		if _, err := NewHeader(bad, false); !errors.Is(err, ErrInvalid) {
			t.Fatalf("%q: %v", bad, err)
		}
	}
}

func TestTotals(t *testing.T) {
	tt := Totals{DomDebitCount: 3, DomDebit: 104345, DomCreditCount: 1, DomCredit: 12345, DomResult: 1,
		ForDebitCount: 999, ForDebit: 999999999999, ForCreditCount: 0, ForCredit: 0, ForResult: 3}
	s := tt.Encode()
	want := "003" + "000000104345" + "001" + "000000012345" + "1" + "999" + "999999999999" + "000" + "000000000000" + "3"
	if s != want || len(s) != TotalsLen {
		t.Fatalf("%s\n%s", s, want)
	}
	back, err := ParseTotals(s)
	if err != nil || back != tt {
		t.Fatalf("%+v %v", back, err)
	}
	if (Totals{}).Encode() != strings.Repeat("0", 62) {
		t.Fatal("zero totals")
	}
	for _, bad := range []Totals{{DomDebitCount: 1000}, {ForCredit: -1}, {DomResult: 4}, {ForDebit: 1e12}} {
		if bad.Encode() != "" || !errors.Is(bad.Validate(), ErrInvalid) {
			t.Fatalf("%+v encoded", bad)
		}
	}
	for _, bad := range []string{"", want[:61], want + "0", strings.Replace(want, "9", "a", 1), want[:30] + "4" + want[31:]} {
		if _, err := ParseTotals(bad); !errors.Is(err, ErrMalformed) {
			t.Fatalf("%q: %v", bad, err)
		}
	}
}

func TestReadFrame(t *testing.T) {
	m := purchase()
	f := mustPack(t, testHeader(t, false), &m, macECB)
	two := append(bytes.Clone(f), f...)
	r := bytes.NewReader(two)
	for range 2 {
		got, err := ReadFrame(r)
		if err != nil || !bytes.Equal(got, f) {
			t.Fatalf("%v", err)
		}
	}
	if _, err := ReadFrame(r); err != io.EOF {
		t.Fatalf("after the last frame: %v", err)
	}
	if _, err := ReadFrame(bytes.NewReader(f[:1])); err != io.ErrUnexpectedEOF {
		t.Fatal(err)
	}
	if _, err := ReadFrame(bytes.NewReader(f[:2])); err != io.ErrUnexpectedEOF {
		t.Fatal(err)
	}
	if _, err := ReadFrame(bytes.NewReader(f[:len(f)-1])); err != io.ErrUnexpectedEOF {
		t.Fatal(err)
	}
	if _, err := ReadFrame(bytes.NewReader([]byte{0x10, 0x01, 0})); !errors.Is(err, ErrTooLong) {
		t.Fatal(err)
	}
	if _, err := ReadFrame(bytes.NewReader([]byte{0xFF, 0xFF})); !errors.Is(err, ErrTooLong) {
		t.Fatal(err)
	}
	if _, err := ReadFrame(bytes.NewReader([]byte{0, 0})); !errors.Is(err, ErrMalformed) {
		t.Fatal(err)
	}
	max := append([]byte{0x10, 0x00}, make([]byte, MaxFrame)...)
	if got, err := ReadFrame(bytes.NewReader(max)); err != nil || len(got) != MaxFrame+2 {
		t.Fatal(err)
	}
}
