package ecr

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/posagent/posagent/agent/checkout"
	"github.com/posagent/posagent/agent/payment"
	"github.com/posagent/posagent/agent/qrpay"
	"github.com/posagent/posagent/agent/termconfig"
)

// operations maps the process endpoints to the configuration's operation names
// (allowedOperations): an operation the TMS did not allow is blocked (106).
var operations = map[string]termconfig.Operation{
	"payment": termconfig.OpPayment, "refund": termconfig.OpRefund, "void": termconfig.OpVoid,
	"settlement": termconfig.OpSettlement, "preauth": termconfig.OpPreAuth,
	"preauth/complete": termconfig.OpPreAuthCompletion, "balance": termconfig.OpBalance,
	"cashwithdrawal": termconfig.OpCashWithdrawal, "topup": termconfig.OpTopUp,
	"readcard": termconfig.OpReadCard, "emergencycancel": termconfig.OpEmergencyCancel,
	"report": termconfig.OpFullReport, "receiptcopy": termconfig.OpReceiptCopy, "echo": termconfig.OpEchoTest,
}

// Reasons an operation stops before the host.
var (
	errPaidByQR    = errors.New("the customer paid by QR")
	errOtherCard   = errors.New("refund to a card other than the payment's")
	errCashierStop = errors.New("cancelled by the cash register")
)

// opState is an operation in progress: its process, shared by the branches that work on
// it (card and QR), under one lock.
type opState struct {
	s  *Server
	mu sync.Mutex
	// p.Method is the method the customer chose ("card" or "qr"): the first to claim wins.
	p *Process
}

// sub publishes a new sub-status (memory only). Publishing under the operation's lock keeps
// the order of the branches' changes.
func (o *opState) sub(sub string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.p.SubStatus = sub
	cp := *o.p
	o.s.reg.publish(&cp)
}

// save commits a change of the unfinished process; the published copy is then the latest
// state, not the snapshot the commit carried (a sub-status may have moved meanwhile).
func (o *opState) save(ctx context.Context, change func(p *Process)) error {
	err := o.s.reg.save(ctx, o.snapshot(change))
	o.mu.Lock()
	defer o.mu.Unlock()
	cp := *o.p
	o.s.reg.publish(&cp)
	return err
}

func (o *opState) claim(method string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.p.Method == "" {
		o.p.Method = method
	}
	return o.p.Method == method
}

func (o *opState) claimedBy() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.p.Method
}

// snapshot copies the process for saving.
func (o *opState) snapshot(change func(p *Process)) *Process {
	o.mu.Lock()
	defer o.mu.Unlock()
	if change != nil {
		change(o.p)
	}
	cp := *o.p
	return &cp
}

// start checks and records an operation, then runs it in the background.
func (s *Server) start(ctx context.Context, req Request, name, remote string) answer {
	doc := s.term.Config()
	if op, ok := operations[req.Endpoint]; ok && !doc.Allows(op) {
		return answer{err: errBlockedHTTP}
	}
	p := &Process{Kind: req.Endpoint, Status: StatusWait, SubStatus: SubInitialize, Amount: req.Amount,
		OwnCheque: req.OwnCheque, ECR: name, Remote: remote, Ref: req.TransactionID}
	if req.Endpoint == "emergencycancel" {
		p.Ref = req.ProcessID
	}
	run, aerr := s.prepare(doc, req, p)
	if aerr != nil {
		return answer{err: aerr}
	}
	if err := s.reg.begin(ctx, p, true); err != nil {
		if errors.Is(err, ErrBusy) {
			return answer{err: errBusy}
		}
		return answer{err: startFailed(err.Error())}
	}
	opCtx, cancel := context.WithCancel(context.Background()) // not the request's: it outlives the call
	s.mu.Lock()
	s.cur = &running{id: p.ID, cancel: cancel}
	s.mu.Unlock()
	st := &opState{s: s, p: p}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer cancel()
		run(opCtx, st)
		s.mu.Lock()
		if s.cur != nil && s.cur.id == p.ID {
			s.cur = nil
		}
		s.mu.Unlock()
		s.reg.release(p.ID)
		s.poke()
	}()
	return answer{data: map[string]string{"processId": p.ID, "status": StatusWait}, pid: p.ID}
}

