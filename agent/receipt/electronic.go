package receipt

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/posagent/posagent/agent/payment"
)

// ERecordVersion is the version of the electronic receipt record.
const ERecordVersion = 1

// ERecord is an electronic receipt: the body of an up/receipt record (kind "receipt"), the
// facts of a sales slip and the slip as text. It holds nothing secret — the card number is
// masked 6+4 (again, whatever the transaction held), no expiry, no chip data, no track data,
// no PIN — and Validate checks that no text carries a 13–19 digit run other than the
// merchant or terminal number.
type ERecord struct {
	V        int    `cbor:"v"`                  // ERecordVersion
	ID       string `cbor:"id"`                 // the transaction's local id
	Copy     Copy   `cbor:"copy"`               // merchant, customer or bank
	Lang     string `cbor:"lang"`               // language of Lines: ru, kk, zh, en
	Op       string `cbor:"op"`                 // payment.Op
	State    string `cbor:"state"`              // payment.State
	Approved bool   `cbor:"approved"`           // went through (approved, stored, voided later)
	Test     bool   `cbor:"test,omitempty"`     // a test transaction
	Merchant string `cbor:"merchant,omitempty"` // merchant name as printed
	TaxID    string `cbor:"taxId,omitempty"`    // merchant's tax id as printed
	MID      string `cbor:"mid"`                // merchant number
	TID      string `cbor:"tid"`                // terminal number
	Operator string `cbor:"oper,omitempty"`     // operator number
	PAN      string `cbor:"pan,omitempty"`      // masked: first 6, last 4
	CardOrg  string `cbor:"org,omitempty"`      // card organisation ("CUP", "VIS", …)
	Entry    string `cbor:"entry,omitempty"`    // field 22
	AppLabel string `cbor:"appLabel,omitempty"` // chip application label
	AID      string `cbor:"aid,omitempty"`      // chip application id
	Batch    int    `cbor:"batch"`              // batch number
	STAN     int    `cbor:"stan"`               // trace number
	RRN      string `cbor:"rrn,omitempty"`      // reference number (field 37)
	AuthCode string `cbor:"auth,omitempty"`     // authorisation code (field 38)
	RespCode string `cbor:"resp,omitempty"`     // response code (field 39)
	Amount   int64  `cbor:"amount"`             // minor units, unsigned as the host has it
	Tip      int64  `cbor:"tip,omitempty"`      // minor units
	Currency string `cbor:"cur"`                // ISO 4217 numeric
	Time     int64  `cbor:"time"`               // unix seconds of the transaction
	// Orig is the original of a void, refund or completion.
	Orig *ERef `cbor:"orig,omitempty"`
	// Signature: the printed merchant copy would carry a signature line.
	Signature bool   `cbor:"sig,omitempty"`
	ECR       string `cbor:"ecr,omitempty"` // cash register process id
	// Lines is the slip as plain text, one string per printed line, as the printer lays it
	// out (58 mm: 32 columns; centred and right-aligned lines start with spaces).
	Lines []string `cbor:"lines"`
}

// ERef points at an original transaction.
type ERef struct {
	Batch int    `cbor:"batch"`
	STAN  int    `cbor:"stan"`
	Date  string `cbor:"date,omitempty"` // MMDD
	RRN   string `cbor:"rrn,omitempty"`
	Auth  string `cbor:"auth,omitempty"`
}

// Electronic is the electronic receipt of a copy of t (usually the merchant copy, when the
// print profile sends it instead of, or as well as, printing it), laid out as a 58 mm slip
// in m.Language.
func Electronic(t *payment.Txn, m Merchant, cp Copy) ERecord {
	return ElectronicWith(t, m, cp, Options{})
}

// ElectronicWith is Electronic with slip options: language, PIN verified, no-signature limit,
// time zone, paper width. Reprint and Code do not apply.
func ElectronicWith(t *payment.Txn, m Merchant, cp Copy, o Options) ERecord {
	if t == nil {
		return ERecord{V: ERecordVersion, Copy: cp}
	}
	o.Reprint, o.Code = false, CodeNone
	c := newCtx(&m, o, false, true)
	c.sales(t, &m, cp)
	r := ERecord{
		V: ERecordVersion, ID: t.ID, Copy: cp, Lang: string(c.lang),
		Op: string(t.Op), State: string(t.State), Approved: approved(t.State), Test: t.Test,
		Merchant: m.Name, TaxID: m.TaxID, MID: m.MID, TID: m.TID, Operator: t.Operator,
		PAN: MaskPAN(t.PAN), CardOrg: t.CardOrg, Entry: t.Entry, AppLabel: t.AppLabel, AID: t.AID,
		Batch: t.Batch, STAN: t.STAN, RRN: t.RRN, AuthCode: t.AuthCode, RespCode: t.RespCode,
		Amount: t.Amount, Tip: t.Tip, Currency: t.Currency, Time: t.Time,
		Signature: SignatureRequired(t, cp, c.o), ECR: t.ECR, Lines: c.p.lines,
	}
	if t.Orig != nil {
		r.Orig = &ERef{Batch: t.Orig.Batch, STAN: t.Orig.STAN, Date: t.Orig.Date, RRN: t.Orig.RRN, Auth: t.Orig.Auth}
	}
	return r
}

