package checkout_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/posagent/posagent/agent/checkout"
	"github.com/posagent/posagent/agent/payment"
	"github.com/posagent/posagent/agent/termconfig"
)

// progress records what an operation reports, and what the rig looked like at each stage.
type progress struct {
	r    *rig
	mu   sync.Mutex
	got  []checkout.Progress
	seen []int    // the host's financial requests when each stage was reported
	pad  []string // the pad's display when each stage was reported
	// veto is returned at its stage.
	veto map[checkout.Stage]error
	// reached, when set, hears each stage after it is recorded.
	reached chan checkout.Stage
}

func (p *progress) report(pr checkout.Progress) error {
	p.mu.Lock()
	p.got = append(p.got, pr)
	p.seen = append(p.seen, p.r.financialSeen())
	p.pad = append(p.pad, p.r.display())
	p.mu.Unlock()
	if p.reached != nil {
		p.reached <- pr.Stage
	}
	return p.veto[pr.Stage]
}

func (p *progress) stages() []checkout.Stage {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []checkout.Stage
	for _, g := range p.got {
		out = append(out, g.Stage)
	}
	return out
}

// at is what was reported at a stage; ok false when it was not.
func (p *progress) at(s checkout.Stage) (pr checkout.Progress, seen int, pad string, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, g := range p.got {
		if g.Stage == s {
			return g, p.seen[i], p.pad[i], true
		}
	}
	return checkout.Progress{}, 0, "", false
}

// The stages come in order, each before what it announces: the prompt is on the pad at
// StageWaitCard, the masked card and its entry mode are known from StageCardRead, and the
// host has seen nothing until StageHost. A tap under the CVM limit skips the PIN.
func TestProgressStages(t *testing.T) {
	r := newRig(t, nil)
	r.SignIn()
	const (
		wc, cr, wp, host = checkout.StageWaitCard, checkout.StageCardRead, checkout.StageWaitPIN, checkout.StageHost
	)
	for _, tc := range []struct {
		name, how, card, pan, entry string
		amount                      int64
		want                        []checkout.Stage
	}{
		{"chip with PIN", "insert", "unionpay-debit", debitPAN, "05", 1500, []checkout.Stage{wc, cr, wp, host}},
		{"contactless without PIN", "tap", "unionpay-debit", debitPAN, "07", cvmLimit - 100, []checkout.Stage{wc, cr, host}},
		{"contactless above the CVM limit", "tap", "visa", visaPAN, "07", cvmLimit + 100, []checkout.Stage{wc, cr, wp, host}},
		{"stripe", "swipe", "magstripe-only", stripePAN, "02", 2000, []checkout.Stage{wc, cr, wp, host}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// What the callback returns at StageHost does not stop anything.
			p := &progress{r: r, veto: map[checkout.Stage]error{host: errors.New("too late")}}
			before := r.financialSeen()
			s := purchase(tc.amount)
			s.Progress = p.report
			tx, err := r.run(s, tc.how, tc.card)
			if err != nil {
				t.Fatalf("purchase: %v (stages %v)", err, p.stages())
			}
			if tx.State != payment.StateApproved || tx.Entry != tc.entry {
				t.Errorf("purchase %+v", tx)
			}
			if got := p.stages(); !slices.Equal(got, tc.want) {
				t.Fatalf("stages %v, want %v", got, tc.want)
			}
			if pr, _, pad, _ := p.at(wc); pr.CardMask != "" || pr.Entry != "" || !strings.Contains(pad, "Insert") {
				t.Errorf("at %s: %+v, the pad shows %q", wc, pr, pad)
			}
			for _, st := range tc.want[1:] {
				pr, seen, _, _ := p.at(st)
				if pr.CardMask != payment.MaskPAN(tc.pan) || pr.Entry != tc.entry {
					t.Errorf("at %s: %+v, want card %s entry %s", st, pr, payment.MaskPAN(tc.pan), tc.entry)
				}
				if strings.Contains(pr.CardMask, tc.pan) {
					t.Errorf("at %s: the full card number is reported", st)
				}
				if seen != before {
					t.Errorf("at %s the host had already seen %d requests", st, seen-before)
				}
			}
			if n := r.financialSeen(); n != before+1 {
				t.Errorf("the host saw %d requests, want 1", n-before)
			}
		})
	}

	// An operation without the card reports the host exchange only.
	p1, err := r.run(purchase(900), "insert", "unionpay-debit")
	if err != nil {
		t.Fatal(err)
	}
	p := &progress{r: r}
	if _, err := r.run(checkout.Sale{Op: payment.OpVoid, OrigID: p1.ID, Operator: "01", NoCard: true, Progress: p.report}, "", ""); err != nil {
		t.Fatal(err)
	}
	if got := p.stages(); !slices.Equal(got, []checkout.Stage{host}) {
		t.Errorf("void without the card: stages %v", got)
	}
}

