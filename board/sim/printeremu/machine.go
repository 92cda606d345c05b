package printeremu

import (
	"errors"
	"fmt"
	"strings"

	"rsc.io/qr"
)

// source yields the bytes the print engine processes, in order.
type source interface {
	next() (byte, error)
}

// hooks connect the interpreter to the physical printer around it.
type hooks interface {
	// advance moves the paper by dots for a print operation that uses lines "lines" of the
	// roll; it waits while the printer is offline and takes the print time.
	advance(lines, dots int) error
	// reply sends bytes to the host.
	reply(b []byte)
	// finish takes a receipt that was cut off.
	finish(r *Receipt)
	// sensors reads the paper sensors.
	sensors() (nearEnd, out bool)
}

// Layout constants, in dots (8 dots/mm).
const (
	fontAW, fontAH  = 12, 24
	fontBW, fontBH  = 9, 17
	fullW           = 24
	defaultSpacing  = 30
	defaultBCHeight = 162
	defaultBCWidth  = 3
	tabColumns      = 8
)

// cell is one character waiting in the line buffer.
type cell struct {
	r      rune
	g      *glyph
	full   bool
	fontB  bool
	wm, hm int
	bold   bool
	ul     int
}

func (c *cell) width() int {
	base := fontAW
	switch {
	case c.full:
		base = fullW
	case c.fontB:
		base = fontBW
	}
	return base * c.wm
}

func (c *cell) height() int {
	if c.fontB && !c.full {
		return fontBH * c.hm
	}
	return fontAH * c.hm
}

// machine interprets ESC/POS and renders onto paper. It is driven by one goroutine.
type machine struct {
	cfg  *Config
	font *font
	h    hooks

	// Modes, as commands set them.
	page    int
	dec     byteDecoder
	chinese bool
	align   int
	bold    bool
	ul      int
	fontB   bool
	wm, hm  int
	spacing int
	margin  int
	area    int
	hriPos  int
	bcH     int
	bcW     int
	qrSize  int
	qrLevel qr.Level
	qrData  []byte

	line  []cell
	lineW int
	paper paper

	unknown int // commands skipped because the emulator does not know them
}

func newMachine(cfg *Config, f *font, h hooks) *machine {
	m := &machine{cfg: cfg, font: f, h: h}
	m.paper = paper{dots: cfg.Dots, stride: cfg.Dots / 8, maxRows: cfg.MaxReceiptRows}
	m.init()
	return m
}

// init is ESC @: modes back to their power-on values and the line buffer emptied.
func (m *machine) init() {
	m.page = PagePC437
	m.dec = decoderFor(m.cfg.Pages[m.page])
	m.chinese = !m.cfg.NoChinese && m.cfg.ChineseAtInit
	m.align, m.bold, m.ul, m.fontB = 0, false, 0, false
	m.wm, m.hm = 1, 1
	m.spacing = defaultSpacing
	m.margin, m.area = 0, m.cfg.Dots
	m.hriPos, m.bcH, m.bcW = 0, defaultBCHeight, defaultBCWidth
	m.qrSize, m.qrLevel, m.qrData = 3, qr.L, nil
	m.line, m.lineW = m.line[:0], 0
}

// cleared drops what was half-done when the host cleared the buffers.
func (m *machine) cleared() {
	m.line, m.lineW = m.line[:0], 0
}

func rd(src source) (byte, error) { return src.next() }

func rdN(src source, buf []byte) error {
	for i := range buf {
		b, err := src.next()
		if err != nil {
			return err
		}
		buf[i] = b
	}
	return nil
}

func skip(src source, n int) error {
	for ; n > 0; n-- {
		if _, err := src.next(); err != nil {
			return err
		}
	}
	return nil
}

func rd16(src source) (int, error) {
	var b [2]byte
	if err := rdN(src, b[:]); err != nil {
		return 0, err
	}
	return int(b[0]) | int(b[1])<<8, nil
}

