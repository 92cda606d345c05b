package payment

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/posagent/posagent/agent/iso8583"
	"github.com/posagent/posagent/agent/termconfig"
	"github.com/posagent/posagent/keystore"
)

// Card is what the card reader gave for this operation. Track data and the PIN block are
// used for the request only: they are never stored.
type Card struct {
	PAN, Expiry    string // expiry YYMM
	Track2, Track3 string
	// Entry is the PAN entry mode, the first two digits of field 22: "02" stripe, "05" chip,
	// "07" contactless, "01" manual.
	Entry    string
	CardSeq  string // EMV 5F34, three digits
	ICC      []byte // field 55
	AID      string
	AppLabel string
}

// Request asks for one operation.
type Request struct {
	Op       Op
	Amount   int64
	Card     *Card
	PINBlock []byte // encrypted under the working PIK, from the PIN pad; nil: no PIN
	// OrigID names the original in this batch (void, completion, pre-auth void, completion
	// void, refund of a purchase still in the batch).
	OrigID string
	// Orig names an original outside the batch (a refund after settlement): batch, trace,
	// date, reference and authorisation code from the customer's slip.
	Orig     *OrigRef
	Operator string
	ECR      string
}

// opSpec is how an operation travels: MTI, processing code, condition code, field 60.1.
type opSpec struct {
	mti, proc, cond, f60 string
	financial            bool // journaled and reversed when in doubt
	needsOrig            bool
	sameBatch            bool // the original must be in this batch
	needsPIN             bool // refused without an online PIN block
}

// The profile defines no 60.1 codes for cash withdrawal and top-up; "26" and "28" are this
// terminal's, chosen apart from every code above and from the offline ones (30, 32, 34) so
// that a host log tells them from the rest. The host recognises both by their processing
// code (docs/hostsim.md).

var specs = map[Op]opSpec{
	OpBalance:        {mti: "0200", proc: "310000", cond: "00", f60: "01"},
	OpPurchase:       {mti: "0200", proc: "000000", cond: "00", f60: "22", financial: true},
	OpVoid:           {mti: "0200", proc: "200000", cond: "00", f60: "23", financial: true, needsOrig: true, sameBatch: true},
	OpRefund:         {mti: "0220", proc: "200000", cond: "00", f60: "25", financial: true, needsOrig: true},
	OpPreAuth:        {mti: "0100", proc: "030000", cond: "06", f60: "10", financial: true},
	OpPreAuthVoid:    {mti: "0100", proc: "200000", cond: "06", f60: "11", financial: true, needsOrig: true},
	OpCompletion:     {mti: "0200", proc: "000000", cond: "06", f60: "20", financial: true, needsOrig: true},
	OpCompletionVoid: {mti: "0200", proc: "200000", cond: "06", f60: "21", financial: true, needsOrig: true, sameBatch: true},
	// Cash leaves the drawer on an approval alone, so the cardholder must prove the account is
	// theirs; a top-up only adds money and needs no PIN.
	OpCashWithdrawal: {mti: "0200", proc: "010000", cond: "00", f60: "26", financial: true, needsPIN: true},
	OpTopUp:          {mti: "0200", proc: "280000", cond: "00", f60: "28", financial: true},
}

// Operation is the terminal configuration's name of an operation (allowedOperations,
// supervisorApproval).
func (op Op) Operation() termconfig.Operation {
	if o, ok := termOp[op]; ok {
		return o
	}
	return termconfig.Operation(op)
}

var termOp = map[Op]termconfig.Operation{
	OpBalance: termconfig.OpBalance, OpPurchase: termconfig.OpPayment, OpVoid: termconfig.OpVoid,
	OpRefund: termconfig.OpRefund, OpPreAuth: termconfig.OpPreAuth, OpPreAuthVoid: termconfig.OpPreAuthVoid,
	OpCompletion: termconfig.OpPreAuthCompletion, OpCompletionVoid: termconfig.OpPreAuthCompletionVoid,
	OpOffline: termconfig.OpOfflineSale, OpAdjustment: termconfig.OpTipAdjust,
	OpCashWithdrawal: termconfig.OpCashWithdrawal, OpTopUp: termconfig.OpTopUp,
}