// poke wakes the abandonment watcher.
func (s *Server) poke() {
	select {
	case s.watch <- struct{}{}:
	default:
	}
}

// runner carries out a recorded operation.
type runner func(ctx context.Context, st *opState)

// blockedState is 106 when the engine cannot take card operations now.
func (s *Server) blockedState() *Error {
	switch s.term.PaymentStatus().State {
	case payment.SignedOut, payment.Locked:
		return errBlocked
	}
	return nil
}

// prepare validates an operation against the terminal's state and the originals it names,
// and returns what runs it. Nothing is recorded when it refuses.
func (s *Server) prepare(doc *termconfig.Document, req Request, p *Process) (runner, *Error) {
	amount := minor(doc, req.Amount)
	cardOnly := func() *Error {
		if doc.ECR.QROnly {
			return errBlockedHTTP
		}
		return s.blockedState()
	}
	switch req.Endpoint {
	case "payment":
		if doc.ECR.QROnly || s.blockedState() != nil {
			if _, err := s.term.QR(); err != nil {
				if doc.ECR.QROnly {
					return nil, errBlocked
				}
				return nil, s.blockedState()
			}
		}
		return func(ctx context.Context, st *opState) { s.runPayment(ctx, st, amount) }, nil
	case "refund":
		sale, aerr := s.original(req.Method, req.TransactionID, "payment")
		if aerr != nil {
			return nil, aerr
		}
		if sale.Voided {
			return nil, unvalidated("transactionId", "Transaction is voided or cancelled")
		}
		p.Method = req.Method // known from the start: a restart must know how to ask
		if left := sale.Amount - sale.Refunded; amount > left {
			return nil, unvalidated("amount", fmt.Sprintf("Must be at most %s", wholeText(doc, left)))
		}
		if req.Method == "card" {
			if e := cardOnly(); e != nil {
				return nil, e
			}
		}
		return func(ctx context.Context, st *opState) { s.runRefund(ctx, st, sale, amount) }, nil
	case "void":
		sale, aerr := s.original("card", req.TransactionID, "payment")
		if aerr != nil {
			return nil, aerr
		}
		if sale.Voided || sale.Refunded > 0 {
			return nil, unvalidated("transactionId", "Transaction is already voided or refunded")
		}
		if req.HasAmount && amount != sale.Amount {
			return nil, unvalidated("amount", "Must equal the payment's amount")
		}
		if e := cardOnly(); e != nil {
			return nil, e
		}
		return func(ctx context.Context, st *opState) {
			s.runCard(ctx, st, checkout.Sale{Op: payment.OpVoid, Amount: sale.Amount, OrigID: sale.TxnID,
				NoCard: !doc.HostParameters.SwipeRequiredForVoid}, sale, "void")
		}, nil
	case "preauth/complete":
		sale, aerr := s.original("card", req.TransactionID, "preauth")
		if aerr != nil {
			return nil, aerr
		}
		if sale.Completed || sale.Voided {
			return nil, unvalidated("transactionId", "Pre-authorization is already completed")
		}
		if amount > sale.Amount {
			return nil, unvalidated("amount", fmt.Sprintf("Must be at most %s", wholeText(doc, sale.Amount)))
		}
		if e := cardOnly(); e != nil {
			return nil, e
		}
		return func(ctx context.Context, st *opState) {
			s.runCard(ctx, st, checkout.Sale{Op: payment.OpCompletion, Amount: amount, OrigID: sale.TxnID, Orig: sale.Orig, NoCard: true}, sale, "completion")
		}, nil
	case "preauth", "cashwithdrawal", "topup", "balance":
		if e := cardOnly(); e != nil {
			return nil, e
		}
		op := map[string]payment.Op{"preauth": payment.OpPreAuth, "cashwithdrawal": payment.OpCashWithdrawal,
			"topup": payment.OpTopUp, "balance": payment.OpBalance}[req.Endpoint]
		return func(ctx context.Context, st *opState) {
			s.runCard(ctx, st, checkout.Sale{Op: op, Amount: amount}, nil, req.Endpoint)
		}, nil
	case "readcard":
		if doc.ECR.QROnly {
			return nil, errBlockedHTTP
		}
		return s.runReadCard, nil
	case "settlement":
		if e := s.blockedState(); e != nil {
			return nil, e
		}
		return s.runSettlement, nil
	case "emergencycancel":
		orig, err := s.reg.get(req.ProcessID)
		if err != nil {
			return nil, errInternal
		}
		if orig == nil {
			return nil, errProcessNotFound
		}
		switch {
		case orig.Status != StatusSuccess || orig.TxnID == "":
			return nil, unvalidated("processId", "Only a successful card operation can be cancelled")
		case orig.Kind == "void" || orig.Kind == "emergencycancel":
			return nil, unvalidated("processId", "A void cannot be cancelled")
		case !reversible[orig.Kind]:
			return nil, unvalidated("processId", "Only a successful card operation can be cancelled")
		case orig.Cancel != nil && orig.Cancel.Done:
			return nil, unvalidated("processId", "Operation is already cancelled")
		}
		return func(ctx context.Context, st *opState) { s.runEmergencyCancel(ctx, st, orig) }, nil
	}
	return nil, errInvalidURL
}

