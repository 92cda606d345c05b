package printeremu

import (
	"bytes"
	"encoding/hex"
	"image"
	"io"
	"os"
	"strconv"
	"sync"

	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// DefaultFontPath is where Debian's unifont package installs the GNU Unifont bitmaps.
const DefaultFontPath = "/usr/share/unifont/unifont.hex"

// glyph is a 16-row bitmap, 8 or 16 dots wide; bit 15 of a row is the leftmost dot.
type glyph struct {
	wide bool
	rows [16]uint16
}

func (g *glyph) width() int {
	if g.wide {
		return 16
	}
	return 8
}

func (g *glyph) dot(x, y int) bool { return g.rows[y]&(0x8000>>uint(x)) != 0 }

// font finds glyphs in a unifont .hex file without loading it: the file is sorted by code
// point, so a binary search over byte offsets finds a line in about 16 small reads. Only the
// glyphs a receipt uses are ever held in memory.
type font struct {
	mu    sync.Mutex
	r     io.ReaderAt // nil: no unifont, basicfont only
	size  int64
	cache map[rune]*glyph
}

func openFont(path string) *font {
	f := &font{cache: make(map[rune]*glyph)}
	if path == "" {
		path = DefaultFontPath
	}
	if file, err := os.Open(path); err == nil {
		if st, err := file.Stat(); err == nil && st.Size() > 0 {
			f.r, f.size = file, st.Size()
		} else {
			file.Close()
		}
	}
	return f
}

func (f *font) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.r.(io.Closer); ok {
		c.Close()
	}
	f.r = nil
}

// glyph returns the bitmap for r: unifont, else basicfont (ASCII), else a hollow box.
func (f *font) glyph(r rune) *glyph {
	f.mu.Lock()
	defer f.mu.Unlock()
	if g, ok := f.cache[r]; ok {
		return g
	}
	g := f.lookup(r)
	if g == nil {
		g = basicGlyph(r)
	}
	if g == nil {
		g = boxGlyph()
	}
	if len(f.cache) < 8192 {
		f.cache[r] = g
	}
	return g
}

// maxLine bounds a unifont line: up to six hex digits, a colon, 64 hex digits, a newline.
const maxLine = 80

func (f *font) lookup(r rune) *glyph {
	if f.r == nil || r < 0 || r > 0x10FFFF {
		return nil
	}
	lo, hi := int64(0), f.size // lo is always a line start; the line for r starts in [lo, hi)
	for lo < hi {
		mid := lo + (hi-lo)/2
		start, line, ok := f.lineFrom(mid)
		if !ok {
			return nil
		}
		if start >= hi {
			// No line starts in [mid, hi): look at the line at lo itself.
			_, line, ok = f.lineFrom(lo)
			if !ok {
				return nil
			}
			cp, g := parseHexLine(line)
			switch {
			case cp == r:
				return g
			case cp > r || cp < 0:
				return nil
			}
			lo += int64(len(line)) + 1
			continue
		}
		cp, g := parseHexLine(line)
		switch {
		case cp < 0:
			return nil
		case cp == r:
			return g
		case cp < r:
			lo = start + int64(len(line)) + 1
		default:
			hi = start
		}
	}
	return nil
}

// lineFrom finds the first line starting at or after pos and returns it without its newline.
func (f *font) lineFrom(pos int64) (int64, []byte, bool) {
	var buf [2 * maxLine]byte
	from := pos
	if pos > 0 {
		from = pos - 1 // so a line starting exactly at pos is seen after the '\n' before it
	}
	n, err := f.r.ReadAt(buf[:], from)
	if n == 0 && err != nil {
		return f.size, nil, true
	}
	b := buf[:n]
	start := from
	if pos > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return f.size, nil, true
		}
		start = from + int64(i) + 1
		b = b[i+1:]
	}
	if start >= f.size {
		return f.size, nil, true
	}
	if j := bytes.IndexByte(b, '\n'); j >= 0 {
		b = b[:j]
	} else if start+int64(len(b)) < f.size {
		return 0, nil, false // a line longer than any unifont line: not a unifont file
	}
	return start, b, true
}

// parseHexLine parses "XXXX:HEX..."; cp is -1 when the line is malformed.
func parseHexLine(line []byte) (rune, *glyph) {
	colon := bytes.IndexByte(line, ':')
	if colon < 1 || colon > 6 {
		return -1, nil
	}
	cp, err := strconv.ParseUint(string(line[:colon]), 16, 32)
	if err != nil {
		return -1, nil
	}
	data := line[colon+1:]
	var raw [32]byte
	n, err := hex.Decode(raw[:], data[:min(len(data), 64)])
	if err != nil || (n != 16 && n != 32) {
		return rune(cp), nil
	}
	g := &glyph{wide: n == 32}
	for y := 0; y < 16; y++ {
		if g.wide {
			g.rows[y] = uint16(raw[2*y])<<8 | uint16(raw[2*y+1])
		} else {
			g.rows[y] = uint16(raw[y]) << 8
		}
	}
	return rune(cp), g
}

// basicGlyph draws r from basicfont's 7x13 face into an 8x16 cell.
func basicGlyph(r rune) *glyph {
	face := basicfont.Face7x13
	dr, mask, mp, _, ok := face.Glyph(fixed.P(0, 13), r)
	if !ok {
		return nil
	}
	g := &glyph{}
	for y := dr.Min.Y; y < dr.Max.Y; y++ {
		for x := dr.Min.X; x < dr.Max.X; x++ {
			if y < 0 || y >= 16 || x < 0 || x >= 8 {
				continue
			}
			_, _, _, a := mask.At(mp.X+x-dr.Min.X, mp.Y+y-dr.Min.Y).RGBA()
			if a > 0x7FFF {
				g.rows[y] |= 0x8000 >> uint(x)
			}
		}
	}
	return g
}

func boxGlyph() *glyph {
	g := &glyph{}
	for y := 2; y < 14; y++ {
		g.rows[y] = 0x8000>>1 | 0x8000>>6
	}
	g.rows[2], g.rows[13] = 0x7E00, 0x7E00
	return g
}

// bounds of a glyph's ink, for tests.
func (g *glyph) ink() image.Rectangle {
	var r image.Rectangle
	for y := 0; y < 16; y++ {
		for x := 0; x < g.width(); x++ {
			if g.dot(x, y) {
				r = r.Union(image.Rect(x, y, x+1, y+1))
			}
		}
	}
	return r
}
