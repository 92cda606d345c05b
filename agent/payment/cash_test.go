package payment_test

import (
	"context"
	"errors"
	"testing"

	"github.com/posagent/posagent/agent/payment"
	"github.com/posagent/posagent/agent/termconfig"
	"github.com/posagent/posagent/internal/hostsim"
)

// smallPAN is the stripe-only test card with 1 000.00 on its account.
const smallPAN = "6222021000000005"

func (r *rig) withdraw(pan, exp string, amount int64) (*payment.Txn, error) {
	return r.Engine.Do(context.Background(), payment.Request{Op: payment.OpCashWithdrawal, Amount: amount,
		Card: card(pan, exp), PINBlock: r.PIN(pan), Operator: "01"})
}

func (r *rig) topUp(pan, exp string, amount int64) (*payment.Txn, error) {
	return r.Engine.Do(context.Background(), payment.Request{Op: payment.OpTopUp, Amount: amount, Card: card(pan, exp), Operator: "01"})
}

func (r *rig) balance(pan string) int64 {
	r.TB.Helper()
	b, _, ok := r.Host.Balance(pan)
	if !ok {
		r.TB.Fatalf("no account %s at the host", pan)
	}
	return b
}

func TestCashWithdrawalAndTopUp(t *testing.T) {
	r := newRig(t, nil)
	r.SignIn()
	ctx := context.Background()
	bal0 := r.balance(debitPAN)

	// Cash leaves the drawer: no PIN, no request.
	if _, err := r.Engine.Do(ctx, payment.Request{Op: payment.OpCashWithdrawal, Amount: 100, Card: card(debitPAN, "3112")}); !errors.Is(err, payment.ErrBadRequest) {
		t.Errorf("withdrawal without a PIN: %v", err)
	}
	if st := r.Engine.Status(); st.Txns != 0 {
		t.Errorf("a refused withdrawal was journaled: %+v", st)
	}

	w, err := r.withdraw(debitPAN, "3112", 3_000)
	if err != nil {
		t.Fatal(err)
	}
	if w.State != payment.StateApproved || w.Op != payment.OpCashWithdrawal || w.CVM != "pin" || w.RRN == "" || w.AuthCode == "" || !w.Debit() || w.Credit() {
		t.Errorf("withdrawal %+v", w)
	}
	if got := r.balance(debitPAN); got != bal0-3_000 {
		t.Errorf("balance after the withdrawal %d, want %d", got, bal0-3_000)
	}
	if e, ok := r.Host.Entry(tid, w.Batch, w.STAN); !ok || e.Op != hostsim.OpCashWithdrawal || e.Proc != "010000" {
		t.Errorf("host entry of the withdrawal %+v", e)
	}

	// Declined: a wrong PIN, then more than the account holds. Neither moves money.
	if err := r.Pad.ScriptPIN("111111"); err != nil {
		t.Fatal(err)
	}
	if tx, err := r.withdraw(debitPAN, "3112", 500); !errors.Is(err, payment.ErrDeclined) || tx.RespCode != "55" || tx.State != payment.StateDeclined {
		t.Errorf("wrong PIN: %v %+v", err, tx)
	}
	if tx, err := r.withdraw(smallPAN, "3003", 100_001); !errors.Is(err, payment.ErrDeclined) || tx.RespCode != "51" {
		t.Errorf("beyond the balance: %v %+v", err, tx)
	}

	tu, err := r.topUp(debitPAN, "3112", 1_000)
	if err != nil {
		t.Fatal(err)
	}
	if tu.State != payment.StateApproved || tu.CVM != "signature" || !tu.Credit() || tu.Debit() {
		t.Errorf("top-up %+v", tu)
	}
	if got := r.balance(debitPAN); got != bal0-3_000+1_000 {
		t.Errorf("balance after the top-up %d", got)
	}
	if got := r.Host.Charged(tid); got != 3_000-1_000 {
		t.Errorf("host charged %d", got)
	}

	// Neither is voided nor refunded.
	if _, err := r.Engine.Do(ctx, payment.Request{Op: payment.OpVoid, OrigID: w.ID}); !errors.Is(err, payment.ErrBadRequest) {
		t.Errorf("void of a withdrawal: %v", err)
	}
	if _, err := r.Engine.Do(ctx, payment.Request{Op: payment.OpRefund, Amount: 100, OrigID: tu.ID}); !errors.Is(err, payment.ErrBadRequest) {
		t.Errorf("refund of a top-up: %v", err)
	}
	for _, a := range []int64{0, -5} {
		if _, err := r.topUp(debitPAN, "3112", a); !errors.Is(err, payment.ErrBadRequest) {
			t.Errorf("top-up of %d: %v", a, err)
		}
	}
}

