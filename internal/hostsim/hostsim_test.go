package hostsim

import (
	"bytes"
	"crypto/des"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/iso8583"
	"github.com/posagent/posagent/internal/testpki"
	"github.com/posagent/posagent/keystore"
)

func TestSignInKeyLayouts(t *testing.T) {
	s := startServer(t, func(c *Config) { c.Rules.BatchStart = 7 })
	kek, _ := hex.DecodeString(testKEK)
	for _, tc := range []struct {
		code  string
		size  int
		roles int
	}{{NetSignInSingle, 24, 2}, {NetSignInDouble, 40, 2}, {NetSignInTDK, 60, 3}} {
		t.Run(tc.code, func(t *testing.T) {
			c := newTerm(t, s)
			a := c.signIn(tc.code)
			if len(a.F62) != tc.size {
				t.Fatalf("field 62: %d bytes, want %d", len(a.F62), tc.size)
			}
			if a.F60.Batch != "000007" || a.F60.NetCode != tc.code {
				t.Errorf("field 60 %+v", a.F60)
			}
			if len(a.LocalTime) != 6 || len(a.LocalDate) != 4 {
				t.Errorf("host time %q date %q", a.LocalTime, a.LocalDate)
			}
			items, err := keystore.SignInKeys(a.F62)
			if err != nil {
				t.Fatal(err)
			}
			if len(items) != tc.roles {
				t.Fatalf("%d keys", len(items))
			}
			for _, it := range items {
				clear := desECB(t, kek, it.Encrypted, true)
				var k []byte
				switch len(clear) {
				case 8:
					k = bytes.Repeat(clear, 3)
				case 16:
					k = append(append(k, clear...), clear[:8]...)
				}
				b, err := des.NewTripleDESCipher(k)
				if err != nil {
					t.Fatal(err)
				}
				cv := make([]byte, 8)
				b.Encrypt(cv, cv)
				if !bytes.Equal(cv[:4], it.Check) {
					t.Errorf("%s: check value % X, key gives % X", it.Role, it.Check, cv[:4])
				}
			}
			// The keys the terminal got are the host's: an echo with a MAC passes.
			e := c.echo()
			wantCode(t, "echo with MAC", c.must(e, true), "00")
		})
	}
	st, _ := s.Terminal(testTID)
	if st.SignIns != 3 || !st.SignedIn || st.Batch != 7 {
		t.Errorf("terminal state %+v", st)
	}
}

func TestPurchaseAndDeclines(t *testing.T) {
	s := startServer(t, nil)
	c := newTerm(t, s)
	c.signIn(NetSignInDouble)
	before, _, _ := s.Balance(panDebit)

	p := c.purchase(panDebit, testPIN, 12_345)
	a := c.must(p, true)
	wantCode(t, "purchase", a, "00")
	if !regexp.MustCompile(`^\d{12}$`).MatchString(a.RRN) || len(a.AuthCode) != 6 {
		t.Errorf("RRN %q auth %q", a.RRN, a.AuthCode)
	}
	if a.F63 != "CUP" || a.Amount != 12_345 || a.STAN != p.STAN {
		t.Errorf("answer %+v", a)
	}
	if got := s.Charged(testTID); got != 12_345 {
		t.Errorf("charged %d", got)
	}
	if after, _, _ := s.Balance(panDebit); after != before-12_345 {
		t.Errorf("balance %d → %d", before, after)
	}

	wantCode(t, "wrong PIN", c.must(c.purchase(panDebit, "654321", 100), true), RCBadPIN)
	wantCode(t, "insufficient funds", c.must(c.purchase(panSmall, testPIN, 200_000), true), RCNoFunds)
	wantCode(t, "unknown card", c.must(c.purchase("6200000000000000001", "", 100), true), RCNoCard)
	wantCode(t, "expired", c.must(c.purchase(panExpired, "", 100), true), RCExpired)
	wantCode(t, "over the limit", c.must(c.purchase(panDebit, "", 5_000_001), true), RCOverLimit)
	dup := c.purchase(panDebit, "", 100)
	dup.STAN = p.STAN
	wantCode(t, "duplicate trace", c.must(dup, true), RCDuplicate)
	noAmount := c.purchase(panDebit, "", 0)
	wantCode(t, "no amount", c.must(noAmount, true), RCFormat)

	// A wrong MAC, and no MAC at all: A0, answered without a MAC.
	good := c.mak
	c.mak = []byte{1, 2, 3, 4, 5, 6, 7, 8}
	bad, err := c.exchange(c.purchase(panDebit, "", 100), true)
	c.mak = good
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, "bad MAC", bad, RCMACError)
	if bad.MAC != nil {
		t.Error("A0 answer carries a MAC")
	}
	wantCode(t, "no MAC", c.must(c.purchase(panDebit, "", 100), false), RCMACError)

	// Balance inquiry: field 54.
	bq := c.fin("0200", "310000", 0)
	bq.PAN = panDebit
	bq.PINBlock = c.pinBlock(testPIN, panDebit)
	ba := c.must(bq, true)
	wantCode(t, "balance", ba, "00")
	want := fmt.Sprintf("1002156C%012d", before-12_345)
	if ba.Balance != want {
		t.Errorf("field 54 %q, want %q", ba.Balance, want)
	}
	// A declined rule by PAN.
	if got := s.Charged(testTID); got != 12_345 {
		t.Errorf("charged after declines %d", got)
	}
}

