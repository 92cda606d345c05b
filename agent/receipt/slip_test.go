package receipt_test

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/payment"
	"github.com/posagent/posagent/agent/receipt"
	"github.com/posagent/posagent/agent/termconfig"
	"github.com/posagent/posagent/drivers/escpos"
)

func refund() *payment.Txn {
	t := purchase()
	t.ID, t.Op, t.STAN, t.RRN, t.AuthCode = "t-000124", payment.OpRefund, 124, "123456789099", "R77R77"
	t.Amount = 50000
	t.Orig = &payment.OrigRef{ID: "t-000123", Batch: 6, STAN: 123, Date: "1120", RRN: "123456789012", Auth: "A1B2C3"}
	return t
}

// TestSalesSlipGolden pins the text of the slips as the printer emulator renders them.
func TestSalesSlipGolden(t *testing.T) {
	test := purchase()
	test.Test = true
	declined := purchase()
	declined.State, declined.RespCode, declined.AuthCode = payment.StateDeclined, "51", ""
	cny := purchase()
	cny.Currency, cny.CardOrg, cny.Entry, cny.Amount = "156", "CUP", "071", 8800
	usd := purchase()
	usd.Currency, usd.CardOrg, usd.PAN, usd.AppLabel, usd.AID = "840", "VIS", "411111******1111", "VISA CREDIT", "A0000000031010"
	usd.Tip = 500
	rub := purchase()
	rub.Currency, rub.Entry, rub.AppLabel, rub.AID = "643", "021", "", ""

	reprint := opts(termconfig.LanguageRussian)
	reprint.Reprint = true
	pin := opts(termconfig.LanguageKazakh)
	pin.PINVerified = true
	qr := opts(termconfig.LanguageEnglish)
	qr.Code = receipt.CodeQR

	for _, c := range []struct {
		name string
		t    *payment.Txn
		cp   receipt.Copy
		o    receipt.Options
	}{
		{"sale-ru", purchase(), receipt.CopyMerchant, opts(termconfig.LanguageRussian)},
		{"sale-kk", purchase(), receipt.CopyMerchant, opts(termconfig.LanguageKazakh)},
		{"sale-zh", cny, receipt.CopyMerchant, opts(termconfig.LanguageChinese)},
		{"sale-en", usd, receipt.CopyMerchant, opts(termconfig.LanguageEnglish)},
		{"sale-ru-rub-customer", rub, receipt.CopyCustomer, opts(termconfig.LanguageRussian)},
		{"sale-kk-pin", purchase(), receipt.CopyMerchant, pin},
		{"test-en", test, receipt.CopyCustomer, qr},
		{"test-zh", test, receipt.CopyMerchant, opts(termconfig.LanguageChinese)},
		{"reprint-ru", purchase(), receipt.CopyBank, reprint},
		{"declined-ru", declined, receipt.CopyCustomer, opts(termconfig.LanguageRussian)},
		{"declined-en", declined, receipt.CopyMerchant, opts(termconfig.LanguageEnglish)},
		{"refund-en", refund(), receipt.CopyMerchant, opts(termconfig.LanguageEnglish)},
		{"refund-zh", refund(), receipt.CopyCustomer, opts(termconfig.LanguageChinese)},
	} {
		t.Run(c.name, func(t *testing.T) {
			golden(t, c.name, text(t, receipt.SalesSlip(c.t, merchant(), c.cp, c.o)))
		})
	}
}

