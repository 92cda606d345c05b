package ecr

import (
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxQuery bounds a request's query string: the longest legitimate one (a refund with a
// long order number and a cash register's name) is far shorter.
const MaxQuery = 2048

// maxText bounds free-text parameters (names, transaction ids, tokens).
const maxText = 64

// Request is one API call, parsed and validated: the endpoint and what it asked for.
type Request struct {
	Endpoint      string
	Amount        int64 // whole currency units, as the API counts (no minor units)
	HasAmount     bool
	OwnCheque     bool // the cash register prints: the terminal does not
	Short         bool // short report
	ProcessID     string
	Method        string // "card" or "qr"
	TransactionID string // RRN of a card payment, order number of a QR payment
	Name          string // cash register name (register, revoke)
	RefreshToken  string
}

// param kinds.
const (
	pAmount = iota
	pBool
	pMethod
	pText
	pProcess
)

type param struct {
	name     string
	kind     int
	required bool
}

// endpoint describes one path: its parameters, whether it starts an operation that is then
// polled (a process), and whether protected mode lets it in without a token.
type endpoint struct {
	params  []param
	process bool
	open    bool // no accessToken asked (register)
}

var (
	amountReq = param{"amount", pAmount, true}
	amountOpt = param{"amount", pAmount, false}
	ownCheque = param{"owncheque", pBool, false}
	processID = param{"processId", pProcess, true}
	txnReq    = param{"transactionId", pText, true}
)

// endpoints of /v2/: the Smart POS ones (seed 003) and the integrated-till operations of
// seed 002 in the same style.
var endpoints = map[string]endpoint{
	"payment":    {params: []param{amountReq, ownCheque}, process: true},
	"status":     {params: []param{processID}},
	"refund":     {params: []param{amountReq, {"method", pMethod, true}, txnReq, ownCheque}, process: true},
	"actualize":  {params: []param{processID}},
	"register":   {params: []param{{"name", pText, true}}, open: true},
	"revoke":     {params: []param{{"name", pText, true}, {"refreshToken", pText, true}}},
	"deviceinfo": {},

	"void":             {params: []param{txnReq, amountOpt, ownCheque}, process: true},
	"settlement":       {params: []param{ownCheque}, process: true},
	"preauth":          {params: []param{amountReq, ownCheque}, process: true},
	"preauth/complete": {params: []param{txnReq, amountReq, ownCheque}, process: true},
	"balance":          {process: true},
	"cashwithdrawal":   {params: []param{amountReq, ownCheque}, process: true},
	"topup":            {params: []param{amountReq, ownCheque}, process: true},
	"readcard":         {process: true},
	"emergencycancel":  {params: []param{processID, ownCheque}, process: true},
	"cancel":           {params: []param{processID}},
	"report":           {params: []param{{"short", pBool, false}, ownCheque}},
	"receiptcopy":      {params: []param{{"transactionId", pText, false}}},
	"echo":             {},
}

// ParseRequest validates a call: path (with the /v2/ prefix) and raw query. maxAmount is the
// largest amount in whole units the terminal can carry. Every refusal is the API's own error.
func ParseRequest(path, rawQuery string, maxAmount int64) (Request, *Error) {
	name, ok := strings.CutPrefix(path, "/v2/")
	ep, known := endpoints[name]
	if !ok || !known {
		return Request{}, errInvalidURL
	}
	r := Request{Endpoint: name}
	if len(rawQuery) > MaxQuery {
		return r, unvalidated("query", "Must be at most "+strconv.Itoa(MaxQuery)+" characters")
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return r, unvalidated("query", "Malformed query string")
	}
	for _, p := range ep.params {
		vs, present := q[p.name]
		if !present {
			if p.required {
				return r, missing(p.name)
			}
			continue
		}
		if len(vs) > 1 {
			return r, unvalidated(p.name, "Must be given once")
		}
		v := vs[0]
		switch p.kind {
		case pAmount:
			n, e := parseAmount(v, maxAmount)
			if e != "" {
				return r, unvalidated(p.name, e)
			}
			r.Amount, r.HasAmount = n, true
		case pBool:
			b, ok := parseBool(v)
			if !ok {
				return r, unvalidated(p.name, "Must be true or false")
			}
			if p.name == "short" {
				r.Short = b
			} else {
				r.OwnCheque = b
			}
		case pMethod:
			if v != "card" && v != "qr" {
				return r, unvalidated(p.name, "Unknown payment method")
			}
			r.Method = v
		case pText, pProcess:
			if e := checkText(v, p.required); e != "" {
				return r, unvalidated(p.name, e)
			}
			switch p.name {
			case "transactionId":
				r.TransactionID = v
			case "name":
				r.Name = v
			case "refreshToken":
				r.RefreshToken = v
			case "processId":
				r.ProcessID = v
			}
		}
	}
	return r, nil
}

// parseAmount reads a whole, positive amount: digits only (no sign, no decimal point, no
// exponent — a cash register sending 10.50 has a bug the terminal must not round away).
func parseAmount(v string, maxAmount int64) (int64, string) {
	if v == "" {
		return 0, "It's empty"
	}
	neg := false
	digits := v
	if v[0] == '-' {
		neg, digits = true, v[1:]
	}
	if digits == "" || strings.TrimLeft(digits, "0123456789") != "" {
		return 0, "Must be integer"
	}
	if neg {
		return 0, "Must be greater 0"
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n > maxAmount {
		return 0, "Must be at most " + strconv.FormatInt(maxAmount, 10)
	}
	if n <= 0 {
		return 0, "Must be greater 0"
	}
	return n, ""
}

func parseBool(v string) (bool, bool) {
	switch strings.ToLower(v) {
	case "true", "1":
		return true, true
	case "false", "0", "":
		return false, true
	}
	return false, false
}

// checkText: printable, bounded, not empty when required.
func checkText(v string, required bool) string {
	if v == "" {
		if required {
			return "It's empty"
		}
		return ""
	}
	if !utf8.ValidString(v) {
		return "Must be text"
	}
	if utf8.RuneCountInString(v) > maxText {
		return "Must be at most " + strconv.Itoa(maxText) + " characters"
	}
	for _, c := range v {
		if !unicode.IsPrint(c) {
			return "Must be printable"
		}
	}
	return ""
}
