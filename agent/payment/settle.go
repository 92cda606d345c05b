package payment

import (
	"context"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/posagent/posagent/agent/iso8583"
	"github.com/posagent/posagent/agent/termconfig"
)

// Network management codes (field 60.3) of settlement and batch upload; they must match the
// host (docs/hostsim.md).
const (
	netSettle    = "201"
	netUpload    = "201"
	netUploadEnd = "202"
)

// Settle closes the batch (seed 004 §6.3.2): owed reversals first, then the totals (0500).
// Balanced: the batch is cleared and its number goes up by one. Unbalanced: every successful
// transaction is uploaded (0320), then the end of the upload, then the batch is cleared.
// Each step is committed, so a settlement interrupted anywhere resumes where it stopped —
// an upload from the break point (§6.3.3).
func (e *Engine) Settle(ctx context.Context, operator string) (SettlementTotals, error) {
	e.opMu.Lock()
	defer e.opMu.Unlock()
	doc := e.o.Config()
	if err := e.ready(doc); err != nil {
		return SettlementTotals{}, err
	}
	if err := e.reverseOwed(ctx, doc); err != nil {
		return SettlementTotals{}, err
	}
	// Unsent offline transactions go first (seed 004 §6.3.2).
	if err := e.uploadStored(ctx, doc); err != nil {
		return SettlementTotals{}, err
	}
	e.mu.Lock()
	p := e.m.Settle
	e.mu.Unlock()
	if p == nil {
		totals, err := e.totals()
		if err != nil {
			return SettlementTotals{}, err
		}
		totals.Time = e.now().Unix()
		if err := e.commitMeta(ctx, func(m *meta) error {
			m.Settle = &settleProgress{Batch: m.Batch, Totals: totals}
			return nil
		}, nil); err != nil {
			return SettlementTotals{}, err
		}
		e.mu.Lock()
		p = e.m.Settle
		e.mu.Unlock()
	}
	if !p.Answered {
		if err := e.sendTotals(ctx, doc, p, operator); err != nil {
			return p.Totals, err
		}
	}
	e.mu.Lock()
	p = e.m.Settle
	e.mu.Unlock()
	if p.Upload && !p.UploadDone {
		if err := e.upload(ctx, doc, p); err != nil {
			return p.Totals, err
		}
	}
	e.mu.Lock()
	p = e.m.Settle
	e.mu.Unlock()
	return p.Totals, e.closeBatch(ctx, doc, p)
}

// Totals are the open batch's totals as its settlement will send them (reports).
func (e *Engine) Totals() (SettlementTotals, error) { return e.totals() }

// totals adds up the batch as the seed defines debit and credit. A voided purchase still
// counts as a debit (its void counts as a credit).
func (e *Engine) totals() (SettlementTotals, error) {
	e.mu.Lock()
	batch := e.m.Batch
	e.mu.Unlock()
	st := SettlementTotals{Batch: batch}
	err := e.view(func(tx *bolt.Tx) error {
		return eachTxn(tx, func(t *Txn) error {
			if t.Batch != batch || (t.State != StateApproved && t.State != StateVoided) {
				return nil
			}
			amount := t.Amount + t.Tip
			switch {
			case t.Debit() && t.Domestic:
				st.DomDebitCount++
				st.DomDebit += amount
			case t.Debit():
				st.ForDebitCount++
				st.ForDebit += amount
			case t.Credit() && t.Domestic:
				st.DomCreditCount++
				st.DomCredit += amount
			case t.Credit():
				st.ForCreditCount++
				st.ForCredit += amount
			}
			return nil
		})
	})
	return st, err
}

func (e *Engine) sendTotals(ctx context.Context, doc *termconfig.Document, p *settleProgress, operator string) error {
	stan, _, err := e.nextSTAN(ctx)
	if err != nil {
		return err
	}
	tid, mid := identity(doc)
	t := p.Totals
	f48 := iso8583.Totals{DomDebitCount: t.DomDebitCount, DomDebit: t.DomDebit, DomCreditCount: t.DomCreditCount, DomCredit: t.DomCredit,
		ForDebitCount: t.ForDebitCount, ForDebit: t.ForDebit, ForCreditCount: t.ForCreditCount, ForCredit: t.ForCredit}
	req := &iso8583.Msg{MTI: "0500", STAN: stan, TID: tid, MID: mid, AddData: f48.Encode(), Currency: currency(doc),
		F60: iso8583.F60{Type: "00", Batch: fmt.Sprintf("%06d", p.Batch), NetCode: netSettle}}
	if operator != "" {
		req.F63 = fmt.Sprintf("%03s", operator)
	}
	ans, err := e.exchange(ctx, doc, req, false)
	if err != nil {
		return hostErr(err) // the totals may be sent again: nothing moved
	}
	if ans.RespCode != "00" {
		return fmt.Errorf("%w: settlement: %s", ErrDeclined, ans.RespCode)
	}
	res, err := iso8583.ParseTotals(ans.AddData)
	if err != nil {
		return fmt.Errorf("payment: settlement answer: %w", err)
	}
	return e.commitMeta(ctx, func(m *meta) error {
		if m.Settle == nil {
			return fmt.Errorf("payment: settlement vanished")
		}
		m.Settle.Answered = true
		m.Settle.Totals.DomBalanced = res.DomResult == 1 || (t.DomDebitCount+t.DomCreditCount == 0 && res.DomResult == 0)
		m.Settle.Totals.ForBalanced = res.ForResult == 1 || (t.ForDebitCount+t.ForCreditCount == 0 && res.ForResult == 0)
		m.Settle.Upload = !m.Settle.Totals.DomBalanced || !m.Settle.Totals.ForBalanced
		return nil
	}, nil)
}

