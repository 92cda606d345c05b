package hostsim

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/posagent/posagent/agent/iso8583"
)

// Response codes the host answers (field 39).
const (
	RCApproved      = "00"
	RCBadMerchant   = "03" // field 42 is not the terminal's merchant
	RCInvalidTxn    = "12" // not allowed on that original (void of another batch, of a voided or refunded purchase, …)
	RCInvalidAmount = "13" // refunds above the original, completion above 115 % of the pre-auth, void amount ≠ original
	RCNoCard        = "14" // unknown card
	RCNotFound      = "25" // original not found
	RCFormat        = "30" // a mandatory field is missing or wrong
	RCUnsupported   = "40" // a 60.3 code or processing code the host does not do
	RCNoFunds       = "51" // insufficient funds
	RCExpired       = "54" // expired card
	RCBadPIN        = "55" // wrong PIN
	RCOverLimit     = "61" // over the per-transaction limit
	RCDuplicate     = "94" // trace number already used in the batch (or the original of a reversal already seen)
	RCNoTerminal    = "97" // terminal not configured
	RCMACError      = "A0" // MAC missing or wrong, or no working keys: sign in again
)

// 60.3 network management codes (UnionPay convention).
const (
	NetSignInSingle = "001"
	NetSignOff      = "002"
	NetSignInDouble = "003"
	NetSignInTDK    = "004"
	NetSettle       = "201" // 0500; also 0320 batch upload of a magnetic-stripe transaction
	NetUploadEnd    = "202" // 0320 end of batch upload
	NetUploadICC    = "203" // 0320 batch upload of a chip transaction (also 204, 205, 206)
	NetUploadEndICC = "207" // 0320 end of batch upload (chip variant)
	NetEcho         = "301" // 0820 echo test
	NetParams       = "360" // 0800 parameter download
	NetStatus       = "362" // 0820 POS status upload
)

// errUnknownMTI: a frame whose MTI is not a request of the profile; the connection closes.
var errUnknownMTI = errors.New("hostsim: not a request MTI of the profile")

// reply is a decided answer: header, message and the MAK to MAC it with (nil: no MAC).
type reply struct {
	h   iso8583.Header
	m   *iso8583.Msg
	mak []byte
}

// macRequired: the requests (and answers) the profile MACs.
func macRequired(mti string) bool {
	switch mti {
	case "0100", "0200", "0220", "0400":
		return true
	}
	return false
}

// process decides the answer to one request and applies its effect.
func (s *Server) process(h iso8583.Header, req *iso8583.Msg, mab []byte) (*reply, error) {
	switch req.MTI {
	case "0100", "0200", "0220", "0320", "0400", "0500", "0800", "0820":
	default:
		return nil, fmt.Errorf("%w: %q", errUnknownMTI, req.MTI)
	}
	now := s.now()
	ans := &iso8583.Msg{
		MTI: answerMTI(req.MTI), PAN: req.PAN, ProcCode: req.ProcCode, Amount: req.Amount,
		HasAmount: req.HasAmount, STAN: req.STAN, LocalTime: now.Format("150405"),
		LocalDate: now.Format("0102"), CondCode: req.CondCode, AcqInst: req.AcqInst,
		TID: req.TID, MID: req.MID, Currency: req.Currency, F60: req.F60,
	}
	r := &reply{h: h.Reply(), m: ans}

	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.saveLocked()

	tc, known := s.terms[req.TID]
	ts := s.st.Terminals[req.TID]
	switch {
	case !known:
		ans.RespCode = RCNoTerminal
		s.log.Info("unknown terminal", "tid", req.TID, "mti", req.MTI)
		return r, nil
	case tc.MID != "" && req.MID != "" && strings.TrimSpace(req.MID) != tc.MID:
		ans.RespCode = RCBadMerchant
		return r, nil
	}
	// MAC: required on the financial messages, checked on any request that carries one.
	if macRequired(req.MTI) || mab != nil {
		if ts.MAK == nil || iso8583.VerifyMAC(req, mab, macFunc(ts.MAK)) != nil {
			ans.RespCode = RCMACError
			s.log.Info("MAC check failed", "tid", req.TID, "mti", req.MTI, "stan", req.STAN, "keys", ts.MAK != nil)
			return r, nil
		}
		r.mak = ts.MAK
	}
	switch req.MTI {
	case "0800":
		s.netMgmt(tc, ts, req, ans, now)
		r.mak = nil // the keys just changed; 0810 carries no MAC
	case "0820":
		s.netAdvice(ts, req, ans, now)
	case "0100", "0200", "0220":
		s.financial(h, ts, req, ans, now)
	case "0400":
		s.reversal(ts, req, ans, now)
	case "0500":
		s.settle(ts, req, ans, now)
	case "0320":
		s.upload(h, ts, req, ans, now)
	}
	if ans.RespCode == "" {
		ans.RespCode = RCFormat
	}
	if ans.RespCode == RCMACError {
		r.mak = nil
	}
	return r, nil
}

