package escpos

import (
	"bytes"
	"testing"

	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/simplifiedchinese"
)

type byteBuf struct{ bytes.Buffer }

func (b *byteBuf) put(p ...byte) { b.Write(p) }

func encodeText(m Model, st *textState, s string) []byte {
	var b byteBuf
	newTextEncoder(m).encode(s, st, &b)
	return b.Bytes()
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func must(s string, err error) []byte {
	if err != nil {
		panic(err)
	}
	return []byte(s)
}

var kzModel = Model{Name: "kz", Dots: 384, Pages: []CodePage{{99, KZ1048}, {PageCP866, CP866}}, Chinese: true}

func TestTextEncoding(t *testing.T) {
	w1251 := func(s string) []byte { return must(charmap.Windows1251.NewEncoder().String(s)) }
	gb := func(s string) []byte { return must(simplifiedchinese.GB18030.NewEncoder().String(s)) }
	tests := []struct {
		name string
		m    Model
		in   string
		want []byte
	}{
		{"russian", Generic58, "Чек №1", cat([]byte{0x1C, '.', 0x1B, 't', 46}, w1251("Чек №1"))},
		{"kazakh in KZ-1048", kzModel, "Сәлем Қ", cat([]byte{0x1C, '.', 0x1B, 't', 99}, []byte{0xD1, 0xBC, 0xEB, 0xE5, 0xEC, ' ', 0x8D})},
		{"kazakh fallback", Generic58, "Қазақстан Ұлы Әлі", cat([]byte{0x1C, '.', 0x1B, 't', 46}, w1251("Казакстан Улы Алі"))},
		{"no І in CP866", Model{Dots: 384, Pages: []CodePage{{PageCP866, CP866}}}, "Ві", cat([]byte{0x1B, 't', 17}, must(charmap.CodePage866.NewEncoder().String("В")), []byte("i"))},
		{"chinese", Generic58, "合计 Итог", cat([]byte{0x1C, '&'}, gb("合计"), []byte(" "), []byte{0x1C, '.', 0x1B, 't', 46}, w1251("Итог"))},
		{"tenge and unknown", Generic58, "5₸ ☃\x07", cat([]byte("5"), []byte{0x1C, '.', 0x1B, 't', 46}, w1251("тг"), []byte(" ? "))},
		{"no chinese font", Model{Dots: 384}, "中x", []byte("?x")},
		{"ukrainian only in CP866", kzModel, "Ї", cat([]byte{0x1C, '.', 0x1B, 't', 17}, must(charmap.CodePage866.NewEncoder().String("Ї")))},
	}
	for _, tt := range tests {
		st := textState{page: -1, chinese: -1}
		if got := encodeText(tt.m, &st, tt.in); !bytes.Equal(got, tt.want) {
			t.Errorf("%s: % x\nwant % x", tt.name, got, tt.want)
		}
	}
}

func TestTextEncodingKeepsState(t *testing.T) {
	st := textState{page: -1, chinese: -1}
	first := encodeText(Generic58, &st, "Да")
	second := encodeText(Generic58, &st, "Нет")
	if !bytes.HasPrefix(first, []byte{0x1C, '.', 0x1B, 't', 46}) || bytes.Contains(second, []byte{0x1B, 't'}) || bytes.Contains(second, []byte{0x1C}) {
		t.Errorf("first % x, second % x: the table was selected again", first, second)
	}
	// The current table is kept while it has the character, even if it is not the first.
	st = textState{page: PageCP866, chinese: 0}
	if got := encodeText(Generic58, &st, "Ж"); bytes.Contains(got, []byte{0x1B, 't'}) {
		t.Errorf("switched tables for a character CP866 has: % x", got)
	}
}

func TestTextWidth(t *testing.T) {
	for _, tt := range []struct {
		s string
		n int
	}{{"abc", 3}, {"Итог", 4}, {"合计", 4}, {"5₸", 3}, {"Қ", 1}} {
		if n := Generic58.TextWidth(tt.s); n != tt.n {
			t.Errorf("%q: %d columns, want %d", tt.s, n, tt.n)
		}
	}
	if Generic58.Columns() != 32 || Generic80.Columns() != 48 {
		t.Error("columns")
	}
}

// The driver's own tables must agree with x/text's for every byte, both ways.
func TestSingleByteTablesMatchCharmap(t *testing.T) {
	for _, c := range []struct {
		name string
		ours *singleByte
		ref  *charmap.Charmap
	}{{"pc437", tablePC437, charmap.CodePage437}, {"cp866", tableCP866, charmap.CodePage866}, {"wpc1251", tableWPC1251, charmap.Windows1251}} {
		for b := 0; b < 256; b++ {
			want := c.ref.DecodeByte(byte(b))
			if got := c.ours.DecodeByte(byte(b)); got != want {
				t.Errorf("%s: decode %#02x = %U, charmap %U", c.name, b, got, want)
			}
			if want == '\uFFFD' {
				continue
			}
			wb, wok := c.ref.EncodeRune(want)
			if gb, gok := c.ours.EncodeRune(want); gb != wb || gok != wok {
				t.Errorf("%s: encode %U = %#02x %v, charmap %#02x %v", c.name, want, gb, gok, wb, wok)
			}
		}
		if _, ok := c.ours.EncodeRune('€' + 1); ok {
			t.Errorf("%s: encodes a rune it has not", c.name)
		}
	}
}