// uploadable: the successful transactions a batch upload sends (not inquiries,
// pre-authorisations, reversed or declined ones).
func uploadable(t *Txn) bool {
	if t.State != StateApproved && t.State != StateVoided {
		return false
	}
	return t.Op != OpPreAuth && t.Op != OpPreAuthVoid && t.Op != OpBalance
}

// upload sends what the batch upload still owes, one transaction at a time, each recorded as
// sent once the host answered it; then the end of the upload.
func (e *Engine) upload(ctx context.Context, doc *termconfig.Document, p *settleProgress) error {
	var todo []*Txn
	err := e.view(func(tx *bolt.Tx) error {
		return eachTxn(tx, func(t *Txn) error {
			if t.Batch == p.Batch && uploadable(t) && !slices.Contains(p.Uploaded, t.ID) {
				todo = append(todo, t)
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	tid, mid := identity(doc)
	for _, t := range todo {
		pan, err := e.openPAN(t.ID)
		if err != nil {
			return err
		}
		spec := specs[t.Op]
		req := &iso8583.Msg{MTI: "0320", PAN: pan, ProcCode: spec.proc, Amount: t.Amount + t.Tip, HasAmount: true, STAN: t.STAN,
			Expiry: t.Expiry, EntryMode: t.Entry + "2", CardSeq: t.CardSeq, CondCode: spec.cond, RRN: t.RRN, AuthCode: t.AuthCode,
			TID: tid, MID: mid, Currency: t.Currency, ICC: t.ICC,
			F60: iso8583.F60{Type: spec.f60, Batch: fmt.Sprintf("%06d", t.Batch), NetCode: netUpload}}
		if t.Orig != nil {
			req.F61 = iso8583.F61{Batch: fmt.Sprintf("%06d", t.Orig.Batch), Trace: fmt.Sprintf("%06d", t.Orig.STAN), Date: t.Orig.Date}
		}
		ans, err := e.exchange(ctx, doc, req, true)
		if err != nil {
			return fmt.Errorf("payment: batch upload stopped at trace %06d: %w", t.STAN, hostErr(err))
		}
		if ans.RespCode != "00" {
			e.log.Warn("batch upload: host refused a transaction", "stan", t.STAN, "resp", ans.RespCode)
		}
		id := t.ID
		if err := e.commitMeta(ctx, func(m *meta) error {
			m.Settle.Uploaded = append(m.Settle.Uploaded, id)
			return nil
		}, nil); err != nil {
			return err
		}
	}
	stan, _, err := e.nextSTAN(ctx)
	if err != nil {
		return err
	}
	req := &iso8583.Msg{MTI: "0320", STAN: stan, TID: tid, MID: mid, AddData: fmt.Sprintf("%04d", len(p.Uploaded)+len(todo)),
		F60: iso8583.F60{Type: "00", Batch: fmt.Sprintf("%06d", p.Batch), NetCode: netUploadEnd}}
	ans, err := e.exchange(ctx, doc, req, false)
	if err != nil {
		return fmt.Errorf("payment: end of batch upload: %w", hostErr(err))
	}
	if ans.RespCode != "00" {
		return fmt.Errorf("%w: end of batch upload: %s", ErrDeclined, ans.RespCode)
	}
	return e.commitMeta(ctx, func(m *meta) error { m.Settle.UploadDone = true; return nil }, nil)
}

// closeBatch clears the settled batch and opens the next, in one transaction.
func (e *Engine) closeBatch(ctx context.Context, doc *termconfig.Document, p *settleProgress) error {
	var cleared int
	err := e.commitMeta(ctx, func(m *meta) error {
		m.Settle = nil
		m.Count = 0
		// Only the settled batch moves on: a sign-in after a cut may already have taken the
		// host's next batch number.
		if m.Batch == p.Batch {
			m.Batch = m.Batch%999999 + 1
		}
		return nil
	}, func(tx *bolt.Tx, m *meta) error {
		var err error
		cleared, err = clearBatch(tx, p.Batch)
		return err
	})
	if err != nil {
		return err
	}
	e.log.Info("batch settled", "batch", p.Batch, "transactions", cleared, "balanced", p.Totals.DomBalanced && p.Totals.ForBalanced, "uploaded", len(p.Uploaded))
	e.event(ctx, "payment.settled", map[string]any{"batch": p.Batch, "domBalanced": p.Totals.DomBalanced,
		"forBalanced": p.Totals.ForBalanced, "uploaded": len(p.Uploaded), "transactions": cleared})
	if doc.HostParameters.AutoSignOff {
		if err := e.signOff(ctx, doc); err != nil {
			e.log.Warn("automatic sign-off after settlement", "err", err)
		}
	}
	return nil
}
