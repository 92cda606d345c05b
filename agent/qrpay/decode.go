package qrpay

import (
	"encoding/json"
	"fmt"
	"time"
)

// Bounds of the fields of an order: generous for any provider, small enough that nothing
// odd ends up on a receipt or in the journal.
const (
	maxID       = 128
	maxQR       = 2048
	maxCurrency = 16
	maxRRN      = 64
)

// wireOrder is an order as the provider writes it. Fields the terminal does not use (tid,
// created, payAt …) are allowed and ignored.
type wireOrder struct {
	ID        *string    `json:"orderId"`
	Status    *string    `json:"status"`
	Amount    *int64     `json:"amount"`
	Currency  string     `json:"currency"`
	QR        string     `json:"qr"`
	RRN       string     `json:"rrn"`
	Refunded  int64      `json:"refunded"`
	ExpiresAt *time.Time `json:"expiresAt"`
	RefundID  *string    `json:"refundId"`
}

// decodeOrder reads an order answer: one JSON object with at least orderId, a known status
// and a positive amount, every field within its bounds.
func decodeOrder(data []byte) (Order, error) {
	o, _, err := decode(data)
	return o, err
}

// decodeOrderID is decodeOrder for an answer about order id: another order is garbage.
func decodeOrderID(data []byte, id string) (Order, error) {
	o, err := decodeOrder(data)
	if err == nil && o.ID != id {
		return Order{}, fmt.Errorf("%w: asked for order %q, answered %q", ErrBadResponse, clean(id, 40), o.ID)
	}
	return o, err
}

// decodeRefund reads a refund answer: an order and the refund's id.
func decodeRefund(data []byte) (Order, string, error) {
	o, w, err := decode(data)
	if err != nil {
		return Order{}, "", err
	}
	if w.RefundID == nil || !token(*w.RefundID, maxID) {
		return Order{}, "", fmt.Errorf("%w: refundId missing or malformed", ErrBadResponse)
	}
	return o, *w.RefundID, nil
}

func decode(data []byte) (Order, wireOrder, error) {
	var w wireOrder
	if err := json.Unmarshal(data, &w); err != nil {
		return Order{}, w, fmt.Errorf("%w: %w", ErrBadResponse, err)
	}
	bad := func(what string) (Order, wireOrder, error) {
		return Order{}, w, fmt.Errorf("%w: %s", ErrBadResponse, what)
	}
	switch {
	case w.ID == nil || !token(*w.ID, maxID):
		return bad("orderId missing or malformed")
	case w.Status == nil || !Status(*w.Status).known():
		return bad("status missing or unknown")
	case w.Amount == nil || *w.Amount <= 0:
		return bad("amount missing or not positive")
	case w.Refunded < 0 || w.Refunded > *w.Amount:
		return bad("refunded outside 0..amount")
	case !text(w.Currency, maxCurrency) || !text(w.QR, maxQR) || !text(w.RRN, maxRRN):
		return bad("currency, qr or rrn malformed")
	}
	o := Order{ID: *w.ID, Status: Status(*w.Status), Amount: *w.Amount, Currency: w.Currency, QR: w.QR,
		RRN: w.RRN, Refunded: w.Refunded}
	if w.ExpiresAt != nil {
		o.ExpiresAt = *w.ExpiresAt
	}
	return o, w, nil
}

// token: 1..n bytes of printable ASCII without spaces — an id that goes into URL paths, logs
// and receipts as it is.
func token(s string, n int) bool {
	if s == "" || len(s) > n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// text: at most n bytes of printable ASCII (a QR payload is a URI; the rest are codes).
func text(s string, n int) bool {
	if len(s) > n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}