// ready checks what every host operation needs: a licence, a signed-in terminal, a host.
func (e *Engine) ready(doc *termconfig.Document) error {
	if e.o.License != nil {
		if err := e.o.License(); err != nil {
			return fmt.Errorf("%w: %w", ErrUnlicensed, err)
		}
	}
	e.mu.Lock()
	st := e.m.State
	e.mu.Unlock()
	switch st {
	case Locked:
		return ErrLocked
	case SignedOut:
		return ErrNotSignedIn
	}
	if !doc.AuthHost.Configured() {
		return ErrNoHost
	}
	return nil
}

func allowed(doc *termconfig.Document, op Op) bool {
	if len(doc.AllowedOperations) == 0 {
		return true
	}
	return slices.Contains(doc.AllowedOperations, op.Operation())
}

// Do runs one card operation against the host and returns its transaction: approved
// (nil error), declined (ErrDeclined), or in doubt (ErrInDoubt: it is being reversed).
func (e *Engine) Do(ctx context.Context, r Request) (*Txn, error) {
	spec, ok := specs[r.Op]
	if !ok {
		return nil, fmt.Errorf("%w: operation %q", ErrBadRequest, r.Op)
	}
	if spec.needsPIN && len(r.PINBlock) != 8 {
		return nil, fmt.Errorf("%w: %s needs the cardholder's PIN", ErrBadRequest, r.Op)
	}
	e.opMu.Lock()
	defer e.opMu.Unlock()
	doc := e.o.Config()
	if err := e.ready(doc); err != nil {
		return nil, err
	}
	if !allowed(doc, r.Op) {
		return nil, fmt.Errorf("%w: %s", ErrNotAllowed, r.Op)
	}
	e.mu.Lock()
	settling := e.m.Settle != nil
	e.mu.Unlock()
	if settling {
		return nil, ErrSettlePending
	}
	// Owed reversals go first (seed 004 §2.13): a host that cannot take them cannot take
	// this request either.
	if err := e.reverseOwed(ctx, doc); err != nil {
		return nil, err
	}
	if doc.HostParameters.OfflineUploadMode != termconfig.OfflineUploadSettlement {
		if err := e.uploadStored(ctx, doc); err != nil {
			e.log.Warn("offline transactions not uploaded yet", "err", err)
		}
	}
	orig, err := e.original(r, spec)
	if err != nil {
		return nil, err
	}
	if r.Op != OpVoid && r.Op != OpCompletionVoid && r.Op != OpPreAuthVoid && r.Amount <= 0 && r.Op != OpBalance {
		return nil, fmt.Errorf("%w: amount %d", ErrBadRequest, r.Amount)
	}
	if err := e.checkAmounts(doc, r, orig); err != nil {
		return nil, err
	}
	pan, expiry, err := e.cardNumber(r, orig)
	if err != nil {
		return nil, err
	}
	t, err := e.journal(ctx, doc, r, spec, orig, pan, expiry)
	if err != nil {
		return nil, err
	}
	req := e.request(doc, t, spec, r, pan, expiry)
	ans, xerr := e.exchange(ctx, doc, req, true)
	return e.judge(ctx, doc, t, spec, ans, xerr)
}

// original resolves the original transaction of a void, refund or completion.
func (e *Engine) original(r Request, spec opSpec) (*Txn, error) {
	if !spec.needsOrig {
		return nil, nil
	}
	if r.OrigID == "" {
		if spec.sameBatch || r.Orig == nil {
			return nil, fmt.Errorf("%w: %s needs its original", ErrBadRequest, r.Op)
		}
		return &Txn{ID: "", Batch: r.Orig.Batch, STAN: r.Orig.STAN, HostDate: r.Orig.Date, RRN: r.Orig.RRN, AuthCode: r.Orig.Auth}, nil
	}
	o, err := e.Txn(r.OrigID)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	batch := e.m.Batch
	e.mu.Unlock()
	want := map[Op]Op{OpVoid: OpPurchase, OpRefund: OpPurchase, OpPreAuthVoid: OpPreAuth, OpCompletion: OpPreAuth, OpCompletionVoid: OpCompletion}[r.Op]
	switch {
	case o.Op != want:
		return nil, fmt.Errorf("%w: %s of a %s", ErrBadRequest, r.Op, o.Op)
	case o.State != StateApproved:
		return nil, fmt.Errorf("%w: original is %s", ErrBadRequest, o.State)
	case spec.sameBatch && o.Batch != batch:
		return nil, fmt.Errorf("%w: original is in batch %d", ErrBadRequest, o.Batch)
	}
	return o, nil
}

