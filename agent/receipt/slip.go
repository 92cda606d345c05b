package receipt

import (
	"strconv"
	"strings"
	"time"

	"github.com/posagent/posagent/agent/payment"
	"github.com/posagent/posagent/agent/termconfig"
	"github.com/posagent/posagent/drivers/escpos"
)

// Copy is which copy of a sales slip is printed or sent.
type Copy string

// Copies (UnionPay: 商户存根, 持卡人存根, 银行存根).
const (
	CopyMerchant Copy = "merchant"
	CopyCustomer Copy = "customer"
	CopyBank     Copy = "bank"
)

// Merchant is who the slips are for, filled by the caller from the terminal configuration:
// Name from printProfile.storeName (or authHost.merchantName), MID and TID from authHost,
// Address from printProfile.city and address, the rest from printProfile.
type Merchant struct {
	Name     string
	MID, TID string
	Address  []string
	TaxID    string
	Header   []string // printed above the name
	Footer   []string // printed at the end of every slip
	// Language is printProfile.language: the slips' language unless Options.Language is
	// set, and the language of the electronic receipt.
	Language termconfig.Language
}

// CodeKind is how the reference number is printed as a code.
type CodeKind uint8

// Code kinds.
const (
	CodeBarcode CodeKind = iota // CODE128 (the default)
	CodeQR
	CodeNone
)

// Options shape one slip.
type Options struct {
	// Language overrides Merchant.Language; both empty means Russian (the factory default).
	Language termconfig.Language
	// Reprint marks a copy printed again later (重打印 / REPRINT), with the time of printing.
	Reprint bool
	// NoSignatureBelow: approved amounts below it (minor units) need no signature; 0: every
	// amount needs one unless PINVerified.
	NoSignatureBelow int64
	// PINVerified: the cardholder entered an online or offline PIN; no signature line.
	// (Txn does not record the CVM yet.)
	PINVerified bool
	// Test marks totals and detail slips of a test batch; sales slips follow Txn.Test.
	Test bool
	// Now is the clock for "printed at" and for totals without a time; default time.Now.
	Now func() time.Time
	// Location is the terminal's time zone for dates; default time.Local.
	Location *time.Location
	// Model is the printer; the zero value means escpos.Generic58 (32 columns).
	Model escpos.Model
	// Code prints the reference number as a barcode (default), a QR code or not at all.
	Code CodeKind
	// Currency is the ISO 4217 numeric currency of totals and detail slips; default the
	// first transaction's, else "398".
	Currency string
	// Operator is printed on totals and detail slips when set.
	Operator string
}

type ctx struct {
	o    Options
	lang termconfig.Language
	l    *labels
	p    *page
	loc  *time.Location
}