func TestDeclineRuleAndUnknownTerminal(t *testing.T) {
	s := startServer(t, func(c *Config) { c.Rules.Declines = map[string]string{panVisa: "05"} })
	c := newTerm(t, s)
	c.signIn(NetSignInSingle)
	wantCode(t, "decline rule", c.must(c.purchase(panVisa, "", 100), true), "05")
	x := newTerm(t, s)
	x.tid = "99999999"
	a := x.must(&iso8583.Msg{MTI: "0800", STAN: 1, TID: "99999999", MID: testMID,
		F60: iso8583.F60{Type: "00", Batch: "000000", NetCode: "003"}}, false)
	wantCode(t, "unknown terminal", a, RCNoTerminal)
}

func TestVoidAndRefund(t *testing.T) {
	s := startServer(t, nil)
	c := newTerm(t, s)
	c.signIn(NetSignInDouble)

	p := c.purchase(panDebit, testPIN, 5_000)
	wantCode(t, "purchase", c.must(p, true), "00")
	wantCode(t, "void", c.must(c.void(p), true), "00")
	if got := s.Charged(testTID); got != 0 {
		t.Errorf("charged after void %d", got)
	}
	wantCode(t, "second void", c.must(c.void(p), true), RCInvalidTxn)
	missing := *p
	missing.STAN = 4242
	wantCode(t, "void of nothing", c.must(c.void(&missing), true), RCNotFound)

	p2 := c.purchase(panDebit, testPIN, 1_000)
	a2 := c.must(p2, true)
	wantCode(t, "purchase 2", a2, "00")
	wantCode(t, "refund 600", c.must(c.refund(p2, a2.RRN, 600), true), "00")
	wantCode(t, "refund 500 (over)", c.must(c.refund(p2, a2.RRN, 500), true), RCInvalidAmount)
	wantCode(t, "refund 400", c.must(c.refund(p2, a2.RRN, 400), true), "00")
	wantCode(t, "refund 1 more", c.must(c.refund(p2, a2.RRN, 1), true), RCInvalidAmount)
	wantCode(t, "void of a refunded purchase", c.must(c.void(p2), true), RCInvalidTxn)
	if got := s.Charged(testTID); got != 0 {
		t.Errorf("charged after refunds %d", got)
	}
	e, _ := s.Entry(testTID, c.batch, p2.STAN)
	if e.Refunded != 1_000 || e.State != StateApproved {
		t.Errorf("original %+v", e)
	}
	// The batch: purchases 5000+1000 debit; void 5000 + refunds 1000 credit.
	tot := s.BatchTotals(testTID, c.batch)
	if tot.DomDebitCount != 2 || tot.DomDebit != 6_000 || tot.DomCreditCount != 3 || tot.DomCredit != 6_000 {
		t.Errorf("totals %+v", tot)
	}
}