// checkAmounts applies the amount rules: refunds never beyond the original (or the refund
// limit), voids of the whole amount, completions within the pre-authorisation.
func (e *Engine) checkAmounts(doc *termconfig.Document, r Request, orig *Txn) error {
	switch r.Op {
	case OpRefund:
		if max := int64(doc.HostParameters.MaxRefundAmount); max > 0 && r.Amount > max {
			return fmt.Errorf("%w: refund above the terminal's limit", ErrNotAllowed)
		}
		if orig != nil && orig.ID != "" && orig.Refunded+r.Amount > orig.Amount {
			return fmt.Errorf("%w: refunds would exceed the original amount", ErrNotAllowed)
		}
	case OpCompletion:
		if r.Amount > orig.Amount {
			return fmt.Errorf("%w: completion above the pre-authorisation", ErrNotAllowed)
		}
	}
	return nil
}

// cardNumber is the PAN of the request: the card's, or for an operation without a card the
// original's, opened from its sealed copy.
func (e *Engine) cardNumber(r Request, orig *Txn) (pan, expiry string, err error) {
	if r.Card != nil && r.Card.PAN != "" {
		if orig != nil && orig.ID != "" && MaskPAN(r.Card.PAN) != orig.PAN {
			return "", "", fmt.Errorf("%w: not the card of the original", ErrBadRequest)
		}
		return r.Card.PAN, r.Card.Expiry, nil
	}
	if orig == nil || orig.ID == "" {
		return "", "", fmt.Errorf("%w: no card", ErrBadRequest)
	}
	p, err := e.openPAN(orig.ID)
	return p, orig.Expiry, err
}

func (e *Engine) openPAN(id string) (string, error) {
	var sealed []byte
	_ = e.view(func(tx *bolt.Tx) error { sealed = append([]byte(nil), getPAN(tx, id)...); return nil })
	if sealed == nil {
		return "", fmt.Errorf("payment: card number of %s not kept", id)
	}
	p, err := e.o.Sealer.Open(sealed, []byte(id))
	if err != nil {
		return "", err
	}
	return string(p), nil
}

// journal writes the transaction as pending, with its new trace number and sealed card
// number, before a byte of it is sent.
func (e *Engine) journal(ctx context.Context, doc *termconfig.Document, r Request, spec opSpec, orig *Txn, pan, expiry string) (*Txn, error) {
	var t *Txn
	size := e.batchSize(doc)
	err := e.commitMeta(ctx, nil, func(tx *bolt.Tx, m *meta) error {
		if spec.financial && m.Count >= size {
			return ErrBatchFull
		}
		m.STAN = m.STAN%999999 + 1
		m.Seq++
		t = &Txn{ID: fmt.Sprintf("%010d", m.Seq), Op: r.Op, State: StatePending, STAN: m.STAN, Batch: m.Batch,
			Amount: r.Amount, Currency: currency(doc), PAN: MaskPAN(pan), Expiry: expiry, Time: e.now().Unix(),
			Operator: r.Operator, Test: m.Test, ECR: r.ECR}
		if r.Card != nil {
			t.Entry, t.CardSeq, t.AID, t.AppLabel = r.Card.Entry, r.Card.CardSeq, r.Card.AID, r.Card.AppLabel
			t.ICC = r.Card.ICC
		} else if orig != nil {
			t.Entry, t.CardSeq = orig.Entry, orig.CardSeq
		}
		if t.Entry == "" {
			t.Entry = "01"
		}
		switch {
		case len(r.PINBlock) == 8:
			t.CVM = "pin"
		case r.Card != nil && r.Card.Entry == "07":
			t.CVM = "none" // contactless under the CVM limit
		default:
			t.CVM = "signature"
		}
		t.Domestic = domestic(doc, pan)
		if orig != nil {
			t.Orig = &OrigRef{ID: orig.ID, Batch: orig.Batch, STAN: orig.STAN, Date: orig.HostDate, RRN: orig.RRN, Auth: orig.AuthCode}
			if r.Op == OpVoid || r.Op == OpCompletionVoid || r.Op == OpPreAuthVoid {
				t.Amount = orig.Amount
			}
		}
		if !spec.financial {
			return nil // a balance inquiry moves no money: only its trace number is kept
		}
		m.Count++
		sealed, err := e.o.Sealer.Seal([]byte(pan), []byte(t.ID))
		if err != nil {
			return err
		}
		if err := putPAN(tx, t.ID, sealed); err != nil {
			return err
		}
		return writeTxn(tx, t)
	})
	return t, err
}