// answerMTI is the request MTI + 10.
func answerMTI(mti string) string {
	n, _ := strconv.Atoi(mti)
	return fmt.Sprintf("%04d", n+10)
}

func parseN6(s string) (int, bool) {
	if len(s) != 6 || !isDigits(s) {
		return 0, false
	}
	n, _ := strconv.Atoi(s)
	return n, true
}

// ---- network management ----

func (s *Server) netMgmt(tc *Terminal, ts *termState, req, ans *iso8583.Msg, now time.Time) {
	code := req.F60.NetCode
	if code == NetParams {
		ts.Params++
		ans.F62 = s.paramTLV(tc)
		ans.RespCode = RCApproved
		return
	}
	layout := tc.KeyLayout
	switch code {
	case NetSignInSingle:
		layout = LayoutSingle
	case NetSignInDouble:
		layout = LayoutDouble
	case NetSignInTDK:
		layout = LayoutDoubleTDK
	case "", "000":
		code = map[string]string{LayoutSingle: NetSignInSingle, LayoutDouble: NetSignInDouble, LayoutDoubleTDK: NetSignInTDK}[layout]
	default:
		ans.RespCode = RCUnsupported
		return
	}
	if layout != tc.KeyLayout {
		s.log.Info("sign-in asks another key layout than configured", "tid", tc.TID, "asked", layout, "configured", tc.KeyLayout)
	}
	wk, f62, err := issueKeys(s.rnd, s.keks[tc.TID], layout)
	if err != nil {
		s.log.Error("making working keys", "err", err)
		ans.RespCode = "96"
		return
	}
	ts.PIK, ts.MAK, ts.TDK = wk.PIK, wk.MAK, wk.TDK
	ts.SignIns++
	ts.LastSignIn = now
	ts.SignedOff = false
	ans.F62 = f62
	typ := req.F60.Type
	if typ == "" {
		typ = "00"
	}
	ans.F60 = iso8583.F60{Type: typ, Batch: fmt.Sprintf("%06d", ts.Batch), NetCode: code}
	ans.RespCode = RCApproved
	s.log.Info("sign-in", "tid", tc.TID, "layout", layout, "batch", ts.Batch)
}

func (s *Server) netAdvice(ts *termState, req, ans *iso8583.Msg, now time.Time) {
	switch req.F60.NetCode {
	case NetEcho, "":
		ts.Echoes++
	case NetSignOff:
		ts.PIK, ts.MAK, ts.TDK = nil, nil, nil
		ts.SignedOff = true
	case NetStatus:
		u := StatusUpload{Time: now, Raw: fmt.Sprintf("%X", req.F62), F63: req.F63}
		if items, err := parseTLV(req.F62); err == nil {
			u.Items = items
		}
		ts.Status = append(ts.Status, u)
	default:
		ans.RespCode = RCUnsupported
		return
	}
	ans.RespCode = RCApproved
}

// ---- financial requests ----

