package ecr

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/posagent/posagent/agent/payment"
	"github.com/posagent/posagent/agent/qrpay"
	"github.com/posagent/posagent/agent/termconfig"
)

// DefaultCollectTimeout is how long a successful card operation waits for its cash register
// to collect the result before the terminal reverses it (seed 002 §2.2: the till gave up).
const DefaultCollectTimeout = 180 * time.Second

func collectTimeout(doc *termconfig.Document) time.Duration {
	if s := doc.ECR.CollectTimeoutSec; s > 0 {
		return time.Duration(s) * time.Second
	}
	return DefaultCollectTimeout
}

// actualize re-asks the outcome of an unknown process (seed 003 §4.18).
func (s *Server) actualize(ctx context.Context, id string) answer {
	p, err := s.reg.get(id)
	switch {
	case err != nil:
		return answer{err: errInternal, pid: id}
	case p == nil:
		return answer{err: errProcessNotFound, pid: id}
	case p.Status != StatusUnknown:
		return answer{err: errUnableActualize, pid: id}
	}
	now := s.o.Now()
	if p.Actualized != 0 && now.Sub(time.UnixMilli(p.Actualized)) < s.o.ActualizeEvery {
		return answer{err: serviceError(fmt.Sprintf("Actualize Error. At most once per %d seconds", int(s.o.ActualizeEvery/time.Second))), pid: id}
	}
	p.Actualized = now.UnixMilli()
	s.reg.publish(p)
	st := &opState{s: s, p: p}
	var aerr *Error
	switch {
	case p.OrderID != "" && p.Method != "card":
		aerr = s.actualizeQR(ctx, st)
	case p.TxnID != "":
		aerr = s.actualizeCard(ctx, st)
	case p.Method == "card":
		aerr = errTxnNotFound
	default:
		aerr = errUnsupported
	}
	if aerr != nil {
		if err := s.reg.save(context.WithoutCancel(ctx), st.snapshot(nil)); err != nil {
			s.log.Warn("ecr: actualize time not saved", "process", id, "err", err)
		}
		return answer{err: aerr, pid: id}
	}
	cur, _ := s.reg.get(id)
	if cur == nil {
		return answer{err: errInternal, pid: id}
	}
	if cur.Final() && cur.Status != StatusUnknown && !cur.Collected {
		s.collected(cur)
	}
	return answer{data: cur.view(), pid: id}
}

// actualizeCard lets the engine send the reversal it owes, then reads the transaction.
func (s *Server) actualizeCard(ctx context.Context, st *opState) *Error {
	t, err := s.term.Txn(st.p.TxnID)
	if err != nil {
		return errTxnNotFound
	}
	if t.State == payment.StateReversing || t.State == payment.StatePending {
		rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		rerr := s.term.Reverse(rctx)
		cancel()
		if t, err = s.term.Txn(st.p.TxnID); err != nil {
			return errTxnNotFound
		}
		if t.State == payment.StateReversing || t.State == payment.StatePending {
			s.log.Info("ecr: actualize: reversal still owed", "process", st.p.ID, "err", rerr)
			return errNoInternet
		}
	}
	orig := s.origFor(st.p)
	s.cardResult(ctx, st, t, nil, typeOf(st.p.Kind), orig)
	return nil
}

// actualizeQR asks the provider; an order still open is withdrawn (the process is over).
func (s *Server) actualizeQR(ctx context.Context, st *opState) *Error {
	qr, err := s.term.QR()
	if err != nil {
		return errUnsupported
	}
	o, err := qr.Get(ctx, st.p.OrderID)
	if err == nil && !o.Final() {
		o, err = qr.Cancel(ctx, st.p.OrderID)
		if errors.Is(err, qrpay.ErrFinal) {
			err = nil
		}
	}
	switch {
	case errors.Is(err, qrpay.ErrNotFound):
		return errTxnNotFound
	case err != nil:
		return errNoInternet
	}
	out := &outcome{status: StatusFail, sub: SubQrFailure, msg: "The customer did not pay", order: o}
	if o.Status == qrpay.StatusPaid {
		out = &outcome{status: StatusSuccess, sub: SubQrSuccess, order: o}
	}
	s.qrResult(ctx, st, out, "payment")
	return nil
}

// typeOf is the cheque type of a process kind.
func typeOf(kind string) string {
	switch kind {
	case "preauth/complete":
		return "completion"
	case "emergencycancel":
		return "cancel"
	}
	return kind
}

// origFor finds the sale a refund, void or completion worked on (for the ledger update
// when its outcome is learnt late).
func (s *Server) origFor(p *Process) *Sale {
	kind := map[string]string{"refund": "payment", "void": "payment", "preauth/complete": "preauth"}[p.Kind]
	if kind == "" || p.Ref == "" {
		return nil
	}
	for _, m := range []string{"card", "qr"} {
		if sale, err := s.reg.sale(m, p.Ref); err == nil && sale != nil && sale.Kind == kind {
			return sale
		}
	}
	return nil
}

