package printeremu

import (
	"errors"
	"strings"
)

// code128Widths holds the bar/space widths (in modules) of symbol values 0..105; each symbol
// is bar, space, bar, space, bar, space and spans 11 modules. The stop symbol is separate.
var code128Widths = [106]string{
	"212222", "222122", "222221", "121223", "121322", "131222", "122213", "122312", "132212", "221213",
	"221312", "231212", "112232", "122132", "122231", "113222", "123122", "123221", "223211", "221132",
	"221231", "213212", "223112", "312131", "311222", "321122", "321221", "312212", "322112", "322211",
	"212123", "212321", "232121", "111323", "131123", "131321", "112313", "132113", "132311", "211313",
	"231113", "231311", "112133", "112331", "132131", "113123", "113321", "133121", "313121", "211331",
	"231131", "213113", "213311", "213131", "311123", "311321", "331121", "312113", "312311", "332111",
	"314111", "221411", "431111", "111224", "111422", "121124", "121421", "141122", "141221", "112214",
	"112412", "122114", "122411", "142112", "142211", "241211", "221114", "413111", "241112", "134111",
	"111242", "121142", "121241", "114212", "124112", "124211", "411212", "421112", "421211", "212141",
	"214121", "412121", "111143", "111341", "131141", "114113", "114311", "411113", "411311", "113141",
	"114131", "311141", "411131", "211412", "211214", "211232",
}

const code128Stop = "2331112"

const (
	c128StartA = 103
	c128StartB = 104
	c128StartC = 105
	c128CodeA  = 101 // in sets B and C
	c128CodeB  = 100 // in sets A and C
	c128CodeC  = 99  // in sets A and B
	c128Shift  = 98
	c128FNC1   = 102
)

var errCode128 = errors.New("code128: bad data")

// code128 is a decoded GS k CODE128 symbol: the symbol values (start, data, check) and the
// human-readable text.
type code128 struct {
	values []int
	text   string
}

// decodeCode128 reads GS k m=73 data as ESC/POS defines it: it starts with "{A", "{B" or
// "{C"; "{" followed by A/B/C switches the code set, "{S" shifts one character, "{1".."{4"
// are FNC1..FNC4 and "{{" is a literal brace. In code set C each byte is a value 0..99.
func decodeCode128(data []byte) (code128, error) {
	if len(data) < 2 || data[0] != '{' {
		return code128{}, errCode128
	}
	var c code128
	var text strings.Builder
	set := data[1]
	switch set {
	case 'A':
		c.values = append(c.values, c128StartA)
	case 'B':
		c.values = append(c.values, c128StartB)
	case 'C':
		c.values = append(c.values, c128StartC)
	default:
		return code128{}, errCode128
	}
	shift := false
	for i := 2; i < len(data); i++ {
		b := data[i]
		if b == '{' && i+1 < len(data) && data[i+1] != '{' {
			i++
			v, to, err := code128Escape(set, data[i])
			if err != nil {
				return code128{}, err
			}
			c.values = append(c.values, v)
			if to != 0 {
				set = to
			}
			shift = v == c128Shift
			continue
		}
		if b == '{' {
			i++ // "{{" is one brace
		}
		cur := set
		if shift {
			cur = 'A' + 'B' - set
			shift = false
		}
		v, ok := code128Value(cur, b)
		if !ok {
			return code128{}, errCode128
		}
		c.values = append(c.values, v)
		switch {
		case cur == 'C':
			text.WriteByte('0' + b/10)
			text.WriteByte('0' + b%10)
		case b >= 0x20 && b < 0x7F:
			text.WriteByte(b)
		}
	}
	if len(c.values) < 2 {
		return code128{}, errCode128
	}
	sum := c.values[0]
	for i, v := range c.values[1:] {
		sum += (i + 1) * v
	}
	c.values = append(c.values, sum%103)
	c.text = text.String()
	return c, nil
}

// code128Escape interprets the byte after "{": a code set switch (to is the new set), a
// shift or a function character.
func code128Escape(set, b byte) (v int, to byte, err error) {
	switch b {
	case 'A', 'B', 'C':
		if b == set {
			return 0, 0, errCode128
		}
		return map[byte]int{'A': c128CodeA, 'B': c128CodeB, 'C': c128CodeC}[b], b, nil
	case 'S':
		if set == 'C' {
			return 0, 0, errCode128
		}
		return c128Shift, 0, nil
	case '1':
		return c128FNC1, 0, nil
	case '2', '3':
		if set == 'C' {
			return 0, 0, errCode128
		}
		return map[byte]int{'2': 97, '3': 96}[b], 0, nil
	case '4':
		switch set {
		case 'A':
			return c128CodeA, 0, nil
		case 'B':
			return c128CodeB, 0, nil
		}
	}
	return 0, 0, errCode128
}

// code128Value is the symbol value of data byte b in a code set.
func code128Value(set, b byte) (int, bool) {
	switch set {
	case 'A':
		switch {
		case b < 0x20:
			return int(b) + 64, true
		case b < 0x60:
			return int(b) - 32, true
		}
	case 'B':
		if b >= 0x20 && b <= 0x7F {
			return int(b) - 32, true
		}
	case 'C':
		if b <= 99 {
			return int(b), true
		}
	}
	return 0, false
}

// modules returns the bar pattern, one bool per module (true = bar).
func (c code128) modules() []bool {
	var out []bool
	emit := func(widths string) {
		for i, w := range widths {
			for k := 0; k < int(w-'0'); k++ {
				out = append(out, i%2 == 0)
			}
		}
	}
	for _, v := range c.values {
		emit(code128Widths[v])
	}
	emit(code128Stop)
	return out
}