// step processes one command or character.
func (m *machine) step(src source) error {
	b, err := rd(src)
	if err != nil {
		return err
	}
	switch {
	case b == 0x0A:
		return m.printLine()
	case b == 0x09:
		return m.tab()
	case b == 0x1B:
		return m.esc(src)
	case b == 0x1D:
		return m.gs(src)
	case b == 0x1C:
		return m.fs(src)
	case b == 0x10:
		return m.dle(src)
	case b < 0x20 || b == 0x7F:
		return nil // CR, CAN, FF and the rest have nothing to do in standard mode
	default:
		return m.text(b, src)
	}
}

func (m *machine) esc(src source) error {
	c, err := rd(src)
	if err != nil {
		return err
	}
	var p [8]byte
	switch c {
	case '@':
		m.init()
	case '!':
		if err := rdN(src, p[:1]); err != nil {
			return err
		}
		n := p[0]
		m.fontB, m.bold = n&0x01 != 0, n&0x08 != 0
		m.hm, m.wm = 1+int(n>>4&1), 1+int(n>>5&1)
		m.ul = int(n >> 7)
	case 'E', 'G':
		if err := rdN(src, p[:1]); err != nil {
			return err
		}
		m.bold = p[0]&1 != 0
	case '-':
		if err := rdN(src, p[:1]); err != nil {
			return err
		}
		m.ul = int(p[0] & 3 % 3)
	case 'M':
		if err := rdN(src, p[:1]); err != nil {
			return err
		}
		m.fontB = p[0]&1 != 0
	case 'a':
		if err := rdN(src, p[:1]); err != nil {
			return err
		}
		if a := int(p[0] & 0x0F); a <= 2 {
			m.align = a
		}
	case 't':
		if err := rdN(src, p[:1]); err != nil {
			return err
		}
		if name, ok := m.cfg.Pages[int(p[0])]; ok {
			m.page, m.dec = int(p[0]), decoderFor(name)
		}
	case '2':
		m.spacing = defaultSpacing
	case '3':
		if err := rdN(src, p[:1]); err != nil {
			return err
		}
		m.spacing = int(p[0])
	case 'd':
		if err := rdN(src, p[:1]); err != nil {
			return err
		}
		if err := m.printLine(); err != nil {
			return err
		}
		for i := 1; i < int(p[0]); i++ {
			if err := m.feed(1, m.spacing); err != nil {
				return err
			}
		}
	case 'J':
		if err := rdN(src, p[:1]); err != nil {
			return err
		}
		if len(m.line) > 0 {
			return m.flushLine(int(p[0]))
		}
		return m.feed(0, int(p[0]))
	case 'i', 'm':
		return m.cut(0)
	case ' ', 'R', 'U', 'V', 'e', 'r', '{', '=', '?', 'T', 'u', '%':
		return skip(src, 1)
	case 'c', '$', '\\':
		return skip(src, 2)
	case 'p':
		return skip(src, 3)
	case 'W':
		return skip(src, 8)
	case 'L', 'S', '<', 'v':
		return nil
	case 'D':
		// Tab positions: up to 32 values ending with NUL.
		for i := 0; i < 33; i++ {
			b, err := rd(src)
			if err != nil || b == 0 {
				return err
			}
		}
	case '*':
		if err := rdN(src, p[:3]); err != nil {
			return err
		}
		n := int(p[1]) | int(p[2])<<8
		if p[0] == 32 || p[0] == 33 {
			n *= 3
		}
		m.unknown++ // column bit images are consumed, not drawn
		return skip(src, n)
	case '&':
		// Download characters: y c1 c2, then for each character x and y*x bytes.
		if err := rdN(src, p[:3]); err != nil {
			return err
		}
		y, c1, c2 := int(p[0]), int(p[1]), int(p[2])
		for k := c1; k <= c2 && k-c1 < 95; k++ {
			x, err := rd(src)
			if err != nil {
				return err
			}
			if err := skip(src, y*int(x)); err != nil {
				return err
			}
		}
	default:
		m.unknown++
	}
	return nil
}

