package hostsim

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/posagent/posagent/agent/iso8583"
)

// Operations of ledger entries (the payment engine's names, plus "qr").
const (
	OpBalance        = "balance"
	OpPurchase       = "purchase"
	OpVoid           = "void"
	OpRefund         = "refund"
	OpPreAuth        = "preauth"
	OpPreAuthVoid    = "preauth.void"
	OpCompletion     = "completion"
	OpCompletionVoid = "completion.void"
	OpOffline        = "offline"
	OpAdjustment     = "adjustment"
	OpCashWithdrawal = "cashWithdrawal" // 0200, 01xxxx: cash out of the cardholder's account
	OpTopUp          = "topUp"          // 0200, 28xxxx: money into the cardholder's account
	OpQR             = "qr"             // a paid QR order (not in the ISO 8583 batch totals)
	OpQRRefund       = "qr.refund"      // a refund of a paid QR order (not in the batch totals)
)

// isQR: an entry of the QR host, which has no trace number and no place in the ISO 8583
// batch.
func isQR(op string) bool { return op == OpQR || op == OpQRRefund }

// States of ledger entries.
const (
	StateApproved  = "approved"  // in effect
	StateDeclined  = "declined"  // answered with a code other than 00; no effect
	StateReversed  = "reversed"  // undone by a 0400
	StateVoided    = "voided"    // a purchase, pre-auth or completion voided (the void is its own entry)
	StateCompleted = "completed" // a pre-auth turned into a completion (the completion is its own entry)
	StateUploaded  = "uploaded"  // known only from a batch upload: recorded, no effect
)

// Ref points at a transaction of a terminal: batch and trace number.
type Ref struct {
	Batch int `json:"batch"`
	Trace int `json:"trace"`
}

// Entry is one transaction as the host keeps it.
type Entry struct {
	TID      string    `json:"tid"`
	Batch    int       `json:"batch"`
	Trace    int       `json:"trace"` // field 11; 0 for QR orders
	Op       string    `json:"op"`
	MTI      string    `json:"mti"`
	Proc     string    `json:"proc,omitempty"`
	PAN      string    `json:"pan,omitempty"` // full PAN: this is a simulator with test cards
	Amount   int64     `json:"amount"`        // minor units
	Currency string    `json:"currency,omitempty"`
	State    string    `json:"state"`
	RespCode string    `json:"resp"`
	RRN      string    `json:"rrn,omitempty"`
	AuthCode string    `json:"auth,omitempty"`
	Domestic bool      `json:"domestic"`
	Org      string    `json:"org,omitempty"`
	Refunded int64     `json:"refunded,omitempty"` // refunds against this entry so far
	Orig     *Ref      `json:"orig,omitempty"`     // the original of a void, refund, completion, adjustment
	Time     time.Time `json:"time"`
	Test     bool      `json:"test,omitempty"` // sent with the test terminal state in the header
	Uploaded bool      `json:"uploaded,omitempty"`
	OrderID  string    `json:"orderId,omitempty"`  // QR order
	RefundID string    `json:"refundId,omitempty"` // QR refund
}

// Debit reports whether the entry counts in the debit totals of a settlement when in
// effect (purchase, completion, offline settlement, adjustment, cash withdrawal).
func (e *Entry) Debit() bool {
	switch e.Op {
	case OpPurchase, OpCompletion, OpOffline, OpAdjustment, OpCashWithdrawal:
		return true
	}
	return false
}

// Credit reports whether it counts in the credit totals (refund, void, completion void,
// top-up).
func (e *Entry) Credit() bool {
	switch e.Op {
	case OpRefund, OpVoid, OpCompletionVoid, OpTopUp:
		return true
	}
	return false
}

// inEffect: approved, or approved and later voided / completed (a voided purchase stays in
// the debit totals, its void is in the credit totals).
func (e *Entry) inEffect() bool {
	return e.State == StateApproved || e.State == StateVoided || e.State == StateCompleted
}

// Reversal is what the host saw of the 0400s for one original.
type Reversal struct {
	TID   string    `json:"tid"`
	Batch int       `json:"batch"`
	Trace int       `json:"trace"`
	Count int       `json:"count"` // 0400s received for it
	Found bool      `json:"found"` // the original was known when the first 0400 came
	Undid bool      `json:"undid"` // a 0400 undid it (only ever one)
	First time.Time `json:"first"` //
	Last  time.Time `json:"last"`  //
	Late  int       `json:"late"`  // originals that arrived after their reversal (answered 94)
	Resp  string    `json:"resp"`  // answer code (always 00)
	Note  string    `json:"note"`  // what happened
}

