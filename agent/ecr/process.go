package ecr

// Process statuses (seed 003 §4.16).
const (
	StatusWait    = "wait"
	StatusSuccess = "success"
	StatusFail    = "fail"
	StatusUnknown = "unknown"
)

// Sub-statuses (seed 003 §4.16), to the letter.
const (
	SubInitialize            = "Initialize"
	SubWaitUser              = "WaitUser"
	SubWaitForQrConfirmation = "WaitForQrConfirmation"
	SubProcessingCard        = "ProcessingCard"
	SubWaitForPinCode        = "WaitForPinCode"
	SubProcessRefund         = "ProcessRefund"
	SubQrSuccess             = "QrTransactionSuccess"
	SubQrFailure             = "QrTransactionFailure"
	SubCardSuccess           = "CardTransactionSuccess"
	SubCardFailure           = "CardTransactionFailure"
	SubProcessCancelled      = "ProcessCancelled"
)

// Process is one operation a cash register started, as the registry keeps it: enough to
// answer /v2/status for 24 hours and across restarts, and to find the transaction behind it.
// It is stored as CBOR under the JSON names (the codec falls back to json tags).
type Process struct {
	ID        string `json:"id"`
	Kind      string `json:"kind"` // the endpoint that started it ("payment", "refund", …)
	Status    string `json:"status"`
	SubStatus string `json:"subStatus"`
	Message   string `json:"message,omitempty"`
	Method    string `json:"method,omitempty"` // "card" or "qr", once known
	Amount    int64  `json:"amount,omitempty"` // whole units, as asked
	OwnCheque bool   `json:"own,omitempty"`
	ECR       string `json:"ecr,omitempty"`    // registered cash register (protected mode)
	Remote    string `json:"remote,omitempty"` // address it came from
	Created   int64  `json:"created"`          // unix milliseconds
	Finished  int64  `json:"finished,omitempty"`
	// Ref is what the operation works on: the transactionId of a refund, void or completion,
	// the processId of an emergency cancel.
	Ref string `json:"ref,omitempty"`
	// TxnID is the payment engine's transaction; OrderID the QR provider's order.
	TxnID   string `json:"txn,omitempty"`
	OrderID string `json:"order,omitempty"`
	// TransactionID is what the answer names the result by: RRN (card) or order number (QR).
	TransactionID string     `json:"transactionId,omitempty"`
	Cheque        *Cheque    `json:"cheque,omitempty"`
	AddInfo       *AddInfo   `json:"addInfo,omitempty"`
	Totals        *Totals    `json:"totals,omitempty"`
	Card          *CardInfo  `json:"card,omitempty"`
	Balance       string     `json:"balance,omitempty"`
	Collected     bool       `json:"collected,omitempty"` // the cash register saw the final status
	Cancel        *CancelRec `json:"cancelRec,omitempty"` // an automatic or requested cancel
	Actualized    int64      `json:"actualized,omitempty"`
}

// CancelRec says why and how a successful operation was taken back by the terminal.
type CancelRec struct {
	Reason string `json:"reason"`          // "abandoned" (not collected in time), "requested" (/v2/cancel)
	At     int64  `json:"at"`              // unix milliseconds
	Done   bool   `json:"done"`            // the reversal went through
	Error  string `json:"error,omitempty"` // why it could not
}

// Final says whether the process has ended (unknown is final for polling: /v2/actualize
// resolves it).
func (p *Process) Final() bool { return p.Status != StatusWait }

// Cheque is chequeInfo: the receipt fields of seed 003 §4.5 and §4.16.
type Cheque struct {
	StoreName         string `json:"storeName"`
	City              string `json:"city"`
	Address           string `json:"address"`
	Status            string `json:"status"`
	Amount            string `json:"amount"`
	Date              string `json:"date"`
	CardMask          string `json:"cardMask,omitempty"`
	ICC               string `json:"icc,omitempty"`
	Bin               string `json:"bin"`
	TerminalID        string `json:"terminalId"`
	RRN               string `json:"rrn,omitempty"`
	AuthorizationCode string `json:"authorizationCode,omitempty"`
	HostResponseCode  string `json:"hostResponseCode,omitempty"`
	PinEntered        *bool  `json:"pinEntered,omitempty"`
	OrderNumber       string `json:"orderNumber,omitempty"`
	Method            string `json:"method"`
	Type              string `json:"type"`
}

// AddInfo is addInfo. The terminal sells no loans or offers: the defaults say so.
type AddInfo struct {
	IsOffer     bool   `json:"IsOffer"`
	ProductType string `json:"ProductType,omitempty"`
	LoanTerm    int    `json:"LoanTerm"`
}

// Totals are the batch totals of a settlement or a report, in whole units as strings the
// way chequeInfo.amount is, and as integers.
type Totals struct {
	Batch        int   `json:"batch"`
	DebitCount   int   `json:"debitCount"`
	Debit        int64 `json:"debit"` // whole units
	CreditCount  int   `json:"creditCount"`
	Credit       int64 `json:"credit"`
	Balanced     *bool `json:"balanced,omitempty"` // settlement: the host's verdict
	Transactions int   `json:"transactions"`
	Time         int64 `json:"time,omitempty"`
}

// CardInfo is what /v2/readcard returns: never the full number.
type CardInfo struct {
	CardMask string `json:"cardMask"`
	Expiry   string `json:"expiry,omitempty"` // YYMM
	ICC      string `json:"icc,omitempty"`
	Entry    string `json:"entry,omitempty"` // chip, contactless, magstripe
	AID      string `json:"aid,omitempty"`
}

// statusData is the data of /v2/status and /v2/actualize.
type statusData struct {
	ProcessID     string    `json:"processId"`
	Status        string    `json:"status"`
	SubStatus     string    `json:"subStatus"`
	Message       string    `json:"message,omitempty"`
	TransactionID string    `json:"transactionId,omitempty"`
	AddInfo       *AddInfo  `json:"addInfo,omitempty"`
	ChequeInfo    *Cheque   `json:"chequeInfo,omitempty"`
	Totals        *Totals   `json:"totals,omitempty"`
	Card          *CardInfo `json:"card,omitempty"`
	Balance       string    `json:"balance,omitempty"`
}

// view is the process as /v2/status shows it: details only once it succeeded.
func (p *Process) view() statusData {
	d := statusData{ProcessID: p.ID, Status: p.Status, SubStatus: p.SubStatus}
	if p.Status == StatusFail || p.Status == StatusUnknown {
		d.Message = p.Message
	}
	if p.Status == StatusSuccess {
		d.TransactionID, d.AddInfo, d.ChequeInfo = p.TransactionID, p.AddInfo, p.Cheque
		d.Totals, d.Card, d.Balance = p.Totals, p.Card, p.Balance
	}
	return d
}
