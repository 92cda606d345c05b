package payment_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/payment"
	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/agent/termconfig"
	"github.com/posagent/posagent/board/sim/pinpademu"
	"github.com/posagent/posagent/drivers/pinpad"
	"github.com/posagent/posagent/drivers/serial"
	"github.com/posagent/posagent/internal/hostsim"
	"github.com/posagent/posagent/keystore"
	"github.com/posagent/posagent/keystore/padkeys"
	"github.com/posagent/posagent/keystore/tr31"
)

// The engine is tested against the real host simulator over TCP, with its keys in the PIN
// pad emulator's secure element (over a pty) and PIN blocks made by the pad: the whole path
// a terminal takes, without the card reader (agent/checkout adds it).

const (
	tid = "TID00001"
	mid = "MID000000000001"
	// Cards of hostsim.DefaultAccounts (PIN 123456).
	debitPAN  = "6228480000000012344"
	creditPAN = "6250947000000014"
	visaPAN   = "4761739001010010"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type rig struct {
	t      *testing.T
	host   *hostsim.Server
	pad    *pinpademu.Emulator
	padc   *pinpad.Client
	keys   *keystore.Store
	db     *store.DB
	commit *store.Committer
	sealer payment.Sealer
	doc    atomic.Pointer[termconfig.Document]
	eng    *payment.Engine

	mu     sync.Mutex
	events []string
}

func newRig(t *testing.T, change func(*termconfig.Document), hostOpts ...func(*hostsim.Config)) *rig {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	r := &rig{t: t}

	pad, err := pinpademu.New(pinpademu.Options{Dir: dir, DefaultPIN: "123456", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pad.Close() })
	port, err := serial.Open(serial.Config{Path: pad.Path(), Baud: 115200})
	if err != nil {
		t.Fatal(err)
	}
	r.pad, r.padc = pad, pinpad.New(port, pinpad.Options{Logger: quiet()})
	t.Cleanup(func() { r.padc.Close() })

	if r.db, err = store.Open(dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.db.Close() })
	r.commit = store.NewCommitter(r.db)
	t.Cleanup(r.commit.Close)
	if r.keys, err = keystore.Open(keystore.Options{DB: r.db, Commit: r.commit,
		Backend: padkeys.New(func() *pinpad.Client { return r.padc }, nil), Logger: quiet()}); err != nil {
		t.Fatal(err)
	}
	kek := make([]byte, 16)
	_, _ = rand.Read(kek)
	block, err := tr31.Wrap(pinpademu.DefaultTransportKey, tr31.Header{Version: 'B', Usage: "K0", Algorithm: 'T', ModeOfUse: 'B', KeyVersion: "00", Exportability: 'N'}, kek)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.keys.Load(ctx, keystore.Load{Items: []keystore.Item{{Role: "kek0", Block: block}}, KEK: 0, Source: "tr31"}); err != nil {
		t.Fatal(err)
	}

	hcfg := hostsim.Config{Listen: "127.0.0.1:0",
		Terminals: []hostsim.Terminal{{TID: tid, MID: mid, KEK: hex.EncodeToString(kek), KeyLayout: "double+tdk"}},
		Accounts:  hostsim.DefaultAccounts()}
	for _, o := range hostOpts {
		o(&hcfg)
	}
	r.host, err = hostsim.New(hcfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.host.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.host.Close() })

	doc := termconfig.Default()
	doc.AuthHost = termconfig.AuthHost{Addresses: []string{r.host.Addr()}, TerminalID: tid, MerchantID: mid,
		TPDU: "6000030000", ConnectTimeoutSec: 2}
	doc.HostParameters.ResponseTimeoutSec = 1
	if change != nil {
		change(doc)
	}
	r.doc.Store(doc)
	root := make([]byte, 32)
	_, _ = rand.Read(root)
	if r.sealer, err = payment.NewSealer(root); err != nil {
		t.Fatal(err)
	}
	r.open()
	return r
}