// Limits of an electronic receipt.
const (
	maxLines     = 200
	maxLineRunes = 128
	maxField     = 128
)

// Validate checks a record before it is queued: the version, the identifiers, a masked card
// number, amounts, text without control characters, and no card-number-like digit run (13
// to 19 digits) anywhere but the merchant and terminal numbers, the tax id and the AID.
func (r *ERecord) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if r.V != ERecordVersion {
		bad("v %d, want %d", r.V, ERecordVersion)
	}
	if r.ID == "" {
		bad("id is empty")
	}
	switch r.Copy {
	case CopyMerchant, CopyCustomer, CopyBank:
	default:
		bad("copy %q", r.Copy)
	}
	if r.Op == "" || r.State == "" {
		bad("op %q state %q", r.Op, r.State)
	}
	if r.MID == "" || r.TID == "" {
		bad("merchant or terminal number missing")
	}
	if !Masked(r.PAN) {
		bad("pan is not masked")
	}
	if len(r.Currency) != 3 || !allDigits(r.Currency) {
		bad("currency %q is not an ISO 4217 numeric code", r.Currency)
	}
	if r.Amount < 0 || r.Tip < 0 {
		bad("negative amount")
	}
	if r.STAN < 1 || r.STAN > 999999 {
		bad("trace number %d", r.STAN)
	}
	if r.Time <= 0 {
		bad("time %d", r.Time)
	}
	if len(r.Lines) == 0 || len(r.Lines) > maxLines {
		bad("%d lines", len(r.Lines))
	}
	fields := []struct{ name, v string }{
		{"id", r.ID}, {"lang", r.Lang}, {"op", r.Op}, {"state", r.State}, {"merchant", r.Merchant},
		{"taxId", r.TaxID}, {"mid", r.MID}, {"tid", r.TID}, {"oper", r.Operator}, {"org", r.CardOrg},
		{"entry", r.Entry}, {"appLabel", r.AppLabel}, {"aid", r.AID}, {"rrn", r.RRN},
		{"auth", r.AuthCode}, {"resp", r.RespCode}, {"ecr", r.ECR},
	}
	if r.Orig != nil {
		fields = append(fields, struct{ name, v string }{"orig.rrn", r.Orig.RRN},
			struct{ name, v string }{"orig.auth", r.Orig.Auth}, struct{ name, v string }{"orig.date", r.Orig.Date})
	}
	for _, f := range fields {
		if len(f.v) > maxField || !utf8.ValidString(f.v) || hasControl(f.v) {
			bad("%s: too long, invalid UTF-8 or control characters", f.name)
		}
		r.panLike(f.name, f.v, bad)
	}
	for i, l := range r.Lines {
		if utf8.RuneCountInString(l) > maxLineRunes || !utf8.ValidString(l) || hasControl(l) {
			bad("line %d: too long, invalid UTF-8 or control characters", i)
		}
		r.panLike(fmt.Sprintf("line %d", i), l, bad)
	}
	return errors.Join(errs...)
}

// panLike reports a 13–19 digit run in s that is not the merchant or terminal number, the
// merchant's tax id, the cash register's process id (13-digit milliseconds, made by the
// terminal) or part of the chip application id (hex, often long runs of digits).
func (r *ERecord) panLike(name, s string, bad func(string, ...any)) {
	digitRuns(s, func(run string) bool {
		if run != r.MID && run != r.TID && run != r.TaxID && run != r.ECR && (r.AID == "" || !strings.Contains(r.AID, run)) {
			bad("%s: a %d-digit run looks like a card number", name, len(run))
			return false
		}
		return true
	})
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func hasControl(s string) bool {
	for _, r := range s {
		if isControl(r) {
			return true
		}
	}
	return false
}