func TestSlipContents(t *testing.T) {
	en := opts(termconfig.LanguageEnglish)
	got := text(t, receipt.SalesSlip(refund(), merchant(), receipt.CopyMerchant, en))
	for _, want := range []string{"REFUND", "ORIG REF NO", "123456789012", "ORIG TRACE NO", "000123",
		"ORIG DATE", "11/20", "-500.00 тг", "CARDHOLDER SIGNATURE", "[CODE128 123456789099]", "**/**",
		"A000000333010101", "UnionPay Debit"} {
		if !strings.Contains(got, want) {
			t.Errorf("refund slip lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "2812") || strings.Contains(got, "12/28") {
		t.Errorf("expiry printed:\n%s", got)
	}

	tx := purchase()
	tx.Test = true
	lines := strings.Split(strings.TrimRight(text(t, receipt.SalesSlip(tx, merchant(), receipt.CopyCustomer, en)), "\n"), "\n")
	if !strings.Contains(lines[0], "TEST") || !strings.Contains(lines[len(lines)-1], "TEST") {
		t.Errorf("TEST not at top and bottom: %q … %q", lines[0], lines[len(lines)-1])
	}
	// Big and bold: GS ! 0x11 (double width and height) and ESC E 1 just before "TEST".
	var b bytes.Buffer
	if _, err := receipt.SalesSlip(tx, merchant(), receipt.CopyCustomer, en).Encode(&b, model); err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(b.Bytes(), []byte("TEST")); n != 2 {
		t.Errorf("TEST %d times in the stream", n)
	}
	i := bytes.Index(b.Bytes(), []byte("TEST"))
	if pre := b.Bytes()[:i]; !bytes.Contains(pre, []byte{0x1D, '!', 0x11}) || !bytes.Contains(pre, []byte{0x1B, 'E', 1}) {
		t.Errorf("TEST is not double size and bold: % x", pre)
	}

	// Reprint and no test mark on a normal slip.
	ro := opts(termconfig.LanguageChinese)
	ro.Reprint = true
	got = text(t, receipt.SalesSlip(purchase(), merchant(), receipt.CopyCustomer, ro))
	if !strings.Contains(got, "重打印/REPRINT") || !strings.Contains(got, "打印时间 2026/11/23 10:45:00") || strings.Contains(got, "TEST") {
		t.Errorf("reprint slip:\n%s", got)
	}
	if !strings.Contains(got, "持卡人存根") || strings.Contains(got, "持卡人签名") {
		t.Errorf("customer copy label or signature:\n%s", got)
	}
}

func TestSignatureLine(t *testing.T) {
	o := opts(termconfig.LanguageEnglish)
	has := func(tx *payment.Txn, cp receipt.Copy, o receipt.Options) bool {
		return strings.Contains(text(t, receipt.SalesSlip(tx, merchant(), cp, o)), "CARDHOLDER SIGNATURE")
	}
	if !has(purchase(), receipt.CopyMerchant, o) {
		t.Error("merchant copy without signature line")
	}
	if has(purchase(), receipt.CopyCustomer, o) || has(purchase(), receipt.CopyBank, o) {
		t.Error("signature line on a customer or bank copy")
	}
	pin := o
	pin.PINVerified = true
	if has(purchase(), receipt.CopyMerchant, pin) {
		t.Error("signature line although the PIN was verified")
	}
	below := o
	below.NoSignatureBelow = 123457 // the purchase is 123456
	if has(purchase(), receipt.CopyMerchant, below) {
		t.Error("signature line below the no-signature limit")
	}
	below.NoSignatureBelow = 123456
	if !has(purchase(), receipt.CopyMerchant, below) {
		t.Error("no signature line at the limit")
	}
	d := purchase()
	d.State = payment.StateDeclined
	if has(d, receipt.CopyMerchant, o) {
		t.Error("signature line on a declined slip")
	}
}

func TestLanguageFallsBackToMerchant(t *testing.T) {
	m := merchant()
	m.Language = termconfig.LanguageKazakh
	o := opts("")
	if got := text(t, receipt.SalesSlip(purchase(), m, receipt.CopyMerchant, o)); !strings.Contains(got, "САТУШЫ ДАНАСЫ") {
		t.Errorf("not in Kazakh:\n%s", got)
	}
	m.Language = ""
	if got := text(t, receipt.SalesSlip(purchase(), m, receipt.CopyMerchant, o)); !strings.Contains(got, "ЭКЗЕМПЛЯР ПРОДАВЦА") {
		t.Errorf("not in Russian:\n%s", got)
	}
}

// cardRuns finds 13–19 digit runs: what a card number looks like.
var cardRuns = regexp.MustCompile(`\d{13,19}`)

// noFullPAN fails when s has a card-number-like digit run other than the merchant number
// and the digits of the chip application id.
func noFullPAN(t *testing.T, what, s string) {
	t.Helper()
	for _, run := range cardRuns.FindAllString(s, -1) {
		if run != merchant().MID && !strings.Contains(purchase().AID, run) {
			t.Errorf("%s has a %d-digit run %s", what, len(run), run)
		}
	}
}

func TestPANMaskEnforced(t *testing.T) {
	for _, pan := range []string{"6228480123456781234", "4111111111111111", "4111 1111 1111 1111",
		"4111111111111111=28121010000000000000", "378282246310005", "622848******1234", "5555555555554444D2812"} {
		tx := purchase()
		tx.PAN = pan
		for _, l := range receipt.Languages() {
			for _, cp := range []receipt.Copy{receipt.CopyMerchant, receipt.CopyCustomer} {
				got := text(t, receipt.SalesSlip(tx, merchant(), cp, opts(l)))
				noFullPAN(t, "slip", got)
				if want := receipt.MaskPAN(pan); !strings.Contains(got, want) {
					t.Errorf("slip lacks %s:\n%s", want, got)
				}
			}
		}
		var b bytes.Buffer
		if _, err := receipt.DetailSlip([]payment.Txn{*tx}, merchant(), opts("en")).Encode(&b, model); err != nil {
			t.Fatal(err)
		}
		noFullPAN(t, "detail stream", b.String())
	}
}

func TestMaskPAN(t *testing.T) {
	for in, want := range map[string]string{
		"":                        "",
		"4111111111111111":        "411111******1111",
		"6228480123456781234":     "622848*********1234",
		"4111 1111 1111 1111":     "411111******1111",
		"4111-1111-1111-1111":     "411111******1111",
		"4111111111111111=2812":   "411111******1111",
		"622848******1234":        "622848******1234",
		"3782822463":              "*******463",
		"1234":                    "***4",
		"12":                      "**",
		"123456789012":            "********9012",
		"12345678901234567890123": "567890*********0123",
	} {
		got := receipt.MaskPAN(in)
		if got != want {
			t.Errorf("MaskPAN(%q) = %q, want %q", in, got, want)
		}
		if !receipt.Masked(got) {
			t.Errorf("Masked(%q) = false", got)
		}
	}
	for _, s := range []string{"4111111111111111", "411111*****11111", "1234", "12345678", "41111111111111111111"} {
		if receipt.Masked(s) {
			t.Errorf("Masked(%q) = true", s)
		}
	}
}

func FuzzMaskPAN(f *testing.F) {
	f.Add("4111111111111111")
	f.Add("622848******1234")
	f.Add("1234 5678 9012 3456 789")
	f.Fuzz(func(t *testing.T, s string) {
		m := receipt.MaskPAN(s)
		if !receipt.Masked(m) {
			t.Fatalf("MaskPAN(%q) = %q is not masked", s, m)
		}
		if receipt.MaskPAN(m) != m {
			t.Fatalf("MaskPAN is not idempotent on %q", m)
		}
		if cardRuns.MatchString(m) {
			t.Fatalf("MaskPAN(%q) = %q has a digit run", s, m)
		}
	})
}

func totals() payment.SettlementTotals {
	return payment.SettlementTotals{Batch: 7, DomDebitCount: 12, DomDebit: 1234567, DomCreditCount: 1, DomCredit: 5000,
		ForDebitCount: 2, ForDebit: 99900, DomBalanced: true, ForBalanced: false,
		Time: time.Date(2026, 11, 23, 18, 0, 0, 0, time.UTC).Unix()}
}

func TestTotalsSlipGolden(t *testing.T) {
	for _, l := range receipt.Languages() {
		t.Run(string(l), func(t *testing.T) {
			golden(t, "totals-"+string(l), text(t, receipt.TotalsSlip(totals(), merchant(), opts(l))))
		})
	}
	o := opts(termconfig.LanguageEnglish)
	o.Test, o.Currency, o.Operator = true, "156", "02"
	got := text(t, receipt.TotalsSlip(payment.SettlementTotals{Batch: 8, DomBalanced: true, ForBalanced: true}, merchant(), o))
	for _, want := range []string{"TEST", "CNY", "OPERATOR", "000008", "2026/11/23 10:45:00"} {
		if !strings.Contains(got, want) {
			t.Errorf("totals slip lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "UNBALANCED") {
		t.Errorf("balanced batch printed as unbalanced:\n%s", got)
	}
}

// batch is n transactions of a batch: purchases, a void, a refund, a declined one and a
// balance enquiry (the last two not listed).
func batch(n int) []payment.Txn {
	out := make([]payment.Txn, n)
	for i := range out {
		tx := purchase()
		tx.ID, tx.STAN, tx.Amount = fmt.Sprintf("t-%06d", i+1), i+1, int64(100*(i+1))
		tx.AuthCode = fmt.Sprintf("%06d", 900000+i)
		tx.PAN = fmt.Sprintf("62284801%07d%04d", i, i) // full by mistake: masked again
		switch i % 10 {
		case 3:
			tx.Op = payment.OpVoid
		case 5:
			tx.Op = payment.OpRefund
		case 7:
			tx.State = payment.StateDeclined
		case 9:
			tx.Op = payment.OpBalance
		}
		out[i] = *tx
	}
	return out
}

func listed(txns []payment.Txn) int {
	n := 0
	for i := range txns {
		if txns[i].State != payment.StateDeclined && txns[i].Op != payment.OpBalance {
			n++
		}
	}
	return n
}

func TestDetailSlipGolden(t *testing.T) {
	for _, l := range receipt.Languages() {
		t.Run(string(l), func(t *testing.T) {
			golden(t, "detail-"+string(l), text(t, receipt.DetailSlip(batch(12), merchant(), opts(l))))
		})
	}
	o := opts(termconfig.LanguageEnglish)
	o.Model = escpos.Generic80
	var b bytes.Buffer
	if _, err := receipt.DetailSlip(batch(12), merchant(), o).Encode(&b, escpos.Generic80); err != nil {
		t.Fatal(err)
	}
	cfg := emuConfig
	cfg.Dots = 576
	rs, err := renderWith(b.Bytes(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "detail-en-80mm", rs)
	if got := text(t, receipt.DetailSlip(nil, merchant(), opts("en"))); !strings.Contains(got, "NO TRANSACTIONS") {
		t.Errorf("empty detail slip:\n%s", got)
	}
}

// TestDetailSlip300 prints a full batch (seed 004 §3.5: at least 300 transactions): every
// listed transaction has its rows, in order, and nothing else grows with the batch.
func TestDetailSlip300(t *testing.T) {
	txns := batch(330)
	n := listed(txns)
	for _, c := range []struct {
		m       escpos.Model
		perTxn  int
		dots    int
		columns int
	}{{model, 2, 384, 32}, {escpos.Generic80, 1, 576, 48}} {
		o := opts(termconfig.LanguageRussian)
		o.Model = c.m
		j := receipt.DetailSlip(txns, merchant(), o)
		var b bytes.Buffer
		if _, err := j.Encode(&b, c.m); err != nil {
			t.Fatal(err)
		}
		cfg := emuConfig
		cfg.Dots = c.dots
		cfg.MaxReceiptRows = 40000 // 300 rows on 58 mm paper are more than the default 2 m
		got, err := renderWith(b.Bytes(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimRight(got, "\n"), "\n")
		b.Reset()
		if _, err := receipt.DetailSlip(nil, merchant(), o).Encode(&b, c.m); err != nil {
			t.Fatal(err)
		}
		empty, err := renderWith(b.Bytes(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		// The empty slip has "no transactions" where the full one has the count line; a batch
		// number line only the full one has.
		want := len(strings.Split(strings.TrimRight(empty, "\n"), "\n")) + 1 + n*c.perTxn
		if len(lines) != want {
			t.Errorf("%d columns: %d lines, want %d", c.columns, len(lines), want)
		}
		rows := 0
		prev := 0
		for _, l := range lines {
			if len(l) > 7 && l[6] == ' ' && strings.Contains(l, "622848") {
				var stan int
				if _, err := fmt.Sscanf(l[:6], "%06d", &stan); err != nil {
					t.Fatalf("row %q: %v", l, err)
				}
				if stan <= prev {
					t.Fatalf("row %q out of order", l)
				}
				prev = stan
				rows++
			}
			if w := len([]rune(l)); w > c.columns {
				t.Errorf("line wider than the paper: %q", l)
			}
		}
		if rows != n {
			t.Errorf("%d columns: %d rows, want %d", c.columns, rows, n)
		}
		if !strings.Contains(got, fmt.Sprintf("Операций%s%d", strings.Repeat(" ", c.columns-len("Операций")/2-3), n)) {
			t.Errorf("count line missing")
		}
		noFullPAN(t, "detail slip", got)
	}
}

// BenchmarkDetailSlip300 builds the detail slip of a 300-transaction batch and encodes it.
func BenchmarkDetailSlip300(b *testing.B) {
	txns := batch(300)
	o := opts(termconfig.LanguageKazakh)
	b.ReportAllocs()
	for b.Loop() {
		j := receipt.DetailSlip(txns, merchant(), o)
		if _, err := j.Encode(io.Discard, model); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSalesSlip builds and encodes one merchant copy.
func BenchmarkSalesSlip(b *testing.B) {
	tx := purchase()
	o := opts(termconfig.LanguageChinese)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := receipt.SalesSlip(tx, merchant(), receipt.CopyMerchant, o).Encode(io.Discard, model); err != nil {
			b.Fatal(err)
		}
	}
}

func TestNilTxn(t *testing.T) {
	if _, err := receipt.SalesSlip(nil, merchant(), receipt.CopyMerchant, opts("en")).Encode(io.Discard, model); err == nil {
		t.Error("a nil transaction printed")
	}
}
