package receipt_test

import (
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/posagent/posagent/agent/payment"
	"github.com/posagent/posagent/agent/receipt"
	"github.com/posagent/posagent/agent/termconfig"
)

func TestElectronic(t *testing.T) {
	for _, l := range receipt.Languages() {
		for _, tx := range []*payment.Txn{purchase(), refund()} {
			m := merchant()
			m.Language = l
			tx.PAN = "6228480123456781234" // a full PAN by mistake
			r := receipt.Electronic(tx, m, receipt.CopyMerchant)
			if err := r.Validate(); err != nil {
				t.Fatalf("%s: %v", l, err)
			}
			if r.PAN != "622848*********1234" || r.Lang != string(l) || r.MID != m.MID || r.STAN != tx.STAN ||
				r.RRN != tx.RRN || r.Amount != tx.Amount || r.Currency != "398" || !r.Approved || !r.Signature {
				t.Errorf("%s: record %+v", l, r)
			}
			if (tx.Orig != nil) != (r.Orig != nil) || (r.Orig != nil && r.Orig.RRN != tx.Orig.RRN) {
				t.Errorf("%s: orig %+v", l, r.Orig)
			}
			data, err := cbor.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			noFullPAN(t, "CBOR", string(data))
			noFullPAN(t, "lines", strings.Join(r.Lines, "\n"))
			if strings.Contains(string(data), "2812") {
				t.Errorf("%s: the expiry is in the record", l)
			}
			var back receipt.ERecord
			if err := cbor.Unmarshal(data, &back); err != nil || back.Validate() != nil || len(back.Lines) != len(r.Lines) {
				t.Errorf("round trip: %v %v", err, back.Validate())
			}
			// The lines are the printed slip, without the code.
			slip := text(t, receipt.SalesSlip(tx, m, receipt.CopyMerchant, opts(l)))
			for _, line := range r.Lines {
				if strings.TrimSpace(line) != "" && !strings.Contains(slip, strings.TrimSpace(line)) &&
					!strings.Contains(line, "₸") {
					t.Errorf("%s: line %q is not on the slip", l, line)
				}
			}
		}
	}
	// Declined and test transactions validate too.
	d := purchase()
	d.State, d.RespCode, d.AuthCode, d.Test = payment.StateDeclined, "51", "", true
	if r := receipt.Electronic(d, merchant(), receipt.CopyMerchant); r.Validate() != nil || r.Approved || r.Signature || !r.Test {
		t.Errorf("declined record %+v: %v", r, r.Validate())
	}
	// Unicode symbols in the electronic text.
	r := receipt.Electronic(purchase(), merchant(), receipt.CopyMerchant)
	if !strings.Contains(strings.Join(r.Lines, "\n"), "1 234,56 ₸") {
		t.Errorf("amount:\n%s", strings.Join(r.Lines, "\n"))
	}
	// Options: PIN verified, no signature.
	o := opts(termconfig.LanguageEnglish)
	o.PINVerified = true
	if r := receipt.ElectronicWith(purchase(), merchant(), receipt.CopyMerchant, o); r.Signature ||
		!strings.Contains(strings.Join(r.Lines, "\n"), "PIN VERIFIED") || r.Lang != "en" {
		t.Errorf("PIN verified record %+v", r)
	}
}

func TestERecordValidateRejects(t *testing.T) {
	good := func() receipt.ERecord { return receipt.Electronic(purchase(), merchant(), receipt.CopyMerchant) }
	for name, spoil := range map[string]func(r *receipt.ERecord){
		"version":      func(r *receipt.ERecord) { r.V = 2 },
		"id":           func(r *receipt.ERecord) { r.ID = "" },
		"copy":         func(r *receipt.ERecord) { r.Copy = "shop" },
		"mid":          func(r *receipt.ERecord) { r.MID = "" },
		"full pan":     func(r *receipt.ERecord) { r.PAN = "4111111111111111" },
		"pan in rrn":   func(r *receipt.ERecord) { r.RRN = "4111111111111111" },
		"pan in line":  func(r *receipt.ERecord) { r.Lines = append(r.Lines, "card 4111111111111111") },
		"pan in label": func(r *receipt.ERecord) { r.AppLabel = "x6228480123456781234" },
		"currency":     func(r *receipt.ERecord) { r.Currency = "KZT" },
		"amount":       func(r *receipt.ERecord) { r.Amount = -1 },
		"stan":         func(r *receipt.ERecord) { r.STAN = 0 },
		"time":         func(r *receipt.ERecord) { r.Time = 0 },
		"no lines":     func(r *receipt.ERecord) { r.Lines = nil },
		"control":      func(r *receipt.ERecord) { r.Lines[0] = "a\x1b@b" },
		"orig pan":     func(r *receipt.ERecord) { r.Orig = &receipt.ERef{RRN: "4111111111111111"} },
	} {
		r := good()
		spoil(&r)
		if err := r.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if r := receipt.Electronic(nil, merchant(), receipt.CopyMerchant); r.Validate() == nil {
		t.Error("record of a nil transaction accepted")
	}
}
