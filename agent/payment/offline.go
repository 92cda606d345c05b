package payment

import (
	"context"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/posagent/posagent/agent/iso8583"
	"github.com/posagent/posagent/agent/termconfig"
)

// Offline settlement and settlement adjustment (seed 004 §7.2) are approved at the terminal
// and uploaded to the host later (0220): before the next online request or only at the
// settlement, as hostParameters.offlineUploadMode says, and always before the totals.

// Offline stores an offline settlement: a sale authorised by other means (a voice
// authorisation code), uploaded later.
func (e *Engine) Offline(ctx context.Context, r Request, authCode string) (*Txn, error) {
	if r.Card == nil || r.Card.PAN == "" || r.Amount <= 0 {
		return nil, fmt.Errorf("%w: an offline settlement needs a card and an amount", ErrBadRequest)
	}
	r.Op = OpOffline
	return e.store(ctx, r, nil, authCode)
}

// Adjust stores a settlement adjustment (a tip) on an approved purchase of this batch.
func (e *Engine) Adjust(ctx context.Context, origID string, tip int64, operator string) (*Txn, error) {
	if tip <= 0 {
		return nil, fmt.Errorf("%w: tip %d", ErrBadRequest, tip)
	}
	doc := e.o.Config()
	if !doc.HostParameters.TipsEnabled {
		return nil, fmt.Errorf("%w: tips are off", ErrNotAllowed)
	}
	o, err := e.Txn(origID)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	batch := e.m.Batch
	e.mu.Unlock()
	if o.Op != OpPurchase || o.State != StateApproved || o.Batch != batch {
		return nil, fmt.Errorf("%w: an adjustment needs an approved purchase of this batch", ErrBadRequest)
	}
	if max := int64(doc.HostParameters.TipMaxPercent); max > 0 && tip*100 > o.Amount*max {
		return nil, fmt.Errorf("%w: tip above %d%% of the purchase", ErrNotAllowed, max)
	}
	return e.store(ctx, Request{Op: OpAdjustment, Amount: tip, OrigID: origID, Operator: operator}, o, "")
}

// store journals a locally approved transaction as stored (nothing is sent now).
func (e *Engine) store(ctx context.Context, r Request, orig *Txn, authCode string) (*Txn, error) {
	e.opMu.Lock()
	defer e.opMu.Unlock()
	doc := e.o.Config()
	if err := e.ready(doc); err != nil {
		return nil, err
	}
	e.mu.Lock()
	settling := e.m.Settle != nil
	e.mu.Unlock()
	if settling {
		return nil, ErrSettlePending
	}
	pan, expiry, err := e.cardNumber(r, orig)
	if err != nil {
		return nil, err
	}
	t, err := e.journal(ctx, doc, r, opSpec{financial: true}, orig, pan, expiry)
	if err != nil {
		return nil, err
	}
	err = e.finish(ctx, t, func(x *Txn) { x.State, x.AuthCode = StateStored, authCode })
	return t, err
}

// offlineSpec is how stored transactions travel when uploaded.
var offlineSpec = map[Op]opSpec{
	OpOffline:    {mti: "0220", proc: "000000", cond: "00", f60: "30"},
	OpAdjustment: {mti: "0220", proc: "000000", cond: "00", f60: "32"},
}

// uploadStored sends every stored transaction (0220). An unanswered upload stays stored and
// goes again later: the host answers a repeat as a duplicate (94), which counts as done. The
// caller holds opMu.
func (e *Engine) uploadStored(ctx context.Context, doc *termconfig.Document) error {
	var stored []*Txn
	if err := e.view(func(tx *bolt.Tx) error {
		return eachIn(tx, func(t *Txn) error {
			stored = append(stored, t)
			return nil
		}, StateStored)
	}); err != nil {
		return err
	}
	tid, mid := identity(doc)
	for _, t := range stored {
		pan, err := e.openPAN(t.ID)
		if err != nil {
			return err
		}
		spec := offlineSpec[t.Op]
		req := &iso8583.Msg{MTI: spec.mti, PAN: pan, ProcCode: spec.proc, Amount: t.Amount, HasAmount: true, STAN: t.STAN,
			Expiry: t.Expiry, EntryMode: t.Entry + "2", CardSeq: t.CardSeq, CondCode: spec.cond, AuthCode: t.AuthCode,
			TID: tid, MID: mid, Currency: t.Currency, ICC: t.ICC,
			F60: iso8583.F60{Type: spec.f60, Batch: fmt.Sprintf("%06d", t.Batch), NetCode: "000"}}
		if t.Orig != nil {
			req.F61 = iso8583.F61{Batch: fmt.Sprintf("%06d", t.Orig.Batch), Trace: fmt.Sprintf("%06d", t.Orig.STAN), Date: t.Orig.Date}
			req.RRN = t.Orig.RRN
		}
		ans, err := e.exchange(ctx, doc, req, true)
		if err != nil {
			if errors.Is(err, errBadAnswer) {
				continue // answered but not trustworthy: it goes again, as a duplicate if it counted
			}
			return fmt.Errorf("payment: offline upload: %w", hostErr(err))
		}
		switch ans.RespCode {
		case "00", "94":
			err = e.finish(ctx, t, func(x *Txn) {
				x.State, x.Uploaded, x.RespCode = StateApproved, true, ans.RespCode
				if ans.RRN != "" {
					x.RRN = ans.RRN
				}
			})
		default:
			e.log.Warn("offline transaction refused by the host", "id", t.ID, "stan", t.STAN, "resp", ans.RespCode)
			e.event(ctx, "payment.offline.refused", map[string]any{"id": t.ID, "stan": t.STAN, "amount": t.Amount, "resp": ans.RespCode})
			err = e.finish(ctx, t, func(x *Txn) { x.State, x.RespCode = StateDeclined, ans.RespCode })
		}
		if err != nil {
			return err
		}
	}
	return nil
}
