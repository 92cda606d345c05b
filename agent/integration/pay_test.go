package integration

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/posagent/posagent/agent"
	"github.com/posagent/posagent/agent/checkout"
	"github.com/posagent/posagent/agent/operator"
	"github.com/posagent/posagent/agent/payment"
	"github.com/posagent/posagent/agent/receipt"
	"github.com/posagent/posagent/agent/termconfig"
	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/board/sim/cardemu"
	"github.com/posagent/posagent/board/sim/pinpademu"
	"github.com/posagent/posagent/board/sim/printeremu"
	"github.com/posagent/posagent/board/sim/pty"
	"github.com/posagent/posagent/internal/hostsim"
)

// The whole terminal: the agent in this process with the PIN pad, card reader and printer
// emulators on pseudo-terminals, the host simulator over TCP, and the TMS provisioning it —
// master key (keys.load), licence (license.put), host and merchant (config.apply). The agent
// signs in by itself; purchases are made at the terminal by a cardholder tapping a card and
// typing the PIN, slips come out of the printer, the merchant copy goes up electronically,
// every host exchange is in the POS log; the batch settles.

const (
	payTID = "TID00042"
	payMID = "MID000000000042"
)

type payRig struct {
	e       *env
	a       *agent.Agent
	extra   string // the agent's configuration beyond the harness's
	kek     []byte // the master key the TMS loaded
	host    *hostsim.Server
	reader  *cardemu.Emulator
	printer *printeremu.Emulator
	pad     *pinpademu.Emulator
}

// rigOptions change the whole terminal's world before it starts.
type rigOptions struct {
	host func(*hostsim.Config)
	doc  func(*termconfig.Document)
	// start starts the agent with the rig's configuration (default: startInProcessAgent).
	start func(e *env, extra string) *agent.Agent
}

func newPayRig(t *testing.T, device string, opts ...rigOptions) *payRig {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	e := newEnv(t, device)
	set := newKeySet(t)

	hcfg := hostsim.Config{Listen: "127.0.0.1:0",
		Terminals: []hostsim.Terminal{{TID: payTID, MID: payMID, KEK: hex.EncodeToString(set.kek), KeyLayout: "double"}},
		Accounts:  hostsim.DefaultAccounts()}
	for _, o := range opts {
		if o.host != nil {
			o.host(&hcfg)
		}
	}
	host, err := hostsim.New(hcfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { host.Close() })

	padCfg, pad := pinpadConfig(t) // the pad types 123456 when asked (DefaultPIN below)
	dir := t.TempDir()
	rline, err := pty.Open(dir, "cardreader")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rline.Close() })
	reader := cardemu.Start(rline, cardemu.Default(), cardemu.Options{Logger: quiet})
	t.Cleanup(func() { reader.Close() })
	pline, err := pty.Open(dir, "printer")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pline.Close() })
	printer, err := printeremu.New(pline, printeremu.Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { printer.Close() })

	relPub, relKey, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	extra := padCfg + fmt.Sprintf(`
[[devices]]
name = "cardreader"
kind = "cardreader"
[devices.port]
path = %q
baud = 115200

[[devices]]
name = "printer"
kind = "printer"
[devices.port]
path = %q
baud = 115200

[ecr]
listen = "127.0.0.1:0"

[[license.release_keys]]
id = "rel-1"
public_key = %q
`, rline.Path(), pline.Path(), base64.StdEncoding.EncodeToString(relPub))
	start := (*env).startInProcessAgent
	for _, o := range opts {
		if o.start != nil {
			start = o.start
		}
	}
	a := start(e, extra)
	e.statsKeys(t, 0)

	doc := termconfig.Default()
	doc.Version = 2
	doc.AuthHost = termconfig.AuthHost{Addresses: []string{host.Addr()}, TerminalID: payTID, MerchantID: payMID,
		MerchantName: "ТОО Алма", TPDU: "6000030000", NII: "003", ConnectTimeoutSec: 2}
	doc.HostParameters.ResponseTimeoutSec = 5
	doc.BINRanges = []termconfig.BINRange{{Low: "4", High: "5", Scheme: termconfig.SchemeVisa, Region: termconfig.RegionForeign}}
	doc.PrintProfile.MerchantCopy = termconfig.CopyElectronic
	doc.PrintProfile.CustomerCopy = termconfig.CopyPrint
	for _, o := range opts {
		if o.doc != nil {
			o.doc(doc)
		}
	}
	body, err := termconfig.Encode(doc)
	if err != nil {
		t.Fatal(err)
	}
	e.provisionPayments(t, set.kek, relKey, body) // as the TMS does it
	waitFor(t, 30*time.Second, "signed in", func() bool { return a.Payments().Status().State == payment.Normal })
	return &payRig{e: e, a: a, extra: extra, kek: set.kek, host: host, reader: reader, printer: printer, pad: pad}
}