func TestWithdrawalAndTopUpNames(t *testing.T) {
	if payment.OpCashWithdrawal.Operation() != termconfig.OpCashWithdrawal || payment.OpTopUp.Operation() != termconfig.OpTopUp {
		t.Errorf("operations %q %q", payment.OpCashWithdrawal.Operation(), payment.OpTopUp.Operation())
	}
	// A terminal allowed cash withdrawals only.
	r := newRig(t, func(d *termconfig.Document) {
		d.AllowedOperations = []termconfig.Operation{termconfig.OpCashWithdrawal}
	})
	r.SignIn()
	if _, err := r.topUp(debitPAN, "3112", 100); !errors.Is(err, payment.ErrNotAllowed) {
		t.Errorf("top-up not allowed: %v", err)
	}
	if _, err := r.withdraw(debitPAN, "3112", 100); err != nil {
		t.Errorf("allowed withdrawal: %v", err)
	}
}

// A withdrawal or top-up whose answer is lost is reversed at once: the account is as before.
func TestWithdrawalAndTopUpInDoubtAreReversed(t *testing.T) {
	for _, op := range []payment.Op{payment.OpCashWithdrawal, payment.OpTopUp} {
		t.Run(string(op), func(t *testing.T) {
			r := newRig(t, nil)
			r.SignIn()
			bal0 := r.balance(debitPAN)
			if err := r.Host.AddFault(hostsim.Fault{Kind: hostsim.FaultNoAnswer, MTI: "0200", Count: 1}); err != nil {
				t.Fatal(err)
			}
			do := r.withdraw
			if op == payment.OpTopUp {
				do = r.topUp
			}
			tx, err := do(debitPAN, "3112", 2_500)
			if !errors.Is(err, payment.ErrInDoubt) || tx.State != payment.StateReversed {
				t.Fatalf("%s in doubt: %v %+v", op, err, tx)
			}
			if got := r.balance(debitPAN); got != bal0 {
				t.Errorf("balance %d, want %d", got, bal0)
			}
			if got := r.Host.Charged(tid); got != 0 {
				t.Errorf("host charged %d", got)
			}
			revs := r.Host.Reversals(tid)
			if n := revs[hostsim.Ref{Batch: tx.Batch, Trace: tx.STAN}]; n != 1 || len(revs) != 1 {
				t.Errorf("reversals %v", revs)
			}
			log := r.Host.ReversalLog(tid)
			if len(log) != 1 || !log[0].Undid {
				t.Errorf("reversal log %+v", log)
			}
			if !r.hasEvent("payment.reversed") {
				t.Error("no payment.reversed event")
			}
		})
	}
}

// Emergency cancel of the last operation works for both: the host undoes it, the account
// is as before, and the batch no longer counts it.
func TestCancelLastWithdrawalAndTopUp(t *testing.T) {
	r := newRig(t, nil)
	r.SignIn()
	ctx := context.Background()
	bal0 := r.balance(debitPAN)
	w, err := r.withdraw(debitPAN, "3112", 4_000)
	if err != nil {
		t.Fatal(err)
	}
	tu, err := r.topUp(debitPAN, "3112", 1_500)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Engine.CancelLast(ctx, w.ID); !errors.Is(err, payment.ErrNotAllowed) {
		t.Errorf("cancel of a withdrawal that is not the last: %v", err)
	}
	got, err := r.Engine.CancelLast(ctx, tu.ID)
	if err != nil || got.State != payment.StateReversed {
		t.Fatalf("cancel of the top-up: %v %+v", err, got)
	}
	if b := r.balance(debitPAN); b != bal0-4_000 {
		t.Errorf("balance after cancelling the top-up %d, want %d", b, bal0-4_000)
	}
	// The cancelled top-up is still the batch's last transaction: nothing before it can be
	// cancelled now.
	if _, err := r.Engine.CancelLast(ctx, w.ID); !errors.Is(err, payment.ErrNotAllowed) {
		t.Errorf("cancel behind a cancelled top-up: %v", err)
	}
	w2, err := r.withdraw(debitPAN, "3112", 700)
	if err != nil {
		t.Fatal(err)
	}
	got, err = r.Engine.CancelLast(ctx, w2.ID)
	if err != nil || got.State != payment.StateReversed {
		t.Fatalf("cancel of the withdrawal: %v %+v", err, got)
	}
	if b := r.balance(debitPAN); b != bal0-4_000 {
		t.Errorf("balance after cancelling the withdrawal %d, want %d", b, bal0-4_000)
	}
	if got := r.Host.Charged(tid); got != 4_000 {
		t.Errorf("host charged %d", got)
	}
	st, err := r.Engine.Settle(ctx, "01")
	if err != nil {
		t.Fatal(err)
	}
	if st.DomDebitCount != 1 || st.DomDebit != 4_000 || st.DomCreditCount != 0 || !st.DomBalanced {
		t.Errorf("settlement after the cancels %+v", st)
	}
}