// original finds the sale a refund, void or completion names.
func (s *Server) original(method, txid, kind string) (*Sale, *Error) {
	sale, err := s.reg.sale(method, txid)
	if err != nil {
		return nil, errInternal
	}
	if sale == nil || sale.Kind != kind {
		return nil, unvalidated("transactionId", "Transaction not found")
	}
	return sale, nil
}

// finish records a final state and the sale it makes or changes, under the operation's lock
// so the branches cannot interleave.
func (s *Server) finish(ctx context.Context, st *opState, change func(p *Process), method, txid string, sale *Sale) {
	p := st.snapshot(func(p *Process) {
		change(p)
		p.Finished = s.o.Now().UnixMilli()
	})
	if err := s.reg.finish(context.WithoutCancel(ctx), p, method, txid, sale); err != nil {
		// The store refused: the answer stays "wait" in memory until the restart resolves it
		// from the engine's journal, which is the truth anyway.
		s.log.Error("ecr: final state not saved", "process", p.ID, "err", err)
	}
}

// runCard runs one card operation (everything but payment, refund and read card).
func (s *Server) runCard(ctx context.Context, st *opState, sale checkout.Sale, orig *Sale, typ string) {
	st.claim("card")
	t, err := s.card(ctx, st, sale, nil)
	s.cardResult(ctx, st, t, err, typ, orig)
}

// card drives the checkout, reporting its stages as sub-statuses. veto may stop the
// operation once the card is read.
func (s *Server) card(ctx context.Context, st *opState, sale checkout.Sale, veto func(checkout.Progress) error) (*payment.Txn, error) {
	sale.ECR = st.p.ID
	refund := sale.Op == payment.OpRefund
	sale.Progress = func(pr checkout.Progress) error {
		switch pr.Stage {
		case checkout.StageWaitCard:
			if st.claimedBy() != "qr" {
				st.sub(SubWaitUser)
			}
		case checkout.StageCardRead:
			if veto != nil {
				if err := veto(pr); err != nil {
					return err
				}
			}
			st.sub(SubProcessingCard)
		case checkout.StageWaitPIN:
			st.sub(SubWaitForPinCode)
		case checkout.StageHost:
			s.mu.Lock()
			if s.cur != nil && s.cur.id == st.p.ID {
				s.cur.atHost = true
			}
			s.mu.Unlock()
			if refund {
				st.sub(SubProcessRefund)
			} else {
				st.sub(SubProcessingCard)
			}
		}
		return nil
	}
	return s.term.Card(ctx, sale, !st.p.OwnCheque)
}