func (m *machine) gs(src source) error {
	c, err := rd(src)
	if err != nil {
		return err
	}
	var p [8]byte
	switch c {
	case '!':
		if err := rdN(src, p[:1]); err != nil {
			return err
		}
		m.wm, m.hm = 1+int(p[0]>>4&7), 1+int(p[0]&7)
	case 'B', 'b', 'a', 'f', 'I', 'E', 'j':
		return skip(src, 1)
	case 'H':
		if err := rdN(src, p[:1]); err != nil {
			return err
		}
		m.hriPos = int(p[0] & 3)
	case 'h':
		if err := rdN(src, p[:1]); err != nil {
			return err
		}
		if p[0] > 0 {
			m.bcH = int(p[0])
		}
	case 'w':
		if err := rdN(src, p[:1]); err != nil {
			return err
		}
		if p[0] >= 1 && p[0] <= 6 {
			m.bcW = int(p[0])
		}
	case 'L':
		n, err := rd16(src)
		if err != nil {
			return err
		}
		m.margin = min(n, m.cfg.Dots-fontAW)
		m.area = min(m.area, m.cfg.Dots-m.margin)
	case 'W':
		n, err := rd16(src)
		if err != nil {
			return err
		}
		m.area = max(fontAW, min(n, m.cfg.Dots-m.margin))
	case 'P', '\\', '$':
		return skip(src, 2)
	case 'r':
		if err := rdN(src, p[:1]); err != nil {
			return err
		}
		switch p[0] {
		case 1, 49:
			nearEnd, out := m.h.sensors()
			var s byte
			if nearEnd {
				s |= 0x03
			}
			if out {
				s |= 0x0C
			}
			m.h.reply([]byte{s})
		case 2, 50:
			m.h.reply([]byte{0x00})
		}
	case 'V':
		if err := rdN(src, p[:1]); err != nil {
			return err
		}
		switch p[0] {
		case 0, 1, 48, 49:
			return m.cut(0)
		case 65, 66, 97, 98, 103, 104:
			if err := rdN(src, p[1:2]); err != nil {
				return err
			}
			return m.cut(int(p[1]))
		}
		m.unknown++
	case 'k':
		return m.barcode(src)
	case 'v':
		return m.raster(src)
	case '(':
		return m.gsParen(src)
	case '8':
		// GS 8 L: like GS ( L with a four-byte length.
		if err := rdN(src, p[:5]); err != nil {
			return err
		}
		n := int(p[1]) | int(p[2])<<8 | int(p[3])<<16 | int(p[4]&0x7F)<<24
		m.unknown++
		return skip(src, n)
	case '*':
		if err := rdN(src, p[:2]); err != nil {
			return err
		}
		return skip(src, int(p[0])*int(p[1])*8)
	case '/':
		return skip(src, 1)
	case '^':
		return skip(src, 3)
	case ':':
		return nil
	default:
		m.unknown++
	}
	return nil
}

// gsParen handles the length-prefixed GS ( x pL pH ... family.
func (m *machine) gsParen(src source) error {
	fn, err := rd(src)
	if err != nil {
		return err
	}
	n, err := rd16(src)
	if err != nil {
		return err
	}
	switch fn {
	case 'k':
		return m.qrCommand(src, n)
	case 'H':
		// Process ID response (fn 48): the printer answers once it has processed everything
		// before this command, which is how a host knows a job is really done.
		if n == 6 {
			var p [6]byte
			if err := rdN(src, p[:]); err != nil {
				return err
			}
			if p[0] == 48 && p[1] == 48 && digits(p[2:]) {
				m.h.reply([]byte{0x37, 0x22, p[2], p[3], p[4], p[5], 0x00})
			}
			return nil
		}
	}
	if fn != 'H' {
		m.unknown++
	}
	return skip(src, n)
}