// classify names the operation of a 0100/0200/0220 request.
func classify(req *iso8583.Msg) (string, bool) {
	if len(req.ProcCode) != 6 {
		return "", false
	}
	pc := req.ProcCode[:2]
	pre := req.CondCode == "06"
	switch req.MTI {
	case "0200":
		switch pc {
		case "31":
			return OpBalance, true
		case "01":
			return OpCashWithdrawal, true
		case "28":
			return OpTopUp, true
		case "00":
			if pre || req.F60.Type == "20" {
				return OpCompletion, true
			}
			return OpPurchase, true
		case "20":
			if pre || req.F60.Type == "21" {
				return OpCompletionVoid, true
			}
			return OpVoid, true
		}
	case "0100":
		switch pc {
		case "03":
			return OpPreAuth, true
		case "20":
			return OpPreAuthVoid, true
		}
	case "0220":
		switch pc {
		case "20":
			return OpRefund, true
		case "00":
			if req.F60.Type == "32" || req.F60.Type == "34" || req.F61.Batch != "" {
				return OpAdjustment, true
			}
			return OpOffline, true
		}
	}
	return "", false
}

// cardOf is the PAN and expiry of a request: fields 2 and 14, or track 2.
func cardOf(req *iso8583.Msg) (pan, exp string) {
	pan, exp = req.PAN, req.Expiry
	if t2 := req.Track2; t2 != "" {
		i := strings.IndexAny(t2, "=D")
		if i > 0 {
			if pan == "" {
				pan = t2[:i]
			}
			if exp == "" && len(t2) >= i+5 {
				exp = t2[i+1 : i+5]
			}
		}
	}
	return pan, exp
}

func (s *Server) financial(h iso8583.Header, ts *termState, req, ans *iso8583.Msg, now time.Time) {
	op, ok := classify(req)
	if !ok {
		ans.RespCode = RCUnsupported
		return
	}
	batch, ok := parseN6(req.F60.Batch)
	if !ok || req.STAN <= 0 {
		ans.RespCode = RCFormat
		return
	}
	k := tkey{req.TID, batch, req.STAN}
	if _, dup := s.idx[k]; dup {
		ans.RespCode = RCDuplicate
		return
	}
	if rv, late := s.rev[k]; late {
		rv.Late++
		s.log.Info("original after its reversal: refused", "tid", req.TID, "batch", batch, "trace", req.STAN)
		ans.RespCode = RCDuplicate
		return
	}
	e := &Entry{TID: req.TID, Batch: batch, Trace: req.STAN, Op: op, MTI: req.MTI, Proc: req.ProcCode,
		Amount: req.Amount, Currency: req.Currency, Time: now, Test: h.Test()}
	code := s.authorise(op, e, req, ans, now)
	e.RespCode = code
	ans.RespCode = code
	if code == RCFormat {
		return // not recorded: the trace may be used again
	}
	if code == RCApproved {
		e.State = StateApproved
		s.st.Seq++
		e.RRN = fmt.Sprintf("%s%06d", now.Format("150405"), s.st.Seq%1_000_000)
		if e.AuthCode == "" {
			e.AuthCode = s.authCode()
		}
		ans.RRN, ans.AuthCode = e.RRN, e.AuthCode
		ans.SettleDate = now.Format("0102")
		if e.Org != "" {
			ans.F63 = e.Org
		}
	} else {
		e.State = StateDeclined
	}
	s.st.Entries = append(s.st.Entries, e)
	s.idx[k] = e
	s.log.Info("financial", "tid", e.TID, "op", op, "batch", batch, "trace", e.Trace, "amount", e.Amount, "pan", mask(e.PAN), "resp", code)
}

func (s *Server) authCode() string {
	var b [3]byte
	_, _ = io.ReadFull(s.rnd, b[:])
	return fmt.Sprintf("%06d", (int(b[0])<<16|int(b[1])<<8|int(b[2]))%1_000_000)
}