// cborRaw passes an encoded body through send unchanged.
type cborRaw []byte

func (c cborRaw) MarshalCBOR() ([]byte, error) { return c, nil }

func TestPaymentsAtTheTerminal(t *testing.T) {
	r := newPayRig(t, "IT-PAY-1")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// The card goes into the slot; the PIN is asked on the pad.
	if err := r.reader.Insert("unionpay-debit"); err != nil {
		t.Fatal(err)
	}
	txn, err := r.a.Pay(ctx, checkout.Sale{Op: payment.OpPurchase, Amount: 12345})
	if err != nil {
		t.Fatal(err)
	}
	r.reader.Remove()
	if txn.State != payment.StateApproved || txn.CVM != "pin" || txn.Entry != "05" {
		t.Errorf("purchase %+v", txn)
	}
	if got := r.host.Charged(payTID); got != 12345 {
		t.Errorf("host charged %d", got)
	}

	// The customer's slip is printed; the merchant's goes up as an electronic receipt.
	waitFor(t, 20*time.Second, "customer slip", func() bool { return len(r.printer.Receipts()) > 0 })
	slip := r.printer.Receipts()[0].Text
	if !strings.Contains(slip, "622848") || !strings.Contains(slip, "2344") || strings.Contains(slip, "6228480000000012344") || !strings.Contains(slip, "123,45") {
		t.Errorf("customer slip:\n%s", slip)
	}
	waitFor(t, 20*time.Second, "electronic receipt", func() bool { return len(r.e.stream(tmsproto.StreamReceipt)) > 0 })
	// A copy printed again later says so.
	if err := r.a.Reprint(ctx, txn.ID, receipt.CopyCustomer); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "reprint", func() bool {
		rs := r.printer.Receipts()
		return len(rs) > 1 && strings.Contains(rs[len(rs)-1].Text, "ДУБЛИКАТ")
	})
	// Every host exchange is in the POS log, masked.
	waitFor(t, 20*time.Second, "POS log", func() bool { return len(r.e.stream(tmsproto.StreamLogPOS)) >= 4 })
	for _, env := range r.e.stream(tmsproto.StreamLogPOS) {
		if strings.Contains(string(env.Body), "6228480000000012344") {
			t.Errorf("full PAN in the POS log")
		}
	}

	// Void it at the terminal without the card — a supervisor approves voids (seed 004
	// §6.2): first the factory password is changed, then the approval is given.
	if _, err := r.a.Pay(ctx, checkout.Sale{Op: payment.OpVoid, OrigID: txn.ID, NoCard: true}); !errors.Is(err, agent.ErrApprovalRequired) {
		t.Fatalf("void without approval: %v", err)
	}
	sess, err := r.a.Operators().SignOn(ctx, "00", "123456")
	if !errors.Is(err, operator.ErrMustChange) {
		t.Fatalf("supervisor's first sign-on: %v", err)
	}
	if err := r.a.Operators().SetPassword(ctx, sess, "00", "123456", "739155"); err != nil {
		t.Fatal(err)
	}
	approval, err := r.a.Authorise(ctx, payment.OpVoid, "00", "739155")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.a.Pay(ctx, checkout.Sale{Op: payment.OpVoid, OrigID: txn.ID, NoCard: true, Approval: approval}); err != nil {
		t.Fatalf("void: %v", err)
	}
	// Then settle: nothing owed, balanced.
	if err := r.reader.Insert("visa"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.a.Pay(ctx, checkout.Sale{Op: payment.OpPurchase, Amount: 5000}); err != nil {
		t.Fatal(err)
	}
	r.reader.Remove()
	st, err := r.a.Settle(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if st.DomDebitCount != 1 || st.DomCreditCount != 1 || st.ForDebitCount != 1 || !st.DomBalanced || !st.ForBalanced {
		t.Errorf("totals %+v", st)
	}
	if s := r.a.Payments().Status(); s.Batch != 2 || s.Txns != 0 {
		t.Errorf("after settlement %+v", s)
	}
	waitFor(t, 20*time.Second, "totals slip", func() bool {
		for _, rc := range r.printer.Receipts() {
			if strings.Contains(rc.Text, "ИТОГ") || strings.Contains(rc.Text, "Итог") || strings.Contains(rc.Text, "итог") {
				return true
			}
		}
		return false
	})
	// The stats carry the payment state.
	r.e.send(t, "stats.now", nil)
	all := r.e.stream(tmsproto.StreamStats)
	var s struct {
		Payment payment.Status `cbor:"payment"`
	}
	if err := looseUnmarshal(all[len(all)-1].Body, &s); err != nil || s.Payment.Batch != 2 || s.Payment.State != payment.Normal {
		t.Errorf("stats payment %+v (%v)", s.Payment, err)
	}
}

// With operator login on, only a signed-on operator transacts: not nobody, not the
// supervisor; the operator's code goes with the transaction.
func TestOperatorLoginRules(t *testing.T) {
	r := newPayRig(t, "IT-PAY-2")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ops := r.a.Operators()
	sup, err := ops.SignOn(ctx, "00", "123456")
	if !errors.Is(err, operator.ErrMustChange) {
		t.Fatal(err)
	}
	if err := ops.SetPassword(ctx, sup, "00", "123456", "739155"); err != nil {
		t.Fatal(err)
	}
	if sup, err = ops.SignOn(ctx, "00", "739155"); err != nil {
		t.Fatal(err)
	}
	if err := ops.Add(ctx, sup, operator.Operator{Code: "01", Role: operator.RoleOperator, Name: "Айгерим"}, "582914"); err != nil {
		t.Fatal(err)
	}

	doc := *r.a.Config()
	doc.Version++
	doc.CashierProfile.OperatorLogin = true
	body, err := termconfig.Encode(&doc)
	if err != nil {
		t.Fatal(err)
	}
	if ack := r.e.send(t, "config.apply", cborRaw(body)); ack.State != tmsproto.StateSucceeded {
		t.Fatalf("config.apply: %+v", ack)
	}
	// The supervisor is signed on: supervisors do not transact.
	if _, err := r.a.Pay(ctx, checkout.Sale{Op: payment.OpPurchase, Amount: 100}); !errors.Is(err, agent.ErrOperatorRequired) {
		t.Fatalf("purchase by the supervisor: %v", err)
	}
	if err := ops.SignOff(ctx, sup); err != nil {
		t.Fatal(err)
	}
	if _, err := r.a.Pay(ctx, checkout.Sale{Op: payment.OpPurchase, Amount: 100}); !errors.Is(err, agent.ErrOperatorRequired) {
		t.Fatalf("purchase with nobody signed on: %v", err)
	}
	// The new operator must change the password set for them first.
	cs, err := ops.SignOn(ctx, "01", "582914")
	if !errors.Is(err, operator.ErrMustChange) {
		t.Fatal(err)
	}
	if err := ops.SetPassword(ctx, cs, "01", "582914", "604317"); err != nil {
		t.Fatal(err)
	}
	if _, err := ops.SignOn(ctx, "01", "604317"); err != nil {
		t.Fatal(err)
	}
	if err := r.reader.Insert("unionpay-credit"); err != nil {
		t.Fatal(err)
	}
	txn, err := r.a.Pay(ctx, checkout.Sale{Op: payment.OpPurchase, Amount: 700})
	r.reader.Remove()
	if err != nil {
		t.Fatal(err)
	}
	if txn.Operator != "01" {
		t.Errorf("operator on the transaction %q", txn.Operator)
	}
}
