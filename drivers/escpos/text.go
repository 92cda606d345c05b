package escpos

import (
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/encoding/simplifiedchinese"
)

// runeEncoder encodes a rune into one byte of a character table.
type runeEncoder interface {
	EncodeRune(r rune) (byte, bool)
}

func charsetEncoder(c Charset) runeEncoder {
	switch c {
	case PC437:
		return tablePC437
	case CP866:
		return tableCP866
	case WPC1251:
		return tableWPC1251
	case KZ1048:
		return kz1048{}
	}
	return nil
}

// kz1048 is Windows-1251 with sixteen positions reassigned to the Kazakh letters.
type kz1048 struct{}

var kzRunes = map[rune]byte{
	'Қ': 0x8D, 'Һ': 0x8E, 'қ': 0x9D, 'һ': 0x9E,
	'Ұ': 0xA1, 'ұ': 0xA2, 'Ә': 0xA3, 'Ө': 0xA5,
	'Ғ': 0xAA, 'Ү': 0xAF, 'ө': 0xB4, 'ғ': 0xBA,
	'ә': 0xBC, 'Ң': 0xBD, 'ң': 0xBE, 'ү': 0xBF,
}

// kzTaken marks the Windows-1251 bytes KZ-1048 gave to Kazakh letters: the Serbian,
// Macedonian and Ukrainian letters that were there are not in KZ-1048.
var kzTaken = func() [256]bool {
	var t [256]bool
	for _, b := range kzRunes {
		t[b] = true
	}
	return t
}()

func (kz1048) EncodeRune(r rune) (byte, bool) {
	if b, ok := kzRunes[r]; ok {
		return b, true
	}
	b, ok := tableWPC1251.EncodeRune(r)
	if !ok || kzTaken[b] {
		return 0, false
	}
	return b, true
}

// fallbacks replace characters a printer has no table for. The Kazakh letters become the
// Russian letters a Kazakh reader expects in their place (Ә→А, Ғ→Г, Қ→К, Ң→Н, Ө→О, Ұ/Ү→У,
// Һ→Х, І→I): lossy, but readable, and what Kazakh text looks like on Russian-only devices.
var fallbacks = map[rune]string{
	'Ә': "А", 'ә': "а", 'Ғ': "Г", 'ғ': "г", 'Қ': "К", 'қ': "к", 'Ң': "Н", 'ң': "н",
	'Ө': "О", 'ө': "о", 'Ұ': "У", 'ұ': "у", 'Ү': "У", 'ү': "у", 'Һ': "Х", 'һ': "х",
	'І': "I", 'і': "i",
	'₸': "тг", '«': "\"", '»': "\"", '„': "\"", '“': "\"", '”': "\"", '‘': "'", '’': "'",
	'—': "-", '–': "-", '…': "...", '\u00A0': " ", '№': "N",
}

// chineseRune says whether r goes to the printer's Chinese (GB18030) font.
func chineseRune(r rune) bool {
	return unicode.Is(unicode.Han, r) ||
		(r >= 0x3000 && r <= 0x303F) || // CJK symbols and punctuation
		(r >= 0xFF00 && r <= 0xFFEF) // full-width forms
}

// textState is what the encoder knows about the printer's character mode.
type textState struct {
	page    int  // ESC t in effect; -1 unknown
	chinese int8 // Chinese mode: -1 unknown, 0 off, 1 on
}

// textEncoder turns text into bytes for a model, switching tables and modes as needed.
type textEncoder struct {
	m     Model
	pages []runeEncoder
	gb    []byte // pending Chinese-mode runes, UTF-8
}

func newTextEncoder(m Model) *textEncoder {
	t := &textEncoder{m: m}
	for _, p := range m.Pages {
		t.pages = append(t.pages, charsetEncoder(p.Charset))
	}
	return t
}

// out receives the encoded bytes: mode switches and text.
type byteSink interface {
	put(b ...byte)
}

// encode writes s; control characters become spaces and what no table has becomes "?".
func (t *textEncoder) encode(s string, st *textState, w byteSink) {
	for _, r := range s {
		t.rune(r, st, w, 0)
	}
	t.flushGB(w)
}

func (t *textEncoder) rune(r rune, st *textState, w byteSink, depth int) {
	if r < 0x20 || r == 0x7F || (r >= 0x80 && r < 0xA0) {
		r = ' '
	}
	if r < 0x80 {
		t.flushGB(w)
		w.put(byte(r)) // ASCII is the same in every table and in Chinese mode
		return
	}
	if t.m.Chinese && chineseRune(r) {
		if st.chinese != 1 {
			w.put(0x1C, '&')
			st.chinese = 1
		}
		t.gb = utf8.AppendRune(t.gb, r)
		return
	}
	if b, page, ok := t.single(r, st); ok {
		t.flushGB(w)
		if st.chinese != 0 && t.m.Chinese { // a printer without the font has no FS commands
			w.put(0x1C, '.')
			st.chinese = 0
		}
		if st.page != page {
			w.put(0x1B, 't', byte(page))
			st.page = page
		}
		w.put(b)
		return
	}
	if alt, ok := fallbacks[r]; ok && depth == 0 {
		for _, a := range alt {
			t.rune(a, st, w, depth+1)
		}
		return
	}
	t.flushGB(w)
	w.put('?')
}

// single finds r in a single-byte table, preferring the one in effect.
func (t *textEncoder) single(r rune, st *textState) (byte, int, bool) {
	for i, p := range t.m.Pages {
		if int(p.N) == st.page {
			if b, ok := t.pages[i].EncodeRune(r); ok {
				return b, st.page, true
			}
		}
	}
	for i, p := range t.m.Pages {
		if b, ok := t.pages[i].EncodeRune(r); ok {
			return b, int(p.N), true
		}
	}
	return 0, 0, false
}

func (t *textEncoder) flushGB(w byteSink) {
	if len(t.gb) == 0 {
		return
	}
	out, err := simplifiedchinese.GB18030.NewEncoder().Bytes(t.gb)
	if err == nil {
		w.put(out...)
	}
	t.gb = t.gb[:0]
}

// TextWidth is how many font A columns s takes on the model at normal size: characters in
// the Chinese font take two, everything else one.
func (m Model) TextWidth(s string) int {
	n := 0
	for _, r := range s {
		if m.Chinese && chineseRune(r) {
			n += 2
		} else if alt, ok := fallbacks[r]; ok && !m.hasSingle(r) {
			n += utf8.RuneCountInString(alt)
		} else {
			n++
		}
	}
	return n
}

func (m Model) hasSingle(r rune) bool {
	for _, p := range m.Pages {
		if e := charsetEncoder(p.Charset); e != nil {
			if _, ok := e.EncodeRune(r); ok {
				return true
			}
		}
	}
	return false
}