// authorise decides a financial request and applies its effect when approved.
func (s *Server) authorise(op string, e *Entry, req, ans *iso8583.Msg, now time.Time) string {
	needAmount := op != OpBalance && op != OpVoid && op != OpCompletionVoid && op != OpPreAuthVoid
	if needAmount && (!req.HasAmount || req.Amount <= 0) {
		return RCFormat
	}
	switch op {
	case OpBalance, OpPurchase, OpPreAuth, OpOffline, OpCashWithdrawal, OpTopUp:
		pan, exp := cardOf(req)
		if pan == "" {
			return RCFormat
		}
		e.PAN = pan
		a, acc := s.accts[pan]
		if acc {
			e.Domestic, e.Org = a.Domestic, a.Org
		}
		if code, ok := s.cfg.Rules.Declines[pan]; ok {
			return code
		}
		if !acc {
			return RCNoCard
		}
		ym := now.Format("0601")
		if a.Expiry < ym || (exp != "" && exp < ym) {
			return RCExpired
		}
		if op != OpOffline && req.PINBlock != nil {
			if a.PIN == "" {
				return RCBadPIN
			}
			ts := s.st.Terminals[e.TID]
			pin, err := pinOf(ts.PIK, req.PINBlock, pan)
			if err != nil || pin != a.PIN {
				return RCBadPIN
			}
		}
		st := s.st.Accounts[pan]
		switch op {
		case OpBalance:
			ans.Balance = balanceField(st.Balance-st.Held, req.Currency, s.cfg.Rules.Currency)
			e.Amount = 0
			return RCApproved
		case OpTopUp:
			// Money in: no funds to check, but the limits hold as for any amount.
			if s.overLimit(a, req.Amount) {
				return RCOverLimit
			}
			st.Balance += req.Amount
			return RCApproved
		}
		if op != OpOffline {
			if s.overLimit(a, req.Amount) {
				return RCOverLimit
			}
			if st.Balance-st.Held < req.Amount {
				return RCNoFunds
			}
		}
		if op == OpPreAuth {
			st.Held += req.Amount
		} else {
			st.Balance -= req.Amount
		}
		return RCApproved

	case OpVoid, OpCompletionVoid:
		ob, ok1 := parseN6(req.F61.Batch)
		ot, ok2 := parseN6(req.F61.Trace)
		if !ok1 || !ok2 {
			return RCFormat
		}
		o := s.idx[tkey{e.TID, ob, ot}]
		if o == nil || o.State == StateDeclined || o.State == StateUploaded {
			return RCNotFound
		}
		s.copyCard(e, o)
		want := OpPurchase
		if op == OpCompletionVoid {
			want = OpCompletion
		}
		switch {
		case ob != e.Batch, o.Op != want, o.State != StateApproved, o.Refunded > 0:
			return RCInvalidTxn
		case req.HasAmount && req.Amount != o.Amount:
			return RCInvalidAmount
		}
		e.Amount = o.Amount
		e.Orig = &Ref{o.Batch, o.Trace}
		o.State = StateVoided
		s.credit(o.PAN, o.Amount)
		return RCApproved

	case OpPreAuthVoid, OpCompletion:
		o := s.findPreAuth(e.TID, req)
		if o == nil {
			return RCNotFound
		}
		s.copyCard(e, o)
		if o.State != StateApproved {
			return RCInvalidTxn
		}
		st := s.st.Accounts[o.PAN]
		e.Orig = &Ref{o.Batch, o.Trace}
		e.AuthCode = o.AuthCode
		if op == OpPreAuthVoid {
			if req.HasAmount && req.Amount != o.Amount {
				return RCInvalidAmount
			}
			e.Amount = o.Amount
			o.State = StateVoided
			if st != nil {
				st.Held -= o.Amount
			}
			return RCApproved
		}
		if req.Amount*100 > o.Amount*115 {
			return RCInvalidAmount
		}
		if a := s.accts[o.PAN]; a != nil && s.overLimit(a, req.Amount) {
			return RCOverLimit
		}
		if st != nil && st.Balance-st.Held+o.Amount < req.Amount {
			return RCNoFunds
		}
		o.State = StateCompleted
		if st != nil {
			st.Held -= o.Amount
			st.Balance -= req.Amount
		}
		return RCApproved

	case OpRefund, OpAdjustment:
		o := s.findOrig(e.TID, req)
		if o == nil {
			return RCNotFound
		}
		s.copyCard(e, o)
		if pan, _ := cardOf(req); pan != "" && pan != o.PAN {
			return RCNotFound
		}
		switch o.Op {
		case OpPurchase, OpCompletion, OpOffline:
		default:
			return RCInvalidTxn
		}
		if o.State != StateApproved {
			return RCInvalidTxn
		}
		e.Orig = &Ref{o.Batch, o.Trace}
		if op == OpAdjustment {
			if st := s.st.Accounts[o.PAN]; st != nil {
				st.Balance -= req.Amount
			}
			return RCApproved
		}
		if req.Amount > o.Amount-o.Refunded {
			return RCInvalidAmount
		}
		o.Refunded += req.Amount
		s.credit(o.PAN, req.Amount)
		return RCApproved
	}
	return RCUnsupported
}