func newCtx(m *Merchant, o Options, job, text bool) *ctx {
	if o.Model.Dots == 0 {
		o.Model = escpos.Generic58
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	lang := o.Language
	if lang == "" {
		lang = m.Language
	}
	if lang == "" {
		lang = termconfig.LanguageRussian
	}
	loc := o.Location
	if loc == nil {
		loc = time.Local
	}
	return &ctx{o: o, lang: lang, l: labelsFor(lang), p: newPage(o.Model, job, text), loc: loc}
}

func (c *ctx) money(minor int64, cur string) string {
	return formatAmount(minor, cur, c.lang, c.l, c.o.Model.Chinese, c.p.j != nil)
}

func (c *ctx) date(unix int64) string {
	return time.Unix(unix, 0).In(c.loc).Format(c.l.dateFormat)
}

// head is the top of every slip: header lines, name, address, tax id.
func (c *ctx) head(m *Merchant) {
	p := c.p
	for _, h := range m.Header {
		p.center(h, false)
	}
	if m.Name != "" {
		p.center(m.Name, true)
	}
	for _, a := range m.Address {
		p.center(a, false)
	}
	if m.TaxID != "" {
		p.center(c.l.taxID+" "+m.TaxID, false)
	}
}

func (c *ctx) ids(m *Merchant, operator string) {
	c.p.pair(c.l.mid, m.MID)
	c.p.pair(c.l.tid, m.TID)
	c.p.pair(c.l.operator, operator)
}

func (c *ctx) foot(m *Merchant) {
	for _, f := range m.Footer {
		c.p.center(f, false)
	}
}

func (c *ctx) reprint() {
	if c.o.Reprint {
		c.p.center(c.l.reprint, true)
		c.p.center(c.l.printedAt+" "+c.o.Now().In(c.loc).Format(c.l.dateFormat), false)
	}
}

// end feeds the slip past the tear bar and cuts it.
func (c *ctx) end() *escpos.Job {
	if c.p.j == nil {
		return nil
	}
	return c.p.j.Feed(2).Cut()
}

func (l *labels) copyLabel(cp Copy) string {
	switch cp {
	case CopyMerchant:
		return l.merchantCopy
	case CopyBank:
		return l.bankCopy
	}
	return l.customerCopy
}

// approved reports whether the slip is of a transaction that went through (a voided
// purchase went through before it was voided; an offline one is approved locally).
func approved(s payment.State) bool {
	return s == payment.StateApproved || s == payment.StateStored || s == payment.StateVoided
}

// SignatureRequired reports whether the merchant copy of t gets a signature line under o.
func SignatureRequired(t *payment.Txn, cp Copy, o Options) bool {
	return cp == CopyMerchant && approved(t.State) && t.Op != payment.OpBalance && !o.PINVerified &&
		(o.NoSignatureBelow <= 0 || t.Amount+t.Tip >= o.NoSignatureBelow)
}

// SalesSlip is one copy of the slip of a transaction (签购单): merchant, terminal and
// operator, the card (masked again here, whatever t.PAN holds; expiry as **/**), the chip
// application, type, batch, trace, authorisation and reference numbers, date and amount;
// the original's numbers for a void, refund or completion; the signature line on the
// merchant copy; TEST marks at top and bottom of a test transaction; REPRINT; the reference
// number as a code. Declined (and unfinished) transactions print the same slip marked as
// such with the response code; whether to print them at all is Plan's business. A nil t
// gives an empty job, which the driver refuses.
func SalesSlip(t *payment.Txn, m Merchant, cp Copy, o Options) *escpos.Job {
	if t == nil {
		return escpos.NewJob()
	}
	c := newCtx(&m, o, true, false)
	c.sales(t, &m, cp)
	return c.end()
}

func (c *ctx) sales(t *payment.Txn, m *Merchant, cp Copy) {
	p, l := c.p, c.l
	if t.Test {
		p.big(l.test)
	}
	c.head(m)
	p.center(l.copyLabel(cp), false)
	c.reprint()
	p.rule()
	c.ids(m, t.Operator)
	p.rule()
	if pan := MaskPAN(t.PAN); pan != "" {
		p.pairStyled(l.card, pan, true)
		if t.Expiry != "" {
			p.pair(l.expiry, "**/**")
		}
	}
	p.pair(l.cardOrg, clean(t.CardOrg))
	if e := entryOf(t.Entry); e != entryUnknown {
		p.pair(l.entry, l.entries[e])
	}
	p.pair(l.app, clean(t.AppLabel))
	p.pair(l.aid, clean(t.AID))
	p.rule()
	p.big(l.op(t.Op))
	p.pair(l.batch, pad6(t.Batch))
	p.pair(l.trace, pad6(t.STAN))
	p.pair(l.auth, clean(t.AuthCode))
	p.pair(l.ref, clean(t.RRN))
	if t.Time != 0 {
		p.pair(l.dateTime, c.date(t.Time))
	}
	if o := t.Orig; o != nil {
		p.pair(l.origTrace, pad6(o.STAN))
		p.pair(l.origRef, clean(o.RRN))
		p.pair(l.origAuth, clean(o.Auth))
		if len(o.Date) == 4 {
			p.pair(l.origDate, o.Date[:2]+"/"+o.Date[2:])
		}
	}
	p.rule()
	sign := int64(1)
	if t.Credit() {
		sign = -1
	}
	if t.Tip != 0 {
		p.pair(l.amount, c.money(sign*t.Amount, t.Currency))
		p.pair(l.tip, c.money(sign*t.Tip, t.Currency))
		p.amount(l.total, c.money(sign*(t.Amount+t.Tip), t.Currency))
	} else {
		p.amount(l.amount, c.money(sign*t.Amount, t.Currency))
	}
	switch {
	case approved(t.State):
		p.center(l.approved, true)
	case t.State == payment.StateDeclined:
		p.big(l.declined)
		p.pair(l.resp, clean(t.RespCode))
	default:
		p.big(l.notCompleted)
		p.pair(l.resp, clean(t.RespCode))
	}
	p.rule()
	if cp == CopyMerchant && approved(t.State) {
		switch {
		case SignatureRequired(t, cp, c.o):
			p.left(l.signature + ":")
			p.blank()
			p.blank()
			p.left(strings.Repeat("_", p.cols))
			p.center(l.agreement, false)
		case c.o.PINVerified:
			p.center(l.pinVerified, false)
			p.center(l.noSignature, false)
		default:
			p.center(l.noSignature, false)
		}
	}
	c.foot(m)
	c.code(t.RRN)
	if t.Test {
		p.big(l.test)
	}
}

// code prints the reference number as a barcode or QR code when it is short printable
// ASCII.
func (c *ctx) code(ref string) {
	if c.p.j == nil || c.o.Code == CodeNone || ref == "" || len(ref) > 24 {
		return
	}
	for i := 0; i < len(ref); i++ {
		if ref[i] <= 0x20 || ref[i] >= 0x7F {
			return
		}
	}
	c.p.j.Align(escpos.Center)
	if c.o.Code == CodeQR {
		c.p.j.QR(ref, escpos.QROptions{Size: 5})
	} else {
		c.p.j.Barcode128(ref, escpos.BarcodeOptions{Height: 60})
	}
}

// pad6 is a trace or batch number as six digits.
func pad6(n int) string {
	if n < 0 {
		n = 0
	}
	s := strconv.Itoa(n)
	if len(s) < 6 {
		s = strings.Repeat("0", 6-len(s)) + s
	}
	return s
}

// TotalsSlip is the settlement totals slip (结算总计单): the batch, counts and amounts of
// debits and credits for domestic and foreign cards, and whether each balanced with the
// host.
func TotalsSlip(st payment.SettlementTotals, m Merchant, o Options) *escpos.Job {
	c := newCtx(&m, o, true, false)
	p, l := c.p, c.l
	cur := o.Currency
	if cur == "" {
		cur = "398"
	}
	if o.Test {
		p.big(l.test)
	}
	c.head(&m)
	p.big(l.totalsTitle)
	c.reprint()
	p.rule()
	c.ids(&m, o.Operator)
	p.pair(l.batch, pad6(st.Batch))
	when := st.Time
	if when == 0 {
		when = o.Now().Unix()
	}
	p.pair(l.dateTime, c.date(when))
	p.pair(l.currency, Alpha(cur))
	p.rule()
	c.row(l.colType, l.colCount, l.colAmount, true)
	for _, r := range []struct {
		title         string
		dc, cc        int
		debit, credit int64
		balanced      bool
	}{
		{l.domestic, st.DomDebitCount, st.DomCreditCount, st.DomDebit, st.DomCredit, st.DomBalanced},
		{l.foreign, st.ForDebitCount, st.ForCreditCount, st.ForDebit, st.ForCredit, st.ForBalanced},
	} {
		p.styled(r.title, escpos.Left, true, 1, 1)
		c.row(l.debit, strconv.Itoa(r.dc), c.number(r.debit, cur), false)
		c.row(l.credit, strconv.Itoa(r.cc), c.number(r.credit, cur), false)
		if r.balanced {
			p.center(l.balanced, true)
		} else {
			p.center(l.unbalanced, true)
		}
	}
	p.rule()
	c.foot(&m)
	if o.Test {
		p.big(l.test)
	}
	return c.end()
}

func (c *ctx) number(minor int64, cur string) string {
	neg := minor < 0
	b := make([]byte, 0, 24)
	if neg {
		b = append(b, '-')
	}
	return string(appendNumber(b, minor, currencyOf(cur).exp, c.l))
}

// row is a totals table row: the label, the count right-aligned in 6 columns, the amount
// right-aligned at the end.
func (c *ctx) row(label, count, amount string, bold bool) {
	p := c.p
	const countW = 6
	aw := max(p.width(amount), p.cols*2/5)
	lw := max(p.cols-countW-1-aw, 1)
	line := p.fitLeft(label, lw) + pad(countW-p.width(count)) + count + " " + pad(aw-p.width(amount)) + amount
	p.styled(line, escpos.Left, bold, 1, 1)
}

func pad(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat(" ", n)
}

// detailed reports whether a transaction is listed on the detail slip: the financial ones
// that went through (approved, stored offline, or approved and later voided).
func detailed(t *payment.Txn) bool {
	return approved(t.State) && t.Op != payment.OpBalance
}

// DetailSlip is the settlement detail slip (结算明细单): one row per financial transaction
// of the batch that went through (trace, type, masked card number, authorisation code,
// amount), then their count. On 80 mm paper a row is one line; on 58 mm it takes two (trace,
// type and card, then the authorisation code and amount). The job grows by one or two
// elements per transaction and each row is built in a reused buffer, so a 300-transaction
// batch costs linear time and memory.
func DetailSlip(txns []payment.Txn, m Merchant, o Options) *escpos.Job {
	c := newCtx(&m, o, true, false)
	p, l := c.p, c.l
	cur := o.Currency
	if cur == "" && len(txns) > 0 {
		cur = txns[0].Currency
	}
	if cur == "" {
		cur = "398"
	}
	if o.Test {
		p.big(l.test)
	}
	c.head(&m)
	p.big(l.detailTitle)
	c.reprint()
	p.rule()
	c.ids(&m, o.Operator)
	if len(txns) > 0 {
		p.pair(l.batch, pad6(txns[0].Batch))
	}
	p.pair(l.dateTime, o.Now().In(c.loc).Format(l.dateFormat))
	p.pair(l.currency, Alpha(cur))
	p.rule()

	wide := p.cols >= 44
	// The type codes padded to four columns, once per slip.
	types := make(map[payment.Op]string, len(l.short))
	typ := func(op payment.Op) string {
		s, ok := types[op]
		if !ok {
			s = p.fitLeft(l.shortOp(op), 4)
			types[op] = s
		}
		return s
	}
	const traceW, typeW, panW, authW = 6, 4, 16, 6
	var b []byte
	if wide {
		aw := p.cols - traceW - typeW - panW - authW - 4
		b = append(b, p.fitLeft(l.colTrace, traceW)+" "+p.fitLeft(l.colType, typeW)+" "+
			p.fitLeft(l.colCard, panW)+" "+p.fitLeft(l.colAuth, authW)+" "...)
		b = append(b, pad(aw-p.width(l.colAmount))+l.colAmount...)
		p.styled(string(b), escpos.Left, true, 1, 1)
	} else {
		p.styled(p.fitLeft(l.colTrace, traceW)+" "+p.fitLeft(l.colType, typeW)+" "+l.colCard, escpos.Left, true, 1, 1)
		p.styled(pad(traceW+1)+p.fitLeft(l.colAuth, authW)+pad(p.cols-traceW-1-authW-p.width(l.colAmount))+l.colAmount,
			escpos.Left, true, 1, 1)
	}
	n := 0
	exp := currencyOf(cur).exp
	var num []byte
	for i := range txns {
		t := &txns[i]
		if !detailed(t) {
			continue
		}
		n++
		num = num[:0]
		if t.Credit() {
			num = append(num, '-')
		}
		num = appendNumber(num, t.Amount+t.Tip, exp, l)
		pan := shortPAN(MaskPAN(t.PAN))
		auth := t.AuthCode
		if len(auth) > authW || strings.IndexFunc(auth, isControl) >= 0 {
			auth = clean(auth)
			if len(auth) > authW {
				auth = auth[:authW]
			}
		}
		b = b[:0]
		b = appendPadInt(b, t.STAN, traceW)
		b = append(b, ' ')
		b = append(b, typ(t.Op)...)
		b = append(b, ' ')
		b = append(b, pan...)
		if wide {
			b = appendSpaces(b, panW-len(pan)+1)
			b = append(b, auth...)
			b = appendSpaces(b, authW-len(auth)+1)
			b = appendSpaces(b, p.cols-traceW-typeW-panW-authW-4-len(num))
			b = append(b, num...)
			p.left(string(b))
			continue
		}
		p.left(string(b))
		b = b[:0]
		b = appendSpaces(b, traceW+1)
		b = append(b, auth...)
		b = appendSpaces(b, p.cols-traceW-1-len(auth)-len(num))
		b = append(b, num...)
		p.left(string(b))
	}
	p.rule()
	if n == 0 {
		p.center(l.noTxns, false)
	} else {
		p.pair(l.count, strconv.Itoa(n))
	}
	c.foot(&m)
	if o.Test {
		p.big(l.test)
	}
	return c.end()
}

// appendPadInt appends n with leading zeros to w digits.
func appendPadInt(b []byte, n, w int) []byte {
	var d [20]byte
	s := strconv.AppendInt(d[:0], int64(max(n, 0)), 10)
	for k := len(s); k < w; k++ {
		b = append(b, '0')
	}
	return append(b, s...)
}

func appendSpaces(b []byte, n int) []byte {
	for ; n > 0; n-- {
		b = append(b, ' ')
	}
	return b
}