func digits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func (m *machine) qrCommand(src source, n int) error {
	if n < 2 {
		return skip(src, n)
	}
	var p [2]byte
	if err := rdN(src, p[:]); err != nil {
		return err
	}
	cn, fn, rest := p[0], p[1], n-2
	if cn != 49 {
		m.unknown++
		return skip(src, rest) // PDF417, MaxiCode and friends
	}
	switch fn {
	case 67:
		if rest == 1 {
			b, err := rd(src)
			if err != nil {
				return err
			}
			if b >= 1 && b <= 16 {
				m.qrSize = int(b)
			}
			return nil
		}
	case 69:
		if rest == 1 {
			b, err := rd(src)
			if err != nil {
				return err
			}
			if b >= 48 && b <= 51 {
				m.qrLevel = qr.Level(b - 48)
			}
			return nil
		}
	case 80:
		if rest >= 1 {
			if err := skip(src, 1); err != nil {
				return err
			}
			data := make([]byte, rest-1)
			if err := rdN(src, data); err != nil {
				return err
			}
			m.qrData = data
			return nil
		}
	case 81:
		if err := skip(src, rest); err != nil {
			return err
		}
		return m.printQR()
	}
	return skip(src, rest)
}

func (m *machine) fs(src source) error {
	c, err := rd(src)
	if err != nil {
		return err
	}
	switch c {
	case '&':
		m.chinese = !m.cfg.NoChinese
	case '.':
		m.chinese = false
	case '!', '-', 'C', 'W':
		return skip(src, 1)
	case 'S':
		return skip(src, 2)
	case 'p':
		return skip(src, 2)
	case '2':
		return skip(src, 2+72)
	case '(':
		if err := skip(src, 1); err != nil {
			return err
		}
		n, err := rd16(src)
		if err != nil {
			return err
		}
		m.unknown++
		return skip(src, n)
	case 'q':
		// Define NV bit images: n, then for each xL xH yL yH and x*y*8 bytes.
		k, err := rd(src)
		if err != nil {
			return err
		}
		for i := 0; i < int(k); i++ {
			x, err := rd16(src)
			if err != nil {
				return err
			}
			y, err := rd16(src)
			if err != nil {
				return err
			}
			if err := skip(src, x*y*8); err != nil {
				return err
			}
		}
	default:
		m.unknown++
	}
	return nil
}

// dle handles DLE sequences that reached the print buffer: the real-time ones were already
// answered on reception, so here they are only skipped.
func (m *machine) dle(src source) error {
	c, err := rd(src)
	if err != nil {
		return err
	}
	switch c {
	case 0x04, 0x05:
		return skip(src, 1)
	case 0x14:
		fn, err := rd(src)
		if err != nil {
			return err
		}
		switch fn {
		case 1, 2:
			return skip(src, 2)
		case 7, 8:
			return skip(src, 7)
		}
	}
	return nil
}

func (m *machine) text(b byte, src source) error {
	if m.chinese && b >= 0x81 && b <= 0xFE {
		b2, err := rd(src)
		if err != nil {
			return err
		}
		switch gb18030Len(b, b2) {
		case 2:
			return m.put(decodeGB18030([]byte{b, b2}), true)
		case 4:
			var t [2]byte
			if err := rdN(src, t[:]); err != nil {
				return err
			}
			return m.put(decodeGB18030([]byte{b, b2, t[0], t[1]}), true)
		}
		return m.put('\uFFFD', true)
	}
	return m.put(m.dec.DecodeByte(b), false)
}

func (m *machine) put(r rune, full bool) error {
	c := cell{r: r, g: m.font.glyph(r), full: full, fontB: m.fontB, wm: m.wm, hm: m.hm, bold: m.bold, ul: m.ul}
	if m.lineW+c.width() > m.area && len(m.line) > 0 {
		if err := m.printLine(); err != nil { // the printer wraps a line that does not fit
			return err
		}
	}
	m.line = append(m.line, c)
	m.lineW += c.width()
	return nil
}

func (m *machine) tab() error {
	// Tab stops every 8 columns; a tab past the end of the line is ignored.
	stop := tabColumns * fontAW * m.wm
	target := (m.lineW/stop + 1) * stop
	if target > m.area {
		return nil
	}
	for m.lineW < target {
		c := cell{r: ' ', g: m.font.glyph(' '), fontB: m.fontB, wm: m.wm, hm: m.hm}
		if m.lineW+c.width() > m.area {
			return nil
		}
		m.line = append(m.line, c)
		m.lineW += c.width()
	}
	return nil
}