// cardResult turns a card operation's outcome into the final state, and reverses an
// approved operation the cash register asked to cancel meanwhile.
func (s *Server) cardResult(ctx context.Context, st *opState, t *payment.Txn, err error, typ string, orig *Sale) {
	doc := s.term.Config()
	if t != nil && t.State == payment.StateApproved && err == nil && s.abortRequested(st.p.ID) {
		s.log.Info("ecr: approved operation cancelled by the cash register: reversing", "process", st.p.ID)
		if _, cerr := s.term.CancelLast(context.WithoutCancel(ctx), t.ID, !st.p.OwnCheque); cerr == nil {
			s.finish(ctx, st, func(p *Process) {
				p.Status, p.SubStatus, p.Message, p.TxnID = StatusFail, SubProcessCancelled, "Cancelled by the cash register; reversed", t.ID
				p.Cancel = &CancelRec{Reason: "requested", At: s.o.Now().UnixMilli(), Done: true}
			}, "", "", nil)
			return
		} else {
			s.log.Warn("ecr: cancel after approval failed", "process", st.p.ID, "err", cerr)
		}
	}
	status, sub, msg := cardOutcome(t, err, s.abortRequested(st.p.ID))
	var sale *Sale
	var key string
	if status == StatusSuccess {
		switch typ {
		case "payment", "preauth":
			sale = &Sale{Method: "card", Kind: typ, Amount: t.Amount, TxnID: t.ID, CardMask: t.PAN, Time: t.Time,
				Orig: &payment.OrigRef{ID: t.ID, Batch: t.Batch, STAN: t.STAN, Date: t.HostDate, RRN: t.RRN, Auth: t.AuthCode}}
			key = t.RRN
		case "refund":
			cp := *orig
			cp.Refunded += t.Amount
			sale, key = &cp, orig.Orig.RRN
		case "void":
			cp := *orig
			cp.Voided = true
			sale, key = &cp, orig.Orig.RRN
		case "completion":
			cp := *orig
			cp.Completed = true
			sale, key = &cp, orig.Orig.RRN
		}
	}
	s.finish(ctx, st, func(p *Process) {
		p.Status, p.SubStatus, p.Message = status, sub, msg
		if t != nil {
			p.TxnID = t.ID
		}
		if status == StatusSuccess {
			p.Method, p.TransactionID = "card", t.RRN
			p.Cheque = cardCheque(doc, t, typ)
			p.AddInfo = &AddInfo{ProductType: t.CardOrg}
			if t.Op == payment.OpBalance {
				p.Balance = t.Balance
			}
		}
	}, "card", key, sale)
}

// cardOutcome maps a checkout's result to status, sub-status and message.
func cardOutcome(t *payment.Txn, err error, aborted bool) (status, sub, msg string) {
	if t != nil {
		switch t.State {
		case payment.StateApproved:
			if err == nil {
				return StatusSuccess, SubCardSuccess, ""
			}
		case payment.StateDeclined:
			return StatusFail, SubCardFailure, "Declined by the bank (code " + t.RespCode + ")"
		case payment.StateReversing, payment.StateHeld, payment.StatePending:
			return StatusUnknown, SubCardFailure, "No answer from the bank; the operation is being reversed"
		case payment.StateReversed:
			return StatusFail, SubCardFailure, "No answer from the bank; the operation was reversed"
		}
	}
	switch {
	case aborted || errors.Is(err, errCashierStop):
		return StatusFail, SubProcessCancelled, "Cancelled by the cash register"
	case errors.Is(err, checkout.ErrCancelled):
		return StatusFail, SubProcessCancelled, "Cancelled by the customer"
	case errors.Is(err, checkout.ErrNoCard):
		return StatusFail, SubProcessCancelled, "No card presented in time"
	case errors.Is(err, errOtherCard):
		return StatusFail, SubCardFailure, "Refund must go to the card of the payment"
	case errors.Is(err, payment.ErrHostDown):
		return StatusFail, SubCardFailure, "Bank unreachable; nothing was charged"
	case errors.Is(err, context.Canceled):
		return StatusFail, SubProcessCancelled, "Operation cancelled"
	case err != nil:
		return StatusFail, SubCardFailure, firstUpper(err.Error())
	}
	return StatusFail, SubCardFailure, "Operation failed"
}