func (s *Server) overLimit(a *Account, amount int64) bool {
	return (s.cfg.Rules.MaxAmount > 0 && amount > s.cfg.Rules.MaxAmount) || (a.Limit > 0 && amount > a.Limit)
}

func (s *Server) credit(pan string, amount int64) {
	if st := s.st.Accounts[pan]; st != nil {
		st.Balance += amount
	}
}

func (s *Server) copyCard(e, o *Entry) {
	e.PAN, e.Domestic, e.Org = o.PAN, o.Domestic, o.Org
}

// findOrig finds the original of a refund or adjustment: field 61 (batch, trace; any batch),
// else the RRN of field 37.
func (s *Server) findOrig(tid string, req *iso8583.Msg) *Entry {
	ob, ok1 := parseN6(req.F61.Batch)
	ot, ok2 := parseN6(req.F61.Trace)
	if ok1 && ok2 && ot > 0 {
		if o := s.idx[tkey{tid, ob, ot}]; o != nil && o.State != StateDeclined && o.State != StateUploaded {
			return o
		}
	}
	if req.RRN != "" {
		for i := len(s.st.Entries) - 1; i >= 0; i-- {
			o := s.st.Entries[i]
			if o.TID == tid && o.RRN == req.RRN && o.State != StateDeclined && !isQR(o.Op) {
				return o
			}
		}
	}
	return nil
}

// findPreAuth finds the pre-authorisation of a completion or pre-auth void: field 61, else
// the card and the authorisation code of field 38.
func (s *Server) findPreAuth(tid string, req *iso8583.Msg) *Entry {
	if o := s.findOrig(tid, req); o != nil && o.Op == OpPreAuth {
		return o
	}
	pan, _ := cardOf(req)
	if req.AuthCode == "" {
		return nil
	}
	for i := len(s.st.Entries) - 1; i >= 0; i-- {
		o := s.st.Entries[i]
		if o.TID == tid && o.Op == OpPreAuth && o.AuthCode == req.AuthCode && o.State != StateDeclined &&
			(pan == "" || o.PAN == pan) {
			return o
		}
	}
	return nil
}

// balanceField is field 54: account type 10, amount type 02 (available), currency, C/D,
// 12 digits.
func balanceField(v int64, cur, def string) string {
	if len(cur) != 3 {
		cur = def
	}
	sign := "C"
	if v < 0 {
		sign, v = "D", -v
	}
	return fmt.Sprintf("1002%s%s%012d", cur, sign, v%1_000_000_000_000)
}

// ---- reversal ----