// printLine is LF: print the line buffer and feed one line.
func (m *machine) printLine() error { return m.flushLine(-1) }

// flushLine prints the line buffer and feeds by feedDots, or by the line spacing when
// feedDots < 0.
func (m *machine) flushLine(feedDots int) error {
	height := fontAH
	for i := range m.line {
		height = max(height, m.line[i].height())
	}
	adv := feedDots
	if adv < 0 {
		adv = max(m.spacing, height)
	}
	adv = max(adv, height)
	if err := m.h.advance(1, adv); err != nil {
		return err
	}
	x0 := m.xFor(m.lineW)
	y0 := m.paper.grow(adv, m)
	var text strings.Builder
	text.WriteString(strings.Repeat(" ", (x0+fontAW/2)/fontAW))
	x := x0
	for i := range m.line {
		c := &m.line[i]
		m.drawCell(c, x, y0+height-c.height())
		x += c.width()
		text.WriteRune(c.r)
	}
	m.paper.addText(strings.TrimRight(text.String(), " "))
	m.line, m.lineW = m.line[:0], 0
	return nil
}

// xFor is where a block w dots wide starts under the current justification.
func (m *machine) xFor(w int) int {
	free := max(0, m.area-w)
	switch m.align {
	case 1:
		return m.margin + free/2
	case 2:
		return m.margin + free
	}
	return m.margin
}

func (m *machine) drawCell(c *cell, x0, y0 int) {
	w, h := c.width(), c.height()
	gw := c.g.width()
	for ty := 0; ty < h; ty++ {
		sy := ty * 16 / h
		for tx := 0; tx < w; tx++ {
			sx := tx * gw / w
			if c.g.dot(sx, sy) || (c.bold && sx > 0 && c.g.dot(sx-1, sy)) {
				m.paper.set(x0+tx, y0+ty)
			}
		}
	}
	for k := 0; k < c.ul; k++ {
		for tx := 0; tx < w; tx++ {
			m.paper.set(x0+tx, y0+h-1-k)
		}
	}
}

func (m *machine) feed(lines, dots int) error {
	if err := m.h.advance(lines, dots); err != nil {
		return err
	}
	if dots > 0 {
		m.paper.grow(dots, m)
		if lines > 0 {
			m.paper.addText("")
		}
	}
	return nil
}

// flushPending prints a partly filled line before a graphic, which must start a line.
func (m *machine) flushPending() error {
	if len(m.line) > 0 {
		return m.printLine()
	}
	return nil
}

func (m *machine) cut(feed int) error {
	if err := m.flushPending(); err != nil {
		return err
	}
	if feed > 0 {
		if err := m.feed(0, feed); err != nil {
			return err
		}
	}
	if err := m.h.advance(0, 0); err != nil {
		return err
	}
	m.finishReceipt()
	return nil
}

func (m *machine) finishReceipt() {
	if r := m.paper.take(); r != nil {
		m.h.finish(r)
	}
}