// cancel is /v2/cancel: stop the operation in progress. Before the host it just stops; an
// operation the host approves after this is reversed.
func (s *Server) cancel(id string) answer {
	p, err := s.reg.get(id)
	if err != nil {
		return answer{err: errInternal, pid: id}
	}
	if p == nil {
		return answer{err: errProcessNotFound, pid: id}
	}
	if !p.Final() {
		s.mu.Lock()
		if s.cur != nil && s.cur.id == id {
			s.cur.abortReq = true
			if !s.cur.atHost {
				s.cur.cancel()
			}
		}
		s.mu.Unlock()
	}
	return answer{data: p.view(), pid: id}
}

// reportData is /v2/report.
type reportData struct {
	Totals       Totals       `json:"totals"`
	Transactions []reportLine `json:"transactions,omitempty"`
}

type reportLine struct {
	Type     string `json:"type"`
	Amount   string `json:"amount"`
	CardMask string `json:"cardMask,omitempty"`
	RRN      string `json:"rrn,omitempty"`
	Auth     string `json:"authorizationCode,omitempty"`
	Date     string `json:"date"`
	State    string `json:"state"`
}

// report is the current batch's totals (short) or totals and lines (full), printed unless the
// cash register prints.
func (s *Server) report(ctx context.Context, req Request) answer {
	doc := s.term.Config()
	short := req.Short || doc.ECR.ShortReport
	op := termconfig.OpFullReport
	if short {
		op = termconfig.OpShortReport
	}
	if !doc.Allows(op) {
		return answer{err: errBlockedHTTP}
	}
	tot, err := s.term.Totals()
	if err != nil {
		return answer{err: errInternal}
	}
	d := reportData{Totals: *totalsOf(doc, tot)}
	if !short {
		batch, err := s.term.Batch()
		if err != nil {
			return answer{err: errInternal}
		}
		for i := range batch {
			t := &batch[i]
			d.Transactions = append(d.Transactions, reportLine{Type: typeOfOp(t.Op), Amount: wholeText(doc, t.Amount), CardMask: t.PAN,
				RRN: t.RRN, Auth: t.AuthCode, Date: time.Unix(t.Time, 0).Format(chequeDate), State: string(t.State)})
		}
	}
	if !req.OwnCheque {
		if err := s.term.PrintReport(ctx, short); err != nil {
			return answer{err: serviceError("Report Error. " + firstUpper(err.Error()))}
		}
	}
	return answer{data: d}
}

// receiptCopy prints a slip again: of the transaction named, or the last one.
func (s *Server) receiptCopy(ctx context.Context, req Request) answer {
	if !s.term.Config().Allows(termconfig.OpReceiptCopy) {
		return answer{err: errBlockedHTTP}
	}
	batch, err := s.term.Batch()
	if err != nil {
		return answer{err: errInternal}
	}
	var t *payment.Txn
	for i := len(batch) - 1; i >= 0; i-- {
		if batch[i].State == payment.StateApproved && (req.TransactionID == "" || batch[i].RRN == req.TransactionID) {
			t = &batch[i]
			break
		}
	}
	if t == nil {
		return answer{err: unvalidated("transactionId", "Transaction not found")}
	}
	if err := s.term.Reprint(ctx, t.ID); err != nil {
		return answer{err: serviceError("Receipt Error. " + firstUpper(err.Error()))}
	}
	return answer{data: map[string]any{"transactionId": t.RRN, "chequeInfo": cardCheque(s.term.Config(), t, typeOfOp(t.Op))}}
}

func typeOfOp(op payment.Op) string {
	switch op {
	case payment.OpPurchase:
		return "payment"
	case payment.OpPreAuth:
		return "preauth"
	case payment.OpCompletion:
		return "completion"
	case payment.OpCashWithdrawal:
		return "cashwithdrawal"
	case payment.OpTopUp:
		return "topup"
	}
	return string(op)
}

// echo checks the link to the bank (seed 002: connection check).
func (s *Server) echo(ctx context.Context) answer {
	if !s.term.Config().Allows(termconfig.OpEchoTest) {
		return answer{err: errBlockedHTTP}
	}
	if s.reg.activeID() != "" {
		return answer{err: errBusy}
	}
	start := s.o.Now()
	ectx, cancel := context.WithTimeout(ctx, 60*time.Second)
	err := s.term.Echo(ectx)
	cancel()
	d := map[string]any{"connected": err == nil, "ms": s.o.Now().Sub(start).Milliseconds()}
	if err != nil {
		d["message"] = firstUpper(err.Error())
	}
	return answer{data: d}
}

// Run resolves what a restart interrupted, reverses abandoned operations and keeps the
// retention, until ctx ends; then it waits for the operation in progress.
func (s *Server) Run(ctx context.Context) error {
	s.recover(ctx)
	close(s.recovered)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	purge := time.NewTicker(time.Hour)
	defer purge.Stop()
	s.housekeep(ctx)
	for {
		select {
		case <-ctx.Done():
			s.mu.Lock()
			if s.cur != nil && !s.cur.atHost {
				s.cur.cancel()
			}
			s.mu.Unlock()
			s.wg.Wait()
			return nil
		case <-tick.C:
		case <-s.watch:
		case <-purge.C:
			s.housekeep(ctx)
		}
		s.abandoned(ctx)
	}
}