func TestPreAuthCompletion(t *testing.T) {
	s := startServer(t, nil)
	c := newTerm(t, s)
	c.signIn(NetSignInDouble)
	bal0, _, _ := s.Balance(panDebit)

	pa := c.fin("0100", "030000", 10_000)
	pa.PAN, pa.CondCode, pa.F60.Type = panDebit, "06", "10"
	pa.PINBlock = c.pinBlock(testPIN, panDebit)
	paA := c.must(pa, true)
	wantCode(t, "pre-auth", paA, "00")
	if _, held, _ := s.Balance(panDebit); held != 10_000 {
		t.Errorf("held %d", held)
	}
	comp := c.fin("0200", "000000", 11_000)
	comp.PAN, comp.CondCode, comp.F60.Type, comp.AuthCode = panDebit, "06", "20", paA.AuthCode
	comp.F61 = iso8583.F61{Batch: pa.F60.Batch, Trace: fmt.Sprintf("%06d", pa.STAN)}
	wantCode(t, "completion", c.must(comp, true), "00")
	if bal, held, _ := s.Balance(panDebit); bal != bal0-11_000 || held != 0 {
		t.Errorf("balance %d held %d", bal, held)
	}
	cv := c.fin("0200", "200000", 11_000)
	cv.PAN, cv.CondCode, cv.F60.Type = panDebit, "06", "21"
	cv.F61 = iso8583.F61{Batch: comp.F60.Batch, Trace: fmt.Sprintf("%06d", comp.STAN)}
	wantCode(t, "completion void", c.must(cv, true), "00")
	if got := s.Charged(testTID); got != 0 {
		t.Errorf("charged %d", got)
	}

	// A second pre-auth, voided by its auth code only.
	pa2 := c.fin("0100", "030000", 3_000)
	pa2.PAN, pa2.CondCode = panDebit, "06"
	a2 := c.must(pa2, true)
	wantCode(t, "pre-auth 2", a2, "00")
	pv := c.fin("0100", "200000", 3_000)
	pv.PAN, pv.CondCode, pv.AuthCode = panDebit, "06", a2.AuthCode
	wantCode(t, "pre-auth void", c.must(pv, true), "00")
	if _, held, _ := s.Balance(panDebit); held != 0 {
		t.Errorf("held after void %d", held)
	}
	over := c.fin("0200", "000000", 100)
	over.PAN, over.CondCode, over.AuthCode = panDebit, "06", "999999"
	wantCode(t, "completion of nothing", c.must(over, true), RCNotFound)
}

