package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/posagent/posagent/agent/checkout"
	"github.com/posagent/posagent/agent/payment"
	"github.com/posagent/posagent/agent/receipt"
	"github.com/posagent/posagent/agent/termconfig"
	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/keystore/softkeys"
)

// openPayments opens the transaction engine and the checkout on the terminal's devices.
func (a *Agent) openPayments(ctx context.Context) error {
	root, err := softkeys.FileRootKey(a.cfg.RootKeyFile()).RootKey()
	if err != nil {
		return fmt.Errorf("payment: device root key: %w", err)
	}
	sealer, err := payment.NewSealer(root)
	clear(root)
	if err != nil {
		return err
	}
	a.pay, err = payment.Open(ctx, payment.Options{DB: a.db, Commit: a.commit, Keys: a.keys, Sealer: sealer,
		Config:  a.term.Active,
		License: func() error { return a.lic.Check("payments") },
		Event:   a.event,
		POSLog: func(ctx context.Context, e payment.LogEntry) {
			if _, err := a.Outbox.Append(ctx, tmsproto.StreamLogPOS, "pos", e); err != nil {
				a.log.Warn("POS log record not queued", "err", err)
			}
		},
		Logger: a.log})
	if err != nil {
		return err
	}
	a.checkout = checkout.New(checkout.Options{Engine: a.pay, Reader: a.hw.CardReader, Pad: a.hw.PINPad,
		PINSlot: a.keys.PINKeySlot, Config: a.term.Active, Logger: a.log})
	return nil
}

// Payments is the transaction engine (for the cash-register API, the diagnostics port and
// tests).
func (a *Agent) Payments() *payment.Engine { return a.pay }

// Pay runs a card operation at the terminal and delivers its slips: printed, sent as an
// electronic receipt (up/receipt), as the print profile says.
func (a *Agent) Pay(ctx context.Context, s checkout.Sale) (*payment.Txn, error) {
	return a.sale(ctx, a.checkout, s, true)
}

// sale runs an operation through a checkout under the operator rules; print=false leaves
// the paper slips to a cash register that prints its own (electronic receipts still go).
func (a *Agent) sale(ctx context.Context, co *checkout.Checkout, s checkout.Sale, print bool) (*payment.Txn, error) {
	if err := a.operatorRules(&s); err != nil {
		return nil, err
	}
	return a.runSale(ctx, co, s, print)
}

// ecrSale runs an operation a cash register started. The terminal's operator rules (sign-on,
// supervisor approvals) are the terminal menu's: the cash register's own cashier controls
// authorise what it starts, and protected mode authenticates the cash register itself. The
// signed-on operator, if any, is still recorded.
func (a *Agent) ecrSale(ctx context.Context, co *checkout.Checkout, s checkout.Sale, print bool) (*payment.Txn, error) {
	if sess, ok := a.ops.Current(); ok && sess.CanTransact() {
		s.Operator = sess.Code
	}
	return a.runSale(ctx, co, s, print)
}

func (a *Agent) runSale(ctx context.Context, co *checkout.Checkout, s checkout.Sale, print bool) (*payment.Txn, error) {
	release, err := a.gate.enter()
	if err != nil {
		return nil, err
	}
	defer release()
	t, err := co.Run(ctx, s)
	if t != nil && (err == nil || errors.Is(err, payment.ErrDeclined)) {
		a.deliverSlips(ctx, t, err != nil, print)
	}
	return t, err
}

// merchant is the slips' merchant block from the terminal configuration.
func merchant(doc *termconfig.Document) receipt.Merchant {
	pp := doc.PrintProfile
	m := receipt.Merchant{Name: doc.AuthHost.MerchantName, MID: doc.AuthHost.MerchantID, TID: doc.AuthHost.TerminalID,
		TaxID: pp.TaxID, Header: pp.HeaderLines, Footer: pp.FooterLines, Language: pp.Language}
	if pp.StoreName != "" {
		m.Name = pp.StoreName
	}
	for _, l := range []string{pp.Address, pp.City} {
		if l != "" {
			m.Address = append(m.Address, l)
		}
	}
	return m
}

// deliverSlips prints and sends the copies of a finished transaction. A printer problem
// never undoes a payment: the slip waits in the print queue or is logged.
func (a *Agent) deliverSlips(ctx context.Context, t *payment.Txn, declined, print bool) {
	doc := a.term.Active()
	m := merchant(doc)
	o := receipt.Options{PINVerified: t.CVM == "pin"}
	if model, ok := a.hw.PrinterModel(); ok {
		o.Model = model
	}
	for _, act := range receipt.Plan(doc.PrintProfile, declined) {
		switch act.Delivery {
		case receipt.DeliverPrint:
			if !print {
				continue
			}
			sp := a.hw.Spooler()
			if sp == nil {
				a.log.Warn("no printer for a slip", "txn", t.ID, "copy", act.Copy)
				continue
			}
			if _, err := sp.Submit(fmt.Sprintf("slip %s %s", t.ID, act.Copy), receipt.SalesSlip(t, m, act.Copy, o)); err != nil {
				a.log.Warn("slip not queued", "txn", t.ID, "err", err)
			}
		case receipt.DeliverElectronic:
			r := receipt.ElectronicWith(t, m, act.Copy, o)
			if err := r.Validate(); err != nil {
				a.log.Error("electronic receipt refused", "txn", t.ID, "err", err)
				continue
			}
			if _, err := a.Outbox.Append(ctx, tmsproto.StreamReceipt, "receipt", r); err != nil {
				a.log.Warn("electronic receipt not queued", "txn", t.ID, "err", err)
			}
		}
	}
}

