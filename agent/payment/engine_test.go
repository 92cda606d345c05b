package payment_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/payment"
	"github.com/posagent/posagent/agent/termconfig"
	"github.com/posagent/posagent/internal/hostsim"
	"github.com/posagent/posagent/internal/paytest"
)

// The engine is tested against the real host simulator over TCP, with its keys in the PIN
// pad emulator's secure element (over a pty) and PIN blocks made by the pad: the whole path
// a terminal takes, without the card reader (agent/checkout adds it).

const (
	tid       = paytest.TID
	debitPAN  = paytest.DebitPAN
	creditPAN = paytest.CreditPAN
	visaPAN   = paytest.VisaPAN
)

var card = paytest.Card

// rig is the paytest rig with the engine's events recorded.
type rig struct {
	*paytest.Rig

	mu     sync.Mutex
	events []string
}

// newRig builds the rig with a response timeout of one second before change.
func newRig(t *testing.T, change func(*termconfig.Document), hostOpts ...func(*hostsim.Config)) *rig {
	t.Helper()
	r := &rig{}
	opts := []paytest.Option{
		paytest.WithConfig(func(d *termconfig.Document) { d.HostParameters.ResponseTimeoutSec = 1 }),
		paytest.WithConfig(change),
		paytest.WithEngine(func(_ *paytest.Rig, o *payment.Options) {
			o.Event = func(_ context.Context, kind string, _ map[string]any) {
				r.mu.Lock()
				r.events = append(r.events, kind)
				r.mu.Unlock()
			}
		}),
	}
	for _, o := range hostOpts {
		opts = append(opts, paytest.WithHost(o))
	}
	r.Rig = paytest.New(t, opts...)
	return r
}

func (r *rig) purchase(pan, exp string, amount int64) (*payment.Txn, error) {
	return r.Engine.Do(context.Background(), payment.Request{Op: payment.OpPurchase, Amount: amount, Card: card(pan, exp), PINBlock: r.PIN(pan), Operator: "01"})
}

func (r *rig) hasEvent(kind string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if e == kind {
			return true
		}
	}
	return false
}

func TestSignInPurchaseWithPIN(t *testing.T) {
	r := newRig(t, nil)
	if _, err := r.Engine.Do(context.Background(), payment.Request{Op: payment.OpPurchase, Amount: 100, Card: card(debitPAN, "3112")}); !errors.Is(err, payment.ErrNotSignedIn) {
		t.Fatalf("purchase before sign-in: %v", err)
	}
	r.SignIn()
	if st := r.Engine.Status(); st.State != payment.Normal || st.Batch != 1 {
		t.Fatalf("status after sign-in %+v", st)
	}
	tx, err := r.purchase(debitPAN, "3112", 15000)
	if err != nil {
		t.Fatal(err)
	}
	if tx.State != payment.StateApproved || tx.RRN == "" || tx.AuthCode == "" || tx.PAN != "622848*********2344" || tx.CVM != "pin" {
		t.Errorf("purchase %+v", tx)
	}
	if got := r.Host.Charged(tid); got != 15000 {
		t.Errorf("host charged %d", got)
	}
	// A wrong PIN is declined with 55 and charges nothing.
	if err := r.Pad.ScriptPIN("111111"); err != nil {
		t.Fatal(err)
	}
	tx, err = r.purchase(debitPAN, "3112", 500)
	if !errors.Is(err, payment.ErrDeclined) || tx.RespCode != "55" {
		t.Errorf("wrong PIN: %v %+v", err, tx)
	}
	// Insufficient funds.
	if _, err := r.purchase("6222021000000005", "3003", 1_000_000); !errors.Is(err, payment.ErrDeclined) {
		t.Errorf("insufficient funds: %v", err)
	}
	if got := r.Host.Charged(tid); got != 15000 {
		t.Errorf("host charged %d after declines", got)
	}
	if err := r.Engine.Echo(context.Background()); err != nil {
		t.Errorf("echo: %v", err)
	}
	if err := r.Engine.SignOff(context.Background()); err != nil {
		t.Errorf("sign-off: %v", err)
	}
	if st := r.Engine.Status(); st.State != payment.SignedOut {
		t.Errorf("after sign-off: %+v", st)
	}
}