func (s *Server) reversal(ts *termState, req, ans *iso8583.Msg, now time.Time) {
	batch, ok1 := parseN6(req.F61.Batch)
	trace, ok2 := parseN6(req.F61.Trace)
	if !ok1 || !ok2 || trace == 0 {
		batch, ok1 = parseN6(req.F60.Batch)
		trace, ok2 = req.STAN, req.STAN > 0
	}
	if !ok1 || !ok2 {
		ans.RespCode = RCFormat
		return
	}
	k := tkey{req.TID, batch, trace}
	r := s.rev[k]
	if r == nil {
		r = &Reversal{TID: req.TID, Batch: batch, Trace: trace, First: now}
		s.rev[k] = r
		s.st.Reversals = append(s.st.Reversals, r)
	}
	r.Count++
	r.Last = now
	r.Resp = RCApproved
	ans.RespCode = RCApproved
	o := s.idx[k]
	switch {
	case o == nil:
		if r.Count == 1 {
			r.Note = "original never seen: nothing to undo"
		}
	case r.Undid || o.State == StateReversed:
		r.Found = true
		r.Note = "already reversed"
	case o.State != StateApproved || o.Refunded > 0:
		r.Found = true
		r.Note = "original is " + o.State + ": nothing undone"
	default:
		r.Found, r.Undid = true, true
		s.undo(o)
		o.State = StateReversed
		r.Note = "undone"
	}
	if o != nil {
		ans.RRN, ans.AuthCode = o.RRN, o.AuthCode
	}
	s.log.Info("reversal", "tid", req.TID, "batch", batch, "trace", trace, "count", r.Count, "note", r.Note)
}

// undo removes the effect of an approved entry.
func (s *Server) undo(e *Entry) {
	st := s.st.Accounts[e.PAN]
	bal := func(d int64) {
		if st != nil {
			st.Balance += d
		}
	}
	held := func(d int64) {
		if st != nil {
			st.Held += d
		}
	}
	var o *Entry
	if e.Orig != nil {
		o = s.idx[tkey{e.TID, e.Orig.Batch, e.Orig.Trace}]
	}
	switch e.Op {
	case OpPurchase, OpOffline, OpAdjustment, OpCashWithdrawal:
		bal(e.Amount)
	case OpTopUp:
		bal(-e.Amount)
	case OpPreAuth:
		held(-e.Amount)
	case OpCompletion:
		bal(e.Amount)
		if o != nil && o.State == StateCompleted {
			o.State = StateApproved
			held(o.Amount)
		}
	case OpVoid, OpCompletionVoid:
		bal(-e.Amount)
		if o != nil && o.State == StateVoided {
			o.State = StateApproved
		}
	case OpPreAuthVoid:
		if o != nil && o.State == StateVoided {
			o.State = StateApproved
			held(o.Amount)
		}
	case OpRefund:
		bal(-e.Amount)
		if o != nil {
			o.Refunded -= e.Amount
		}
	}
}

// ---- settlement and batch upload ----

func (s *Server) settle(ts *termState, req, ans *iso8583.Msg, now time.Time) {
	batch, ok := parseN6(req.F60.Batch)
	if !ok {
		ans.RespCode = RCFormat
		return
	}
	if c, ok := ts.Closed[batch]; ok { // a repeated 0500 for a closed batch: the same answer
		ans.AddData = c.Totals
		ans.RespCode = RCApproved
		return
	}
	t, err := iso8583.ParseTotals(req.AddData)
	if err != nil {
		ans.RespCode = RCFormat
		return
	}
	host := s.batchTotalsLocked(req.TID, batch)
	res := t
	res.DomResult, res.ForResult = 2, 2
	if t.DomDebitCount == host.DomDebitCount && t.DomDebit == host.DomDebit &&
		t.DomCreditCount == host.DomCreditCount && t.DomCredit == host.DomCredit {
		res.DomResult = 1
	}
	if t.ForDebitCount == host.ForDebitCount && t.ForDebit == host.ForDebit &&
		t.ForCreditCount == host.ForCreditCount && t.ForCredit == host.ForCredit {
		res.ForResult = 1
	}
	ans.AddData = res.Encode()
	ans.SettleDate = now.Format("0102")
	ans.RespCode = RCApproved
	if res.DomResult == 1 && res.ForResult == 1 {
		s.closeBatch(ts, batch, ans.AddData, true, now)
	} else {
		if ts.Unbalanced == nil {
			ts.Unbalanced = map[int]string{}
		}
		ts.Unbalanced[batch] = ans.AddData
	}
	s.log.Info("settlement", "tid", req.TID, "batch", batch, "dom", res.DomResult, "for", res.ForResult,
		"terminal", req.AddData, "host", host.Encode())
}

