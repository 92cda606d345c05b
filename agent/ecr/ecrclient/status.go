package ecrclient

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Values of Status.Status.
const (
	StatusWait    = "wait"
	StatusSuccess = "success"
	StatusFail    = "fail"
	StatusUnknown = "unknown"
)

// Status is the data of /v2/status and /v2/actualize. Raw is the whole data object: the
// integrated-till operations add objects of their own (totals, card, balance) that Extra
// returns by name.
type Status struct {
	ProcessID     string          `json:"processId"`
	Status        string          `json:"status"`
	SubStatus     string          `json:"subStatus"`
	Message       string          `json:"message,omitempty"`
	TransactionID string          `json:"transactionId,omitempty"`
	AddInfo       *AddInfo        `json:"addInfo,omitempty"`
	ChequeInfo    *ChequeInfo     `json:"chequeInfo,omitempty"`
	Raw           json.RawMessage `json:"-"`
}

// Final reports whether the process has ended: success, fail or unknown (unknown may later be
// resolved by Actualize, but the terminal has stopped working on it).
func (s Status) Final() bool {
	switch s.Status {
	case StatusSuccess, StatusFail, StatusUnknown:
		return true
	}
	return false
}

var statusFields = map[string]bool{
	"processId": true, "status": true, "subStatus": true, "message": true,
	"transactionId": true, "addInfo": true, "chequeInfo": true,
}

// Extra returns the fields of Raw that Status has no field for, by name; nil when there are
// none.
func (s Status) Extra() map[string]json.RawMessage {
	var all map[string]json.RawMessage
	if json.Unmarshal(s.Raw, &all) != nil {
		return nil
	}
	var extra map[string]json.RawMessage
	for k, v := range all {
		if statusFields[k] {
			continue
		}
		if extra == nil {
			extra = make(map[string]json.RawMessage)
		}
		extra[k] = v
	}
	return extra
}

// AddInfo is the loan and campaign part of a successful status. The JSON names are
// capitalised in the API, unlike everything else.
type AddInfo struct {
	IsOffer       bool   `json:"IsOffer"`
	ProductType   string `json:"ProductType,omitempty"`
	LoanTerm      int    `json:"LoanTerm"`
	LoanOfferName string `json:"LoanOfferName,omitempty"`
}

// ChequeInfo is what the cash register prints on its receipt when it asked for owncheque. The
// card fields are empty for QR, OrderNumber for card; a card refund has no ICC nor
// HostResponseCode. CardMask is masked by the terminal.
type ChequeInfo struct {
	StoreName         string `json:"storeName,omitempty"`
	City              string `json:"city,omitempty"`
	Address           string `json:"address,omitempty"`
	Status            string `json:"status,omitempty"`
	Amount            string `json:"amount,omitempty"`
	Date              string `json:"date,omitempty"`
	CardMask          string `json:"cardMask,omitempty"`
	ICC               string `json:"icc,omitempty"`
	BIN               string `json:"bin,omitempty"`
	TerminalID        string `json:"terminalId,omitempty"`
	RRN               string `json:"rrn,omitempty"`
	AuthorizationCode string `json:"authorizationCode,omitempty"`
	HostResponseCode  string `json:"hostResponseCode,omitempty"`
	PinEntered        *bool  `json:"pinEntered,omitempty"`
	OrderNumber       string `json:"orderNumber,omitempty"`
	Method            string `json:"method,omitempty"`
	Type              string `json:"type,omitempty"`
}

// Methods of a payment, for Refund.
const (
	MethodCard = "card"
	MethodQR   = "qr"
)

// DecodeStatus reads the data of a status answer. A status is required, since without one
// nobody can tell whether the process has ended.
func DecodeStatus(data json.RawMessage) (Status, error) {
	var s Status
	if err := decodeObject(data, &s); err != nil {
		return Status{}, fmt.Errorf("%w: status: %w", ErrMalformed, err)
	}
	if s.Status == "" {
		return Status{}, fmt.Errorf("%w: status: no status", ErrMalformed)
	}
	s.Raw = bytes.Clone(bytes.TrimSpace(data))
	return s, nil
}

// Started is the data of an operation's start: the process to poll.
type Started struct {
	ProcessID string `json:"processId"`
	Status    string `json:"status"`
}

// DecodeStarted reads the data of an operation's start; a processId is required.
func DecodeStarted(data json.RawMessage) (Started, error) {
	var s Started
	if err := decodeObject(data, &s); err != nil {
		return Started{}, fmt.Errorf("%w: start: %w", ErrMalformed, err)
	}
	if s.ProcessID == "" {
		return Started{}, fmt.Errorf("%w: start: no processId", ErrMalformed)
	}
	return s, nil
}

// Tokens are the protected mode's credentials from Register and Revoke. ExpirationDate is the
// terminal's text ("Mar 7, 2023 15:02:56"), kept as it came.
type Tokens struct {
	AccessToken    string `json:"accessToken"`
	RefreshToken   string `json:"refreshToken"`
	ExpirationDate string `json:"expirationDate"`
}

func decodeTokens(data json.RawMessage) (Tokens, error) {
	var t Tokens
	if err := decodeObject(data, &t); err != nil {
		return Tokens{}, fmt.Errorf("%w: tokens: %w", ErrMalformed, err)
	}
	if t.AccessToken == "" || t.RefreshToken == "" {
		return Tokens{}, fmt.Errorf("%w: tokens: %w", ErrMalformed, errors.New("a token is missing"))
	}
	return t, nil
}

// DeviceInfo is the data of /v2/deviceinfo.
type DeviceInfo struct {
	PosNum     string `json:"posNum"`
	SerialNum  string `json:"serialNum"`
	TerminalID string `json:"terminalId"`
}