// domestic decides the settlement region from the configuration's BIN ranges; a card in no
// range is domestic (the profile's host is the domestic network).
func domestic(doc *termconfig.Document, pan string) bool {
	for _, r := range doc.BINRanges {
		n := len(r.Low)
		if n == 0 || len(pan) < n {
			continue
		}
		if p := pan[:n]; p >= r.Low && p <= r.High {
			return r.Region != termconfig.RegionForeign
		}
	}
	return true
}

// request builds the message of a card operation.
func (e *Engine) request(doc *termconfig.Document, t *Txn, spec opSpec, r Request, pan, expiry string) *iso8583.Msg {
	tid, mid := identity(doc)
	m := &iso8583.Msg{MTI: spec.mti, PAN: pan, ProcCode: spec.proc, STAN: t.STAN, Expiry: expiry,
		CondCode: spec.cond, TID: tid, MID: mid, Currency: t.Currency,
		F60: iso8583.F60{Type: spec.f60, Batch: fmt.Sprintf("%06d", t.Batch), NetCode: "000"}}
	if r.Op != OpBalance {
		m.Amount, m.HasAmount = t.Amount, true
	}
	pinMode := "2"
	if len(r.PINBlock) == 8 {
		m.PINBlock, m.SecCtrl, m.PINCapture, pinMode = r.PINBlock, "2600000000000000", "06", "1"
	}
	m.EntryMode = t.Entry + pinMode
	if r.Card != nil {
		m.Track2, m.Track3, m.CardSeq, m.ICC = r.Card.Track2, r.Card.Track3, r.Card.CardSeq, r.Card.ICC
	}
	if t.Orig != nil {
		m.F61 = iso8583.F61{Batch: fmt.Sprintf("%06d", t.Orig.Batch), Trace: fmt.Sprintf("%06d", t.Orig.STAN), Date: t.Orig.Date}
		if r.Op == OpRefund || r.Op == OpVoid || r.Op == OpCompletionVoid {
			m.RRN = t.Orig.RRN
		}
		if r.Op == OpCompletion || r.Op == OpPreAuthVoid {
			m.AuthCode = t.Orig.Auth
		}
	}
	if t.Operator != "" {
		m.F63 = fmt.Sprintf("%03s", t.Operator)
	}
	return m
}

// judge settles a financial request's outcome durably.
func (e *Engine) judge(ctx context.Context, doc *termconfig.Document, t *Txn, spec opSpec, ans *iso8583.Msg, xerr error) (*Txn, error) {
	if !spec.financial {
		if xerr != nil {
			return nil, hostErr(xerr)
		}
		t.RespCode, t.RRN = ans.RespCode, ans.RRN
		if ans.RespCode != "00" {
			t.State = StateDeclined
			return t, fmt.Errorf("%w: %s", ErrDeclined, ans.RespCode)
		}
		t.State = StateApproved
		t.Balance = ans.Balance
		return t, nil
	}
	if xerr != nil {
		if errors.Is(xerr, iso8583.ErrConnect) || errors.Is(xerr, ErrNoHost) {
			// Nothing reached the host: nothing to reverse.
			e.finish(ctx, t, func(x *Txn) { x.State, x.RespCode, x.DoubtReason = StateDeclined, "", "host unreachable" })
			return t, fmt.Errorf("%w: %w", ErrHostDown, xerr)
		}
		reason := "no answer"
		if errors.Is(xerr, errBadAnswer) {
			reason = "bad answer"
		}
		e.log.Warn("transaction in doubt", "id", t.ID, "stan", t.STAN, "op", t.Op, "reason", reason, "err", xerr)
		if err := e.finish(ctx, t, func(x *Txn) { x.State, x.DoubtReason = StateReversing, reason }); err != nil {
			return t, err
		}
		if err := e.reverseOwed(ctx, doc); err != nil {
			e.log.Warn("reversal not sent yet", "id", t.ID, "err", err)
		}
		if cur, err := e.Txn(t.ID); err == nil {
			t = cur
		}
		return t, fmt.Errorf("%w: %s", ErrInDoubt, reason)
	}
	if ans.RespCode != "00" {
		e.finish(ctx, t, func(x *Txn) { x.State, x.RespCode = StateDeclined, ans.RespCode })
		return t, fmt.Errorf("%w: %s", ErrDeclined, ans.RespCode)
	}
	err := e.finish(ctx, t, func(x *Txn) {
		x.State, x.RespCode, x.RRN, x.AuthCode, x.HostDate = StateApproved, "00", ans.RRN, ans.AuthCode, ans.LocalDate
		if len(ans.F63) >= 3 {
			x.CardOrg = ans.F63[:3]
		}
		if len(ans.ICC) > 0 {
			x.ICC = ans.ICC
		}
	})
	if err != nil {
		return t, err
	}
	return t, nil
}

