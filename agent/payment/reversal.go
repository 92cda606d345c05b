package payment

import (
	"context"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/posagent/posagent/agent/iso8583"
	"github.com/posagent/posagent/agent/termconfig"
)

// DefaultReversalTries is how many times a reversal is sent before it is held for manual
// handling, when the configuration's resendCount is 0.
const DefaultReversalTries = 3

// ErrReversalOwed: a reversal could not be delivered; nothing new goes to the host before it.
var ErrReversalOwed = errors.New("payment: a reversal is owed to the host")

// reverseOwed sends every owed reversal, oldest first. It returns ErrReversalOwed when one
// is still owed afterwards (the host did not take it and it has tries left). The caller
// holds opMu.
func (e *Engine) reverseOwed(ctx context.Context, doc *termconfig.Document) error {
	var owed []*Txn
	err := e.view(func(tx *bolt.Tx) error {
		return eachIn(tx, func(t *Txn) error {
			owed = append(owed, t)
			return nil
		}, StatePending, StateReversing)
	})
	if err != nil {
		return err
	}
	tries := int(doc.HostParameters.ResendCount)
	if tries <= 0 {
		tries = DefaultReversalTries
	}
	for _, t := range owed {
		if err := e.reverse(ctx, doc, t, tries); err != nil {
			return err
		}
	}
	return nil
}

// reverse sends one 0400 for t. The attempt is counted durably before it is sent, so a power
// cut cannot make the limit endless.
func (e *Engine) reverse(ctx context.Context, doc *termconfig.Document, t *Txn, tries int) error {
	if err := e.finish(ctx, t, func(x *Txn) { x.State = StateReversing; x.ReversalTries++ }); err != nil {
		return err
	}
	pan, err := e.openPAN(t.ID)
	if err != nil {
		// Without the card number no reversal can be built: only a person can settle this.
		return e.hold(ctx, t, "card number not readable: "+err.Error())
	}
	spec := specs[t.Op]
	tid, mid := identity(doc)
	req := &iso8583.Msg{MTI: "0400", PAN: pan, ProcCode: spec.proc, Amount: t.Amount, HasAmount: true, STAN: t.STAN,
		Expiry: t.Expiry, EntryMode: t.Entry + "2", CardSeq: t.CardSeq, CondCode: spec.cond, AuthCode: t.AuthCode,
		RespCode: reversalReason(t.DoubtReason), TID: tid, MID: mid, Currency: t.Currency, ICC: t.ICC,
		F60: iso8583.F60{Type: spec.f60, Batch: fmt.Sprintf("%06d", t.Batch), NetCode: "000"}}
	// No field 61: the reversal names the transaction it undoes by its own trace number and
	// batch (fields 11 and 60.2). A void's field 61 points at the purchase, and a host that
	// looked there would undo the purchase instead of the void.
	ans, xerr := e.exchange(ctx, doc, req, true)
	switch {
	case xerr == nil && (ans.RespCode == "00" || ans.RespCode == "25" || ans.RespCode == "12"):
		// 25/12: the host never saw the original — nothing was charged, nothing to undo.
		if err := e.reversed(ctx, t, ans.RespCode); err != nil {
			return err
		}
		e.log.Info("reversed", "id", t.ID, "stan", t.STAN, "op", t.Op, "tries", t.ReversalTries)
		e.event(ctx, "payment.reversed", map[string]any{"id": t.ID, "stan": t.STAN, "op": string(t.Op), "amount": t.Amount, "reason": t.DoubtReason})
		return nil
	case t.ReversalTries >= tries:
		why := "no answer"
		if xerr == nil {
			why = "refused: " + ans.RespCode
		}
		return e.hold(ctx, t, why)
	default:
		if xerr != nil {
			return fmt.Errorf("%w: %w", ErrReversalOwed, hostErr(xerr))
		}
		return fmt.Errorf("%w: host answered %s", ErrReversalOwed, ans.RespCode)
	}
}

// reversed records a delivered reversal. A transaction that had been approved (an emergency
// cancel) also gives its original back what it took: a void's original is approved again, a
// refund no longer counts against it.
func (e *Engine) reversed(ctx context.Context, t *Txn, resp string) error {
	return e.update(ctx, func(tx *bolt.Tx) error {
		cur, err := readTxn(tx, t.ID)
		if err != nil {
			return err
		}
		wasApproved := cur.DoubtReason == "cancelled"
		cur.State, cur.RespCode = StateReversed, resp
		if wasApproved && cur.Orig != nil && cur.Orig.ID != "" {
			if o, err := readTxn(tx, cur.Orig.ID); err == nil {
				switch cur.Op {
				case OpVoid, OpCompletionVoid, OpPreAuthVoid, OpCompletion:
					o.State = StateApproved
				case OpRefund:
					o.Refunded -= cur.Amount
				}
				if err := writeTxn(tx, o); err != nil {
					return err
				}
			}
		}
		*t = *cur
		return writeTxn(tx, cur)
	})
}

// hold gives a reversal up to manual handling: the TMS hears it; new transactions go on.
func (e *Engine) hold(ctx context.Context, t *Txn, why string) error {
	if err := e.finish(ctx, t, func(x *Txn) { x.State = StateHeld }); err != nil {
		return err
	}
	e.log.Error("reversal held for manual handling", "id", t.ID, "stan", t.STAN, "op", t.Op, "amount", t.Amount, "why", why)
	e.event(ctx, "payment.reversal.held", map[string]any{"id": t.ID, "stan": t.STAN, "batch": t.Batch,
		"op": string(t.Op), "amount": t.Amount, "pan": t.PAN, "why": why})
	return nil
}

// reversalReason is field 39 of a 0400: why the terminal reverses.
func reversalReason(doubt string) string {
	switch doubt {
	case "bad answer":
		return "96"
	case "interrupted":
		return "06"
	}
	return "98" // no answer
}

// Reverse sends the reversals owed now (at start, after a link comes back, on demand).
func (e *Engine) Reverse(ctx context.Context) error {
	e.opMu.Lock()
	defer e.opMu.Unlock()
	doc := e.o.Config()
	if !doc.AuthHost.Configured() {
		return ErrNoHost
	}
	return e.reverseOwed(ctx, doc)
}

// CancelLast reverses the last approved transaction at the customer's or cash register's
// request (emergency cancel, seed 002 §2.4): allowed only for the batch's latest financial
// transaction while nothing came after it.
func (e *Engine) CancelLast(ctx context.Context, id string) (*Txn, error) {
	e.opMu.Lock()
	defer e.opMu.Unlock()
	doc := e.o.Config()
	var last *Txn
	err := e.view(func(tx *bolt.Tx) error {
		return eachTxn(tx, func(t *Txn) error {
			last = t
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	if last == nil || last.ID != id {
		return nil, fmt.Errorf("%w: only the last transaction can be cancelled", ErrNotAllowed)
	}
	if last.State != StateApproved {
		return last, fmt.Errorf("%w: transaction is %s", ErrNotAllowed, last.State)
	}
	if err := e.finish(ctx, last, func(x *Txn) { x.DoubtReason = "cancelled" }); err != nil {
		return nil, err
	}
	tries := int(doc.HostParameters.ResendCount)
	if tries <= 0 {
		tries = DefaultReversalTries
	}
	err = e.reverse(ctx, doc, last, tries)
	t, _ := e.Txn(id)
	return t, err
}