// open (re)opens the engine on the rig's database, as a restart does.
func (r *rig) open() {
	r.t.Helper()
	eng, err := payment.Open(context.Background(), payment.Options{DB: r.db, Commit: r.commit, Keys: r.keys, Sealer: r.sealer,
		Config: func() *termconfig.Document { return r.doc.Load() }, Logger: quiet(),
		Event: func(_ context.Context, kind string, _ map[string]any) {
			r.mu.Lock()
			r.events = append(r.events, kind)
			r.mu.Unlock()
		}})
	if err != nil {
		r.t.Fatal(err)
	}
	r.eng = eng
}

func (r *rig) signIn() {
	r.t.Helper()
	if err := r.eng.SignIn(context.Background(), "01"); err != nil {
		r.t.Fatal(err)
	}
}

// pin has the cardholder type 123456 on the pad: the block comes encrypted under the PIK.
func (r *rig) pin(pan string) []byte {
	r.t.Helper()
	slot, err := r.keys.PINKeySlot()
	if err != nil {
		r.t.Fatal(err)
	}
	blk, err := r.padc.GetPIN(context.Background(), pinpad.PINRequest{PAN: pan, Slot: slot, Timeout: 10 * time.Second})
	if err != nil {
		r.t.Fatal(err)
	}
	return blk[:]
}

func card(pan, exp string) *payment.Card {
	return &payment.Card{PAN: pan, Expiry: exp, Track2: pan + "=" + exp + "2201000000000", Entry: "02"}
}