// abortRequested says whether the cash register asked to cancel the operation.
func (s *Server) abortRequested(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur != nil && s.cur.id == id && s.cur.abortReq
}

// runPayment offers the customer both card and QR (seed 003 §3.6): the QR order is shown
// while the reader waits for a card, and the first to be used wins.
func (s *Server) runPayment(ctx context.Context, st *opState, amount int64) {
	doc := s.term.Config()
	qr, qerr := s.term.QR()
	cardOn := !doc.ECR.QROnly && s.blockedState() == nil
	qrOn := qerr == nil
	if !cardOn && !qrOn {
		s.finish(ctx, st, func(p *Process) {
			p.Status, p.SubStatus, p.Message = StatusFail, SubCardFailure, "No payment method available"
		}, "", "", nil)
		return
	}
	cardCtx, cancelCard := context.WithCancel(ctx)
	defer cancelCard()
	qrCtx, cancelQR := context.WithCancel(ctx)
	defer cancelQR()

	var wg sync.WaitGroup
	var qrOut *outcome
	orderCh := make(chan string, 1) // the order, once created (or "" when none)
	if qrOn {
		wg.Add(1)
		go func() {
			defer wg.Done()
			qrOut = s.qrBranch(qrCtx, st, qr, amount, currencyOf(doc), orderCh, cancelCard, cardOn)
		}()
	} else {
		orderCh <- ""
	}
	var t *payment.Txn
	var cerr error
	if cardOn {
		veto := func(checkout.Progress) error {
			if qrOn {
				if err := s.takeFromQR(ctx, st, qr, orderCh); err != nil {
					return err
				}
			}
			if !st.claim("card") {
				return errPaidByQR
			}
			cancelQR()
			return nil
		}
		t, cerr = s.card(cardCtx, st, checkout.Sale{Op: payment.OpPurchase, Amount: amount}, veto)
		if cerr != nil && st.claimedBy() == "" {
			s.log.Info("ecr: the card was not used", "process", st.p.ID, "err", cerr)
		}
	}
	wg.Wait()
	switch {
	case st.claimedBy() == "card" || !qrOn:
		s.cardResult(ctx, st, t, cerr, "payment", nil)
	case st.claimedBy() == "qr" || !cardOn:
		s.qrResult(ctx, st, qrOut, "payment")
	default:
		// Nobody chose: both ended (cancelled, timed out). The card's reason speaks.
		if s.abortRequested(st.p.ID) {
			cerr = errCashierStop
		}
		s.cardResult(ctx, st, t, cerr, "payment", nil)
	}
}

// takeFromQR withdraws the QR order once the card is read: cancelled at the provider before
// the card goes to the host. An order the customer has already paid wins over the card.
func (s *Server) takeFromQR(ctx context.Context, st *opState, qr QRProvider, orderCh chan string) error {
	var id string
	select {
	case id = <-orderCh:
		orderCh <- id // others may look too
	default:
		return nil // no order yet: the QR branch gives up when it sees the card's claim
	}
	if id == "" || st.claimedBy() == "card" {
		return nil
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	o, err := qr.Cancel(cctx, id)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, qrpay.ErrFinal) && o.Status == qrpay.StatusPaid:
		return errPaidByQR
	case errors.Is(err, qrpay.ErrFinal):
		return nil
	}
	// The provider cannot be asked: the card goes on (the customer holds it out); the order
	// is cancelled again when the QR branch stops.
	s.log.Warn("ecr: QR order not withdrawn before the card", "process", st.p.ID, "err", err)
	return nil
}