func (m *machine) barcode(src source) error {
	kind, err := rd(src)
	if err != nil {
		return err
	}
	var data []byte
	if kind <= 6 {
		// Format 1: data ends with NUL.
		for len(data) < 255 {
			b, err := rd(src)
			if err != nil {
				return err
			}
			if b == 0 {
				break
			}
			data = append(data, b)
		}
	} else {
		n, err := rd(src)
		if err != nil {
			return err
		}
		data = make([]byte, n)
		if err := rdN(src, data); err != nil {
			return err
		}
	}
	if err := m.flushPending(); err != nil {
		return err
	}
	if kind != 73 {
		m.unknown++ // only CODE128 is drawn
		m.paper.addText(fmt.Sprintf("[barcode %d: %q]", kind, data))
		return nil
	}
	sym, err := decodeCode128(data)
	if err != nil {
		m.paper.addText("[CODE128 invalid]")
		return nil
	}
	mods := sym.modules()
	width := len(mods) * m.bcW
	if width > m.area {
		m.paper.addText("[CODE128 too wide: " + sym.text + "]")
		return nil
	}
	hri := 0
	if m.hriPos == 1 || m.hriPos == 3 {
		hri += fontAH
	}
	if m.hriPos >= 2 {
		hri += fontAH
	}
	if err := m.h.advance(1, m.bcH+hri); err != nil {
		return err
	}
	x0 := m.xFor(width)
	y := m.paper.grow(m.bcH+hri, m)
	if m.hriPos == 1 || m.hriPos == 3 {
		m.drawHRI(sym.text, x0, width, y)
		y += fontAH
	}
	for i, bar := range mods {
		if !bar {
			continue
		}
		for dx := 0; dx < m.bcW; dx++ {
			for dy := 0; dy < m.bcH; dy++ {
				m.paper.set(x0+i*m.bcW+dx, y+dy)
			}
		}
	}
	if m.hriPos >= 2 {
		m.drawHRI(sym.text, x0, width, y+m.bcH)
	}
	m.paper.addText("[CODE128 " + sym.text + "]")
	return nil
}

// drawHRI draws a barcode's human-readable text centred under (or over) it.
func (m *machine) drawHRI(s string, x0, width, y int) {
	n := len([]rune(s))
	x := x0 + (width-n*fontAW)/2
	for _, r := range s {
		c := cell{r: r, g: m.font.glyph(r), wm: 1, hm: 1}
		m.drawCell(&c, x, y)
		x += fontAW
	}
}

func (m *machine) printQR() error {
	if err := m.flushPending(); err != nil {
		return err
	}
	if len(m.qrData) == 0 {
		return nil
	}
	code, err := qr.Encode(string(m.qrData), m.qrLevel)
	if err != nil {
		m.paper.addText("[QR invalid]")
		return nil
	}
	side := code.Size * m.qrSize
	if side > m.area {
		m.paper.addText("[QR too wide]")
		return nil
	}
	if err := m.h.advance(1, side); err != nil {
		return err
	}
	x0 := m.xFor(side)
	y0 := m.paper.grow(side, m)
	for y := 0; y < side; y++ {
		for x := 0; x < side; x++ {
			if code.Black(x/m.qrSize, y/m.qrSize) {
				m.paper.set(x0+x, y0+y)
			}
		}
	}
	m.paper.addText("[QR " + string(m.qrData) + "]")
	return nil
}

// maxRasterRow bounds the row buffer of GS v 0; wider rows are read and clipped.
const maxRasterRow = 1 << 16

func (m *machine) raster(src source) error {
	var p [6]byte
	if err := rdN(src, p[:]); err != nil {
		return err
	}
	if p[0] != '0' {
		m.unknown++
		return nil
	}
	mode := p[1] & 3
	xb := int(p[2]) | int(p[3])<<8
	rows := int(p[4]) | int(p[5])<<8
	sx, sy := 1, 1
	if mode&1 != 0 {
		sx = 2
	}
	if mode&2 != 0 {
		sy = 2
	}
	if err := m.flushPending(); err != nil {
		return err
	}
	if xb == 0 || rows == 0 {
		return nil
	}
	if err := m.h.advance(1, rows*sy); err != nil {
		return err
	}
	width := min(xb*8*sx, m.area)
	x0 := m.xFor(width)
	row := make([]byte, min(xb, maxRasterRow))
	for y := 0; y < rows; y++ {
		if err := rdN(src, row); err != nil {
			return err
		}
		top := m.paper.grow(sy, m)
		for x := 0; x < xb*8 && x*sx < width; x++ {
			if row[x/8]&(0x80>>uint(x%8)) == 0 {
				continue
			}
			for k := 0; k < sx; k++ {
				for j := 0; j < sy; j++ {
					m.paper.set(x0+x*sx+k, top+j)
				}
			}
		}
	}
	m.paper.addText(fmt.Sprintf("[image %dx%d]", xb*8*sx, rows*sy))
	return nil
}

var errClosed = errors.New("printeremu: closed")