func TestReversalIdempotent(t *testing.T) {
	s := startServer(t, nil)
	c := newTerm(t, s)
	c.signIn(NetSignInDouble)
	bal0, _, _ := s.Balance(panDebit)

	// The host approves but the answer is lost: the terminal reverses, twice.
	if err := s.AddFault(Fault{Kind: FaultNoAnswer, MTI: "0200", Count: 1}); err != nil {
		t.Fatal(err)
	}
	p := c.purchase(panDebit, testPIN, 7_000)
	if _, err := c.withTimeout(300*time.Millisecond).exchange(p, true); !errors.Is(err, iso8583.ErrNoAnswer) {
		t.Fatalf("no-answer fault: %v", err)
	}
	c.withTimeout(3 * time.Second)
	if got := s.Charged(testTID); got != 7_000 {
		t.Fatalf("charged before the reversal %d", got)
	}
	for i := range 2 {
		wantCode(t, fmt.Sprintf("reversal %d", i+1), c.must(c.reversal(p), true), "00")
		if got := s.Charged(testTID); got != 0 {
			t.Fatalf("charged after reversal %d: %d", i+1, got)
		}
		if bal, _, _ := s.Balance(panDebit); bal != bal0 {
			t.Fatalf("balance after reversal %d: %d, want %d", i+1, bal, bal0)
		}
	}
	if n := s.Reversals(testTID)[Ref{c.batch, p.STAN}]; n != 2 {
		t.Errorf("reversals counted %d", n)
	}
	// The original again (a duplicate): refused, nothing charged.
	dup := *p
	dup.MAC = nil
	wantCode(t, "original after its reversal", c.must(&dup, true), RCDuplicate)

	// Reversal of an original the host never saw, then the late original.
	ghost := c.purchase(panDebit, "", 9_000)
	wantCode(t, "reversal of an unseen original", c.must(c.reversal(ghost), true), "00")
	wantCode(t, "late original", c.must(ghost, true), RCDuplicate)
	log := s.ReversalLog(testTID)
	if len(log) != 2 || log[1].Found || log[1].Late != 1 {
		t.Errorf("reversal log %+v", log)
	}

	// A slow host: the original arrives after the reversal the timeout caused.
	if err := s.AddFault(Fault{Kind: FaultDelay, MTI: "0200", Count: 1, Delay: Duration(400 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	slow := c.purchase(panDebit, "", 3_000)
	slowRev := c.reversal(slow)
	c.withTimeout(2 * time.Second)
	done := make(chan error, 1)
	go func() {
		a, err := c.exchange(slow, true)
		if err == nil && a.RespCode != RCDuplicate {
			err = fmt.Errorf("late original answered %s", a.RespCode)
		}
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	c2 := newTerm(t, s)
	c2.mak, c2.pik, c2.batch, c2.stan = c.mak, c.pik, c.batch, 1000
	wantCode(t, "reversal while the host is slow", c2.must(slowRev, true), "00")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := s.Charged(testTID); got != 0 {
		t.Errorf("charged at the end %d", got)
	}
	if bal, _, _ := s.Balance(panDebit); bal != bal0 {
		t.Errorf("balance at the end %d, want %d", bal, bal0)
	}
}

func TestReversalOfVoidAndRefund(t *testing.T) {
	s := startServer(t, nil)
	c := newTerm(t, s)
	c.signIn(NetSignInDouble)
	p := c.purchase(panDebit, "", 2_000)
	a := c.must(p, true)
	v := c.void(p)
	wantCode(t, "void", c.must(v, true), "00")
	wantCode(t, "reverse the void", c.must(c.reversal(v), true), "00")
	if got := s.Charged(testTID); got != 2_000 {
		t.Errorf("charged after the void's reversal %d", got)
	}
	r := c.refund(p, a.RRN, 500)
	wantCode(t, "refund", c.must(r, true), "00")
	wantCode(t, "reverse the refund", c.must(c.reversal(r), true), "00")
	wantCode(t, "reverse the refund again", c.must(c.reversal(r), true), "00")
	if got := s.Charged(testTID); got != 2_000 {
		t.Errorf("charged after the refund's reversal %d", got)
	}
	if e, _ := s.Entry(testTID, c.batch, p.STAN); e.Refunded != 0 || e.State != StateApproved {
		t.Errorf("purchase %+v", e)
	}
}

func settleMsg(c *term, tot iso8583.Totals) *iso8583.Msg {
	return &iso8583.Msg{MTI: "0500", STAN: c.next(), TID: c.tid, MID: testMID, AddData: tot.Encode(),
		Currency: "156", F60: iso8583.F60{Type: "00", Batch: c.batchStr(), NetCode: NetSettle}, F63: "001"}
}

func TestSettlementAndBatchUpload(t *testing.T) {
	s := startServer(t, nil)
	c := newTerm(t, s)
	c.signIn(NetSignInDouble)

	var sent []*iso8583.Msg
	for _, tx := range []struct {
		pan    string
		amount int64
	}{{panDebit, 1_000}, {panDebit, 2_000}, {panVisa, 3_000}} {
		p := c.purchase(tx.pan, "", tx.amount)
		a := c.must(p, true)
		wantCode(t, "purchase", a, "00")
		sent = append(sent, p)
	}
	wantCode(t, "void", c.must(c.void(sent[1]), true), "00")

	// Batch 1 balanced: domestic 2 debits 3000, 1 credit 2000; foreign 1 debit 3000.
	tot := iso8583.Totals{DomDebitCount: 2, DomDebit: 3_000, DomCreditCount: 1, DomCredit: 2_000, ForDebitCount: 1, ForDebit: 3_000}
	if host := s.BatchTotals(testTID, 1); host != tot {
		t.Fatalf("host totals %+v", host)
	}
	a := c.must(settleMsg(c, tot), false)
	wantCode(t, "settlement", a, "00")
	res, err := iso8583.ParseTotals(a.AddData)
	if err != nil || res.DomResult != 1 || res.ForResult != 1 {
		t.Fatalf("settlement answer %q %+v %v", a.AddData, res, err)
	}
	st, _ := s.Terminal(testTID)
	if st.Batch != 2 || len(st.Closed) != 1 {
		t.Fatalf("after a balanced settlement %+v", st)
	}
	// The 0510 was lost: the terminal settles again and gets the same answer.
	again := c.must(settleMsg(c, tot), false)
	if again.AddData != a.AddData {
		t.Errorf("repeated settlement %q, first %q", again.AddData, a.AddData)
	}

	// Batch 2: the terminal's totals disagree (domestic), foreign agrees.
	c.signIn(NetSignInDouble)
	if c.batch != 2 {
		t.Fatalf("batch after sign-in %d", c.batch)
	}
	p := c.purchase(panDebit, "", 4_000)
	pa := c.must(p, true)
	wantCode(t, "purchase batch 2", pa, "00")
	wrong := iso8583.Totals{DomDebitCount: 2, DomDebit: 8_000}
	a = c.must(settleMsg(c, wrong), false)
	res, err = iso8583.ParseTotals(a.AddData)
	if err != nil || res.DomResult != 2 || res.ForResult != 1 {
		t.Fatalf("unbalanced answer %q %+v %v", a.AddData, res, err)
	}
	if st, _ := s.Terminal(testTID); st.Batch != 2 {
		t.Fatalf("batch closed on an unbalanced settlement: %+v", st)
	}
	// Batch upload: the known purchase, one the host never saw, then the end.
	up := func(m *iso8583.Msg, rrn string) *iso8583.Msg {
		u := &iso8583.Msg{MTI: "0320", PAN: m.PAN, ProcCode: m.ProcCode, Amount: m.Amount, HasAmount: true,
			STAN: m.STAN, EntryMode: "021", TID: c.tid, MID: testMID, RRN: rrn, Currency: "156",
			F60: iso8583.F60{Type: "00", Batch: c.batchStr(), NetCode: NetSettle}}
		return u
	}
	wantCode(t, "upload 1", c.must(up(p, pa.RRN), false), "00")
	ghost := c.purchase(panDebit, "", 4_000)
	wantCode(t, "upload 2", c.must(up(ghost, ""), false), "00")
	end := &iso8583.Msg{MTI: "0320", STAN: c.next(), TID: c.tid, MID: testMID, AddData: "0002",
		F60: iso8583.F60{Type: "00", Batch: c.batchStr(), NetCode: NetUploadEnd}}
	wantCode(t, "end of upload", c.must(end, false), "00")
	st, _ = s.Terminal(testTID)
	if st.Batch != 3 || len(st.Closed) != 2 || st.Uploads[2] != 2 {
		t.Fatalf("after the upload %+v", st)
	}
	if e, _ := s.Entry(testTID, 2, p.STAN); !e.Uploaded {
		t.Error("uploaded purchase not marked")
	}
	if e, _ := s.Entry(testTID, 2, ghost.STAN); e.State != StateUploaded {
		t.Errorf("unknown upload recorded as %+v", e)
	}
	if got := s.Charged(testTID); got != 1_000+3_000+4_000 {
		t.Errorf("charged %d", got)
	}
}

func TestManagementMessages(t *testing.T) {
	s := startServer(t, func(c *Config) {
		c.Terminals[0].MerchantName = "TEA HOUSE"
		c.Terminals[0].Params = map[string]string{"12": "45"}
	})
	c := newTerm(t, s)
	wantCode(t, "echo before sign-in", c.must(c.echo(), false), "00")
	wantCode(t, "purchase before sign-in", c.must(c.purchase(panDebit, "", 100), false), RCMACError)
	c.signIn("") // the configured layout (double)
	if len(c.pik) != 16 || len(c.mak) != 8 {
		t.Errorf("PIK %d MAK %d bytes", len(c.pik), len(c.mak))
	}
	pd := c.must(&iso8583.Msg{MTI: "0800", STAN: c.next(), TID: c.tid, MID: testMID,
		F60: iso8583.F60{Type: "00", Batch: c.batchStr(), NetCode: NetParams}}, false)
	wantCode(t, "parameter download", pd, "00")
	items, err := ParseTLV(pd.F62)
	if err != nil || items[ParamMerchantName] != "TEA HOUSE" || items[ParamTimeout] != "45" || items[ParamTPDU] == "" {
		t.Errorf("parameters %q %v", pd.F62, err)
	}
	status := []byte("010011" + "020011" + "030010" + "040010")
	sa := c.must(&iso8583.Msg{MTI: "0820", STAN: c.next(), TID: c.tid, MID: testMID, F62: status,
		F60: iso8583.F60{Type: "00", Batch: c.batchStr(), NetCode: NetStatus}}, false)
	wantCode(t, "status upload", sa, "00")
	st, _ := s.Terminal(testTID)
	if len(st.Status) != 1 || st.Status[0].Items["01"] != "1" || st.Status[0].Items["04"] != "0" {
		t.Errorf("status uploads %+v", st.Status)
	}
	odd := c.must(&iso8583.Msg{MTI: "0820", STAN: c.next(), TID: c.tid, MID: testMID,
		F60: iso8583.F60{Type: "00", Batch: c.batchStr(), NetCode: "999"}}, false)
	wantCode(t, "unknown 60.3", odd, RCUnsupported)
	so := c.must(&iso8583.Msg{MTI: "0820", STAN: c.next(), TID: c.tid, MID: testMID,
		F60: iso8583.F60{Type: "00", Batch: c.batchStr(), NetCode: NetSignOff}}, false)
	wantCode(t, "sign-off", so, "00")
	wantCode(t, "purchase after sign-off", c.must(c.purchase(panDebit, "", 100), true), RCMACError)
	if st, _ := s.Terminal(testTID); st.SignedIn || st.Echoes != 1 || st.Params != 1 {
		t.Errorf("terminal %+v", st)
	}
}

func TestFaultSwitches(t *testing.T) {
	s := startServer(t, nil)
	c := newTerm(t, s)
	c.signIn(NetSignInDouble)
	c.withTimeout(400 * time.Millisecond)

	run := func(f Fault, m *iso8583.Msg) (*iso8583.Msg, error) {
		t.Helper()
		s.ClearFaults()
		if err := s.AddFault(f); err != nil {
			t.Fatal(err)
		}
		return c.exchange(m, true)
	}
	// No answer.
	if _, err := run(Fault{Kind: FaultNoAnswer}, c.echo()); !errors.Is(err, iso8583.ErrNoAnswer) {
		t.Errorf("noanswer: %v", err)
	}
	// Late answer: arrives after the delay (within the timeout).
	start := time.Now()
	if a, err := run(Fault{Kind: FaultDelay, Delay: Duration(200 * time.Millisecond)}, c.echo()); err != nil || a.RespCode != "00" || time.Since(start) < 200*time.Millisecond {
		t.Errorf("delay: %v after %v", err, time.Since(start))
	}
	// Bad MAC.
	if _, err := run(Fault{Kind: FaultBadMAC}, c.purchase(panDebit, "", 100)); !errors.Is(err, iso8583.ErrBadMAC) {
		t.Errorf("badmac: %v", err)
	}
	// Half a frame, then the connection closed.
	if _, err := run(Fault{Kind: FaultHalfFrame}, c.echo()); !errors.Is(err, iso8583.ErrLink) {
		t.Errorf("halfframe: %v", err)
	}
	// Garbage instead of a frame.
	if _, err := run(Fault{Kind: FaultGarbage}, c.echo()); !errors.Is(err, iso8583.ErrMalformed) {
		t.Errorf("garbage: %v", err)
	}
	// Dropped: not processed at all.
	n := len(s.Entries(testTID))
	if _, err := run(Fault{Kind: FaultDrop}, c.purchase(panDebit, "", 100)); !errors.Is(err, iso8583.ErrNoAnswer) {
		t.Errorf("drop: %v", err)
	}
	if len(s.Entries(testTID)) != n {
		t.Error("a dropped request reached the ledger")
	}

	// For the next 2 messages only.
	s.ClearFaults()
	if err := s.AddFault(Fault{Kind: FaultNoAnswer, Count: 2}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		_, err := c.exchange(c.echo(), false)
		if (i < 2) != errors.Is(err, iso8583.ErrNoAnswer) {
			t.Errorf("count fault, message %d: %v", i+1, err)
		}
	}
	if len(s.Faults()) != 0 {
		t.Errorf("faults left %+v", s.Faults())
	}
	// For one MTI only.
	if err := s.AddFault(Fault{Kind: FaultNoAnswer, MTI: "0200"}); err != nil {
		t.Fatal(err)
	}
	if a, err := c.exchange(c.echo(), false); err != nil || a.RespCode != "00" {
		t.Errorf("echo under a 0200 fault: %v", err)
	}
	if _, err := c.exchange(c.purchase(panDebit, "", 100), true); !errors.Is(err, iso8583.ErrNoAnswer) {
		t.Errorf("0200 under a 0200 fault: %v", err)
	}
	s.ClearFaults()
	if a, err := c.exchange(c.purchase(panDebit, "", 100), true); err != nil || a.RespCode != "00" {
		t.Errorf("after clearing: %v", err)
	}
	for _, bad := range []Fault{{Kind: "boom"}, {Kind: FaultDelay}, {Kind: FaultDrop, MTI: "02"}, {Kind: FaultDrop, Count: -1}} {
		if s.AddFault(bad) == nil {
			t.Errorf("fault %+v accepted", bad)
		}
	}
}

func TestMalformedFrameDoesNotStopTheServer(t *testing.T) {
	s := startServer(t, nil)
	for _, junk := range [][]byte{
		{0x00, 0x05, 1, 2, 3, 4, 5}, // too short for a header
		{0xFF, 0xFF, 0x60},          // announced too long
		append([]byte{0x00, 0x0F}, bytes.Repeat([]byte{0x99}, 15)...), // a bad MTI and bitmap
		{0x00, 0x00}, // empty frame
	} {
		conn, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write(junk); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.ReadAll(conn); errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("junk % X: the server did not close the connection: %v", junk, err)
		}
		conn.Close()
	}
	c := newTerm(t, s)
	wantCode(t, "echo after junk", c.must(c.echo(), false), "00")
	if s.Seen()["malformed"] < 3 {
		t.Errorf("seen %v", s.Seen())
	}
}

func TestHandleFrameRefusesUnknownMTI(t *testing.T) {
	s, err := New(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	h, _ := iso8583.NewHeader("6000030000", false)
	frame, err := iso8583.Pack(h, &iso8583.Msg{MTI: "0210", STAN: 1, TID: testTID}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.HandleFrame(frame); !errors.Is(err, errUnknownMTI) {
		t.Errorf("0210 in: %v", err)
	}
}

func TestSnapshotSurvivesRestart(t *testing.T) {
	path := t.TempDir() + "/state.json"
	s := startServer(t, func(c *Config) { c.Snapshot = path })
	c := newTerm(t, s)
	c.signIn(NetSignInDouble)
	p := c.purchase(panDebit, testPIN, 1_500)
	wantCode(t, "purchase", c.must(p, true), "00")
	s.Close()

	s2 := startServer(t, func(c *Config) { c.Snapshot = path })
	if got := s2.Charged(testTID); got != 1_500 {
		t.Fatalf("charged after restart %d", got)
	}
	c.s = s2
	c.withTimeout(3 * time.Second)
	// Same working keys: a reversal MACed with them is accepted and undoes the purchase.
	wantCode(t, "reversal after restart", c.must(c.reversal(p), true), "00")
	if got := s2.Charged(testTID); got != 0 {
		t.Errorf("charged after reversal %d", got)
	}
}

func TestTLS(t *testing.T) {
	ca := testpki.NewCA(t)
	cert, key := testpki.WriteFiles(t, "host", ca.Server(t, "hostsim"))
	s := startServer(t, func(c *Config) { c.TLSCert, c.TLSKey = cert, key })
	c := newTerm(t, s)
	c.cli = iso8583.NewClient(iso8583.ClientOptions{Addrs: []string{s.Addr()}, Timeout: 3 * time.Second,
		TLS: &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}})
	c.signIn(NetSignInDouble)
	wantCode(t, "purchase over TLS", c.must(c.purchase(panDebit, testPIN, 100), true), "00")

	bad, err := New(func() Config { c := testConfig(); c.TLSCert, c.TLSKey = "/nonexistent", "/nonexistent"; return c }())
	if err != nil {
		t.Fatal(err)
	}
	if err := bad.Start(); err == nil {
		bad.Close()
		t.Fatal("TLS with missing files started")
	}
}

func TestConfigValidation(t *testing.T) {
	for name, edit := range map[string]func(*Config){
		"kek":     func(c *Config) { c.Terminals[0].KEK = "1234" },
		"layout":  func(c *Config) { c.Terminals[0].KeyLayout = "triple" },
		"dup tid": func(c *Config) { c.Terminals = append(c.Terminals, c.Terminals[0]) },
		"pan":     func(c *Config) { c.Accounts[0].PAN = "12" },
		"expiry":  func(c *Config) { c.Accounts[0].Expiry = "2" },
		"decline": func(c *Config) { c.Rules.Declines = map[string]string{panDebit: "5"} },
	} {
		cfg := testConfig()
		edit(&cfg)
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
