package receipt

import (
	"strconv"

	"github.com/posagent/posagent/agent/termconfig"
)

// currency is what a slip needs to know about an ISO 4217 currency.
type currency struct {
	alpha  string
	exp    int
	symbol string // in Unicode, for the electronic receipt
	// printed is the symbol on paper when it differs: the driver has no table for ₽ and
	// prints ￥ only in the Chinese font (see printedSymbol).
	prefix bool // the symbol goes before the number
}

var currencies = map[string]currency{
	"156": {alpha: "CNY", exp: 2, symbol: "¥", prefix: true},
	"398": {alpha: "KZT", exp: 2, symbol: "₸"},
	"643": {alpha: "RUB", exp: 2, symbol: "₽"},
	"840": {alpha: "USD", exp: 2, symbol: "$", prefix: true},
}

// currencyOf returns the currency of an ISO 4217 numeric code; an unknown code has two
// minor digits and is shown as its code.
func currencyOf(code string) currency {
	if c, ok := currencies[code]; ok {
		return c
	}
	return currency{alpha: code, exp: 2, symbol: code}
}

// Alpha is the ISO 4217 letter code of a numeric code ("398" → "KZT"); an unknown code is
// returned as it is.
func Alpha(code string) string { return currencyOf(code).alpha }

// symbolFor is the symbol to print: ¥ only where the printer has the Chinese font (as the
// full-width ￥), ₽ as "руб." in Cyrillic slips and "RUB" otherwise (no printer table has
// ₽). ₸ is left to the driver, which prints "тг" on printers without it.
func symbolFor(c currency, lang termconfig.Language, chineseFont, paper bool) string {
	if !paper {
		return c.symbol
	}
	switch c.alpha {
	case "CNY":
		if chineseFont {
			return "￥"
		}
		return "CNY"
	case "RUB":
		if lang == termconfig.LanguageRussian || lang == termconfig.LanguageKazakh {
			return "руб."
		}
		return "RUB"
	}
	return c.symbol
}

// appendNumber appends minor units as a decimal number with the language's separators,
// without a sign.
func appendNumber(b []byte, minor int64, exp int, l *labels) []byte {
	neg := minor < 0
	var u uint64
	if neg {
		u = uint64(-minor)
	} else {
		u = uint64(minor)
	}
	var digits [24]byte
	ds := strconv.AppendUint(digits[:0], u, 10)
	for len(ds) <= exp {
		ds = append([]byte{'0'}, ds...)
	}
	whole, frac := ds[:len(ds)-exp], ds[len(ds)-exp:]
	for i, d := range whole {
		if i > 0 && (len(whole)-i)%3 == 0 {
			b = append(b, l.group...)
		}
		b = append(b, d)
	}
	if exp > 0 {
		b = append(b, l.decimal...)
		b = append(b, frac...)
	}
	return b
}

// formatAmount is minor units with the currency symbol: "1 234,56 ₸", "$1,234.56".
func formatAmount(minor int64, code string, lang termconfig.Language, l *labels, chineseFont, paper bool) string {
	c := currencyOf(code)
	sym := symbolFor(c, lang, chineseFont, paper)
	b := make([]byte, 0, 32)
	if minor < 0 {
		b = append(b, '-')
	}
	if c.prefix {
		b = append(b, sym...)
	}
	b = appendNumber(b, minor, c.exp, l)
	if !c.prefix {
		b = append(b, ' ')
		b = append(b, sym...)
	}
	return string(b)
}