func (s *Server) closeBatch(ts *termState, batch int, totals string, balanced bool, now time.Time) {
	if ts.Closed == nil {
		ts.Closed = map[int]*closedBatch{}
	}
	ts.Closed[batch] = &closedBatch{Totals: totals, Balanced: balanced, Uploaded: ts.Uploads[batch], Time: now}
	delete(ts.Unbalanced, batch)
	if ts.Batch <= batch {
		ts.Batch = batch + 1
		if ts.Batch > 999999 {
			ts.Batch = 1
		}
	}
}

func (s *Server) upload(h iso8583.Header, ts *termState, req, ans *iso8583.Msg, now time.Time) {
	batch, ok := parseN6(req.F60.Batch)
	if !ok {
		ans.RespCode = RCFormat
		return
	}
	switch req.F60.NetCode {
	case NetUploadEnd, NetUploadEndICC:
		if _, done := ts.Closed[batch]; !done {
			totals := ts.Unbalanced[batch]
			if totals == "" {
				totals = s.batchTotalsLocked(req.TID, batch).Encode()
			}
			s.closeBatch(ts, batch, totals, false, now)
		}
		ans.RespCode = RCApproved
		s.log.Info("end of batch upload", "tid", req.TID, "batch", batch, "uploaded", ts.Uploads[batch])
		return
	case NetSettle, NetUploadICC, "204", "205", "206":
	default:
		ans.RespCode = RCUnsupported
		return
	}
	if ts.Uploads == nil {
		ts.Uploads = map[int]int{}
	}
	ts.Uploads[batch]++
	ans.RespCode = RCApproved
	if _, done := ts.Closed[batch]; done {
		return // a late repeat after the close
	}
	var o *Entry
	if req.RRN != "" {
		for _, e := range s.st.Entries {
			if e.TID == req.TID && e.RRN == req.RRN && !isQR(e.Op) {
				o = e
				break
			}
		}
	}
	if o == nil {
		if ob, ok1 := parseN6(req.F61.Batch); ok1 {
			if ot, ok2 := parseN6(req.F61.Trace); ok2 {
				o = s.idx[tkey{req.TID, ob, ot}]
			}
		}
	}
	if o == nil && req.STAN > 0 {
		o = s.idx[tkey{req.TID, batch, req.STAN}]
	}
	if o != nil {
		o.Uploaded = true
		return
	}
	// Unknown to the host: recorded for the record, no effect.
	pan, _ := cardOf(req)
	e := &Entry{TID: req.TID, Batch: batch, Trace: req.STAN, Op: OpPurchase, MTI: req.MTI, Proc: req.ProcCode,
		PAN: pan, Amount: req.Amount, Currency: req.Currency, State: StateUploaded, RespCode: RCApproved,
		RRN: req.RRN, AuthCode: req.AuthCode, Org: req.F63, Time: now, Test: h.Test(), Uploaded: true}
	switch {
	case strings.HasPrefix(req.ProcCode, "20"):
		e.Op = OpRefund
	case strings.HasPrefix(req.ProcCode, "01"):
		e.Op = OpCashWithdrawal
	case strings.HasPrefix(req.ProcCode, "28"):
		e.Op = OpTopUp
	}
	if a := s.accts[pan]; a != nil {
		e.Domestic, e.Org = a.Domestic, a.Org
	}
	s.st.Entries = append(s.st.Entries, e)
	if _, taken := s.idx[tkey{e.TID, e.Batch, e.Trace}]; !taken && e.Trace > 0 {
		s.idx[tkey{e.TID, e.Batch, e.Trace}] = e
	}
	s.log.Info("batch upload of a transaction the host does not know", "tid", e.TID, "batch", batch, "trace", e.Trace)
}