func (s *Server) housekeep(ctx context.Context) {
	if err := s.reg.purge(ctx); err != nil {
		s.log.Warn("ecr: process retention", "err", err)
	}
	if err := s.reg.purgeSales(ctx); err != nil {
		s.log.Warn("ecr: sales retention", "err", err)
	}
}

// recover settles the processes a restart interrupted from the engine's journal (card) or
// the provider (QR), and puts uncollected successes under watch.
func (s *Server) recover(ctx context.Context) {
	ps, err := s.reg.pending()
	if err != nil {
		s.log.Error("ecr: unfinished processes not read", "err", err)
		return
	}
	if len(ps) == 0 {
		return
	}
	batch, err := s.term.Batch()
	if err != nil {
		s.log.Error("ecr: batch not read for recovery", "err", err)
	}
	for _, p := range ps {
		s.reg.publish(p)
		if p.Final() {
			continue // a success not collected yet: the watcher has it
		}
		st := &opState{s: s, p: p}
		var t *payment.Txn
		for i := len(batch) - 1; i >= 0; i-- {
			if batch[i].ECR == p.ID {
				t = &batch[i]
				break
			}
		}
		switch {
		case t != nil:
			p.Method = "card"
			s.cardResult(ctx, st, t, nil, typeOf(p.Kind), s.origFor(p))
			if p2, _ := s.reg.get(p.ID); p2 != nil && p2.Status == StatusSuccess {
				s.log.Info("ecr: operation finished before the restart", "process", p.ID)
			}
		case p.OrderID != "":
			if aerr := s.actualizeQR(ctx, st); aerr != nil {
				s.finish(ctx, st, func(p *Process) {
					p.Status, p.SubStatus, p.Message = StatusUnknown, SubQrFailure, "QR outcome unknown after a restart"
				}, "", "", nil)
			}
		case p.Kind == "refund" && p.Method == "qr":
			// The provider may have refunded before the cut; only it can say.
			s.finish(ctx, st, func(p *Process) {
				p.Status, p.SubStatus, p.Message = StatusUnknown, SubQrFailure, "QR refund interrupted by a restart; check it with the provider"
			}, "", "", nil)
		case p.Kind == "settlement":
			s.finish(ctx, st, func(p *Process) {
				p.Status, p.SubStatus, p.Message = StatusUnknown, SubProcessCancelled, "Interrupted by a restart; the terminal finishes the settlement"
			}, "", "", nil)
		default:
			// Nothing reached the journal, so nothing reached the bank.
			s.finish(ctx, st, func(p *Process) {
				p.Status, p.SubStatus, p.Message = StatusFail, SubProcessCancelled, "Interrupted by a restart before reaching the bank"
			}, "", "", nil)
		}
	}
}

// reversible kinds: what emergency cancel may take back.
var reversible = map[string]bool{"payment": true, "refund": true, "preauth": true, "preauth/complete": true, "cashwithdrawal": true, "topup": true}

// abandoned reverses successful card operations the cash register did not collect in time.
func (s *Server) abandoned(ctx context.Context) {
	if s.reg.activeID() != "" {
		return // the engine is busy; the cancel waits (and fails if another operation came after)
	}
	limit := collectTimeout(s.term.Config())
	now := s.o.Now()
	for _, p := range s.reg.uncollected() {
		if p.Method != "card" || !reversible[p.Kind] || p.TxnID == "" || now.Sub(time.UnixMilli(p.Finished)) < limit {
			continue
		}
		s.log.Warn("ecr: result not collected by the cash register: reversing", "process", p.ID, "kind", p.Kind, "after", limit)
		_, err := s.term.CancelLast(ctx, p.TxnID, false)
		rec := &CancelRec{Reason: "abandoned", At: now.UnixMilli(), Done: err == nil}
		cur, gerr := s.reg.get(p.ID)
		if gerr != nil || cur == nil {
			continue
		}
		cur.Cancel = rec
		var sale *Sale
		if err != nil {
			rec.Error = err.Error()
			s.log.Error("ecr: abandoned operation not reversed", "process", p.ID, "err", err)
		} else {
			cur.Status, cur.SubStatus = StatusFail, SubProcessCancelled
			cur.Message = "Result not collected by the cash register in time; the operation was reversed"
			sale, _ = s.cancelledSale(cur, nil)
		}
		if err := s.reg.finish(context.WithoutCancel(ctx), cur, "card", cur.TransactionID, sale); err != nil {
			s.log.Error("ecr: abandoned operation not recorded", "process", p.ID, "err", err)
		}
		body := map[string]any{"process": p.ID, "kind": p.Kind, "txn": p.TxnID, "reversed": err == nil, "reason": "not collected"}
		if err != nil {
			body["error"] = err.Error()
		}
		s.o.Event(ctx, "ecr.abandoned", body)
	}
}