func TestVoidRefundPreAuthCompletionBalance(t *testing.T) {
	r := newRig(t, nil)
	r.SignIn()
	ctx := context.Background()
	p1, err := r.purchase(debitPAN, "3112", 10000)
	if err != nil {
		t.Fatal(err)
	}
	// Void without the card: the PAN comes from the sealed copy.
	v, err := r.Engine.Do(ctx, payment.Request{Op: payment.OpVoid, OrigID: p1.ID, Operator: "01"})
	if err != nil {
		t.Fatal(err)
	}
	if orig, _ := r.Engine.Txn(p1.ID); orig.State != payment.StateVoided || v.Amount != 10000 {
		t.Errorf("void: original %s, void amount %d", orig.State, v.Amount)
	}
	if _, err := r.Engine.Do(ctx, payment.Request{Op: payment.OpVoid, OrigID: p1.ID}); !errors.Is(err, payment.ErrBadRequest) {
		t.Errorf("second void: %v", err)
	}
	// Partial refunds up to the original, not beyond.
	p2, err := r.purchase(creditPAN, "3006", 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, amt := range []int64{600, 400} {
		if _, err := r.Engine.Do(ctx, payment.Request{Op: payment.OpRefund, Amount: amt, OrigID: p2.ID, Card: card(creditPAN, "3006")}); err != nil {
			t.Fatalf("refund %d: %v", amt, err)
		}
	}
	if _, err := r.Engine.Do(ctx, payment.Request{Op: payment.OpRefund, Amount: 1, OrigID: p2.ID, Card: card(creditPAN, "3006")}); !errors.Is(err, payment.ErrNotAllowed) {
		t.Errorf("refund beyond the original: %v", err)
	}
	// Pre-authorisation, then its completion for less.
	pa, err := r.Engine.Do(ctx, payment.Request{Op: payment.OpPreAuth, Amount: 5000, Card: card(visaPAN, "2912"), PINBlock: r.PIN(visaPAN)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Engine.Do(ctx, payment.Request{Op: payment.OpCompletion, Amount: 6000, OrigID: pa.ID}); !errors.Is(err, payment.ErrNotAllowed) {
		t.Errorf("completion above the pre-authorisation: %v", err)
	}
	co, err := r.Engine.Do(ctx, payment.Request{Op: payment.OpCompletion, Amount: 4500, OrigID: pa.ID})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Engine.Do(ctx, payment.Request{Op: payment.OpCompletionVoid, OrigID: co.ID}); err != nil {
		t.Errorf("completion void: %v", err)
	}
	pa2, err := r.Engine.Do(ctx, payment.Request{Op: payment.OpPreAuth, Amount: 700, Card: card(debitPAN, "3112"), PINBlock: r.PIN(debitPAN)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Engine.Do(ctx, payment.Request{Op: payment.OpPreAuthVoid, OrigID: pa2.ID}); err != nil {
		t.Errorf("pre-auth void: %v", err)
	}
	bal, err := r.Engine.Do(ctx, payment.Request{Op: payment.OpBalance, Card: card(debitPAN, "3112"), PINBlock: r.PIN(debitPAN)})
	if err != nil || bal.Balance == "" {
		t.Errorf("balance: %v %+v", err, bal)
	}
	// Money: the purchase voided, the credit purchase refunded in full, the completion voided.
	if got := r.Host.Charged(tid); got != 0 {
		t.Errorf("host charged %d, want 0", got)
	}
}

// Every fault of the host's answer puts the purchase in doubt; the reversal goes out at once
// and the host ends up with nothing charged, one reversal each.
func TestHostFaultsAreReversed(t *testing.T) {
	for _, kind := range []hostsim.FaultKind{hostsim.FaultNoAnswer, hostsim.FaultBadMAC, hostsim.FaultHalfFrame,
		hostsim.FaultGarbage, hostsim.FaultDrop, hostsim.FaultDelay} {
		t.Run(string(kind), func(t *testing.T) {
			r := newRig(t, nil)
			r.SignIn()
			f := hostsim.Fault{Kind: kind, MTI: "0200", Count: 1}
			if kind == hostsim.FaultDelay {
				f.Delay = hostsim.Duration(1500 * time.Millisecond) // past the 1 s answer timeout
			}
			if err := r.Host.AddFault(f); err != nil {
				t.Fatal(err)
			}
			tx, err := r.purchase(debitPAN, "3112", 2500)
			if !errors.Is(err, payment.ErrInDoubt) {
				t.Fatalf("purchase: %v", err)
			}
			if tx.State != payment.StateReversed {
				t.Fatalf("state %s, want reversed", tx.State)
			}
			time.Sleep(2 * time.Second) // a late original lands after its reversal
			if got := r.Host.Charged(tid); got != 0 {
				t.Errorf("host charged %d", got)
			}
			for ref, n := range r.Host.Reversals(tid) {
				if n != 1 {
					t.Errorf("original %+v reversed %d times", ref, n)
				}
			}
			// The terminal goes on.
			if _, err := r.purchase(debitPAN, "3112", 100); err != nil {
				t.Errorf("next purchase: %v", err)
			}
		})
	}
}

// A reversal the host never takes is retried before each new request, then held for a
// person with an event; new transactions go on after that.
func TestReversalHeldAfterRetries(t *testing.T) {
	r := newRig(t, func(d *termconfig.Document) { d.HostParameters.ResendCount = 2 })
	r.SignIn()
	_ = r.Host.AddFault(hostsim.Fault{Kind: hostsim.FaultNoAnswer, MTI: "0200", Count: 1})
	_ = r.Host.AddFault(hostsim.Fault{Kind: hostsim.FaultNoAnswer, MTI: "0400"})
	tx, err := r.purchase(debitPAN, "3112", 2500)
	if !errors.Is(err, payment.ErrInDoubt) || tx.State != payment.StateReversing {
		t.Fatalf("purchase: %v %+v", err, tx)
	}
	if st := r.Engine.Status(); st.Reversals != 1 {
		t.Errorf("owed %+v", st)
	}
	// The next purchase must send the reversal first: its second try, the last.
	if _, err := r.purchase(debitPAN, "3112", 100); err == nil {
		t.Log("the reversal was held and the purchase went through")
	}
	got, _ := r.Engine.Txn(tx.ID)
	if got.State != payment.StateHeld || !r.hasEvent("payment.reversal.held") {
		t.Fatalf("after the retries: %s, events %v", got.State, r.events)
	}
	r.Host.ClearFaults()
	if _, err := r.purchase(debitPAN, "3112", 100); err != nil {
		t.Errorf("purchase after the hold: %v", err)
	}
	if st := r.Engine.Status(); st.Held != 1 || st.Reversals != 0 {
		t.Errorf("status %+v", st)
	}
	// The settlement closes the batch; the held transaction stays for the person handling it.
	if _, err := r.Engine.Settle(context.Background(), "01"); err != nil {
		t.Fatal(err)
	}
	if got, err := r.Engine.Txn(tx.ID); err != nil || got.State != payment.StateHeld {
		t.Errorf("held transaction after the settlement: %+v %v", got, err)
	}
	if st := r.Engine.Status(); st.Held != 1 || st.Batch != 2 {
		t.Errorf("status after the settlement %+v", st)
	}
}

// A transaction pending at a restart (its request may have gone out) is reversed at the next
// opportunity, and the host is left with nothing charged.
func TestPendingAtRestartIsReversed(t *testing.T) {
	r := newRig(t, nil)
	r.SignIn()
	// The host takes the purchase but its answer is lost, and the terminal "dies" before it
	// judges it: the reversal is left to the restart.
	_ = r.Host.AddFault(hostsim.Fault{Kind: hostsim.FaultNoAnswer, MTI: "0200", Count: 1})
	_ = r.Host.AddFault(hostsim.Fault{Kind: hostsim.FaultDrop, MTI: "0400", Count: 1})
	tx, err := r.purchase(debitPAN, "3112", 3000)
	if !errors.Is(err, payment.ErrInDoubt) {
		t.Fatalf("purchase: %v", err)
	}
	if got := r.Host.Charged(tid); got != 3000 {
		t.Fatalf("host charged %d before the reversal", got)
	}
	r.Open() // restart: signed out, the reversal still owed
	if st := r.Engine.Status(); st.State != payment.SignedOut || st.Reversals != 1 {
		t.Fatalf("after restart %+v", st)
	}
	r.SignIn()
	if err := r.Engine.Reverse(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.Engine.Txn(tx.ID); got.State != payment.StateReversed {
		t.Errorf("state %s", got.State)
	}
	if got := r.Host.Charged(tid); got != 0 {
		t.Errorf("host charged %d", got)
	}
}

func TestSettlementBalanced(t *testing.T) {
	// The foreign card is foreign for the terminal too.
	r := newRig(t, func(d *termconfig.Document) {
		d.BINRanges = []termconfig.BINRange{{Low: "4", High: "5", Region: termconfig.RegionForeign}}
	})
	r.SignIn()
	ctx := context.Background()
	for _, c := range []struct {
		pan, exp string
		amt      int64
	}{{debitPAN, "3112", 1000}, {creditPAN, "3006", 2000}, {visaPAN, "2912", 3000}} {
		if _, err := r.purchase(c.pan, c.exp, c.amt); err != nil {
			t.Fatal(err)
		}
	}
	st, err := r.Engine.Settle(ctx, "01")
	if err != nil {
		t.Fatal(err)
	}
	if !st.DomBalanced || !st.ForBalanced {
		t.Errorf("settlement %+v", st)
	}
	if s := r.Engine.Status(); s.Batch != 2 || s.Txns != 0 {
		t.Errorf("after settlement %+v", s)
	}
}

// The terminal counts a card as domestic that the host counts as foreign: the totals differ,
// the batch is uploaded (resuming after a lost answer), then closed.
func TestSettlementUnbalancedWithUploadResumed(t *testing.T) {
	r := newRig(t, nil)
	r.SignIn()
	ctx := context.Background()
	for i := range 5 {
		if _, err := r.purchase(visaPAN, "2912", int64(1000+i)); err != nil {
			t.Fatal(err)
		}
	}
	_ = r.Host.AddFault(hostsim.Fault{Kind: hostsim.FaultNoAnswer, MTI: "0320", Count: 1})
	// Skip the first upload message so the loss hits the third.
	_, err := r.Engine.Settle(ctx, "01")
	if err == nil {
		t.Fatal("settlement went through a lost upload answer")
	}
	if s := r.Engine.Status(); !s.Settling || s.Batch != 1 {
		t.Fatalf("after the break %+v", s)
	}
	r.Open() // and a restart on top
	r.SignIn()
	st, err := r.Engine.Settle(ctx, "01")
	if err != nil {
		t.Fatal(err)
	}
	if st.DomBalanced && st.ForBalanced {
		t.Errorf("expected unbalanced: %+v", st)
	}
	if s := r.Engine.Status(); s.Batch != 2 || s.Settling {
		t.Errorf("after settlement %+v", s)
	}
	uploaded := 0
	for _, e := range r.Host.Entries(tid) {
		if e.Uploaded {
			uploaded++
		}
	}
	if uploaded != 5 {
		t.Errorf("host has %d transactions uploaded, want 5", uploaded)
	}
}

func TestBatchFullAndLicence(t *testing.T) {
	r := newRig(t, func(d *termconfig.Document) { d.HostParameters.MaxBatchSize = 2 })
	r.SignIn()
	for range 2 {
		if _, err := r.purchase(debitPAN, "3112", 100); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.purchase(debitPAN, "3112", 100); !errors.Is(err, payment.ErrBatchFull) {
		t.Errorf("third purchase: %v", err)
	}
}
