package hostsim

import (
	"context"
	"crypto/des"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/iso8583"
	"github.com/posagent/posagent/keystore/mac"
	"github.com/posagent/posagent/keystore/pinblock"
)

const (
	testTID = "10000001"
	testMID = "898100012340001"
	testKEK = "0123456789ABCDEFFEDCBA9876543210"

	panDebit   = "6228480000000012344" // domestic, 100 000.00
	panVisa    = "4761739001010010"    // foreign
	panExpired = "6228480000000056788"
	panSmall   = "6222021000000005" // balance 1 000.00
	testPIN    = "123456"
)

func testConfig() Config {
	return Config{
		Listen:    "127.0.0.1:0",
		Terminals: []Terminal{{TID: testTID, MID: testMID, KEK: testKEK}},
		Accounts:  DefaultAccounts(),
		Rules:     Rules{MaxAmount: 5_000_000},
		QR:        QRConfig{PayDelay: Duration(50 * time.Millisecond)},
	}
}

func startServer(t *testing.T, edit func(*Config)) *Server {
	t.Helper()
	cfg := testConfig()
	if edit != nil {
		edit(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// term is a test terminal: the iso8583 client, its working keys in clear, batch and trace.
type term struct {
	t     *testing.T
	s     *Server
	cli   *iso8583.Client
	h     iso8583.Header
	tid   string
	pik   []byte
	mak   []byte
	batch int
	stan  int
}

func newTerm(t *testing.T, s *Server) *term {
	t.Helper()
	h, err := iso8583.NewHeader("6000030000", false)
	if err != nil {
		t.Fatal(err)
	}
	return &term{t: t, s: s, h: h, tid: testTID,
		cli: iso8583.NewClient(iso8583.ClientOptions{Addrs: []string{s.Addr()}, Timeout: 3 * time.Second})}
}

func (c *term) withTimeout(d time.Duration) *term {
	c.cli = iso8583.NewClient(iso8583.ClientOptions{Addrs: []string{c.s.Addr()}, Timeout: d})
	return c
}

func (c *term) next() int {
	c.stan++
	return c.stan
}

// exchange packs m (MACed with the MAK when withMAC), sends it and unpacks the answer,
// checking the answer's MAC when it carries one.
func (c *term) exchange(m *iso8583.Msg, withMAC bool) (*iso8583.Msg, error) {
	var fn iso8583.MACFunc
	if withMAC {
		mak := c.mak
		fn = func(mab []byte) ([]byte, error) { return mac.UnionPayECB(mak, mab) }
	}
	frame, err := iso8583.Pack(c.h, m, fn)
	if err != nil {
		c.t.Fatalf("pack %s: %v", m.MTI, err)
	}
	out, err := c.cli.Exchange(context.Background(), frame)
	if err != nil {
		return nil, err
	}
	h, a, mab, err := iso8583.Unpack(out)
	if err != nil {
		return nil, err
	}
	if h.TPDU != c.h.Reply().TPDU {
		c.t.Errorf("answer TPDU % X, want % X", h.TPDU, c.h.Reply().TPDU)
	}
	if mab != nil {
		if c.mak == nil {
			return a, iso8583.ErrBadMAC
		}
		if err := iso8583.VerifyMAC(a, mab, func(b []byte) ([]byte, error) { return mac.UnionPayECB(c.mak, b) }); err != nil {
			return a, err
		}
	}
	return a, nil
}

// must is exchange that fails the test on an error.
func (c *term) must(m *iso8583.Msg, withMAC bool) *iso8583.Msg {
	c.t.Helper()
	a, err := c.exchange(m, withMAC)
	if err != nil {
		c.t.Fatalf("%s trace %d: %v", m.MTI, m.STAN, err)
	}
	if a.MTI != answerMTI(m.MTI) {
		c.t.Fatalf("answer MTI %s to %s", a.MTI, m.MTI)
	}
	if a.RespCode == "" {
		c.t.Fatalf("answer %s without field 39", a.MTI)
	}
	return a
}

func (c *term) batchStr() string { return fmt.Sprintf("%06d", c.batch) }

// signIn signs in with 60.3 code and keeps the working keys (decrypted with crypto/des).
func (c *term) signIn(code string) *iso8583.Msg {
	c.t.Helper()
	a := c.must(&iso8583.Msg{MTI: "0800", STAN: c.next(), TID: c.tid, MID: testMID,
		F60: iso8583.F60{Type: "00", Batch: "000000", NetCode: code}, F63: "001"}, false)
	if a.RespCode != "00" {
		c.t.Fatalf("sign-in: %s", a.RespCode)
	}
	kek, _ := hex.DecodeString(testKEK)
	var keyLen int
	switch len(a.F62) {
	case 24:
		keyLen = 8
	case 40, 60:
		keyLen = 16
	default:
		c.t.Fatalf("field 62: %d bytes", len(a.F62))
	}
	c.pik = desECB(c.t, kek, a.F62[:keyLen], true)
	mk := a.F62[keyLen+4 : 2*keyLen+4]
	if keyLen == 16 && allZero(mk[8:]) {
		mk = mk[:8]
	}
	c.mak = desECB(c.t, kek, mk, true)
	n, err := parseN6Int(a.F60.Batch)
	if err != nil {
		c.t.Fatal(err)
	}
	c.batch = n
	return a
}

func parseN6Int(s string) (int, error) {
	n, ok := parseN6(s)
	if !ok {
		return 0, errors.New("not 6 digits: " + s)
	}
	return n, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// desECB is TDES-ECB (K1K2K1 for 16 bytes, DES for 8) with crypto/des only.
func desECB(t *testing.T, key, data []byte, decrypt bool) []byte {
	t.Helper()
	var k []byte
	switch len(key) {
	case 8:
		k = append(append(append(k, key...), key...), key...)
	case 16:
		k = append(append(k, key...), key[:8]...)
	default:
		k = key
	}
	b, err := des.NewTripleDESCipher(k)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, len(data))
	for i := 0; i+8 <= len(data); i += 8 {
		if decrypt {
			b.Decrypt(out[i:], data[i:i+8])
		} else {
			b.Encrypt(out[i:], data[i:i+8])
		}
	}
	return out
}

// pinBlock is field 52: format 0, encrypted under the PIK.
func (c *term) pinBlock(pin, pan string) []byte {
	c.t.Helper()
	blk, err := pinblock.Format0(pin, pan)
	if err != nil {
		c.t.Fatal(err)
	}
	return desECB(c.t, c.pik, blk[:], false)
}

func (c *term) fin(mti, proc string, amount int64) *iso8583.Msg {
	return &iso8583.Msg{MTI: mti, ProcCode: proc, Amount: amount, HasAmount: amount > 0, STAN: c.next(),
		EntryMode: "021", CondCode: "00", TID: c.tid, MID: testMID, Currency: "156",
		F60: iso8583.F60{Type: "22", Batch: c.batchStr(), NetCode: "000"}}
}

// purchase builds a purchase (PIN when pin != "").
func (c *term) purchase(pan, pin string, amount int64) *iso8583.Msg {
	m := c.fin("0200", "000000", amount)
	m.PAN, m.Expiry = pan, "3012"
	if pin != "" {
		m.PINBlock = c.pinBlock(pin, pan)
		m.SecCtrl = "2600000000000000"
	}
	return m
}

func (c *term) void(orig *iso8583.Msg) *iso8583.Msg {
	m := c.fin("0200", "200000", orig.Amount)
	m.PAN = orig.PAN
	m.F60.Type = "23"
	m.F61 = iso8583.F61{Batch: orig.F60.Batch, Trace: fmt.Sprintf("%06d", orig.STAN)}
	return m
}

func (c *term) refund(orig *iso8583.Msg, rrn string, amount int64) *iso8583.Msg {
	m := c.fin("0220", "200000", amount)
	m.PAN = orig.PAN
	m.RRN = rrn
	m.F60.Type = "25"
	m.F61 = iso8583.F61{Batch: orig.F60.Batch, Trace: fmt.Sprintf("%06d", orig.STAN), Date: "0101"}
	return m
}

// reversal of m: same trace, batch and amount, MTI 0400.
func (c *term) reversal(m *iso8583.Msg) *iso8583.Msg {
	r := *m
	r.MTI = "0400"
	r.PINBlock, r.SecCtrl, r.MAC = nil, "", nil
	r.F61 = iso8583.F61{Batch: m.F60.Batch, Trace: fmt.Sprintf("%06d", m.STAN)}
	return &r
}

func (c *term) echo() *iso8583.Msg {
	return &iso8583.Msg{MTI: "0820", STAN: c.next(), TID: c.tid, MID: testMID,
		F60: iso8583.F60{Type: "00", Batch: c.batchStr(), NetCode: NetEcho}}
}

func wantCode(t *testing.T, what string, a *iso8583.Msg, code string) {
	t.Helper()
	if a.RespCode != code {
		t.Fatalf("%s: answer %s, want %s", what, a.RespCode, code)
	}
}
