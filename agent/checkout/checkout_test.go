package checkout_test

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/checkout"
	"github.com/posagent/posagent/agent/iso8583"
	"github.com/posagent/posagent/agent/payment"
	"github.com/posagent/posagent/agent/receipt"
	"github.com/posagent/posagent/agent/spool"
	"github.com/posagent/posagent/agent/termconfig"
	"github.com/posagent/posagent/board/sim/cardemu"
	"github.com/posagent/posagent/board/sim/printeremu"
	"github.com/posagent/posagent/board/sim/pty"
	"github.com/posagent/posagent/drivers/cardreader"
	"github.com/posagent/posagent/drivers/emv"
	"github.com/posagent/posagent/drivers/escpos"
	"github.com/posagent/posagent/drivers/pinpad"
	"github.com/posagent/posagent/drivers/serial"
	"github.com/posagent/posagent/drivers/serial/serialtest"
	"github.com/posagent/posagent/internal/hostsim"
	"github.com/posagent/posagent/internal/paytest"
)

// Card operations end to end: the card reader, PIN pad and printer emulators on real
// pseudo-terminals, driven by the real drivers, the keys in the pad's secure element, and
// the acquirer host simulator over TCP. A goroutine plays the cardholder: it presents the
// card when the pad asks for it, and types the PIN the pad emulator's script gives.

const (
	tid = paytest.TID
	mid = paytest.MID
	// PANs of the test cards (board/sim/cardemu/testdata/cards.json, hostsim.DefaultAccounts).
	debitPAN   = paytest.DebitPAN
	creditPAN  = paytest.CreditPAN
	visaPAN    = paytest.VisaPAN
	stripePAN  = "6222021000000005"
	expiredPAN = "6228480000000056788"
	// cvmLimit is the contactless CVM limit of the rig's configuration: 300.00.
	cvmLimit = 30000
)

var quiet = paytest.Quiet

// wait is the bound of every wait on a condition: generous, since nothing waits it out
// unless something is broken.
const wait = 15 * time.Second

// eventually polls cond until it holds or the bound passes.
func eventually(cond func() bool) bool {
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
	return true
}

// hostTap records every request the host simulator read off its TCP connections.
type hostTap struct {
	net.Listener
	mu   sync.Mutex
	reqs []*iso8583.Msg
}

func (l *hostTap) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &tapConn{Conn: c, l: l}, nil
}

// last is the last request the host received with one of the MTIs.
func (l *hostTap) last(t testing.TB, mtis ...string) *iso8583.Msg {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.reqs) - 1; i >= 0; i-- {
		for _, mti := range mtis {
			if l.reqs[i].MTI == mti {
				return l.reqs[i]
			}
		}
	}
	t.Fatalf("the host received no %v", mtis)
	return nil
}

type tapConn struct {
	net.Conn
	l   *hostTap
	buf []byte // bytes of a frame not complete yet; only the host's reader touches it
}

func (c *tapConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.buf = append(c.buf, b[:n]...)
	for len(c.buf) >= 2 {
		size := 2 + (int(c.buf[0])<<8 | int(c.buf[1]))
		if len(c.buf) < size {
			break
		}
		if _, m, _, err := iso8583.Unpack(c.buf[:size]); err == nil {
			c.l.mu.Lock()
			c.l.reqs = append(c.l.reqs, m)
			c.l.mu.Unlock()
		}
		c.buf = c.buf[size:]
	}
	return n, err
}

// kzPage is where the printer emulator keeps KZ-1048 (as in agent/spool's tests).
const kzPage = 99

var printerModel = escpos.Model{Name: "sim-58", Dots: 384, Chinese: true,
	Pages: []escpos.CodePage{{N: kzPage, Charset: escpos.KZ1048}, {N: escpos.PageCP866, Charset: escpos.CP866}}}

// readerOptions keep the card reader link's timeouts short: a lasting fault ends within a
// second or two, a transient one is retransmitted away.
var readerOptions = cardreader.Options{
	AckTimeout:      100 * time.Millisecond,
	ResponseTimeout: time.Second,
	CardTimeout:     3 * time.Second,
	FrameTimeout:    50 * time.Millisecond,
}