// finish changes a transaction (and, on approval, its original) in one transaction.
func (e *Engine) finish(ctx context.Context, t *Txn, change func(*Txn)) error {
	return e.update(ctx, func(tx *bolt.Tx) error {
		cur, err := readTxn(tx, t.ID)
		if err != nil {
			return err
		}
		change(cur)
		if cur.State == StateApproved && cur.Orig != nil && cur.Orig.ID != "" {
			o, err := readTxn(tx, cur.Orig.ID)
			if err == nil {
				switch cur.Op {
				case OpVoid, OpCompletionVoid, OpPreAuthVoid:
					o.State = StateVoided
				case OpRefund:
					o.Refunded += cur.Amount
				case OpCompletion:
					o.State = StateVoided // a pre-authorisation is used up by its completion
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

func hostErr(err error) error {
	if errors.Is(err, iso8583.ErrConnect) {
		return fmt.Errorf("%w: %w", ErrHostDown, err)
	}
	return err
}

// SignIn signs the terminal in (0800): new working keys under the active master key, the
// host's batch number and clock.
func (e *Engine) SignIn(ctx context.Context, operator string) error {
	e.opMu.Lock()
	defer e.opMu.Unlock()
	doc := e.o.Config()
	if e.o.License != nil {
		if err := e.o.License(); err != nil {
			return fmt.Errorf("%w: %w", ErrUnlicensed, err)
		}
	}
	e.mu.Lock()
	locked := e.m.State == Locked
	e.mu.Unlock()
	if locked {
		return ErrLocked
	}
	stan, batch, err := e.nextSTAN(ctx)
	if err != nil {
		return err
	}
	tid, mid := identity(doc)
	req := &iso8583.Msg{MTI: "0800", STAN: stan, TID: tid, MID: mid,
		F60: iso8583.F60{Type: "00", Batch: fmt.Sprintf("%06d", batch), NetCode: "004"}}
	if operator != "" {
		req.F63 = fmt.Sprintf("%03s", operator)
	}
	ans, err := e.exchange(ctx, doc, req, false)
	if err != nil {
		return hostErr(err)
	}
	if ans.RespCode != "00" {
		return fmt.Errorf("%w: sign-in: %s", ErrDeclined, ans.RespCode)
	}
	items, err := keystore.SignInKeys(ans.F62)
	if err != nil {
		return fmt.Errorf("payment: sign-in keys: %w", err)
	}
	if _, err := e.o.Keys.Load(ctx, keystore.Load{Items: items, KEK: -1, Source: "signin"}); err != nil {
		return fmt.Errorf("payment: sign-in keys: %w", err)
	}
	hostBatch, _ := strconv.Atoi(ans.F60.Batch)
	offset := e.clockOffset(ans.LocalDate, ans.LocalTime)
	err = e.commitMeta(ctx, func(m *meta) error {
		m.State, m.SignedInAt = Normal, e.o.Now().Unix()
		// The host's batch number wins — but not while a settlement of ours is unfinished:
		// the host may already have closed that batch, and the settlement must finish first.
		if hostBatch > 0 && hostBatch != m.Batch && m.Settle == nil {
			e.log.Info("batch number from the host", "was", m.Batch, "now", hostBatch)
			m.Batch = hostBatch
		}
		if offset != nil {
			m.ClockOffset = *offset
		}
		return nil
	}, nil)
	if err != nil {
		return err
	}
	e.log.Info("signed in", "batch", hostBatch, "keys", len(items))
	e.event(ctx, "payment.signedIn", map[string]any{"batch": hostBatch})
	return nil
}

// clockOffset is host time minus local time from fields 13 (MMDD) and 12 (hhmmss); nil
// when the host sent none.
func (e *Engine) clockOffset(mmdd, hhmmss string) *int64 {
	if len(mmdd) != 4 || len(hhmmss) != 6 {
		return nil
	}
	local := e.o.Now()
	host, err := time.ParseInLocation("2006 0102 150405", fmt.Sprintf("%d %s %s", local.Year(), mmdd, hhmmss), local.Location())
	if err != nil {
		return nil
	}
	// Around New Year the host's date may be in the other year than the terminal's.
	if d := host.Sub(local); d > 180*24*time.Hour {
		host = host.AddDate(-1, 0, 0)
	} else if d < -180*24*time.Hour {
		host = host.AddDate(1, 0, 0)
	}
	off := int64(host.Sub(local).Round(time.Second) / time.Second)
	return &off
}

// nextSTAN hands out a trace number for a management message, committed first.
func (e *Engine) nextSTAN(ctx context.Context) (stan, batch int, err error) {
	err = e.commitMeta(ctx, func(m *meta) error {
		m.STAN = m.STAN%999999 + 1
		stan, batch = m.STAN, m.Batch
		return nil
	}, nil)
	return stan, batch, err
}

// Echo is the connection check (0820, 60.3 301).
func (e *Engine) Echo(ctx context.Context) error {
	e.opMu.Lock()
	defer e.opMu.Unlock()
	return e.management(ctx, e.o.Config(), "301")
}

// SignOff ends the terminal's session with the host (0820, 60.3 002).
func (e *Engine) SignOff(ctx context.Context) error {
	e.opMu.Lock()
	defer e.opMu.Unlock()
	return e.signOff(ctx, e.o.Config())
}

func (e *Engine) signOff(ctx context.Context, doc *termconfig.Document) error {
	if err := e.management(ctx, doc, "002"); err != nil {
		return err
	}
	return e.commitMeta(ctx, func(m *meta) error { m.State = SignedOut; return nil }, nil)
}

// management sends one 0820 with the network management code; the caller holds opMu.
func (e *Engine) management(ctx context.Context, doc *termconfig.Document, netCode string) error {
	stan, batch, err := e.nextSTAN(ctx)
	if err != nil {
		return err
	}
	tid, mid := identity(doc)
	req := &iso8583.Msg{MTI: "0820", STAN: stan, TID: tid, MID: mid,
		F60: iso8583.F60{Type: "00", Batch: fmt.Sprintf("%06d", batch), NetCode: netCode}}
	ans, err := e.exchange(ctx, doc, req, false)
	if err != nil {
		return hostErr(err)
	}
	if ans.RespCode != "00" {
		return fmt.Errorf("%w: %s", ErrDeclined, ans.RespCode)
	}
	return nil
}

// Lock and Unlock take the terminal out of service and back (seed 004 §6.1.4); unlocking
// leaves it signed out.
func (e *Engine) Lock(ctx context.Context) error {
	return e.commitMeta(ctx, func(m *meta) error { m.State = Locked; return nil }, nil)
}

// Unlock puts a locked terminal back, signed out.
func (e *Engine) Unlock(ctx context.Context) error {
	return e.commitMeta(ctx, func(m *meta) error {
		if m.State == Locked {
			m.State = SignedOut
		}
		return nil
	}, nil)
}

// ErrBatchNotEmpty: the switch needs an empty batch (settle first).
var ErrBatchNotEmpty = errors.New("payment: the batch is not empty: settle first")

// SetTestMode switches test transactions on or off (seed 004 §6.1.4): only with an empty
// batch, so a batch never mixes test and normal transactions. The caller checks the
// administrator's password. The terminal signs in again in its new mode.
func (e *Engine) SetTestMode(ctx context.Context, on bool) error {
	e.opMu.Lock()
	defer e.opMu.Unlock()
	batch, err := e.Batch()
	if err != nil {
		return err
	}
	if len(batch) > 0 {
		return ErrBatchNotEmpty
	}
	return e.commitMeta(ctx, func(m *meta) error {
		if m.Test != on && m.State == Normal {
			m.State = SignedOut
		}
		m.Test = on
		return nil
	}, nil)
}