// Withdrawals count as debits and top-ups as credits, domestic and foreign apart, as the
// host counts them: the settlement balances.
func TestSettlementWithWithdrawalAndTopUp(t *testing.T) {
	r := newRig(t, func(d *termconfig.Document) {
		d.BINRanges = []termconfig.BINRange{{Low: "4", High: "5", Region: termconfig.RegionForeign}}
	})
	r.SignIn()
	ctx := context.Background()
	if _, err := r.purchase(debitPAN, "3112", 1_000); err != nil {
		t.Fatal(err)
	}
	if _, err := r.withdraw(debitPAN, "3112", 2_000); err != nil {
		t.Fatal(err)
	}
	if _, err := r.topUp(creditPAN, "3006", 500); err != nil {
		t.Fatal(err)
	}
	if _, err := r.withdraw(visaPAN, "2912", 3_000); err != nil {
		t.Fatal(err)
	}
	if _, err := r.topUp(visaPAN, "2912", 250); err != nil {
		t.Fatal(err)
	}
	host := r.Host.BatchTotals(tid, 1)
	st, err := r.Engine.Settle(ctx, "01")
	if err != nil {
		t.Fatal(err)
	}
	if st.DomDebitCount != 2 || st.DomDebit != 3_000 || st.DomCreditCount != 1 || st.DomCredit != 500 ||
		st.ForDebitCount != 1 || st.ForDebit != 3_000 || st.ForCreditCount != 1 || st.ForCredit != 250 {
		t.Errorf("terminal totals %+v", st)
	}
	if host.DomDebit != st.DomDebit || host.DomCredit != st.DomCredit || host.ForDebit != st.ForDebit || host.ForCredit != st.ForCredit ||
		host.DomDebitCount != st.DomDebitCount || host.DomCreditCount != st.DomCreditCount ||
		host.ForDebitCount != st.ForDebitCount || host.ForCreditCount != st.ForCreditCount {
		t.Errorf("host totals %+v, terminal %+v", host, st)
	}
	if !st.DomBalanced || !st.ForBalanced {
		t.Errorf("not balanced: %+v", st)
	}
}

// An unbalanced batch is uploaded with its withdrawals and top-ups, each under its own
// processing code, and the host finds each one.
func TestBatchUploadCarriesWithdrawalAndTopUp(t *testing.T) {
	r := newRig(t, nil) // the Visa card is domestic for the terminal, foreign for the host
	r.SignIn()
	ctx := context.Background()
	w, err := r.withdraw(visaPAN, "2912", 1_200)
	if err != nil {
		t.Fatal(err)
	}
	tu, err := r.topUp(debitPAN, "3112", 300)
	if err != nil {
		t.Fatal(err)
	}
	st, err := r.Engine.Settle(ctx, "01")
	if err != nil {
		t.Fatal(err)
	}
	if st.DomBalanced && st.ForBalanced {
		t.Fatalf("expected unbalanced: %+v", st)
	}
	for _, tx := range []*payment.Txn{w, tu} {
		e, ok := r.Host.Entry(tid, tx.Batch, tx.STAN)
		if !ok || !e.Uploaded || e.State != hostsim.StateApproved {
			t.Errorf("%s not uploaded: %+v", tx.Op, e)
		}
	}
	if s, _ := r.Host.Terminal(tid); s.Uploads[1] != 2 {
		t.Errorf("uploads %v", s.Uploads)
	}
	if s := r.Engine.Status(); s.Batch != 2 || s.Settling {
		t.Errorf("after the settlement %+v", s)
	}
}
