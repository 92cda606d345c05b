package ecr

import (
	"fmt"
	"strconv"
	"time"

	"github.com/posagent/posagent/agent/payment"
	"github.com/posagent/posagent/agent/termconfig"
)

// chequeDate is chequeInfo.date: "13.03.23 14:31:39".
const chequeDate = "02.01.06 15:04:05"

// symbols of the currencies the terminal is sold with; others print their ISO code.
var symbols = map[string]string{"KZT": "₸", "RUB": "₽", "CNY": "¥", "USD": "$", "EUR": "€", "UZS": "so'm", "KGS": "сом"}

// currencyOf is the transaction currency's numeric code (field 49).
func currencyOf(doc *termconfig.Document) string {
	if c, ok := doc.DefaultCurrency(); ok {
		return c.Numeric
	}
	return ""
}

// whole converts minor units to whole units (rounding toward zero; the API never asks for
// fractions).
func whole(doc *termconfig.Document, minorAmount int64) int64 {
	return minorAmount / pow10(exponent(doc))
}

// wholeText is an amount as chequeInfo.amount writes it: "1 ₸"; fractions appear only when
// the amount has them (a tip, a partial completion).
func wholeText(doc *termconfig.Document, minorAmount int64) string {
	exp := exponent(doc)
	div := pow10(exp)
	num := strconv.FormatInt(minorAmount/div, 10)
	if frac := minorAmount % div; frac != 0 {
		num += fmt.Sprintf(".%0*d", exp, frac)
	}
	sym := ""
	if c, ok := doc.DefaultCurrency(); ok {
		sym = c.Alpha
		if s, ok := symbols[c.Alpha]; ok {
			sym = s
		}
	}
	if sym == "" {
		return num
	}
	return num + " " + sym
}

// statusTexts are chequeInfo.status by receipt language and operation type.
var statusTexts = map[termconfig.Language]map[string]string{
	"ru": {"payment": "Покупка. Одобрено", "refund": "Возврат выполнен успешно", "void": "Отмена. Одобрено",
		"cancel": "Аварийная отмена. Одобрено", "preauth": "Преавторизация. Одобрено", "completion": "Завершение преавторизации. Одобрено",
		"cashwithdrawal": "Выдача наличных. Одобрено", "topup": "Пополнение счёта. Одобрено", "balance": "Запрос баланса. Одобрено"},
	"kk": {"payment": "Сатып алу. Мақұлданды", "refund": "Қайтару сәтті жасалды", "void": "Болдырмау. Мақұлданды",
		"cancel": "Шұғыл болдырмау. Мақұлданды", "preauth": "Алдын ала авторизациялау. Мақұлданды", "completion": "Алдын ала авторизациялауды аяқтау. Мақұлданды",
		"cashwithdrawal": "Қолма-қол ақша беру. Мақұлданды", "topup": "Шотты толықтыру. Мақұлданды", "balance": "Баланс сұрау. Мақұлданды"},
	"zh": {"payment": "消费 成功", "refund": "退货 成功", "void": "消费撤销 成功", "cancel": "冲正 成功", "preauth": "预授权 成功",
		"completion": "预授权完成 成功", "cashwithdrawal": "取现 成功", "topup": "充值 成功", "balance": "余额查询 成功"},
	"en": {"payment": "Purchase. Approved", "refund": "Refund successful", "void": "Void. Approved", "cancel": "Emergency cancel. Approved",
		"preauth": "Pre-authorization. Approved", "completion": "Pre-auth completion. Approved", "cashwithdrawal": "Cash withdrawal. Approved",
		"topup": "Top-up. Approved", "balance": "Balance inquiry. Approved"},
}

func statusText(doc *termconfig.Document, typ string) string {
	lang := doc.PrintProfile.Language
	if _, ok := statusTexts[lang]; !ok {
		lang = "ru"
	}
	return statusTexts[lang][typ]
}

// merchantFields fills the merchant part every cheque has.
func merchantFields(doc *termconfig.Document, c *Cheque) {
	pp := doc.PrintProfile
	c.StoreName = pp.StoreName
	if c.StoreName == "" {
		c.StoreName = doc.AuthHost.MerchantName
	}
	c.City, c.Address, c.Bin, c.TerminalID = pp.City, pp.Address, pp.TaxID, doc.AuthHost.TerminalID
}

// cardCheque is chequeInfo of a card operation. A refund carries no icc and no
// hostResponseCode (seed 003 §4.5); credits show a negative amount.
func cardCheque(doc *termconfig.Document, t *payment.Txn, typ string) *Cheque {
	c := &Cheque{Status: statusText(doc, typ), Date: time.Unix(t.Time, 0).Format(chequeDate), CardMask: t.PAN,
		RRN: t.RRN, AuthorizationCode: t.AuthCode, Method: "card", Type: typ}
	merchantFields(doc, c)
	amount := wholeText(doc, t.Amount)
	if typ == "refund" || typ == "void" || typ == "cancel" {
		amount = "- " + amount
	}
	c.Amount = amount
	if typ != "refund" {
		c.ICC = t.AppLabel
		if c.ICC == "" {
			c.ICC = t.CardOrg
		}
		c.HostResponseCode = fmt.Sprintf("%03s", t.RespCode)
		pin := t.CVM == "pin"
		c.PinEntered = &pin
	}
	return c
}

// qrCheque is chequeInfo of a QR payment or refund.
func qrCheque(doc *termconfig.Document, order string, minorAmount int64, typ string, now time.Time) *Cheque {
	c := &Cheque{Status: statusText(doc, typ), Date: now.Format(chequeDate), OrderNumber: order, Method: "qr", Type: typ}
	merchantFields(doc, c)
	c.Amount = wholeText(doc, minorAmount)
	if typ == "refund" {
		c.Amount = "- " + c.Amount
	}
	return c
}
