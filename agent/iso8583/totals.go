package iso8583

import (
	"errors"
	"fmt"
)

// TotalsLen is the number of digits of field 48 in a settlement: 31 for domestic cards, then 31
// for foreign cards.
const TotalsLen = 62

const (
	maxCount  = 999
	maxTotal  = 999_999_999_999
	maxResult = 3
)

// Validate reports a count, amount or result out of its field's range (count n3, amount n12,
// result 0–3).
func (t Totals) Validate() error {
	for _, c := range [...]int{t.DomDebitCount, t.DomCreditCount, t.ForDebitCount, t.ForCreditCount} {
		if c < 0 || c > maxCount {
			return fmt.Errorf("%w: field 48: count out of range", ErrInvalid)
		}
	}
	for _, a := range [...]int64{t.DomDebit, t.DomCredit, t.ForDebit, t.ForCredit} {
		if a < 0 || a > maxTotal {
			return fmt.Errorf("%w: field 48: amount out of range", ErrInvalid)
		}
	}
	for _, r := range [...]int{t.DomResult, t.ForResult} {
		if r < 0 || r > maxResult {
			return fmt.Errorf("%w: field 48: settlement result out of range", ErrInvalid)
		}
	}
	return nil
}

// Encode is field 48 of a 0500 (Msg.AddData): 62 digits laid out as the seed does — domestic
// debit count n3, debit amount n12, credit count n3, credit amount n12, settlement result n1,
// then the same five for foreign cards. It returns "" (no field 48) when Validate fails.
func (t Totals) Encode() string {
	if t.Validate() != nil {
		return ""
	}
	var d [TotalsLen]byte
	p := d[:0]
	for _, half := range [2][5]int64{
		{int64(t.DomDebitCount), t.DomDebit, int64(t.DomCreditCount), t.DomCredit, int64(t.DomResult)},
		{int64(t.ForDebitCount), t.ForDebit, int64(t.ForCreditCount), t.ForCredit, int64(t.ForResult)},
	} {
		for i, w := range totalsWidths {
			var tmp [12]byte
			p = append(p, digits(tmp[:w], uint64(half[i]))...)
		}
	}
	return string(p)
}

var totalsWidths = [5]int{3, 12, 3, 12, 1}

var errTotals = errors.New("field 48: settlement totals must be 62 digits, results 0-3")

// ParseTotals reads field 48 of a settlement or its answer (see Totals.Encode). Anything but
// 62 digits with results 0–3 is ErrMalformed.
func ParseTotals(s string) (Totals, error) {
	var t Totals
	if len(s) != TotalsLen {
		return t, fmt.Errorf("%w: %w", ErrMalformed, errTotals)
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return t, fmt.Errorf("%w: %w", ErrMalformed, errTotals)
		}
	}
	var v [10]int64
	k := 0
	for i := range v {
		w := totalsWidths[i%5]
		v[i] = int64(atoi(s[k : k+w]))
		k += w
	}
	t = Totals{
		DomDebitCount: int(v[0]), DomDebit: v[1], DomCreditCount: int(v[2]), DomCredit: v[3], DomResult: int(v[4]),
		ForDebitCount: int(v[5]), ForDebit: v[6], ForCreditCount: int(v[7]), ForCredit: v[8], ForResult: int(v[9]),
	}
	if t.DomResult > maxResult || t.ForResult > maxResult {
		return Totals{}, fmt.Errorf("%w: %w", ErrMalformed, errTotals)
	}
	return t, nil
}