// outcome of the QR branch.
type outcome struct {
	status, sub, msg string
	order            qrpay.Order
	refundID         string
}

// qrBranch shows a QR order and follows it to the end.
func (s *Server) qrBranch(ctx context.Context, st *opState, qr QRProvider, amount int64, currency string, orderCh chan string, cancelCard context.CancelFunc, cardOn bool) *outcome {
	o, err := qr.Create(ctx, amount, currency)
	if err != nil {
		orderCh <- ""
		s.log.Warn("ecr: QR order not created", "process", st.p.ID, "err", err)
		return &outcome{status: StatusFail, sub: SubQrFailure, msg: "QR payment unavailable: " + err.Error()}
	}
	// Durable before the customer can see it: after a restart the order is looked up.
	if err := st.save(context.WithoutCancel(ctx), func(p *Process) { p.OrderID = o.ID }); err != nil {
		s.log.Error("ecr: QR order not recorded", "process", st.p.ID, "err", err)
	}
	orderCh <- o.ID
	s.term.ShowQR(ctx, o)
	defer s.term.ShowQR(context.WithoutCancel(ctx), qrpay.Order{})
	withdraw := func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := qr.Cancel(cctx, o.ID); err != nil && !errors.Is(err, qrpay.ErrFinal) {
			s.log.Warn("ecr: QR order not cancelled", "process", st.p.ID, "order", o.ID, "err", err)
		}
	}
	tick := time.NewTicker(s.o.QRPoll)
	defer tick.Stop()
	last := o.Status
	for {
		select {
		case <-ctx.Done():
			withdraw()
			return &outcome{status: StatusFail, sub: SubProcessCancelled, msg: "Operation cancelled", order: o}
		case <-tick.C:
		}
		if st.claimedBy() == "card" {
			withdraw()
			return nil
		}
		cur, err := qr.Get(ctx, o.ID)
		if err != nil {
			if time.Now().After(o.ExpiresAt.Add(30*time.Second)) && !o.ExpiresAt.IsZero() {
				return &outcome{status: StatusUnknown, sub: SubQrFailure, msg: "QR provider unreachable", order: o}
			}
			continue
		}
		o = cur
		switch o.Status {
		case qrpay.StatusScanned:
			if last != o.Status && st.claimedBy() == "" {
				st.sub(SubWaitForQrConfirmation)
			}
		case qrpay.StatusPaid:
			if !st.claim("qr") {
				// Paid although the card was chosen (the order could not be withdrawn):
				// the customer gets the QR payment back.
				s.log.Warn("ecr: QR order paid after the card was chosen: refunding it", "process", st.p.ID, "order", o.ID)
				if _, err := qr.Refund(context.WithoutCancel(ctx), o.ID, o.Amount); err != nil {
					s.o.Event(ctx, "ecr.qrConflict", map[string]any{"process": st.p.ID, "order": o.ID, "error": err.Error()})
				}
				return nil
			}
			cancelCard()
			return &outcome{status: StatusSuccess, sub: SubQrSuccess, order: o}
		case qrpay.StatusCancelled, qrpay.StatusExpired:
			if cardOn && o.Status == qrpay.StatusExpired && st.claimedBy() == "" {
				// The card may still come until its own wait ends: the card's outcome speaks.
				return &outcome{status: StatusFail, sub: SubQrFailure, msg: "QR code expired", order: o}
			}
			if !st.claim("qr") {
				return nil
			}
			cancelCard()
			msg := "The customer cancelled the payment"
			if o.Status == qrpay.StatusExpired {
				msg = "QR code expired"
			}
			return &outcome{status: StatusFail, sub: SubQrFailure, msg: msg, order: o}
		}
		last = o.Status
	}
}

