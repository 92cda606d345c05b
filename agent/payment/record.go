// Package payment is the transaction engine: terminal states and operators, sign-in, the
// operations of the UnionPay direct-connect profile, the durable reversal journal, the batch,
// settlement and batch upload. Every step that matters is committed before the message that
// depends on it is sent, so a power cut at any instruction is recovered at the next start.
package payment

// Op is an operation of the profile (seed 004 ch. 7 and 11).
type Op string

// Operations.
const (
	OpBalance        Op = "balance"
	OpPurchase       Op = "purchase"
	OpVoid           Op = "void" // purchase void, same batch
	OpRefund         Op = "refund"
	OpPreAuth        Op = "preauth"
	OpPreAuthVoid    Op = "preauth.void"
	OpCompletion     Op = "completion"
	OpCompletionVoid Op = "completion.void"
	OpOffline        Op = "offline"    // offline settlement, uploaded later
	OpAdjustment     Op = "adjustment" // settlement adjustment (tip), uploaded later
	// OpCashWithdrawal gives the cardholder cash from the account (0200, 01xxxx, PIN
	// required); OpTopUp pays money into the cardholder's account (0200, 28xxxx). Both are
	// reversed when in doubt and cancelled by CancelLast; neither can be voided or refunded.
	OpCashWithdrawal Op = "cashWithdrawal"
	OpTopUp          Op = "topUp"
)

// State is where a transaction is.
type State string

// Transaction states. A financial request is "pending" from the moment it is journaled
// (before it is sent) until its answer is judged; a pending transaction found at start is
// in doubt and is reversed.
const (
	StatePending   State = "pending"
	StateApproved  State = "approved"
	StateDeclined  State = "declined"
	StateReversing State = "reversing" // in doubt: a 0400 is owed to the host
	StateReversed  State = "reversed"
	StateHeld      State = "held" // reversal retries exhausted: manual handling (event to the TMS)
	StateVoided    State = "voided"
	StateStored    State = "stored" // offline / adjustment, approved locally, not yet uploaded
)

// Txn is one transaction as the batch keeps it: everything a receipt, a settlement, a batch
// upload, a void or a refund needs — and nothing secret (no PIN block, no track data, no
// full PAN in clear: PAN is masked 6+4).
type Txn struct {
	ID       string `cbor:"id"`      // local id, unique per terminal
	Op       Op     `cbor:"op"`      //
	State    State  `cbor:"state"`   //
	STAN     int    `cbor:"stan"`    // trace number, 1..999999
	Batch    int    `cbor:"batch"`   // batch number
	Amount   int64  `cbor:"amount"`  // minor units
	Tip      int64  `cbor:"tip"`     // adjustment amount, minor units
	Currency string `cbor:"cur"`     // ISO 4217 numeric, e.g. "156"
	PAN      string `cbor:"pan"`     // masked, first 6 and last 4
	Expiry   string `cbor:"exp"`     // YYMM — printed masked on receipts
	Entry    string `cbor:"entry"`   // field 22
	CardSeq  string `cbor:"cardSeq"` // field 23
	CardOrg  string `cbor:"org"`     // card organisation from field 63 ("CUP", "VIS", …)
	Domestic bool   `cbor:"dom"`     // a domestic card: settled in the domestic totals
	RRN      string `cbor:"rrn"`     // field 37
	AuthCode string `cbor:"auth"`    // field 38
	RespCode string `cbor:"resp"`    // field 39
	Time     int64  `cbor:"time"`    // unix seconds, terminal clock (set from the host at sign-in)
	HostDate string `cbor:"hdate"`   // MMDD from the answer's field 13, for field 61 of a later void/refund
	Operator string `cbor:"oper"`    // operator number
	Test     bool   `cbor:"test"`    // a test transaction: receipts marked TEST
	// Orig is the original of a void, refund, completion or pre-auth void: its batch, trace
	// and date (field 61) and local id.
	Orig *OrigRef `cbor:"orig,omitempty"`
	// ICC is the field 55 of the answer/TC kept for a chip transaction's batch upload.
	ICC []byte `cbor:"icc,omitempty"`
	// AppLabel and AID identify a chip application on the receipt.
	AppLabel string `cbor:"appLabel,omitempty"`
	AID      string `cbor:"aid,omitempty"`
	// Refunded is the total refunded against this purchase so far (refunds ≤ original).
	Refunded int64 `cbor:"refunded,omitempty"`
	Uploaded bool  `cbor:"uploaded,omitempty"` // sent in a batch upload
	// Reversal attempts made; the reason the transaction was put in doubt.
	ReversalTries int    `cbor:"revTries,omitempty"`
	DoubtReason   string `cbor:"doubt,omitempty"`
	// ECR is the cash register's process id when the operation came from one.
	ECR string `cbor:"ecr,omitempty"`
	// CVM is how the cardholder was verified: "pin" (online PIN), "signature" or "none".
	CVM string `cbor:"cvm,omitempty"`
	// Balance is the account balance a balance inquiry returned (field 54), as the host sent it.
	Balance string `cbor:"bal,omitempty"`
}

// OrigRef points at an original transaction.
type OrigRef struct {
	ID    string `cbor:"id"`
	Batch int    `cbor:"batch"`
	STAN  int    `cbor:"stan"`
	Date  string `cbor:"date"` // MMDD
	RRN   string `cbor:"rrn"`
	Auth  string `cbor:"auth"`
}

// Debit reports whether an approved transaction counts in the debit totals of a settlement:
// purchase, completion, offline settlement and adjustment (seed 004 §6.3.2), and cash
// withdrawal, which takes money from the cardholder's account like a purchase.
func (t *Txn) Debit() bool {
	switch t.Op {
	case OpPurchase, OpCompletion, OpOffline, OpAdjustment, OpCashWithdrawal:
		return true
	}
	return false
}

// Credit reports whether it counts in the credit totals: refund, purchase void, completion
// void, and top-up, which puts money into the cardholder's account like a refund.
func (t *Txn) Credit() bool {
	switch t.Op {
	case OpRefund, OpVoid, OpCompletionVoid, OpTopUp:
		return true
	}
	return false
}

// SettlementTotals are a batch's totals as the slip and field 48 show them.
type SettlementTotals struct {
	Batch          int   `cbor:"batch"`
	DomDebitCount  int   `cbor:"ddc"`
	DomDebit       int64 `cbor:"dd"`
	DomCreditCount int   `cbor:"dcc"`
	DomCredit      int64 `cbor:"dc"`
	ForDebitCount  int   `cbor:"fdc"`
	ForDebit       int64 `cbor:"fd"`
	ForCreditCount int   `cbor:"fcc"`
	ForCredit      int64 `cbor:"fc"`
	// DomBalanced and ForBalanced are the host's verdicts: false means unbalanced (a batch
	// upload followed).
	DomBalanced bool  `cbor:"dbal"`
	ForBalanced bool  `cbor:"fbal"`
	Time        int64 `cbor:"time"` // unix seconds
}
