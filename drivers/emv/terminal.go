package emv

import (
	"crypto/rand"
	"time"
)

// Terminal is the terminal's side of a transaction: what the card's data object lists ask for
// and what field 55 carries besides the card's own data. The payment engine fills it from the
// operation and the terminal configuration.
type Terminal struct {
	Amount      uint64    // 9F02, in minor units
	AmountOther uint64    // 9F03 (cashback), in minor units
	Currency    uint16    // 5F2A, ISO 4217 numeric (156 = CNY)
	Country     uint16    // 9F1A, ISO 3166 numeric (156 = China)
	Type        byte      // 9C as its BCD byte: 0x00 goods and services, 0x20 refund, 0x31 balance
	Time        time.Time // 9A and 9F21; zero means now
	// TVR (95) as the terminal has set it so far; reading the card adds the processing
	// restriction bits (expired, not yet effective).
	TVR                    [5]byte
	UnpredictableNumber    [4]byte // 9F37; all zero means draw one at random
	Capabilities           [3]byte // 9F33
	AdditionalCapabilities [5]byte // 9F40
	TerminalType           byte    // 9F35, e.g. 0x22 attended, online only
	CVMResults             [3]byte // 9F34
	IFDSerial              string  // 9F1E, the 8-character interface device serial number
	AppVersion             [2]byte // 9F09, the terminal's application version number
	SequenceCounter        uint32  // 9F41, up to 8 digits; 0 leaves it out of field 55
	TTQ                    [4]byte // 9F66, terminal transaction qualifiers (contactless)
}

// prepared fills what the caller may leave to the reader: the time and the unpredictable
// number.
func (t Terminal) prepared() Terminal {
	if t.Time.IsZero() {
		t.Time = time.Now()
	}
	if t.UnpredictableNumber == ([4]byte{}) {
		_, _ = rand.Read(t.UnpredictableNumber[:])
	}
	return t
}

// Value is the terminal's value of a tag, coded as the card expects it.
func (t *Terminal) Value(tag Tag) ([]byte, bool) {
	switch tag {
	case TagAmount:
		return bcd(t.Amount, 6), true
	case TagAmountOther:
		return bcd(t.AmountOther, 6), true
	case TagCurrency:
		return bcd(uint64(t.Currency), 2), true
	case TagCountry:
		return bcd(uint64(t.Country), 2), true
	case TagTransactionType:
		return []byte{t.Type}, true
	case TagTransactionDate:
		y, m, d := t.Time.Date()
		return []byte{toBCD(y % 100), toBCD(int(m)), toBCD(d)}, true
	case TagTransactionTime:
		return []byte{toBCD(t.Time.Hour()), toBCD(t.Time.Minute()), toBCD(t.Time.Second())}, true
	case TagTVR:
		return t.TVR[:], true
	case TagUnpredictableNumber:
		return t.UnpredictableNumber[:], true
	case TagTerminalCaps:
		return t.Capabilities[:], true
	case TagAddTerminalCaps:
		return t.AdditionalCapabilities[:], true
	case TagTerminalType:
		return []byte{t.TerminalType}, true
	case TagCVMResults:
		return t.CVMResults[:], true
	case TagIFDSerial:
		if t.IFDSerial == "" {
			return nil, false
		}
		v := []byte(t.IFDSerial + "        ")[:8]
		return v, true
	case TagAppVersionTerminal:
		return t.AppVersion[:], t.AppVersion != [2]byte{}
	case TagSequenceCounter:
		return bcd(uint64(t.SequenceCounter), 4), t.SequenceCounter != 0
	case TagTTQ:
		return t.TTQ[:], true
	}
	return nil, false
}

func toBCD(n int) byte { return byte(n/10%10)<<4 | byte(n%10) }

// bcd codes n right-aligned in size bytes of packed BCD, dropping digits that do not fit.
func bcd(n uint64, size int) []byte {
	out := make([]byte, size)
	for i := size - 1; i >= 0; i-- {
		out[i] = byte(n%10) | byte(n/10%10)<<4
		n /= 100
	}
	return out
}