// qrResult records a QR operation's end.
func (s *Server) qrResult(ctx context.Context, st *opState, out *outcome, typ string) {
	doc := s.term.Config()
	if out == nil {
		out = &outcome{status: StatusFail, sub: SubQrFailure, msg: "QR payment failed"}
	}
	var sale *Sale
	txid := out.order.ID
	if out.refundID != "" {
		txid = out.refundID
	}
	if out.status == StatusSuccess && typ == "payment" {
		sale = &Sale{Method: "qr", Kind: "payment", Amount: out.order.Amount, OrderID: out.order.ID, Time: s.o.Now().Unix()}
	}
	s.finish(ctx, st, func(p *Process) {
		p.Status, p.SubStatus, p.Message, p.Method = out.status, out.sub, out.msg, "qr"
		if out.status == StatusSuccess {
			p.TransactionID = txid
			p.Cheque = qrCheque(doc, txid, out.order.Amount, typ, s.o.Now())
			p.AddInfo = &AddInfo{}
		}
	}, "qr", out.order.ID, sale)
}

// runRefund returns money by the payment's own method (seed 003 §3.8).
func (s *Server) runRefund(ctx context.Context, st *opState, orig *Sale, amount int64) {
	if orig.Method == "qr" {
		st.claim("qr")
		st.sub(SubProcessRefund)
		qr, err := s.term.QR()
		var out *outcome
		if err == nil {
			var r qrpay.Refund
			r, err = qr.Refund(ctx, orig.OrderID, amount)
			if err == nil {
				out = &outcome{status: StatusSuccess, sub: SubQrSuccess, order: r.Order, refundID: r.ID}
				out.order.Amount = amount
			}
		}
		if err != nil {
			status := StatusFail
			if errors.Is(err, qrpay.ErrUnreachable) {
				status = StatusUnknown
			}
			out = &outcome{status: status, sub: SubQrFailure, msg: "Refund failed: " + err.Error()}
		}
		if out.status == StatusSuccess {
			cp := *orig
			cp.Refunded += amount
			s.finish(ctx, st, func(p *Process) {
				p.Status, p.SubStatus, p.Method, p.TransactionID = StatusSuccess, SubQrSuccess, "qr", out.refundID
				p.Cheque = qrCheque(s.term.Config(), out.refundID, amount, "refund", s.o.Now())
				p.AddInfo = &AddInfo{}
			}, "qr", orig.OrderID, &cp)
			return
		}
		s.qrResult(ctx, st, out, "refund")
		return
	}
	st.claim("card")
	sale := checkout.Sale{Op: payment.OpRefund, Amount: amount}
	if tx, err := s.term.Txn(orig.TxnID); err == nil && tx.State == payment.StateApproved {
		sale.OrigID = orig.TxnID // still in the batch
	} else {
		sale.Orig = orig.Orig
	}
	veto := func(pr checkout.Progress) error {
		if orig.CardMask != "" && pr.CardMask != orig.CardMask {
			return errOtherCard
		}
		return nil
	}
	t, err := s.card(ctx, st, sale, veto)
	s.cardResult(ctx, st, t, err, "refund", orig)
}

// runReadCard reads a card and returns what may be shown of it.
func (s *Server) runReadCard(ctx context.Context, st *opState) {
	st.claim("card")
	cd, err := s.term.ReadCard(ctx, checkout.Sale{ECR: st.p.ID, Progress: func(pr checkout.Progress) error {
		switch pr.Stage {
		case checkout.StageWaitCard:
			st.sub(SubWaitUser)
		case checkout.StageCardRead:
			st.sub(SubProcessingCard)
		}
		return nil
	}})
	s.finish(ctx, st, func(p *Process) {
		if err != nil {
			p.Status, p.SubStatus, p.Message = cardOutcome(nil, err, s.abortRequested(p.ID))
			return
		}
		p.Status, p.SubStatus, p.Method = StatusSuccess, SubCardSuccess, "card"
		icc := cd.AppLabel
		if icc == "" {
			icc = cd.Scheme
		}
		p.Card = &CardInfo{CardMask: cd.Mask, Expiry: cd.Expiry, ICC: icc, Entry: entryName(cd.Entry), AID: cd.AID}
	}, "", "", nil)
}