// A veto before the host stops the operation there: the error wraps ErrVetoed and the
// callback's error, the host and the engine have seen nothing, the PIN was not asked, the
// reader is off and the pad says so.
func TestProgressVeto(t *testing.T) {
	errPaid := errors.New("paid by QR meanwhile")
	for _, tc := range []struct {
		stage checkout.Stage
		how   string // "" : no card is presented
		want  []checkout.Stage
	}{
		{checkout.StageWaitCard, "", []checkout.Stage{checkout.StageWaitCard}},
		{checkout.StageCardRead, "insert", []checkout.Stage{checkout.StageWaitCard, checkout.StageCardRead}},
		{checkout.StageWaitPIN, "insert", []checkout.Stage{checkout.StageWaitCard, checkout.StageCardRead, checkout.StageWaitPIN}},
	} {
		t.Run(tc.stage.String(), func(t *testing.T) {
			r := newRig(t, nil)
			r.SignIn()
			// A PIN entry would take this step: still queued afterwards, no entry began.
			if err := r.Pad.ScriptPIN("cancel"); err != nil {
				t.Fatal(err)
			}
			p := &progress{r: r, veto: map[checkout.Stage]error{tc.stage: errPaid}}
			s := purchase(4200)
			s.Progress = p.report
			tx, err := r.run(s, tc.how, "unionpay-debit")
			if !errors.Is(err, checkout.ErrVetoed) || !errors.Is(err, errPaid) || tx != nil {
				t.Fatalf("vetoed at %s: %v %+v", tc.stage, err, tx)
			}
			if got := p.stages(); !slices.Equal(got, tc.want) {
				t.Errorf("stages %v, want %v", got, tc.want)
			}
			if n := r.financialSeen(); n != 0 || len(r.Host.Entries(tid)) != 0 {
				t.Errorf("the host saw %d requests, ledger %v", n, r.Host.Entries(tid))
			}
			if st := r.Engine.Status(); st.Txns != 0 || st.Reversals != 0 {
				t.Errorf("engine %+v", st)
			}
			if n := r.Pad.ScriptLen(); n != 1 {
				t.Errorf("a PIN entry took the pad's scripted step")
			}
			r.wantDisplay(t, "Operation stopped")
			r.readerIdle(t)
		})
	}
}