// StatusUpload is a POS status upload (0820, 60.3 362).
type StatusUpload struct {
	Time  time.Time         `json:"time"`
	Raw   string            `json:"raw"`             // field 62, hex
	Items map[string]string `json:"items,omitempty"` // field 62 parsed as the parameter TLV, when it is
	F63   string            `json:"f63,omitempty"`
}

// closedBatch is the answer a settled batch gave (repeated for a repeated 0500).
type closedBatch struct {
	Totals   string    `json:"totals"` // field 48 of the answer
	Balanced bool      `json:"balanced"`
	Uploaded int       `json:"uploaded"` // transactions in the batch upload
	Time     time.Time `json:"time"`
}

// termState is the host's runtime state of a terminal.
type termState struct {
	Batch      int                  `json:"batch"` // current batch number (host wins at sign-in)
	PIK        hexBytes             `json:"pik,omitempty"`
	MAK        hexBytes             `json:"mak,omitempty"`
	TDK        hexBytes             `json:"tdk,omitempty"`
	SignIns    int                  `json:"signIns"`
	LastSignIn time.Time            `json:"lastSignIn"`
	SignedOff  bool                 `json:"signedOff,omitempty"`
	Echoes     int                  `json:"echoes"`
	Params     int                  `json:"paramDownloads"`
	Status     []StatusUpload       `json:"status,omitempty"`
	Closed     map[int]*closedBatch `json:"closed,omitempty"`
	Unbalanced map[int]string       `json:"unbalanced,omitempty"` // batch → field 48 of the unbalanced answer
	Uploads    map[int]int          `json:"uploads,omitempty"`    // batch → 0320s received
}

type acctState struct {
	Balance int64 `json:"balance"`
	Held    int64 `json:"held"` // pre-authorisations in effect
}

// state is everything that changes; the snapshot file is its JSON.
type state struct {
	Terminals map[string]*termState `json:"terminals"`
	Accounts  map[string]*acctState `json:"accounts"`
	Entries   []*Entry              `json:"entries"`
	Reversals []*Reversal           `json:"reversals"`
	QR        map[string]*QROrder   `json:"qr"`
	Seq       int64                 `json:"seq"`
}

type hexBytes []byte

func (h hexBytes) MarshalJSON() ([]byte, error) { return json.Marshal(hex.EncodeToString(h)) }
func (h *hexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := hex.DecodeString(s)
	if err != nil {
		return err
	}
	if len(v) == 0 {
		v = nil
	}
	*h = v
	return nil
}

type tkey struct {
	tid          string
	batch, trace int
}

// index rebuilds the lookup maps from the state.
func (s *Server) index() {
	s.idx = map[tkey]*Entry{}
	for _, e := range s.st.Entries {
		if !isQR(e.Op) {
			s.idx[tkey{e.TID, e.Batch, e.Trace}] = e
		}
	}
	s.rev = map[tkey]*Reversal{}
	for _, r := range s.st.Reversals {
		s.rev[tkey{r.TID, r.Batch, r.Trace}] = r
	}
}

// loadSnapshot reads the snapshot file into s.st, if there is one.
func (s *Server) loadSnapshot() error {
	if s.cfg.Snapshot == "" {
		return nil
	}
	b, err := os.ReadFile(s.cfg.Snapshot)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return err
	}
	for tid, ts := range st.Terminals {
		if cur, ok := s.st.Terminals[tid]; ok {
			*cur = *ts
		}
	}
	for pan, a := range st.Accounts {
		if cur, ok := s.st.Accounts[pan]; ok {
			*cur = *a
		}
	}
	s.st.Entries = st.Entries
	s.st.Reversals = st.Reversals
	if st.QR != nil {
		s.st.QR = st.QR
	}
	s.st.Seq = st.Seq
	return nil
}

// saveLocked writes the snapshot (atomically: temporary file, then rename). s.mu is held.
func (s *Server) saveLocked() {
	if s.cfg.Snapshot == "" {
		return
	}
	b, err := json.MarshalIndent(s.st, "", " ")
	if err != nil {
		s.log.Error("snapshot", "err", err)
		return
	}
	dir := filepath.Dir(s.cfg.Snapshot)
	f, err := os.CreateTemp(dir, ".hostsim-*")
	if err != nil {
		s.log.Error("snapshot", "err", err)
		return
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), s.cfg.Snapshot)
	}
	if err != nil {
		os.Remove(f.Name())
		s.log.Error("snapshot", "err", err)
	}
}

