package hostsim

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/posagent/posagent/agent/iso8583"
	"github.com/posagent/posagent/keystore/mac"
)

// seedFrames are valid requests of every kind, MACed with the MAK of a fixed sign-in.
func seedFrames(tb testing.TB, mak []byte) [][]byte {
	h, _ := iso8583.NewHeader("6000030000", false)
	fn := func(b []byte) ([]byte, error) { return mac.UnionPayECB(mak, b) }
	f60 := func(typ, net string) iso8583.F60 { return iso8583.F60{Type: typ, Batch: "000001", NetCode: net} }
	f61 := iso8583.F61{Batch: "000001", Trace: "000002", Date: "0101"}
	msgs := []struct {
		m      *iso8583.Msg
		macked bool
	}{
		{&iso8583.Msg{MTI: "0800", STAN: 1, TID: testTID, MID: testMID, F60: f60("00", "003")}, false},
		{&iso8583.Msg{MTI: "0200", ProcCode: "000000", Amount: 100, HasAmount: true, STAN: 2, PAN: panDebit, TID: testTID, MID: testMID, Currency: "156", F60: f60("22", "000")}, true},
		{&iso8583.Msg{MTI: "0200", ProcCode: "310000", STAN: 3, Track2: panDebit + "=3112", TID: testTID, MID: testMID, F60: f60("01", "000")}, true},
		{&iso8583.Msg{MTI: "0200", ProcCode: "200000", Amount: 100, HasAmount: true, STAN: 4, PAN: panDebit, TID: testTID, MID: testMID, F60: f60("23", "000"), F61: f61}, true},
		{&iso8583.Msg{MTI: "0100", ProcCode: "030000", Amount: 100, HasAmount: true, STAN: 5, PAN: panDebit, CondCode: "06", TID: testTID, MID: testMID, F60: f60("10", "000")}, true},
		{&iso8583.Msg{MTI: "0220", ProcCode: "200000", Amount: 50, HasAmount: true, STAN: 6, PAN: panDebit, TID: testTID, MID: testMID, F60: f60("25", "000"), F61: f61}, true},
		{&iso8583.Msg{MTI: "0400", ProcCode: "000000", Amount: 100, HasAmount: true, STAN: 2, PAN: panDebit, TID: testTID, MID: testMID, F60: f60("22", "000"), F61: f61}, true},
		{&iso8583.Msg{MTI: "0500", STAN: 7, TID: testTID, MID: testMID, AddData: iso8583.Totals{DomDebitCount: 1, DomDebit: 100}.Encode(), F60: f60("00", "201")}, false},
		{&iso8583.Msg{MTI: "0320", ProcCode: "000000", Amount: 100, HasAmount: true, STAN: 2, PAN: panDebit, TID: testTID, MID: testMID, F60: f60("00", "201")}, false},
		{&iso8583.Msg{MTI: "0320", STAN: 8, TID: testTID, MID: testMID, AddData: "0001", F60: f60("00", "202")}, false},
		{&iso8583.Msg{MTI: "0820", STAN: 9, TID: testTID, MID: testMID, F60: f60("00", "301")}, false},
		{&iso8583.Msg{MTI: "0820", STAN: 10, TID: testTID, MID: testMID, F62: []byte("010011"), F60: f60("00", "362")}, false},
		{&iso8583.Msg{MTI: "0800", STAN: 11, TID: testTID, MID: testMID, F60: f60("00", "360")}, false},
		{&iso8583.Msg{MTI: "0200", ProcCode: "010000", Amount: 300, HasAmount: true, STAN: 12, PAN: panDebit, TID: testTID, MID: testMID, Currency: "156", F60: f60("26", "000")}, true},
		{&iso8583.Msg{MTI: "0200", ProcCode: "280000", Amount: 200, HasAmount: true, STAN: 13, PAN: panDebit, TID: testTID, MID: testMID, Currency: "156", F60: f60("28", "000")}, true},
		{&iso8583.Msg{MTI: "0400", ProcCode: "280000", Amount: 200, HasAmount: true, STAN: 13, PAN: panDebit, TID: testTID, MID: testMID, F60: f60("28", "000")}, true},
	}
	var out [][]byte
	for _, x := range msgs {
		var mf iso8583.MACFunc
		if x.macked {
			mf = fn
		}
		b, err := iso8583.Pack(h, x.m, mf)
		if err != nil {
			tb.Fatalf("seed %s: %v", x.m.MTI, err)
		}
		out = append(out, b)
	}
	return out
}

var fuzzMAK = []byte{0x13, 0x31, 0x45, 0x54, 0x67, 0x76, 0x89, 0x98}

// fuzzServer is a server whose terminal is signed in with fuzzMAK, so MACed seeds reach the
// transaction logic.
func fuzzServer(tb testing.TB) *Server {
	s, err := New(testConfig())
	if err != nil {
		tb.Fatal(err)
	}
	s.st.Terminals[testTID].MAK = fuzzMAK
	s.st.Terminals[testTID].PIK = append(fuzzMAK[:8:8], fuzzMAK...)
	return s
}

// FuzzHandleFrame: any bytes into the request handler, never a panic; an answer, when there
// is one, is a frame the codec reads.
func FuzzHandleFrame(f *testing.F) {
	for _, b := range seedFrames(f, fuzzMAK) {
		f.Add(b)
	}
	s := fuzzServer(f)
	f.Fuzz(func(t *testing.T, frame []byte) {
		out, err := s.HandleFrame(frame)
		if err != nil {
			return
		}
		if _, _, _, err := iso8583.Unpack(out); err != nil {
			t.Fatalf("answer does not unpack: %v", err)
		}
	})
}

// TestWriteFuzzCorpus rewrites testdata/fuzz/FuzzHandleFrame from seedFrames when
// HOSTSIM_WRITE_CORPUS=1.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("HOSTSIM_WRITE_CORPUS") != "1" {
		t.Skip("set HOSTSIM_WRITE_CORPUS=1 to rewrite the seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzHandleFrame")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, b := range seedFrames(t, fuzzMAK) {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i+1)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Junk seeds: cut, too long, wrong length, bad bitmap.
	for i, b := range [][]byte{{0x00}, {0x00, 0x03, 0x60, 0x00, 0x03}, {0xFF, 0xFF}, {0x00, 0x0F, 0x60, 0, 3, 0, 0, 0x60, 0x31, 0, 0, 0, 0, 0x02, 0x00, 0xFF}} {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("junk-%02d", i+1)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