// The end of ctx while the reader waits for the card stops the operation at once — not at
// CardWait (15 s here), which would be ErrNoCard — with ctx's error and its cause, the reader
// switched off and nothing sent.
func TestCancelWhileWaitingForCard(t *testing.T) {
	r := newRig(t, nil)
	r.SignIn()
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	p := &progress{r: r, reached: make(chan checkout.Stage, 4)}
	errECR := errors.New("the cash register cancelled")
	go func() {
		for st := range p.reached {
			if st == checkout.StageWaitCard {
				cancel(errECR)
			}
		}
	}()
	s := purchase(1100)
	s.Progress = p.report
	tx, err := r.co.Run(ctx, s)
	close(p.reached)
	if !errors.Is(err, context.Canceled) || !errors.Is(err, errECR) || errors.Is(err, checkout.ErrNoCard) || tx != nil {
		t.Fatalf("cancelled while waiting for the card: %v %+v", err, tx)
	}
	if got := p.stages(); !slices.Equal(got, []checkout.Stage{checkout.StageWaitCard}) {
		t.Errorf("stages %v", got)
	}
	if n := r.financialSeen(); n != 0 {
		t.Errorf("the host saw %d requests", n)
	}
	r.readerIdle(t)
	r.wantDisplay(t, "Cancelled")

	// ReadCard stops the same way.
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	_, err = r.co.ReadCard(ctx2, checkout.Sale{Progress: func(pr checkout.Progress) error {
		if pr.Stage == checkout.StageWaitCard {
			cancel2()
		}
		return nil
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("read card cancelled: %v", err)
	}
	r.readerIdle(t)
}

// The end of ctx during the PIN entry cancels the entry on the pad, and the operation stops
// before the host; the next operation finds the pad ready.
func TestCancelDuringPINEntry(t *testing.T) {
	r := newRig(t, nil)
	r.SignIn()
	// The cardholder takes an hour over the PIN.
	if err := r.Pad.ScriptPIN("wait 1h"); err != nil {
		t.Fatal(err)
	}
	aborts := r.Pad.Counters().Aborts
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := &progress{r: r, reached: make(chan checkout.Stage, 4)}
	canceller := make(chan error, 1)
	go func() {
		for st := range p.reached {
			if st != checkout.StageWaitPIN {
				continue
			}
			// The entry is on the pad once it shows the PIN prompt: the amount, nothing else.
			if !eventually(func() bool { return r.display() == "12.00|" }) {
				canceller <- fmt.Errorf("the pad never asked for the PIN: %q", r.display())
			}
			cancel()
		}
		close(canceller)
	}()
	holder := r.cardholder("insert", "unionpay-debit")
	s := purchase(1200)
	s.Progress = p.report
	tx, err := r.co.Run(ctx, s)
	close(p.reached)
	if herr := <-holder; herr != nil {
		t.Fatal(herr)
	}
	if cerr := <-canceller; cerr != nil {
		t.Fatal(cerr)
	}
	r.cards.Remove()
	if !errors.Is(err, context.Canceled) || tx != nil {
		t.Fatalf("cancelled during the PIN entry: %v %+v", err, tx)
	}
	if !eventually(func() bool { return r.Pad.Counters().Aborts > aborts }) {
		t.Error("the PIN entry was not cancelled on the pad")
	}
	if !eventually(func() bool { return strings.Contains(r.display(), "Cancelled") }) {
		t.Errorf("the pad shows %q", r.display())
	}
	if n := r.financialSeen(); n != 0 {
		t.Errorf("the host saw %d requests", n)
	}
	if st := r.Engine.Status(); st.Txns != 0 {
		t.Errorf("engine %+v", st)
	}
	r.readerIdle(t)

	tx, err = r.run(purchase(1300), "insert", "unionpay-debit")
	if err != nil || tx.CVM != "pin" {
		t.Fatalf("the next purchase: %v %+v", err, tx)
	}
}

// "Read card data": the card is read as for a sale — any interface, the stages up to the
// read — and only what identifies it comes back; no PIN, nothing to the host, no sign-in.
func TestReadCard(t *testing.T) {
	r := newRig(t, func(d *termconfig.Document) {
		d.BINRanges = []termconfig.BINRange{
			{Low: "622848", High: "622848", Scheme: termconfig.SchemeUnionPay, Region: termconfig.RegionDomestic},
			{Low: "4000", High: "4999", Scheme: termconfig.SchemeVisa, Region: termconfig.RegionForeign},
		}
	})
	// Not signed in: a read needs no host.
	if err := r.Pad.ScriptPIN("cancel"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		how, card, pan string
		want           checkout.CardData
	}{
		{"insert", "unionpay-debit", debitPAN, checkout.CardData{Mask: payment.MaskPAN(debitPAN), Expiry: "3112", Entry: "05",
			Scheme: "unionpay", AppLabel: "UnionPay Debit", AID: "A000000333010101"}},
		{"tap", "visa", visaPAN, checkout.CardData{Mask: payment.MaskPAN(visaPAN), Expiry: "2912", Entry: "07", Scheme: "visa",
			AppLabel: "VISA CREDIT", AID: "A0000000031010"}},
		{"swipe", "magstripe-only", stripePAN, checkout.CardData{Mask: payment.MaskPAN(stripePAN), Expiry: "3003", Entry: "02"}},
	} {
		t.Run(tc.how, func(t *testing.T) {
			p := &progress{r: r}
			holder := r.cardholder(tc.how, tc.card)
			ctx, cancel := context.WithTimeout(context.Background(), 2*wait)
			defer cancel()
			d, err := r.co.ReadCard(ctx, checkout.Sale{Progress: p.report})
			if herr := <-holder; herr != nil {
				t.Fatal(herr)
			}
			r.cards.Remove()
			if err != nil {
				t.Fatal(err)
			}
			if d != tc.want {
				t.Errorf("card data %+v, want %+v", d, tc.want)
			}
			if strings.Contains(fmt.Sprintf("%+v", d), tc.pan) {
				t.Errorf("the card data holds the full card number: %+v", d)
			}
			if st := p.stages(); !slices.Equal(st, []checkout.Stage{checkout.StageWaitCard, checkout.StageCardRead}) {
				t.Errorf("stages %v", st)
			}
			if pr, _, _, _ := p.at(checkout.StageCardRead); pr.CardMask != d.Mask || pr.Entry != d.Entry {
				t.Errorf("at %s: %+v", checkout.StageCardRead, pr)
			}
			r.wantDisplay(t, d.Mask)
			r.readerIdle(t)
		})
	}
	if n := r.Pad.ScriptLen(); n != 1 {
		t.Error("a PIN entry took the pad's scripted step")
	}
	if n := len(r.Host.Seen()); n != 0 {
		t.Errorf("the host saw requests: %v", r.Host.Seen())
	}

	// The caller may refuse the card it reads.
	errWrong := errors.New("not the card of the payment")
	holder := r.cardholder("insert", "unionpay-credit")
	_, err := r.co.ReadCard(context.Background(), checkout.Sale{Progress: func(pr checkout.Progress) error {
		if pr.Stage == checkout.StageCardRead {
			return errWrong
		}
		return nil
	}})
	if herr := <-holder; herr != nil {
		t.Fatal(herr)
	}
	r.cards.Remove()
	if !errors.Is(err, checkout.ErrVetoed) || !errors.Is(err, errWrong) {
		t.Fatalf("refused card: %v", err)
	}
	r.wantDisplay(t, "Operation stopped")
}

// A cash withdrawal asks the PIN even for a tap under the CVM limit, and the host gets the
// block; a top-up asks none.
func TestCashWithdrawalAndTopUp(t *testing.T) {
	r := newRig(t, nil)
	r.SignIn()
	p := &progress{r: r}
	tx, err := r.run(checkout.Sale{Op: payment.OpCashWithdrawal, Amount: 5000, Operator: "01", Progress: p.report}, "tap", "unionpay-debit")
	if err != nil {
		t.Fatalf("withdrawal: %v", err)
	}
	if tx.CVM != "pin" || tx.Entry != "07" {
		t.Errorf("withdrawal %+v", tx)
	}
	req := r.tap.last(t, "0200")
	if len(req.PINBlock) != 8 || !strings.HasPrefix(req.ProcCode, "01") {
		t.Errorf("withdrawal request: proc %s, PIN block %d bytes", req.ProcCode, len(req.PINBlock))
	}
	if icc := f55(t, req.ICC); icc["9C"] != "01" {
		t.Errorf("withdrawal 9C = %s", icc["9C"])
	}
	if got := p.stages(); !slices.Contains(got, checkout.StageWaitPIN) {
		t.Errorf("withdrawal stages %v", got)
	}

	p = &progress{r: r}
	tx, err = r.run(checkout.Sale{Op: payment.OpTopUp, Amount: 3000, Operator: "01", Progress: p.report}, "insert", "unionpay-debit")
	if err != nil {
		t.Fatalf("top-up: %v", err)
	}
	if tx.CVM == "pin" {
		t.Errorf("top-up %+v", tx)
	}
	req = r.tap.last(t, "0200")
	if req.PINBlock != nil || !strings.HasPrefix(req.ProcCode, "28") {
		t.Errorf("top-up request: proc %s, PIN block %d bytes", req.ProcCode, len(req.PINBlock))
	}
	if got := p.stages(); slices.Contains(got, checkout.StageWaitPIN) {
		t.Errorf("top-up stages %v", got)
	}
	if got := r.Host.Charged(tid); got != 5000-3000 {
		t.Errorf("host charged %d", got)
	}
}