// runSettlement closes the batch.
func (s *Server) runSettlement(ctx context.Context, st *opState) {
	st.sub(SubProcessingCard)
	s.mu.Lock()
	if s.cur != nil && s.cur.id == st.p.ID {
		s.cur.atHost = true // a settlement is not stopped halfway
	}
	s.mu.Unlock()
	tot, err := s.term.Settle(context.WithoutCancel(ctx), !st.p.OwnCheque)
	doc := s.term.Config()
	s.finish(ctx, st, func(p *Process) {
		if err != nil {
			p.Status, p.SubStatus, p.Message = StatusFail, SubCardFailure, "Settlement failed: "+err.Error()
			return
		}
		bal := tot.DomBalanced && tot.ForBalanced
		p.Status, p.SubStatus = StatusSuccess, SubCardSuccess
		p.Totals = totalsOf(doc, tot)
		p.Totals.Balanced, p.Totals.Time = &bal, tot.Time
	}, "", "", nil)
}

// runEmergencyCancel reverses the last operation (seed 002 §2.4).
func (s *Server) runEmergencyCancel(ctx context.Context, st *opState, orig *Process) {
	st.claim("card")
	st.sub(SubProcessingCard)
	t, err := s.term.CancelLast(context.WithoutCancel(ctx), orig.TxnID, !st.p.OwnCheque)
	s.recordCancel(ctx, orig, "requested", err)
	doc := s.term.Config()
	sale, key := s.cancelledSale(orig, err)
	s.finish(ctx, st, func(p *Process) {
		if err != nil {
			p.Status, p.SubStatus, p.Message = StatusFail, SubCardFailure, "Cancel failed: "+err.Error()
			return
		}
		p.Status, p.SubStatus, p.Method, p.TransactionID = StatusSuccess, SubCardSuccess, "card", t.RRN
		p.Cheque = cardCheque(doc, t, "cancel")
		p.AddInfo = &AddInfo{ProductType: t.CardOrg}
	}, "card", key, sale)
}

// cancelledSale is the sale of an operation taken back by a reversal, marked so that no
// refund, void or completion can follow it; nil when there is none or the reversal failed.
func (s *Server) cancelledSale(orig *Process, err error) (*Sale, string) {
	if err != nil || orig.TransactionID == "" {
		return nil, ""
	}
	old, gerr := s.reg.sale("card", orig.TransactionID)
	if gerr != nil || old == nil || old.TxnID != orig.TxnID {
		return nil, ""
	}
	cp := *old
	cp.Voided = true
	return &cp, orig.TransactionID
}

// recordCancel notes on the original process that it was taken back (or why it was not).
func (s *Server) recordCancel(ctx context.Context, orig *Process, reason string, err error) {
	cur, gerr := s.reg.get(orig.ID)
	if gerr != nil || cur == nil {
		return
	}
	cur.Cancel = &CancelRec{Reason: reason, At: s.o.Now().UnixMilli(), Done: err == nil}
	if err != nil {
		cur.Cancel.Error = err.Error()
	}
	if serr := s.reg.save(context.WithoutCancel(ctx), cur); serr != nil {
		s.log.Warn("ecr: cancel not recorded on the original", "process", orig.ID, "err", serr)
	}
}

func entryName(e string) string {
	switch e {
	case "05":
		return "chip"
	case "07":
		return "contactless"
	case "02", "90":
		return "magstripe"
	}
	return e
}

// totalsOf is the API's view of a batch's totals, in whole units.
func totalsOf(doc *termconfig.Document, st payment.SettlementTotals) *Totals {
	t := &Totals{Batch: st.Batch, DebitCount: st.DomDebitCount + st.ForDebitCount, Debit: whole(doc, st.DomDebit+st.ForDebit),
		CreditCount: st.DomCreditCount + st.ForCreditCount, Credit: whole(doc, st.DomCredit+st.ForCredit)}
	t.Transactions = t.DebitCount + t.CreditCount
	return t
}