func (r *rig) purchase(pan, exp string, amount int64) (*payment.Txn, error) {
	return r.eng.Do(context.Background(), payment.Request{Op: payment.OpPurchase, Amount: amount, Card: card(pan, exp), PINBlock: r.pin(pan), Operator: "01"})
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
	if _, err := r.eng.Do(context.Background(), payment.Request{Op: payment.OpPurchase, Amount: 100, Card: card(debitPAN, "3112")}); !errors.Is(err, payment.ErrNotSignedIn) {
		t.Fatalf("purchase before sign-in: %v", err)
	}
	r.signIn()
	if st := r.eng.Status(); st.State != payment.Normal || st.Batch != 1 {
		t.Fatalf("status after sign-in %+v", st)
	}
	tx, err := r.purchase(debitPAN, "3112", 15000)
	if err != nil {
		t.Fatal(err)
	}
	if tx.State != payment.StateApproved || tx.RRN == "" || tx.AuthCode == "" || tx.PAN != "622848*********2344" || tx.CVM != "pin" {
		t.Errorf("purchase %+v", tx)
	}
	if got := r.host.Charged(tid); got != 15000 {
		t.Errorf("host charged %d", got)
	}
	// A wrong PIN is declined with 55 and charges nothing.
	if err := r.pad.ScriptPIN("111111"); err != nil {
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
	if got := r.host.Charged(tid); got != 15000 {
		t.Errorf("host charged %d after declines", got)
	}
	if err := r.eng.Echo(context.Background()); err != nil {
		t.Errorf("echo: %v", err)
	}
	if err := r.eng.SignOff(context.Background()); err != nil {
		t.Errorf("sign-off: %v", err)
	}
	if st := r.eng.Status(); st.State != payment.SignedOut {
		t.Errorf("after sign-off: %+v", st)
	}
}

func TestVoidRefundPreAuthCompletionBalance(t *testing.T) {
	r := newRig(t, nil)
	r.signIn()
	ctx := context.Background()
	p1, err := r.purchase(debitPAN, "3112", 10000)
	if err != nil {
		t.Fatal(err)
	}
	// Void without the card: the PAN comes from the sealed copy.
	v, err := r.eng.Do(ctx, payment.Request{Op: payment.OpVoid, OrigID: p1.ID, Operator: "01"})
	if err != nil {
		t.Fatal(err)
	}
	if orig, _ := r.eng.Txn(p1.ID); orig.State != payment.StateVoided || v.Amount != 10000 {
		t.Errorf("void: original %s, void amount %d", orig.State, v.Amount)
	}
	if _, err := r.eng.Do(ctx, payment.Request{Op: payment.OpVoid, OrigID: p1.ID}); !errors.Is(err, payment.ErrBadRequest) {
		t.Errorf("second void: %v", err)
	}
	// Partial refunds up to the original, not beyond.
	p2, err := r.purchase(creditPAN, "3006", 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, amt := range []int64{600, 400} {
		if _, err := r.eng.Do(ctx, payment.Request{Op: payment.OpRefund, Amount: amt, OrigID: p2.ID, Card: card(creditPAN, "3006")}); err != nil {
			t.Fatalf("refund %d: %v", amt, err)
		}
	}
	if _, err := r.eng.Do(ctx, payment.Request{Op: payment.OpRefund, Amount: 1, OrigID: p2.ID, Card: card(creditPAN, "3006")}); !errors.Is(err, payment.ErrNotAllowed) {
		t.Errorf("refund beyond the original: %v", err)
	}
	// Pre-authorisation, then its completion for less.
	pa, err := r.eng.Do(ctx, payment.Request{Op: payment.OpPreAuth, Amount: 5000, Card: card(visaPAN, "2912"), PINBlock: r.pin(visaPAN)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.eng.Do(ctx, payment.Request{Op: payment.OpCompletion, Amount: 6000, OrigID: pa.ID}); !errors.Is(err, payment.ErrNotAllowed) {
		t.Errorf("completion above the pre-authorisation: %v", err)
	}
	co, err := r.eng.Do(ctx, payment.Request{Op: payment.OpCompletion, Amount: 4500, OrigID: pa.ID})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.eng.Do(ctx, payment.Request{Op: payment.OpCompletionVoid, OrigID: co.ID}); err != nil {
		t.Errorf("completion void: %v", err)
	}
	pa2, err := r.eng.Do(ctx, payment.Request{Op: payment.OpPreAuth, Amount: 700, Card: card(debitPAN, "3112"), PINBlock: r.pin(debitPAN)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.eng.Do(ctx, payment.Request{Op: payment.OpPreAuthVoid, OrigID: pa2.ID}); err != nil {
		t.Errorf("pre-auth void: %v", err)
	}
	bal, err := r.eng.Do(ctx, payment.Request{Op: payment.OpBalance, Card: card(debitPAN, "3112"), PINBlock: r.pin(debitPAN)})
	if err != nil || bal.Balance == "" {
		t.Errorf("balance: %v %+v", err, bal)
	}
	// Money: the purchase voided, the credit purchase refunded in full, the completion voided.
	if got := r.host.Charged(tid); got != 0 {
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
			r.signIn()
			f := hostsim.Fault{Kind: kind, MTI: "0200", Count: 1}
			if kind == hostsim.FaultDelay {
				f.Delay = hostsim.Duration(1500 * time.Millisecond) // past the 1 s answer timeout
			}
			if err := r.host.AddFault(f); err != nil {
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
			if got := r.host.Charged(tid); got != 0 {
				t.Errorf("host charged %d", got)
			}
			for ref, n := range r.host.Reversals(tid) {
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
	r.signIn()
	_ = r.host.AddFault(hostsim.Fault{Kind: hostsim.FaultNoAnswer, MTI: "0200", Count: 1})
	_ = r.host.AddFault(hostsim.Fault{Kind: hostsim.FaultNoAnswer, MTI: "0400"})
	tx, err := r.purchase(debitPAN, "3112", 2500)
	if !errors.Is(err, payment.ErrInDoubt) || tx.State != payment.StateReversing {
		t.Fatalf("purchase: %v %+v", err, tx)
	}
	if st := r.eng.Status(); st.Reversals != 1 {
		t.Errorf("owed %+v", st)
	}
	// The next purchase must send the reversal first: its second try, the last.
	if _, err := r.purchase(debitPAN, "3112", 100); err == nil {
		t.Log("the reversal was held and the purchase went through")
	}
	got, _ := r.eng.Txn(tx.ID)
	if got.State != payment.StateHeld || !r.hasEvent("payment.reversal.held") {
		t.Fatalf("after the retries: %s, events %v", got.State, r.events)
	}
	r.host.ClearFaults()
	if _, err := r.purchase(debitPAN, "3112", 100); err != nil {
		t.Errorf("purchase after the hold: %v", err)
	}
	if st := r.eng.Status(); st.Held != 1 || st.Reversals != 0 {
		t.Errorf("status %+v", st)
	}
}

// A transaction pending at a restart (its request may have gone out) is reversed at the next
// opportunity, and the host is left with nothing charged.
func TestPendingAtRestartIsReversed(t *testing.T) {
	r := newRig(t, nil)
	r.signIn()
	// The host takes the purchase but its answer is lost, and the terminal "dies" before it
	// judges it: the reversal is left to the restart.
	_ = r.host.AddFault(hostsim.Fault{Kind: hostsim.FaultNoAnswer, MTI: "0200", Count: 1})
	_ = r.host.AddFault(hostsim.Fault{Kind: hostsim.FaultDrop, MTI: "0400", Count: 1})
	tx, err := r.purchase(debitPAN, "3112", 3000)
	if !errors.Is(err, payment.ErrInDoubt) {
		t.Fatalf("purchase: %v", err)
	}
	if got := r.host.Charged(tid); got != 3000 {
		t.Fatalf("host charged %d before the reversal", got)
	}
	r.open() // restart: signed out, the reversal still owed
	if st := r.eng.Status(); st.State != payment.SignedOut || st.Reversals != 1 {
		t.Fatalf("after restart %+v", st)
	}
	r.signIn()
	if err := r.eng.Reverse(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.eng.Txn(tx.ID); got.State != payment.StateReversed {
		t.Errorf("state %s", got.State)
	}
	if got := r.host.Charged(tid); got != 0 {
		t.Errorf("host charged %d", got)
	}
}

func TestSettlementBalanced(t *testing.T) {
	// The foreign card is foreign for the terminal too.
	r := newRig(t, func(d *termconfig.Document) {
		d.BINRanges = []termconfig.BINRange{{Low: "4", High: "5", Region: termconfig.RegionForeign}}
	})
	r.signIn()
	ctx := context.Background()
	for _, c := range []struct {
		pan, exp string
		amt      int64
	}{{debitPAN, "3112", 1000}, {creditPAN, "3006", 2000}, {visaPAN, "2912", 3000}} {
		if _, err := r.purchase(c.pan, c.exp, c.amt); err != nil {
			t.Fatal(err)
		}
	}
	st, err := r.eng.Settle(ctx, "01")
	if err != nil {
		t.Fatal(err)
	}
	if !st.DomBalanced || !st.ForBalanced {
		t.Errorf("settlement %+v", st)
	}
	if s := r.eng.Status(); s.Batch != 2 || s.Txns != 0 {
		t.Errorf("after settlement %+v", s)
	}
}

// The terminal counts a card as domestic that the host counts as foreign: the totals differ,
// the batch is uploaded (resuming after a lost answer), then closed.
func TestSettlementUnbalancedWithUploadResumed(t *testing.T) {
	r := newRig(t, nil)
	r.signIn()
	ctx := context.Background()
	for i := range 5 {
		if _, err := r.purchase(visaPAN, "2912", int64(1000+i)); err != nil {
			t.Fatal(err)
		}
	}
	_ = r.host.AddFault(hostsim.Fault{Kind: hostsim.FaultNoAnswer, MTI: "0320", Count: 1})
	// Skip the first upload message so the loss hits the third.
	_, err := r.eng.Settle(ctx, "01")
	if err == nil {
		t.Fatal("settlement went through a lost upload answer")
	}
	if s := r.eng.Status(); !s.Settling || s.Batch != 1 {
		t.Fatalf("after the break %+v", s)
	}
	r.open() // and a restart on top
	r.signIn()
	st, err := r.eng.Settle(ctx, "01")
	if err != nil {
		t.Fatal(err)
	}
	if st.DomBalanced && st.ForBalanced {
		t.Errorf("expected unbalanced: %+v", st)
	}
	if s := r.eng.Status(); s.Batch != 2 || s.Settling {
		t.Errorf("after settlement %+v", s)
	}
	uploaded := 0
	for _, e := range r.host.Entries(tid) {
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
	r.signIn()
	for range 2 {
		if _, err := r.purchase(debitPAN, "3112", 100); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.purchase(debitPAN, "3112", 100); !errors.Is(err, payment.ErrBatchFull) {
		t.Errorf("third purchase: %v", err)
	}
}