// rig is the paytest rig (host, PIN pad, keys, engine) with the card reader, a tap on the
// host, the checkout and, withPrinter, the receipt printer.
type rig struct {
	*paytest.Rig
	tap    *hostTap
	line   *pty.Line // the card reader's
	cards  *cardemu.Emulator
	reader *cardreader.Reader
	co     *checkout.Checkout

	printer *printeremu.Emulator
	spool   *spool.Spooler
}

// options change the rig's checkout options before it is made.
type options func(*checkout.Options)

func newRig(t testing.TB, change func(*termconfig.Document), opts ...options) *rig {
	t.Helper()
	ctx := context.Background()
	r := &rig{}

	// The card reader, on a reconnecting port as the agent's hardware layer opens it.
	line, err := pty.Open(t.TempDir(), "cardreader")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = line.Close() })
	r.line = line
	r.cards = cardemu.Start(line, nil, cardemu.Options{Logger: quiet(), Seed: 7})
	t.Cleanup(func() { _ = r.cards.Close() })
	port, err := serial.Reopen(ctx, serial.Config{Path: line.Path(), Baud: 115200},
		serial.ReopenOptions{Backoff: func(int) time.Duration { return 10 * time.Millisecond }, Check: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ro := readerOptions
	ro.Logger = quiet()
	r.reader = cardreader.New(port, ro)
	t.Cleanup(func() { _ = r.reader.Close() })

	// The PIN pad with the keys, the engine, and the host behind a tap that records what it
	// read.
	r.Rig = paytest.New(t, paytest.WithHostListener(func(ln net.Listener) net.Listener {
		r.tap = &hostTap{Listener: ln}
		return r.tap
	}), paytest.WithConfig(func(doc *termconfig.Document) {
		doc.Currencies = []termconfig.Currency{{Numeric: "156", Alpha: "CNY", Exponent: 2, Default: true}}
		doc.CountryCode = "156"
		doc.ContactlessProfile.CVMRequiredLimit = cvmLimit
		doc.EMVApplications = []termconfig.EMVApplication{
			{AID: "A000000333010101", Label: "UnionPay Debit", Priority: 1, PartialSelection: true, Contact: true, Contactless: true, Kernel: 7},
			{AID: "A000000333010102", Label: "UnionPay Credit", Priority: 2, PartialSelection: true, Contact: true, Contactless: true, Kernel: 7},
			{AID: "A0000000031010", Label: "VISA", Priority: 3, PartialSelection: true, Contact: true, Contactless: true, Kernel: 3},
			{AID: "A0000000041010", Label: "MASTERCARD", Priority: 4, PartialSelection: true, Contact: true, Contactless: true, Kernel: 2},
		}
	}), paytest.WithConfig(change))

	co := checkout.Options{Engine: r.Engine,
		Reader:  func() *cardreader.Reader { return r.reader },
		Pad:     func() *pinpad.Client { return r.PadClient },
		PINSlot: r.Keys.PINKeySlot,
		Config:  r.Config,
		PINWait: 30 * time.Second, CardWait: wait,
		Logger: quiet()}
	for _, o := range opts {
		o(&co)
	}
	r.co = checkout.New(co)
	return r
}

// withPrinter adds the receipt printer: the emulator on a pty, the ESC/POS driver on a
// reconnecting port and a running spooler.
func (r *rig) withPrinter() *rig {
	t := r.TB
	line, port := serialtest.Reopen(t, serial.Config{}, serial.ReopenOptions{Check: -1})
	emu, err := printeremu.New(line, printeremu.Config{KZ1048Page: kzPage, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emu.Close() })
	p, err := escpos.New(port, escpos.Options{Model: printerModel, Baud: 115200, Timeout: 2 * time.Second,
		PollInterval: 100 * time.Millisecond, StallTimeout: 10 * time.Second, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	sp := spool.New(spool.Options{Printer: p, IdlePoll: -1, Logger: quiet()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = sp.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	r.printer, r.spool = emu, sp
	return r
}

// cardholder presents the named card — "insert", "tap" or "swipe" — once the pad asks for
// it. Taps and swipes are taken only while the reader reads on that interface, so they are
// offered again until the reader takes them: no guess about how fast the terminal is.
func (r *rig) cardholder(how, name string) <-chan error {
	done := make(chan error, 1)
	go func() {
		if !eventually(func() bool {
			_, l2 := r.Pad.Display()
			return strings.HasPrefix(l2, "Insert")
		}) {
			done <- errors.New("the pad never asked for the card")
			return
		}
		deadline := time.Now().Add(wait)
		for {
			var err error
			switch how {
			case "insert":
				err = r.cards.Insert(name)
			case "tap":
				err = r.cards.Tap(name)
			case "swipe":
				err = r.cards.Swipe(name)
			default:
				err = fmt.Errorf("no way to present a card %q", how)
			}
			if !errors.Is(err, cardemu.ErrDisabled) || time.Now().After(deadline) {
				done <- err
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return done
}

// run carries out one operation at the terminal with the card presented as how says ("" for
// none); the card is taken back afterwards.
func (r *rig) run(s checkout.Sale, how, name string) (*payment.Txn, error) {
	r.TB.Helper()
	var holder <-chan error
	if how != "" {
		holder = r.cardholder(how, name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait)
	defer cancel()
	tx, err := r.co.Run(ctx, s)
	if holder != nil {
		select {
		case herr := <-holder:
			if herr != nil {
				r.TB.Fatalf("cardholder: %v", herr)
			}
		case <-time.After(2 * wait):
			r.TB.Fatal("the cardholder is still waiting")
		}
		r.cards.Remove()
	}
	return tx, err
}

// display is what the pad shows, both lines.
func (r *rig) display() string {
	l1, l2 := r.Pad.Display()
	return l1 + "|" + l2
}

func (r *rig) wantDisplay(t testing.TB, want string) {
	t.Helper()
	if got := r.display(); !strings.Contains(got, want) {
		t.Errorf("the pad shows %q, want %q", got, want)
	}
}

// readerIdle checks the reader reads nothing after an operation.
func (r *rig) readerIdle(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	st, err := r.reader.Status(ctx)
	if err != nil {
		t.Fatalf("reader status: %v", err)
	}
	if st.Enabled != 0 {
		t.Errorf("the reader is left enabled on %v", st.Enabled)
	}
}

// entry is the host's ledger entry of a transaction.
func (r *rig) entry(t testing.TB, tx *payment.Txn) hostsim.Entry {
	t.Helper()
	e, ok := r.Host.Entry(tid, tx.Batch, tx.STAN)
	if !ok {
		t.Fatalf("the host has no entry for batch %d trace %d", tx.Batch, tx.STAN)
	}
	return e
}

// financial are the requests that move money or ask about it.
var financial = []string{"0100", "0200", "0220"}

func (r *rig) financialSeen() int {
	n := 0
	seen := r.Host.Seen()
	for _, mti := range financial {
		n += seen[mti]
	}
	return n
}

// printSlip prints the customer's slip through the spooler and checks the paper: the masked
// card number and the amount, never the full number.
func (r *rig) printSlip(t testing.TB, tx *payment.Txn, fullPAN, amount string) {
	t.Helper()
	job := receipt.SalesSlip(tx, receipt.Merchant{Name: "TEA HOUSE", MID: mid, TID: tid, Language: termconfig.LanguageEnglish},
		receipt.CopyCustomer, receipt.Options{Model: printerModel, PINVerified: tx.CVM == "pin", Location: time.UTC})
	before := len(r.printer.Receipts())
	tk, err := r.spool.Submit("receipt "+tx.ID, job)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := tk.Wait(ctx); err != nil {
		t.Fatalf("printing: %v", err)
	}
	var rs []*printeremu.Receipt
	if !eventually(func() bool { rs = r.printer.Receipts(); return len(rs) > before }) {
		t.Fatal("no receipt came out of the printer")
	}
	text := rs[len(rs)-1].Text
	if masked := receipt.MaskPAN(fullPAN); !strings.Contains(text, masked) {
		t.Errorf("the slip lacks the masked card number %s:\n%s", masked, text)
	}
	if !strings.Contains(text, amount) {
		t.Errorf("the slip lacks the amount %s:\n%s", amount, text)
	}
	if strings.Contains(strings.ReplaceAll(text, " ", ""), fullPAN) {
		t.Errorf("the slip shows the full card number:\n%s", text)
	}
}

// f55 reads field 55 into tag → hex value.
func f55(t testing.TB, icc []byte) map[string]string {
	t.Helper()
	objs, err := emv.Parse(icc)
	if err != nil {
		t.Fatalf("field 55: %v", err)
	}
	out := map[string]string{}
	for _, o := range objs {
		out[fmt.Sprintf("%X", uint32(o.Tag))] = strings.ToUpper(hex.EncodeToString(o.Value))
	}
	return out
}

func purchase(amount int64) checkout.Sale {
	return checkout.Sale{Op: payment.OpPurchase, Amount: amount, Operator: "01"}
}

// Sign-in, then a chip purchase with the PIN: the card's field 55 and the pad's PIN block
// reach the host, which verifies the PIN and approves; a wrong PIN is declined 55.
func TestChipPurchaseWithPIN(t *testing.T) {
	r := newRig(t, nil).withPrinter()
	// Before the sign-in the terminal takes no card at all.
	if _, err := r.co.Run(context.Background(), purchase(100)); !errors.Is(err, payment.ErrNotSignedIn) {
		t.Fatalf("purchase before sign-in: %v", err)
	}
	r.SignIn()

	tx, err := r.run(purchase(15000), "insert", "unionpay-debit")
	if err != nil {
		t.Fatal(err)
	}
	if tx.State != payment.StateApproved || tx.CVM != "pin" || tx.Entry != "05" || tx.PAN != "622848*********2344" ||
		tx.AID != "A000000333010101" || tx.CardSeq != "001" || tx.RRN == "" || tx.AuthCode == "" {
		t.Errorf("purchase %+v", tx)
	}
	r.wantDisplay(t, "Approved")
	req := r.tap.last(t, "0200")
	if req.PAN != debitPAN || req.EntryMode != "051" || len(req.PINBlock) != 8 || req.CardSeq != "001" {
		t.Errorf("request: pan %s entry %s pin block %d bytes seq %q", payment.MaskPAN(req.PAN), req.EntryMode, len(req.PINBlock), req.CardSeq)
	}
	icc := f55(t, req.ICC)
	if len(icc["9F26"]) != 16 || icc["9F27"] != "80" || icc["9F02"] != "000000015000" || icc["5F2A"] != "0156" ||
		icc["9F1A"] != "0156" || icc["84"] != "A000000333010101" || icc["9C"] != "00" {
		t.Errorf("field 55 at the host: %v", icc)
	}
	if icc["9F33"] != "E0F8C8" || icc["9F35"] != "22" {
		t.Errorf("field 55 terminal capabilities %s, type %s: not the configuration's", icc["9F33"], icc["9F35"])
	}
	if e := r.entry(t, tx); e.State != hostsim.StateApproved || e.Amount != 15000 || e.PAN != debitPAN || e.RRN != tx.RRN {
		t.Errorf("host entry %+v", e)
	}
	if got := r.Host.Charged(tid); got != 15000 {
		t.Errorf("host charged %d", got)
	}
	r.readerIdle(t)
	r.printSlip(t, tx, debitPAN, "150.00")

	// The cardholder types a wrong PIN: the host checks the block and declines.
	if err := r.Pad.ScriptPIN("111111"); err != nil {
		t.Fatal(err)
	}
	tx, err = r.run(purchase(500), "insert", "unionpay-debit")
	if !errors.Is(err, payment.ErrDeclined) || tx == nil || tx.RespCode != "55" || tx.State != payment.StateDeclined {
		t.Fatalf("wrong PIN: %v %+v", err, tx)
	}
	if e := r.entry(t, tx); e.State != hostsim.StateDeclined || e.RespCode != "55" {
		t.Errorf("host entry %+v", e)
	}
	r.wantDisplay(t, "Declined 55")
	if got := r.Host.Charged(tid); got != 15000 {
		t.Errorf("host charged %d after the decline", got)
	}
}

// Contactless: under the CVM limit no PIN is asked; above it the PIN is.
func TestContactless(t *testing.T) {
	r := newRig(t, nil).withPrinter()
	r.SignIn()

	tx, err := r.run(purchase(cvmLimit-100), "tap", "unionpay-debit")
	if err != nil {
		t.Fatal(err)
	}
	if tx.State != payment.StateApproved || tx.Entry != "07" || tx.CVM != "none" {
		t.Errorf("tap under the limit %+v", tx)
	}
	req := r.tap.last(t, "0200")
	if req.PINBlock != nil || req.EntryMode != "072" || len(req.ICC) == 0 {
		t.Errorf("request: entry %s, PIN block %d bytes, field 55 %d bytes", req.EntryMode, len(req.PINBlock), len(req.ICC))
	}
	r.wantDisplay(t, "Approved")
	r.readerIdle(t)
	r.printSlip(t, tx, debitPAN, "299.00")

	// Above the limit the cardholder types the PIN; it is checked by the host.
	if err := r.Pad.ScriptPIN("654321"); err != nil {
		t.Fatal(err)
	}
	tx, err = r.run(purchase(cvmLimit+100), "tap", "visa")
	if !errors.Is(err, payment.ErrDeclined) || tx.RespCode != "55" {
		t.Fatalf("tap above the limit with a wrong PIN: %v %+v", err, tx)
	}
	tx, err = r.run(purchase(cvmLimit+100), "tap", "visa")
	if err != nil {
		t.Fatal(err)
	}
	if tx.Entry != "07" || tx.CVM != "pin" || tx.AID != "A0000000031010" {
		t.Errorf("tap above the limit %+v", tx)
	}
	req = r.tap.last(t, "0200")
	if len(req.PINBlock) != 8 || req.EntryMode != "071" || req.PAN != visaPAN {
		t.Errorf("request: entry %s, PIN block %d bytes", req.EntryMode, len(req.PINBlock))
	}
	if got := r.Host.Charged(tid); got != 2*cvmLimit {
		t.Errorf("host charged %d", got)
	}
	r.printSlip(t, tx, visaPAN, "301.00")
}

// A stripe-only card is swiped and approved; a chip card swiped is refused when the
// configuration denies the fallback, and nothing goes to the host.
func TestStripe(t *testing.T) {
	r := newRig(t, nil).withPrinter()
	r.SignIn()
	tx, err := r.run(purchase(2000), "swipe", "magstripe-only")
	if err != nil {
		t.Fatal(err)
	}
	if tx.Entry != "02" || tx.CVM != "pin" || tx.PAN != payment.MaskPAN(stripePAN) {
		t.Errorf("stripe purchase %+v", tx)
	}
	req := r.tap.last(t, "0200")
	if req.EntryMode != "021" || !strings.HasPrefix(req.Track2, stripePAN+"=3003101") || req.ICC != nil {
		t.Errorf("request: entry %s, field 55 %d bytes", req.EntryMode, len(req.ICC))
	}
	if e := r.entry(t, tx); e.State != hostsim.StateApproved || e.Amount != 2000 {
		t.Errorf("host entry %+v", e)
	}
	r.readerIdle(t)
	r.printSlip(t, tx, stripePAN, "20.00")

	base := r.Config()
	for name, deny := range map[string]func(*termconfig.Document){
		"magstripeFallback off": func(d *termconfig.Document) { d.PaymentParameters.MagstripeFallback = false },
		"denyFallback": func(d *termconfig.Document) {
			d.EMVSpecialProcessing = []termconfig.EMVSpecialRule{{AID: "A000000333010101", DenyFallback: true}}
		},
	} {
		t.Run(name, func(t *testing.T) {
			doc := *base
			deny(&doc)
			r.Doc.Store(&doc)
			seen := r.financialSeen()
			if _, err := r.run(purchase(2000), "swipe", "unionpay-debit"); !errors.Is(err, checkout.ErrUseChip) {
				t.Errorf("chip card swiped: %v", err)
			}
			if n := r.financialSeen(); n != seen {
				t.Errorf("%d requests went to the host", n-seen)
			}
			r.wantDisplay(t, "Insert the chip")
			r.readerIdle(t)
		})
	}
}

// Void without the card, refund with it, pre-authorisation and its completion, balance.
func TestVoidRefundPreAuthCompletionBalance(t *testing.T) {
	r := newRig(t, nil).withPrinter()
	r.SignIn()

	p1, err := r.run(purchase(10000), "insert", "unionpay-debit")
	if err != nil {
		t.Fatal(err)
	}
	void, err := r.run(checkout.Sale{Op: payment.OpVoid, OrigID: p1.ID, Operator: "01", NoCard: true}, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if orig, _ := r.Engine.Txn(p1.ID); orig.State != payment.StateVoided || void.Amount != 10000 {
		t.Errorf("void: original %s, amount %d", orig.State, void.Amount)
	}
	if e := r.entry(t, p1); e.State != hostsim.StateVoided {
		t.Errorf("host: the purchase is %s", e.State)
	}
	r.wantDisplay(t, "Approved")
	r.printSlip(t, void, debitPAN, "100.00")

	p2, err := r.run(purchase(3000), "insert", "unionpay-credit")
	if err != nil {
		t.Fatal(err)
	}
	if p2.AID != "A000000333010102" {
		t.Errorf("the credit card's first application is not the one selected: %s", p2.AID)
	}
	// The refund reads the card (no PIN: money goes back to it).
	ref, err := r.run(checkout.Sale{Op: payment.OpRefund, Amount: 1000, OrigID: p2.ID, Operator: "01"}, "insert", "unionpay-credit")
	if err != nil {
		t.Fatal(err)
	}
	if ref.CVM == "pin" || ref.Entry != "05" {
		t.Errorf("refund %+v", ref)
	}
	if req := r.tap.last(t, "0220"); req.PINBlock != nil || req.PAN != creditPAN || len(req.ICC) == 0 {
		t.Errorf("refund request: PIN block %d bytes, field 55 %d bytes", len(req.PINBlock), len(req.ICC))
	}
	if e := r.entry(t, p2); e.Refunded != 1000 {
		t.Errorf("host: refunded %d", e.Refunded)
	}
	r.printSlip(t, ref, creditPAN, "10.00")

	pa, err := r.run(checkout.Sale{Op: payment.OpPreAuth, Amount: 5000, Operator: "01"}, "insert", "visa")
	if err != nil {
		t.Fatal(err)
	}
	if req := r.tap.last(t, "0100"); len(req.PINBlock) != 8 || len(req.ICC) == 0 {
		t.Errorf("pre-auth request: PIN block %d bytes, field 55 %d bytes", len(req.PINBlock), len(req.ICC))
	}
	if icc := f55(t, r.tap.last(t, "0100").ICC); icc["9C"] != "03" {
		t.Errorf("pre-auth 9C = %s", icc["9C"])
	}
	if _, held, _ := r.Host.Balance(visaPAN); held != 5000 {
		t.Errorf("host holds %d", held)
	}
	r.printSlip(t, pa, visaPAN, "50.00")
	co, err := r.run(checkout.Sale{Op: payment.OpCompletion, Amount: 4500, OrigID: pa.ID, Operator: "01", NoCard: true}, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if e := r.entry(t, co); e.State != hostsim.StateApproved || e.Amount != 4500 {
		t.Errorf("host completion %+v", e)
	}
	r.printSlip(t, co, visaPAN, "45.00")

	bal, err := r.run(checkout.Sale{Op: payment.OpBalance, Operator: "01"}, "insert", "unionpay-debit")
	if err != nil {
		t.Fatal(err)
	}
	avail, held, _ := r.Host.Balance(debitPAN)
	want := fmt.Sprintf("%d.%02d", (avail-held)/100, (avail-held)%100)
	if !strings.HasSuffix(bal.Balance, fmt.Sprintf("%012d", avail-held)) {
		t.Errorf("balance %q, host has %d", bal.Balance, avail-held)
	}
	if icc := f55(t, r.tap.last(t, "0200").ICC); icc["9C"] != "31" {
		t.Errorf("balance 9C = %s", icc["9C"])
	}
	r.wantDisplay(t, want)
	if got := r.Host.Charged(tid); got != 2000+4500 {
		t.Errorf("host charged %d, want %d", got, 2000+4500)
	}
	r.readerIdle(t)
}

// The cardholder cancels the PIN entry: nothing reaches the host and the reader is off.
// Nobody presents a card: ErrNoCard after CardWait.
func TestCancelAndNoCard(t *testing.T) {
	r := newRig(t, nil)
	r.SignIn()
	if err := r.Pad.ScriptPIN("cancel"); err != nil {
		t.Fatal(err)
	}
	tx, err := r.run(purchase(700), "insert", "unionpay-debit")
	if !errors.Is(err, checkout.ErrCancelled) || !errors.Is(err, pinpad.ErrCancelled) || tx != nil {
		t.Fatalf("cancelled PIN entry: %v %+v", err, tx)
	}
	if n := r.financialSeen(); n != 0 || len(r.Host.Entries(tid)) != 0 {
		t.Errorf("the host saw %d requests, ledger %v", n, r.Host.Entries(tid))
	}
	if st := r.Engine.Status(); st.Txns != 0 || st.Reversals != 0 {
		t.Errorf("engine %+v", st)
	}
	r.wantDisplay(t, "Cancelled")
	r.readerIdle(t)

	// A timed-out entry is a cancellation too.
	if err := r.Pad.ScriptPIN("timeout"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.run(purchase(700), "insert", "unionpay-debit"); !errors.Is(err, checkout.ErrCancelled) {
		t.Fatalf("timed-out PIN entry: %v", err)
	}

	short := checkout.New(checkout.Options{Engine: r.Engine, Reader: func() *cardreader.Reader { return r.reader },
		Pad: func() *pinpad.Client { return r.PadClient }, PINSlot: r.Keys.PINKeySlot, Config: r.Config,
		CardWait: 300 * time.Millisecond, Logger: quiet()})
	if _, err := short.Run(context.Background(), purchase(700)); !errors.Is(err, checkout.ErrNoCard) {
		t.Fatalf("no card: %v", err)
	}
	r.wantDisplay(t, "No card")
	r.readerIdle(t)
	if n := r.financialSeen(); n != 0 {
		t.Errorf("the host saw %d requests", n)
	}
}

// The expired card reads fine — the EMV read only sets the TVR's "expired application" bit,
// terminal action analysis being the host's in this online-only profile — and the host
// declines it with 54.
func TestExpiredCard(t *testing.T) {
	r := newRig(t, nil)
	r.SignIn()
	tx, err := r.run(purchase(1000), "insert", "expired")
	if !errors.Is(err, payment.ErrDeclined) || tx == nil || tx.RespCode != "54" {
		t.Fatalf("expired card: %v %+v", err, tx)
	}
	req := r.tap.last(t, "0200")
	if req.PAN != expiredPAN || req.Expiry != "1912" {
		t.Errorf("request: expiry %s", req.Expiry)
	}
	if tvr := f55(t, req.ICC)["95"]; len(tvr) != 10 || tvr[2:4] != "40" {
		t.Errorf("TVR %s: the expired bit is not set", tvr)
	}
	if e := r.entry(t, tx); e.State != hostsim.StateDeclined || e.RespCode != "54" {
		t.Errorf("host entry %+v", e)
	}
	r.wantDisplay(t, "Declined 54")
	if got := r.Host.Charged(tid); got != 0 {
		t.Errorf("host charged %d", got)
	}
}

// Line faults during the chip read are absorbed by the retransmissions; an unplug mid-read
// ends the operation with a typed error, and after the replug the next one goes through.
func TestReaderFaults(t *testing.T) {
	r := newRig(t, nil)
	r.SignIn()

	before := r.reader.Stats()
	r.cards.SetFaults(cardemu.Faults{Noise: true, Corrupt: true, Limit: 3})
	tx, err := r.run(purchase(1200), "insert", "mastercard")
	if err != nil {
		t.Fatalf("through noise and corrupted frames: %v", err)
	}
	if tx.State != payment.StateApproved || tx.AID != "A0000000041010" {
		t.Errorf("purchase %+v", tx)
	}
	s := r.reader.Stats()
	if s.BadFrames-before.BadFrames < 3 || s.GarbageBytes == before.GarbageBytes {
		t.Errorf("the faults did not happen: %+v", s)
	}
	r.cards.SetFaults(cardemu.Faults{})

	// Unplug while the card answers an APDU: the reader holds the answer back (a slow card),
	// and the cable goes meanwhile.
	holder := make(chan error, 1)
	go func() {
		holder <- func() error {
			if err := <-r.cardholder("insert", "unionpay-debit"); err != nil {
				return err
			}
			// The read is under way once the reader powered the card and took an APDU.
			served := r.cards.Served()
			if !eventually(func() bool { return r.cards.Served() >= served+2 }) {
				return errors.New("the read never started")
			}
			r.cards.SetFaults(cardemu.Faults{Delay: time.Hour})
			held := r.cards.Served()
			if !eventually(func() bool { return r.cards.Served() > held }) {
				return errors.New("no APDU came after the slowdown")
			}
			r.cards.Unplug()
			return nil
		}()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait)
	defer cancel()
	seen := r.financialSeen()
	_, err = r.co.Run(ctx, purchase(1300))
	if herr := <-holder; herr != nil {
		t.Fatal(herr)
	}
	if !errors.Is(err, checkout.ErrCardRead) || !serial.IsGone(err) {
		t.Fatalf("unplugged mid-read: %v", err)
	}
	if n := r.financialSeen(); n != seen {
		t.Errorf("%d requests went to the host", n-seen)
	}
	r.wantDisplay(t, "Card error")

	r.cards.SetFaults(cardemu.Faults{})
	r.cards.Remove()
	if err := r.cards.Replug(); err != nil {
		t.Fatal(err)
	}
	if !eventually(func() bool {
		c, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := r.reader.Status(c)
		return err == nil
	}) {
		t.Fatalf("the reader is not back: %v", r.reader.Err())
	}
	tx, err = r.run(purchase(1400), "insert", "unionpay-debit")
	if err != nil {
		t.Fatalf("after the replug: %v", err)
	}
	if got := r.Host.Charged(tid); got != 1200+1400 {
		t.Errorf("host charged %d", got)
	}
	r.readerIdle(t)
	_ = tx
}

// A card inserted before the operation starts — the cardholder was quicker than the cashier,
// or left the card in the slot after the last one — is read, not waited for; events left
// over from before the operation (a card inserted and taken out again) do not count.
func TestCardInsertedBeforehand(t *testing.T) {
	r := newRig(t, nil)
	r.SignIn()
	co := checkout.New(checkout.Options{Engine: r.Engine, Reader: func() *cardreader.Reader { return r.reader },
		Pad: func() *pinpad.Client { return r.PadClient }, PINSlot: r.Keys.PINKeySlot, Config: r.Config,
		CardWait: time.Second, Logger: quiet()})
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait)
	defer cancel()

	// Inserted and taken out between operations: two stale events, no card.
	if err := r.cards.Insert("visa"); err != nil {
		t.Fatal(err)
	}
	r.cards.Remove()
	if !eventually(func() bool { return r.reader.Stats().Events >= 2 }) {
		t.Fatalf("reader events %+v", r.reader.Stats())
	}
	if _, err := co.Run(ctx, purchase(800)); !errors.Is(err, checkout.ErrNoCard) {
		t.Fatalf("after a card came and went: %v", err)
	}

	// Inserted before the operation, and left in the slot for the next one.
	if err := r.cards.Insert("unionpay-debit"); err != nil {
		t.Fatal(err)
	}
	for _, amount := range []int64{900, 1000} {
		tx, err := co.Run(ctx, purchase(amount))
		if err != nil {
			t.Fatalf("card in the slot, purchase of %d: %v", amount, err)
		}
		if tx.PAN != payment.MaskPAN(debitPAN) || tx.Entry != "05" {
			t.Errorf("purchase %+v", tx)
		}
	}
	r.cards.Remove()
	if got := r.Host.Charged(tid); got != 900+1000 {
		t.Errorf("host charged %d", got)
	}
}

// BenchmarkChipPurchase is a whole chip purchase with the PIN: the pad's prompt, the
// cardholder's insert, the EMV read over the emulated reader's pty, the PIN block from the
// pad's pty, the MACed 0200 to the host simulator on loopback and back.
func BenchmarkChipPurchase(b *testing.B) {
	r := newRig(b, func(d *termconfig.Document) { d.HostParameters.MaxBatchSize = 100_000 })
	r.SignIn()
	b.ResetTimer()
	for b.Loop() {
		if _, err := r.run(purchase(100), "insert", "unionpay-debit"); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	s := r.reader.Stats()
	b.ReportMetric(float64(s.Requests)/float64(b.N), "reader-requests/op")
}
