package ecr

import (
	"context"

	"github.com/posagent/posagent/agent/checkout"
	"github.com/posagent/posagent/agent/ecr/access"
	"github.com/posagent/posagent/agent/ecrlog"
	"github.com/posagent/posagent/agent/payment"
	"github.com/posagent/posagent/agent/qrpay"
	"github.com/posagent/posagent/agent/termconfig"
)

// Terminal is the terminal as the API drives it; the agent implements it over its payment
// engine, checkout, printer and configuration. print=false is the cash register's owncheque:
// the terminal prints nothing (electronic receipts still go to the TMS).
type Terminal interface {
	Config() *termconfig.Document
	DeviceInfo() DeviceInfo
	// Card runs a card operation at the terminal (operator rules, checkout, slips).
	Card(ctx context.Context, s checkout.Sale, print bool) (*payment.Txn, error)
	ReadCard(ctx context.Context, s checkout.Sale) (checkout.CardData, error)
	// CancelLast reverses the last transaction (emergency cancel).
	CancelLast(ctx context.Context, txnID string, print bool) (*payment.Txn, error)
	Settle(ctx context.Context, print bool) (payment.SettlementTotals, error)
	Echo(ctx context.Context) error
	Txn(id string) (*payment.Txn, error)
	Batch() ([]payment.Txn, error)
	// Totals are the open batch's totals as its settlement will count them.
	Totals() (payment.SettlementTotals, error)
	// Reverse sends the reversals the engine owes now.
	Reverse(ctx context.Context) error
	PaymentStatus() payment.Status
	Reprint(ctx context.Context, txnID string) error
	PrintReport(ctx context.Context, short bool) error
	// QR is the QR provider of the configuration; an error when none is configured.
	QR() (QRProvider, error)
	// ShowQR puts a QR order in front of the customer (and clears it with an empty order).
	ShowQR(ctx context.Context, o qrpay.Order)
}

// QRProvider is the QR payment provider (agent/qrpay.Client).
type QRProvider interface {
	Create(ctx context.Context, amountMinor int64, currency string) (qrpay.Order, error)
	Get(ctx context.Context, id string) (qrpay.Order, error)
	Cancel(ctx context.Context, id string) (qrpay.Order, error)
	Refund(ctx context.Context, id string, amountMinor int64) (qrpay.Refund, error)
}

// DeviceInfo is /v2/deviceinfo.
type DeviceInfo struct {
	PosNum     string `json:"posNum"`
	SerialNum  string `json:"serialNum"`
	TerminalID string `json:"terminalId"`
}

// Access is protected mode's registrations and tokens (agent/ecr/access.Store).
type Access interface {
	Check(token string) (string, error)
	Register(ctx context.Context, name, remote string) (access.Tokens, error)
	Revoke(ctx context.Context, name, refresh, presented string) (access.Tokens, error)
}

// ExchangeLog keeps every request and answer (agent/ecrlog.Log).
type ExchangeLog interface {
	Record(e ecrlog.Entry)
}
