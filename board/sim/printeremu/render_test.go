package printeremu

import (
	"bytes"
	"image"
	"strings"
	"testing"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/simplifiedchinese"
)

// stream builds ESC/POS test input.
type stream struct{ b []byte }

func (s *stream) raw(b ...byte) *stream { s.b = append(s.b, b...); return s }
func (s *stream) str(x string) *stream  { s.b = append(s.b, x...); return s }
func (s *stream) enc(e encoding.Encoding, x string) *stream {
	out, err := e.NewEncoder().String(x)
	if err != nil {
		panic(err)
	}
	return s.str(out)
}

func renderT(t *testing.T, cfg Config, data []byte) ([]*Receipt, []byte) {
	t.Helper()
	rs, replies, err := Render(data, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return rs, replies
}

func TestRenderCharacterTables(t *testing.T) {
	s := (&stream{}).raw(0x1B, '@')
	s.raw(0x1B, 't', 17).enc(charmap.CodePage866, "Привет, №1\n")
	s.raw(0x1B, 't', 46).enc(charmap.Windows1251, "Мир «І»\n")
	s.raw(0x1B, 't', 200).enc(charmap.Windows1251, "Ещё\n") // unknown page: 46 stays
	s.raw(0x1B, 't', 99).raw(0xA3, 0xBC, 0x8D, 0xBD, '\n')  // KZ-1048: Ә ә Қ Ң
	s.raw(0x1C, '&').enc(simplifiedchinese.GB18030, "中文€Ә").raw(0x1C, '.').str("ok\n")
	rs, _ := renderT(t, Config{KZ1048Page: 99}, s.b)
	want := "Привет, №1\nМир «І»\nЕщё\nӘәҚҢ\n中文€Әok\n"
	if len(rs) != 1 || rs[0].Text != want {
		t.Fatalf("got %q, want %q", rs[0].Text, want)
	}
	// Without KZ-1048 the same bytes are Windows-1251 (the page stays 46).
	rs, _ = renderT(t, Config{}, (&stream{}).raw(0x1B, 't', 46, 0x1B, 't', 99, 0xA3, '\n').b)
	if rs[0].Text != "Ј\n" {
		t.Errorf("got %q", rs[0].Text)
	}
	// A printer without a Chinese font ignores FS &.
	rs, _ = renderT(t, Config{NoChinese: true}, (&stream{}).raw(0x1C, '&', 0x41, '\n').b)
	if rs[0].Text != "A\n" {
		t.Errorf("got %q", rs[0].Text)
	}
	// Chinese mode from power-on: high bytes are GB18030 until FS . .
	rs, _ = renderT(t, Config{ChineseAtInit: true}, (&stream{}).enc(simplifiedchinese.GB18030, "中").raw(0x1C, '.', 0x1B, 't', 17, 0x8F, '\n').b)
	if rs[0].Text != "中П\n" {
		t.Errorf("got %q", rs[0].Text)
	}
}

func TestRenderLayout(t *testing.T) {
	s := (&stream{}).raw(0x1B, '@')
	s.raw(0x1B, 'a', 1).str("ab\n")
	s.raw(0x1B, 'a', 2).str("ab\n")
	s.raw(0x1B, 'a', 0, 0x1D, '!', 0x11).str("Wide\n")
	s.raw(0x1D, '!', 0).str(strings.Repeat("x", 40) + "\n")
	s.raw(0x1B, 'd', 2)
	s.raw(0x1B, 'E', 1, 0x1B, '-', 1).str("b\n")
	rs, _ := renderT(t, Config{}, s.b)
	want := strings.Join([]string{
		strings.Repeat(" ", 15) + "ab", // (384-24)/2 dots = 15 columns
		strings.Repeat(" ", 30) + "ab",
		"Wide",
		strings.Repeat("x", 32), // 32 columns of 12 dots, then it wraps
		strings.Repeat("x", 8),
		"", // ESC d 2: two blank lines
		"",
		"b",
	}, "\n") + "\n"
	if rs[0].Text != want {
		t.Fatalf("got\n%s\nwant\n%s", rs[0].Text, want)
	}
	img := rs[0].Image
	if img.Rect.Dx() != 384 {
		t.Errorf("width %d", img.Rect.Dx())
	}
	// Seven lines of 30 dots and a double-height one of 48.
	if h := img.Rect.Dy(); h != 30*7+48 {
		t.Errorf("height %d, want %d", h, 30*7+48)
	}
	// "ab" centred: ink only in the middle third of the first line.
	l, r := inkSpan(img, 0, 30)
	if l < 170 || r > 214 {
		t.Errorf("centred text inked from x=%d to %d", l, r)
	}
}

func inkSpan(img *image.Paletted, y0, y1 int) (int, int) {
	l, r := 1<<30, -1
	for y := y0; y < y1; y++ {
		for x := 0; x < img.Rect.Dx(); x++ {
			if img.ColorIndexAt(x, y) == 1 {
				l, r = min(l, x), max(r, x)
			}
		}
	}
	return l, r
}

func TestRenderGraphicsAndReplies(t *testing.T) {
	s := (&stream{}).raw(0x1B, '@', 0x1B, 'a', 1)
	q := "https://example.kz/r/1"
	s.raw(0x1D, '(', 'k', 3, 0, 49, 67, 4, 0x1D, '(', 'k', byte(len(q)+3), 0, 49, 80, 48).str(q)
	s.raw(0x1D, '(', 'k', 3, 0, 49, 81, 48)
	s.raw(0x1D, 'h', 40, 0x1D, 'w', 2, 0x1D, 'H', 2, 0x1D, 'k', 73, 6).str("{BRC-1")
	s.raw(0x1D, 'v', '0', 0, 2, 0, 8, 0).raw(bytes.Repeat([]byte{0xF0, 0x0F}, 8)...)
	s.raw(0x1D, '(', 'H', 6, 0, 48, 48, '0', '0', '4', '2')
	s.raw(0x1D, 'r', 1)
	s.raw(0x1D, 'V', 66, 0)
	s.str("next\n")
	rs, replies := renderT(t, Config{}, s.b)
	if len(rs) != 2 {
		t.Fatalf("%d receipts", len(rs))
	}
	if want := "[QR " + q + "]\n[CODE128 RC-1]\n[image 16x8]\n"; rs[0].Text != want {
		t.Errorf("got %q, want %q", rs[0].Text, want)
	}
	// Justification outlives the cut: (384 - 48) / 2 dots is 14 columns.
	if rs[1].Text != strings.Repeat(" ", 14)+"next\n" {
		t.Errorf("second receipt %q", rs[1].Text)
	}
	if want := []byte{0x37, 0x22, '0', '0', '4', '2', 0x00, 0x00}; !bytes.Equal(replies, want) {
		t.Errorf("replies % x, want % x", replies, want)
	}
	// QR (25 modules of 4 dots for this URL), barcode 40 + HRI 24, raster 8.
	if h := rs[0].Image.Rect.Dy(); h < 100+40+24+8 {
		t.Errorf("height %d", h)
	}
}

func TestRenderSkipsUnknownCommands(t *testing.T) {
	s := (&stream{}).str("a")
	s.raw(0x1B, 'y')                                   // unknown ESC: two bytes skipped
	s.raw(0x1D, '(', 'Z', 3, 0, 'x', 'y', 'z')         // unknown length-prefixed: all skipped
	s.raw(0x1D, '8', 'L', 2, 0, 0, 0, 'x', 'y')        // GS 8 L with a 4-byte length
	s.raw(0x1B, '*', 33, 2, 0).raw(make([]byte, 6)...) // column bit image, consumed
	s.raw(0x1B, '&', 3, 'A', 'A', 2).raw(make([]byte, 6)...)
	s.raw(0x1B, 'D', 8, 16, 0)
	s.raw(0x10, 0x04, 1) // real-time command in the print buffer: skipped
	s.raw(0x1D, 'k', 4).str("123\x00")
	s.str("b\n")
	rs, _ := renderT(t, Config{}, s.b)
	// A barcode starts on a line of its own: the pending "a" is printed first.
	if want := "a\n[barcode 4: \"123\"]\nb\n"; rs[0].Text != want {
		t.Errorf("got %q, want %q", rs[0].Text, want)
	}
}

func TestRenderTruncatedInput(t *testing.T) {
	// Every prefix of a valid stream renders without error or panic.
	s := (&stream{}).raw(0x1B, '@', 0x1B, 't', 17).enc(charmap.CodePage866, "Чек\n")
	s.raw(0x1D, 'v', '0', 0, 1, 0, 2, 0, 0xFF, 0xFF, 0x1D, 'k', 73, 4).str("{B12")
	for i := range s.b {
		if _, _, err := Render(s.b[:i], Config{}); err != nil {
			t.Fatalf("prefix %d: %v", i, err)
		}
	}
}

func TestRenderBoundsLongReceipts(t *testing.T) {
	var s stream
	for i := 0; i < 10; i++ {
		s.raw(0x1B, 'd', 255)
	}
	rs, _, err := Render(s.b, Config{MaxReceiptRows: 2000, KeepReceipts: 100})
	if err != nil {
		t.Fatal(err)
	}
	// 10 * 255 lines of 30 dots, cut every 2000 rows.
	if len(rs) < 10*255*30/2000 {
		t.Fatalf("%d receipts", len(rs))
	}
	for _, r := range rs {
		if r.Image.Rect.Dy() > 2000 {
			t.Fatalf("a receipt of %d rows", r.Image.Rect.Dy())
		}
	}
}
