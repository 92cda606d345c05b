package escpos

import (
	"fmt"
	"image"
	"image/color"
	"io"
)

// Command bytes.
const (
	esc = 0x1B
	gs  = 0x1D
	dle = 0x10
	lf  = 0x0A
)

// sink takes the encoded stream.
type sink interface {
	io.Writer
	Flush() error
}

// encoder writes elements as ESC/POS, tracking the printer's modes so that only changes are
// sent: every element states the style it needs, and an element can be encoded on its own
// after ESC @, which is what resuming a job relies on.
type encoder struct {
	w     sink
	m     Model
	txt   *textEncoder
	ts    textState
	style Style
	n     int64
	err   error
}

func newEncoder(w sink, m Model) *encoder {
	return &encoder{w: w, m: m, txt: newTextEncoder(m)}
}

// put implements byteSink.
func (e *encoder) put(b ...byte) {
	if e.err != nil || len(b) == 0 {
		return
	}
	n, err := e.w.Write(b)
	e.n += int64(n)
	e.err = err
}

func (e *encoder) flush() {
	if e.err == nil {
		e.err = e.w.Flush()
	}
}

// init sends ESC @. Justification, emphasis, underline and size are then known; the
// character table and the Chinese mode follow the printer's settings, so they are unknown.
func (e *encoder) init() {
	e.put(esc, '@')
	e.ts = textState{page: -1, chinese: -1}
	e.style = Style{}.norm()
}

func (e *encoder) setAlign(a Align) {
	if e.style.Align != a {
		e.put(esc, 'a', byte(a))
		e.style.Align = a
	}
}

func (e *encoder) setStyle(s Style) {
	if s.Bold != e.style.Bold {
		e.put(esc, 'E', b2i(s.Bold))
	}
	if s.Underline != e.style.Underline {
		e.put(esc, '-', b2i(s.Underline))
	}
	if s.Width != e.style.Width || s.Height != e.style.Height {
		e.put(gs, '!', byte((s.Width-1)<<4|(s.Height-1)))
	}
	a := e.style.Align
	e.style = s
	e.style.Align = a
}