// Reprint prints a transaction of the batch again, marked as a reprint (the customer's
// copy unless told otherwise).
func (a *Agent) Reprint(ctx context.Context, id string, copy receipt.Copy) error {
	t, err := a.pay.Txn(id)
	if err != nil {
		return err
	}
	sp := a.hw.Spooler()
	if sp == nil {
		return errors.New("no receipt printer on this terminal")
	}
	o := receipt.Options{Reprint: true, PINVerified: t.CVM == "pin"}
	if model, ok := a.hw.PrinterModel(); ok {
		o.Model = model
	}
	_, err = sp.Submit(fmt.Sprintf("reprint %s %s", t.ID, copy), receipt.SalesSlip(t, merchant(a.term.Active()), copy, o))
	return err
}

// Settle closes the batch and prints the totals slip.
func (a *Agent) Settle(ctx context.Context, operator string) (payment.SettlementTotals, error) {
	return a.settle(ctx, operator, true)
}

func (a *Agent) settle(ctx context.Context, operator string, print bool) (payment.SettlementTotals, error) {
	release, err := a.gate.enter()
	if err != nil {
		return payment.SettlementTotals{}, err
	}
	defer release()
	st, err := a.pay.Settle(ctx, operator)
	if err != nil {
		return st, err
	}
	a.followTestMode(ctx, a.term.Active()) // a switch waiting for an empty batch
	a.triggerStats()
	if sp := a.hw.Spooler(); sp != nil && print {
		o := receipt.Options{}
		if model, ok := a.hw.PrinterModel(); ok {
			o.Model = model
		}
		if _, err := sp.Submit(fmt.Sprintf("totals batch %d", st.Batch), receipt.TotalsSlip(st, merchant(a.term.Active()), o)); err != nil {
			a.log.Warn("totals slip not queued", "err", err)
		}
	}
	return st, nil
}

// followTestMode applies the TMS's hostParameters.testMode when the batch allows it (empty);
// otherwise the switch waits for the next settlement and says so.
func (a *Agent) followTestMode(ctx context.Context, doc *termconfig.Document) {
	want := doc.HostParameters.TestMode
	if a.pay.Status().Test == want {
		return
	}
	if err := a.pay.SetTestMode(ctx, want); err != nil {
		a.log.Warn("test mode from the TMS not applied yet", "test", want, "err", err)
		return
	}
	a.log.Info("test mode from the TMS", "test", want)
	a.event(ctx, "payment.testMode", map[string]any{"test": want})
}

// runPayments signs the terminal in once its devices are up (at start, which is after any
// power loss, as the host specification asks) and keeps owed reversals going out. A new
// terminal configuration (a host set for the first time) is tried at once; a failure backs
// off.
func (a *Agent) runPayments(ctx context.Context) error {
	updates, cancel := a.term.Subscribe()
	defer cancel()
	select {
	case <-a.hw.Ready():
	case <-ctx.Done():
		return nil
	}
	retry := time.NewTimer(0)
	defer retry.Stop()
	attempt := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case doc := <-updates:
			a.followTestMode(ctx, doc)
			attempt = 0
			retry.Reset(0)
			continue
		case <-a.diag.wakePay:
			// Unlocked: sign in now, not at the next retry.
			attempt = 0
			if !retry.Stop() {
				select {
				case <-retry.C:
				default:
				}
			}
		case <-retry.C:
		}
		if !a.term.Active().AuthHost.Configured() {
			continue // wait for a configuration with a host
		}
		st := a.pay.Status()
		var err error
		switch {
		case st.State == payment.SignedOut:
			if err = a.pay.SignIn(ctx, ""); err == nil {
				a.triggerStats()
			}
		case st.Reversals > 0:
			err = a.pay.Reverse(ctx)
		}
		if err != nil && ctx.Err() == nil {
			attempt++
			d := a.cfg.Backoff().Delay(attempt, nil)
			if errors.Is(err, payment.ErrUnlicensed) {
				d = max(d, 10*time.Second) // until a licence comes; license.put is quick to notice
			} else {
				a.log.Warn("payments: host not ready", "err", err, "retry_in", d)
			}
			retry.Reset(d)
			continue
		}
		attempt = 0
		retry.Reset(time.Minute)
	}
}

// Config is the terminal configuration in effect (shared: do not modify).
func (a *Agent) Config() *termconfig.Document { return a.term.Active() }
