package hostsim

import (
	"testing"

	"github.com/posagent/posagent/agent/iso8583"
)

// withdrawal is a cash withdrawal (0200, 01xxxx) as the engine sends it.
func (c *term) withdrawal(pan, pin string, amount int64) *iso8583.Msg {
	m := c.purchase(pan, pin, amount)
	m.ProcCode, m.F60.Type = "010000", "26"
	return m
}

// topUp is an account top-up (0200, 28xxxx) without a PIN.
func (c *term) topUp(pan string, amount int64) *iso8583.Msg {
	m := c.purchase(pan, "", amount)
	m.ProcCode, m.F60.Type = "280000", "28"
	return m
}

func TestCashWithdrawalAndTopUp(t *testing.T) {
	s := startServer(t, nil)
	c := newTerm(t, s)
	c.signIn(NetSignInDouble)
	dom0, _, _ := s.Balance(panDebit)
	for0, _, _ := s.Balance(panVisa)

	w := c.withdrawal(panDebit, testPIN, 3_000)
	wa := c.must(w, true)
	wantCode(t, "withdrawal", wa, "00")
	if wa.RRN == "" || wa.AuthCode == "" || wa.ProcCode != "010000" {
		t.Errorf("withdrawal answer %+v", wa)
	}
	if bal, _, _ := s.Balance(panDebit); bal != dom0-3_000 {
		t.Errorf("balance after the withdrawal %d, want %d", bal, dom0-3_000)
	}
	if e, _ := s.Entry(testTID, c.batch, w.STAN); e.Op != OpCashWithdrawal || e.State != StateApproved {
		t.Errorf("withdrawal entry %+v", e)
	}
	wantCode(t, "withdrawal with a wrong PIN", c.must(c.withdrawal(panDebit, "654321", 100), true), RCBadPIN)
	wantCode(t, "withdrawal beyond the balance", c.must(c.withdrawal(panSmall, testPIN, 100_001), true), RCNoFunds)
	wantCode(t, "withdrawal over the limit", c.must(c.withdrawal(panDebit, testPIN, 5_000_001), true), RCOverLimit)
	wantCode(t, "withdrawal from an expired card", c.must(c.withdrawal(panExpired, testPIN, 100), true), RCExpired)

	tu := c.topUp(panDebit, 1_000)
	wantCode(t, "top-up", c.must(tu, true), "00")
	if bal, _, _ := s.Balance(panDebit); bal != dom0-3_000+1_000 {
		t.Errorf("balance after the top-up %d", bal)
	}
	wantCode(t, "top-up of an unknown card", c.must(c.topUp("6200000000000000001", 100), true), RCNoCard)
	wantCode(t, "top-up over the limit", c.must(c.topUp(panDebit, 5_000_001), true), RCOverLimit)
	wantCode(t, "top-up with a wrong PIN", c.must(func() *iso8583.Msg {
		m := c.withdrawal(panDebit, "654321", 100)
		m.ProcCode, m.F60.Type = "280000", "28"
		return m
	}(), true), RCBadPIN)

	// Neither is voided or refunded.
	wantCode(t, "void of a withdrawal", c.must(c.void(w), true), RCInvalidTxn)
	wantCode(t, "refund of a withdrawal", c.must(c.refund(w, wa.RRN, 100), true), RCInvalidTxn)
	wantCode(t, "refund of a top-up", c.must(c.refund(tu, "", 100), true), RCInvalidTxn)

	// Foreign card: one of each.
	wantCode(t, "foreign withdrawal", c.must(c.withdrawal(panVisa, testPIN, 700), true), "00")
	wantCode(t, "foreign top-up", c.must(c.topUp(panVisa, 200), true), "00")
	if bal, _, _ := s.Balance(panVisa); bal != for0-700+200 {
		t.Errorf("foreign balance %d, want %d", bal, for0-500)
	}
	// Withdrawals are money to the merchant's side like a purchase, top-ups away from it.
	if got := s.Charged(testTID); got != 3_000-1_000+700-200 {
		t.Errorf("charged %d", got)
	}

	// Reversals of each, twice: one undo, the balance back.
	rw := c.withdrawal(panDebit, testPIN, 400)
	wantCode(t, "withdrawal to reverse", c.must(rw, true), "00")
	rt := c.topUp(panDebit, 600)
	wantCode(t, "top-up to reverse", c.must(rt, true), "00")
	for i := range 2 {
		wantCode(t, "reverse the top-up", c.must(c.reversal(rt), true), "00")
		wantCode(t, "reverse the withdrawal", c.must(c.reversal(rw), true), "00")
		if bal, _, _ := s.Balance(panDebit); bal != dom0-2_000 {
			t.Fatalf("balance after reversals round %d: %d, want %d", i+1, bal, dom0-2_000)
		}
	}
	revs := s.Reversals(testTID)
	if revs[Ref{c.batch, rw.STAN}] != 2 || revs[Ref{c.batch, rt.STAN}] != 2 {
		t.Errorf("reversals %v", revs)
	}
	if e, _ := s.Entry(testTID, c.batch, rt.STAN); e.State != StateReversed {
		t.Errorf("reversed top-up %+v", e)
	}
	late := *rt
	late.MAC = nil
	wantCode(t, "top-up after its reversal", c.must(&late, true), RCDuplicate)

	// Settlement: withdrawals are debits, top-ups credits, domestic and foreign apart.
	tot := iso8583.Totals{DomDebitCount: 1, DomDebit: 3_000, DomCreditCount: 1, DomCredit: 1_000,
		ForDebitCount: 1, ForDebit: 700, ForCreditCount: 1, ForCredit: 200}
	if host := s.BatchTotals(testTID, c.batch); host != tot {
		t.Fatalf("host totals %+v, want %+v", host, tot)
	}
	a := c.must(settleMsg(c, tot), false)
	res, err := iso8583.ParseTotals(a.AddData)
	if err != nil || res.DomResult != 1 || res.ForResult != 1 {
		t.Fatalf("settlement %q %+v %v", a.AddData, res, err)
	}
}

// A batch upload of a withdrawal or top-up the host never saw is recorded under its own
// operation.
func TestUploadOfUnknownWithdrawalAndTopUp(t *testing.T) {
	s := startServer(t, nil)
	c := newTerm(t, s)
	c.signIn(NetSignInDouble)
	for _, tc := range []struct {
		m  *iso8583.Msg
		op string
	}{{c.withdrawal(panDebit, "", 100), OpCashWithdrawal}, {c.topUp(panDebit, 200), OpTopUp}} {
		u := &iso8583.Msg{MTI: "0320", PAN: tc.m.PAN, ProcCode: tc.m.ProcCode, Amount: tc.m.Amount, HasAmount: true,
			STAN: tc.m.STAN, EntryMode: "021", TID: c.tid, MID: testMID, Currency: "156",
			F60: iso8583.F60{Type: tc.m.F60.Type, Batch: c.batchStr(), NetCode: NetSettle}}
		wantCode(t, "upload "+tc.op, c.must(u, false), "00")
		if e, ok := s.Entry(testTID, c.batch, tc.m.STAN); !ok || e.Op != tc.op || e.State != StateUploaded {
			t.Errorf("uploaded %s: %+v", tc.op, e)
		}
	}
	if got := s.Charged(testTID); got != 0 {
		t.Errorf("upload-only entries charged %d", got)
	}
}