// Entries are the terminal's ledger entries in arrival order (copies).
func (s *Server) Entries(tid string) []Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Entry
	for _, e := range s.st.Entries {
		if e.TID == tid {
			c := *e
			if e.Orig != nil {
				o := *e.Orig
				c.Orig = &o
			}
			out = append(out, c)
		}
	}
	return out
}

// Entry is one entry by terminal, batch and trace.
func (s *Server) Entry(tid string, batch, trace int) (Entry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.idx[tkey{tid, batch, trace}]
	if !ok {
		return Entry{}, false
	}
	return *e, true
}

// Charged is the net money the terminal's transactions moved from cardholders to the
// merchant: debits in effect (purchase, completion, offline, adjustment, cash withdrawal,
// paid QR orders) minus credits in effect (void, completion void, refund, top-up, QR
// refunds). Declined, reversed and upload-only entries count nothing; pre-authorisations are
// holds, not money.
func (s *Server) Charged(tid string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, e := range s.st.Entries {
		if e.TID != tid || !e.inEffect() {
			continue
		}
		switch {
		case e.Debit(), e.Op == OpQR:
			n += e.Amount
		case e.Credit(), e.Op == OpQRRefund:
			n -= e.Amount
		}
	}
	return n
}

// Reversals counts the 0400s received per original (batch, trace) of the terminal.
func (s *Server) Reversals(tid string) map[Ref]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[Ref]int{}
	for _, r := range s.st.Reversals {
		if r.TID == tid {
			out[Ref{r.Batch, r.Trace}] = r.Count
		}
	}
	return out
}

// ReversalLog is the terminal's reversal records (copies).
func (s *Server) ReversalLog(tid string) []Reversal {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Reversal
	for _, r := range s.st.Reversals {
		if r.TID == tid {
			out = append(out, *r)
		}
	}
	return out
}

// BatchTotals are the host's settlement totals of a terminal's batch (results 0), counted
// as the terminal counts them: debits and credits in effect, domestic and foreign apart.
func (s *Server) BatchTotals(tid string, batch int) iso8583.Totals {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.batchTotalsLocked(tid, batch)
}

func (s *Server) batchTotalsLocked(tid string, batch int) iso8583.Totals {
	var t iso8583.Totals
	for _, e := range s.st.Entries {
		if e.TID != tid || e.Batch != batch || isQR(e.Op) || !e.inEffect() {
			continue
		}
		switch {
		case e.Debit() && e.Domestic:
			t.DomDebitCount++
			t.DomDebit += e.Amount
		case e.Debit():
			t.ForDebitCount++
			t.ForDebit += e.Amount
		case e.Credit() && e.Domestic:
			t.DomCreditCount++
			t.DomCredit += e.Amount
		case e.Credit():
			t.ForCreditCount++
			t.ForCredit += e.Amount
		}
	}
	return t
}

// Balance is an account's balance and the amount held by pre-authorisations.
func (s *Server) Balance(pan string) (balance, held int64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.st.Accounts[pan]
	if !ok {
		return 0, 0, false
	}
	return a.Balance, a.Held, true
}

// TerminalStatus is what the host knows of a terminal.
type TerminalStatus struct {
	TID        string         `json:"tid"`
	SignedIn   bool           `json:"signedIn"` // holds working keys
	Batch      int            `json:"batch"`    // current batch number
	SignIns    int            `json:"signIns"`
	LastSignIn time.Time      `json:"lastSignIn"`
	Echoes     int            `json:"echoes"`
	Params     int            `json:"paramDownloads"`
	Closed     []int          `json:"closedBatches"`
	Status     []StatusUpload `json:"statusUploads"`
	Uploads    map[int]int    `json:"uploads,omitempty"`
}

// Terminal is the host's view of a configured terminal.
func (s *Server) Terminal(tid string) (TerminalStatus, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ts, ok := s.st.Terminals[tid]
	if !ok {
		return TerminalStatus{}, false
	}
	st := TerminalStatus{TID: tid, SignedIn: ts.MAK != nil, Batch: ts.Batch, SignIns: ts.SignIns,
		LastSignIn: ts.LastSignIn, Echoes: ts.Echoes, Params: ts.Params,
		Status: slices.Clone(ts.Status)}
	for b := range ts.Closed {
		st.Closed = append(st.Closed, b)
	}
	slices.Sort(st.Closed)
	if len(ts.Uploads) > 0 {
		st.Uploads = map[int]int{}
		for b, n := range ts.Uploads {
			st.Uploads[b] = n
		}
	}
	return st, true
}
