package printeremu

import (
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/simplifiedchinese"
)

// Character table names for Config.Pages.
const (
	PC437   = "pc437"
	CP866   = "cp866"
	WPC1251 = "wpc1251"
	KZ1048  = "kz1048"
)

// Default ESC t page numbers, as Epson numbers them.
const (
	PagePC437   = 0
	PageCP866   = 17
	PageWPC1251 = 46
)

// byteDecoder turns one byte of a single-byte character table into a rune.
type byteDecoder interface {
	DecodeByte(b byte) rune
}

// kz1048 is Windows-1251 with sixteen positions given to the Kazakh letters (KZ-1048,
// STRK1048-2002). The emulator keeps its own table rather than sharing the driver's, so a
// mistake in one shows up as a test failure instead of cancelling out.
type kz1048 struct{}

var kzBytes = map[byte]rune{
	0x8D: 'Қ', 0x8E: 'Һ', 0x9D: 'қ', 0x9E: 'һ',
	0xA1: 'Ұ', 0xA2: 'ұ', 0xA3: 'Ә', 0xA5: 'Ө',
	0xAA: 'Ғ', 0xAF: 'Ү', 0xB4: 'ө', 0xBA: 'ғ',
	0xBC: 'ә', 0xBD: 'Ң', 0xBE: 'ң', 0xBF: 'ү',
}

func (kz1048) DecodeByte(b byte) rune {
	if r, ok := kzBytes[b]; ok {
		return r
	}
	return charmap.Windows1251.DecodeByte(b)
}

func decoderFor(name string) byteDecoder {
	switch name {
	case CP866:
		return charmap.CodePage866
	case WPC1251:
		return charmap.Windows1251
	case KZ1048:
		return kz1048{}
	default:
		return charmap.CodePage437
	}
}

// gb18030Len says how long a GB18030 sequence starting with lead and second is: 2 or 4, or 0
// when the two bytes cannot start one.
func gb18030Len(lead, second byte) int {
	if lead < 0x81 || lead > 0xFE {
		return 0
	}
	switch {
	case second >= 0x30 && second <= 0x39:
		return 4
	case second >= 0x40 && second <= 0xFE && second != 0x7F:
		return 2
	}
	return 0
}

func decodeGB18030(seq []byte) rune {
	out, err := simplifiedchinese.GB18030.NewDecoder().Bytes(seq)
	if err != nil {
		return '\uFFFD'
	}
	for _, r := range string(out) {
		return r
	}
	return '\uFFFD'
}
