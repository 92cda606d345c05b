package iso8583

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/posagent/posagent/keystore/mac"
)

// testMAK is a throw-away MAC key (the TAK of the published worked example in keystore/mac).
var testMAK = unhexT("C24A8FB57AA20123")

func macECB(mab []byte) ([]byte, error) { return mac.UnionPayECB(testMAK, mab) }

func unhexT(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

// icc is a realistic field 55 of a UnionPay IC purchase (9F26 cryptogram, 9F27, 9F10, 9F37,
// 9F36, 95, 9A, 9C, 9F02, 5F2A, 82, 9F1A, 9F03, 9F33, 9F34, 9F35, 9F1E, 84, 9F09, 9F41).
var icc = unhexT("9F2608A1B2C3D4E5F607089F2701809F101307010103A0A802010A010000000000F1E2D3C49F3704" +
	"1A2B3C4D9F360200219505008004E0009A032511239C01009F02060000000123455F2A02015682027C00" +
	"9F1A0201569F03060000000000009F3303E0F9C89F34034203009F3501229F1E0831323334353637388408" +
	"A0000003330101029F0902008C9F410400000123")

func testHeader(t testing.TB, test bool) Header {
	t.Helper()
	h, err := NewHeader("6000030000", test)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// sampleMsgs are one message of every type of the spec's message set, with realistic values.
// withMAC says whether the profile MACs it.
type sample struct {
	name    string
	m       Msg
	withMAC bool
}

func purchase() Msg {
	return Msg{
		MTI: "0200", PAN: "6225881234567890123", ProcCode: "000000", Amount: 12345, HasAmount: true,
		STAN: 1834, Expiry: "2812", EntryMode: "051", CardSeq: "001", CondCode: "00", PINCapture: "12",
		Track2: "6225881234567890123=28122011234567890", TID: "16688014", MID: "898310048990001",
		Currency: "156", PINBlock: unhexT("ACF46E73838A82F9"), SecCtrl: "2600000000000000",
		ICC: icc, F60: F60{Type: "22", Batch: "000001", NetCode: "000", Rest: "50"}, F63: "001",
	}
}

func samples() []sample {
	p := purchase()
	answer := Msg{
		MTI: "0210", PAN: p.PAN, ProcCode: "000000", Amount: 12345, HasAmount: true, STAN: 1834,
		LocalTime: "143015", LocalDate: "1123", SettleDate: "1124", AcqInst: "48020000",
		RRN: "143015123456", AuthCode: "A1B2 3", RespCode: "00", TID: p.TID, MID: p.MID,
		AddResp: "0303000004020000", Currency: "156", ICC: unhexT("910A1122334455667788990072"),
		F60: F60{Type: "22", Batch: "000001", NetCode: "000"}, F63: "CUP\xd6\xd0\xb9\xfa\xd2\xf8\xd0\xd0",
	}
	return []sample{
		{"balance 0200", Msg{MTI: "0200", PAN: "6225881234567890", ProcCode: "310000", STAN: 7,
			EntryMode: "021", CondCode: "00", PINCapture: "06", Track2: "6225881234567890=2812201",
			Track3: "996225881234567890=156156000000000000000000000000000000000000=000000000000=000000000000000000000",
			TID:    "16688014", MID: "898310048990001", Currency: "156", PINBlock: unhexT("0123456789ABCDEF"),
			SecCtrl: "2600000000000000", F60: F60{Type: "01", Batch: "000001"}}, true},
		{"balance 0210", Msg{MTI: "0210", ProcCode: "310000", STAN: 7, RRN: "000000000007", RespCode: "00",
			TID: "16688014", MID: "898310048990001", Balance: "1156C000000012345", F60: F60{Type: "01", Batch: "000001"}}, true},
		{"purchase 0200", p, true},
		{"purchase 0210", answer, true},
		{"void 0200", Msg{MTI: "0200", PAN: p.PAN, ProcCode: "200000", Amount: 12345, HasAmount: true, STAN: 1835,
			EntryMode: "012", CondCode: "00", RRN: "143015123456", AuthCode: "A1B2 3", TID: p.TID, MID: p.MID,
			Currency: "156", F60: F60{Type: "23", Batch: "000001"}, F61: F61{Batch: "000001", Trace: "001834"}, F63: "001"}, true},
		{"refund 0220", Msg{MTI: "0220", PAN: p.PAN, ProcCode: "200000", Amount: 500, HasAmount: true, STAN: 1836,
			EntryMode: "022", CondCode: "00", RRN: "143015123456", TID: p.TID, MID: p.MID, Currency: "156",
			F60: F60{Type: "25", Batch: "000001"}, F61: F61{Batch: "000000", Trace: "000000", Date: "1123"}, F63: "001"}, true},
		{"preauth 0100", Msg{MTI: "0100", PAN: p.PAN, ProcCode: "030000", Amount: 100000, HasAmount: true, STAN: 1837,
			EntryMode: "051", CardSeq: "001", CondCode: "06", PINCapture: "12", Track2: p.Track2, TID: p.TID, MID: p.MID,
			Currency: "156", PINBlock: p.PINBlock, SecCtrl: "2600000000000000", ICC: icc,
			F60: F60{Type: "10", Batch: "000001", NetCode: "000", Rest: "601"}, F63: "001"}, true},
		{"preauth 0110", Msg{MTI: "0110", PAN: p.PAN, ProcCode: "030000", Amount: 100000, HasAmount: true, STAN: 1837,
			LocalTime: "143101", LocalDate: "1123", RRN: "143101000001", AuthCode: "123456", RespCode: "00",
			TID: p.TID, MID: p.MID, Currency: "156", F60: F60{Type: "10", Batch: "000001"}}, true},
		{"completion 0200", Msg{MTI: "0200", PAN: p.PAN, ProcCode: "000000", Amount: 90000, HasAmount: true, STAN: 1838,
			EntryMode: "012", CondCode: "06", AuthCode: "123456", TID: p.TID, MID: p.MID, Currency: "156",
			F60: F60{Type: "20", Batch: "000001"}, F61: F61{Batch: "000000", Trace: "000000", Date: "1123"}}, true},
		{"reversal 0400", Msg{MTI: "0400", PAN: p.PAN, ProcCode: "000000", Amount: 12345, HasAmount: true, STAN: 1834,
			Expiry: "2812", EntryMode: "051", CardSeq: "001", CondCode: "00", RespCode: "98", TID: p.TID, MID: p.MID,
			Currency: "156", ICC: icc, F60: F60{Type: "22", Batch: "000001", NetCode: "000", Rest: "50"},
			F61: F61{Batch: "000001", Trace: "001834", Date: "1123"}}, true},
		{"reversal 0410", Msg{MTI: "0410", ProcCode: "000000", Amount: 12345, HasAmount: true, STAN: 1834,
			RespCode: "00", TID: p.TID, MID: p.MID, Currency: "156", F60: F60{Type: "22", Batch: "000001"}}, true},
		{"offline 0220", Msg{MTI: "0220", PAN: p.PAN, ProcCode: "000000", Amount: 2000, HasAmount: true, STAN: 1839,
			LocalTime: "150000", LocalDate: "1123", Expiry: "2812", EntryMode: "052", CondCode: "00", AuthCode: "654321",
			TID: p.TID, MID: p.MID, Currency: "156", F60: F60{Type: "30", Batch: "000001"}, F63: "001"}, true},
		{"sign-in 0800", Msg{MTI: "0800", STAN: 1, TID: p.TID, MID: p.MID,
			F60: F60{Type: "00", Batch: "000001", NetCode: "003"}, F63: "01 "}, false},
		{"sign-in 0810", Msg{MTI: "0810", STAN: 1, LocalTime: "080000", LocalDate: "1123", AcqInst: "48020000",
			RRN: "080000000001", RespCode: "00", TID: p.TID, MID: p.MID,
			F60: F60{Type: "00", Batch: "000002", NetCode: "003"},
			F62: unhexT("00112233445566778899AABBCCDDEEFF A1B2C3D4 0123456789ABCDEF0123456789ABCDEF 11223344")}, false},
		{"parameter download 0810", Msg{MTI: "0810", STAN: 2, RespCode: "00", TID: p.TID, MID: p.MID,
			F60: F60{Type: "00", Batch: "000002", NetCode: "360"}, F62: bytes.Repeat([]byte("16060"), 100)}, false},
		{"settlement 0500", Msg{MTI: "0500", STAN: 1840, TID: p.TID, MID: p.MID,
			AddData:  Totals{DomDebitCount: 3, DomDebit: 104345, DomCreditCount: 1, DomCredit: 12345}.Encode(),
			Currency: "156", F60: F60{Type: "00", Batch: "000001", NetCode: "201"}, F63: "001"}, true},
		{"settlement 0510", Msg{MTI: "0510", STAN: 1840, LocalTime: "180000", LocalDate: "1123", RRN: "180000000001",
			RespCode: "00", TID: p.TID, MID: p.MID,
			AddData:  Totals{DomDebitCount: 3, DomDebit: 104345, DomCreditCount: 1, DomCredit: 12345, DomResult: 2, ForResult: 1}.Encode(),
			Currency: "156", F60: F60{Type: "00", Batch: "000001", NetCode: "201"}}, true},
		{"batch upload 0320", Msg{MTI: "0320", PAN: p.PAN, ProcCode: "000000", Amount: 12345, HasAmount: true, STAN: 1841,
			TID: p.TID, MID: p.MID, Currency: "156", AddData: "0000000001",
			F60: F60{Type: "00", Batch: "000001", NetCode: "201"}, F62: []byte("1810")}, false},
		{"batch upload end 0320", Msg{MTI: "0320", STAN: 1842, TID: p.TID, MID: p.MID, AddData: "0004",
			F60: F60{Type: "00", Batch: "000001", NetCode: "207"}}, false},
		{"batch upload 0330", Msg{MTI: "0330", STAN: 1841, RespCode: "00", TID: p.TID, MID: p.MID,
			F60: F60{Type: "00", Batch: "000001", NetCode: "201"}}, false},
		{"sign-off 0820", Msg{MTI: "0820", STAN: 1843, TID: p.TID, MID: p.MID,
			F60: F60{Type: "00", Batch: "000001", NetCode: "002"}}, false},
		{"echo 0820", Msg{MTI: "0820", TID: p.TID, MID: p.MID, F60: F60{Type: "00", Batch: "000001", NetCode: "301"}}, false},
		{"echo 0830", Msg{MTI: "0830", RespCode: "00", TID: p.TID, MID: p.MID, F60: F60{Type: "00", Batch: "000001", NetCode: "301"}}, false},
		{"status upload 0820", Msg{MTI: "0820", STAN: 1844, TID: p.TID, MID: p.MID,
			F60: F60{Type: "00", Batch: "000001", NetCode: "362"}, F62: []byte("01102011030140115011")}, false},
		{"test purchase 0200 with track 3 and F61 rest", Msg{MTI: "0200", PAN: "621234567890123", ProcCode: "000000",
			Amount: 0, HasAmount: true, STAN: 999999, EntryMode: "021", CondCode: "00", PINCapture: "12",
			Track2: "621234567890123=49121011", Track3: "996212345678901230=1561560000000000000000000000000000000000000=491200000000",
			TID: p.TID, MID: p.MID, Currency: "156", PINBlock: p.PINBlock, SecCtrl: "2000000000000000",
			F60: F60{Type: "22", Batch: "999999", NetCode: "000", Rest: "601234"},
			F61: F61{Batch: "000001", Trace: "000002", Date: "1231", Rest: "0123456789123"}}, true},
	}
}