func b2i(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// barrier asks for a process ID response: the printer answers 37 22 d1..d4 00 once it has
// processed everything sent before, so the answer means "printed up to here".
func (e *encoder) barrier(id int) {
	e.put(gs, '(', 'H', 6, 0, 48, 48,
		byte('0'+id/1000%10), byte('0'+id/100%10), byte('0'+id/10%10), byte('0'+id%10))
}

type span struct {
	style Style
	text  string
}

type lineElem struct {
	align Align
	spans []span
}

func (l *lineElem) check(Model) error { return nil }

func (l *lineElem) encode(e *encoder) {
	e.setAlign(l.align)
	for _, s := range l.spans {
		e.setStyle(s.style)
		e.txt.encode(s.text, &e.ts, e)
	}
	e.put(lf)
}

type feedElem struct{ n int }

func (f *feedElem) check(Model) error { return nil }
func (f *feedElem) encode(e *encoder) { e.put(esc, 'd', byte(f.n)) }

type cutElem struct{}

func (cutElem) check(Model) error { return nil }

// encode feeds to the cutter and makes a partial cut (GS V 66 0).
func (cutElem) encode(e *encoder) { e.put(gs, 'V', 66, 0) }

type qrElem struct {
	data  string
	opt   QROptions
	align Align
}

func (q *qrElem) check(m Model) error {
	if 21*q.opt.Size > m.Dots { // 21 modules: the smallest QR code
		return fmt.Errorf("%w: QR module size %d is too wide for %d dots", ErrBadJob, q.opt.Size, m.Dots)
	}
	return nil
}

func (q *qrElem) encode(e *encoder) {
	e.setAlign(q.align)
	e.put(gs, '(', 'k', 4, 0, 49, 65, 50, 0)            // model 2
	e.put(gs, '(', 'k', 3, 0, 49, 67, byte(q.opt.Size)) // module size
	e.put(gs, '(', 'k', 3, 0, 49, 69, 48+byte(q.opt.Level))
	n := len(q.data) + 3
	e.put(gs, '(', 'k', byte(n), byte(n>>8), 49, 80, 48)
	e.put([]byte(q.data)...)
	e.put(gs, '(', 'k', 3, 0, 49, 81, 48) // print
}

type barcodeElem struct {
	payload []byte
	symbols int
	opt     BarcodeOptions
	align   Align
}

// code128Payload turns data into GS k CODE128 data: "{C" and digit pairs as byte values for
// even-length digit strings, else "{B" and the text with "{" doubled.
func code128Payload(data string) ([]byte, int, error) {
	if data == "" {
		return nil, 0, fmt.Errorf("empty barcode")
	}
	digits := len(data)%2 == 0
	for i := 0; i < len(data); i++ {
		c := data[i]
		if c < 0x20 || c > 0x7E {
			return nil, 0, fmt.Errorf("barcode byte %#02x is not printable ASCII", c)
		}
		digits = digits && c >= '0' && c <= '9'
	}
	var p []byte
	symbols := 0
	if digits {
		p = append(p, '{', 'C')
		for i := 0; i < len(data); i += 2 {
			p = append(p, (data[i]-'0')*10+data[i+1]-'0')
			symbols++
		}
	} else {
		p = append(p, '{', 'B')
		for i := 0; i < len(data); i++ {
			if data[i] == '{' {
				p = append(p, '{')
			}
			p = append(p, data[i])
			symbols++
		}
	}
	if len(p) > 255 {
		return nil, 0, fmt.Errorf("barcode data of %d bytes is too long", len(data))
	}
	return p, symbols, nil
}

func (b *barcodeElem) check(m Model) error {
	// Start, data, check symbol: 11 modules each; stop: 13.
	if w := (11*(b.symbols+2) + 13) * b.opt.Module; w > m.Dots {
		return fmt.Errorf("%w: barcode is %d dots wide, the paper %d", ErrBadJob, w, m.Dots)
	}
	return nil
}

func (b *barcodeElem) encode(e *encoder) {
	e.setAlign(b.align)
	hri := map[HRI]byte{HRINone: 0, HRIAbove: 1, HRIBelow: 2, HRIBoth: 3}[b.opt.HRI]
	e.put(gs, 'h', byte(b.opt.Height), gs, 'w', byte(b.opt.Module), gs, 'H', hri)
	e.put(gs, 'k', 73, byte(len(b.payload)))
	e.put(b.payload...)
}

type imageElem struct {
	img   image.Image
	align Align
}

func (im *imageElem) check(Model) error { return nil }

// rasterBandBytes bounds one GS v 0 command, so no band is larger than a small printer buffer.
const rasterBandBytes = 2048

// encode dithers the image (Floyd-Steinberg) and sends it in GS v 0 bands, one row at a time.
func (im *imageElem) encode(e *encoder) {
	e.setAlign(im.align)
	b := im.img.Bounds()
	w, h := b.Dx(), b.Dy()
	outW, outH := w, h
	if outW > e.m.Dots {
		outW = e.m.Dots
		outH = max(1, h*outW/w)
	}
	xb := (outW + 7) / 8
	band := max(1, min(255, rasterBandBytes/xb))
	cur, nxt := make([]int32, outW+2), make([]int32, outW+2)
	row := make([]byte, xb)
	for y0 := 0; y0 < outH && e.err == nil; y0 += band {
		rows := min(band, outH-y0)
		e.put(gs, 'v', '0', 0, byte(xb), byte(xb>>8), byte(rows), byte(rows>>8))
		prev := byte(rows >> 8)
		for y := y0; y < y0+rows; y++ {
			clear(row)
			sy := b.Min.Y + y*h/outH
			for x := 0; x < outW; x++ {
				v := luminance(im.img.At(b.Min.X+x*w/outW, sy)) + cur[x+1]
				q := int32(255)
				if v < 128 {
					q = 0
					row[x/8] |= 0x80 >> uint(x%8)
				}
				d := v - q
				cur[x+2] += d * 7 / 16
				nxt[x] += d * 3 / 16
				nxt[x+1] += d * 5 / 16
				nxt[x+2] += d / 16
			}
			cur, nxt = nxt, cur
			clear(nxt)
			for i, c := range row {
				// DLE followed by EOT, ENQ or DC4 would be taken for a real-time command
				// wherever it appears; one more black dot breaks the sequence.
				if prev == dle && (c == 0x04 || c == 0x05 || c == 0x14) {
					c |= 0x02
					row[i] = c
				}
				prev = c
			}
			e.put(row...)
		}
	}
}

// luminance is 0 (black) .. 255 (white), transparent parts counting as white paper.
func luminance(c color.Color) int32 {
	r, g, b, a := c.RGBA()
	y := (19595*r + 38470*g + 7471*b + 1<<15) >> 16
	return int32((y + 0xFFFF - a) >> 8)
}
