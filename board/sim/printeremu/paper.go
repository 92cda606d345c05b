package printeremu

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"strings"
	"sync"
)

// Receipt is one printed receipt, from the previous cut to this one.
type Receipt struct {
	Seq   int
	Text  string          // the receipt as text: one line per printed line, graphics as [..]
	Image *image.Paletted // the receipt as printed: Dots wide, white paper, black dots
	// Files the receipt was written to, when Config.OutDir is set.
	TextPath, PNGPath string
}

// PNG encodes the receipt image (1 bit per dot).
func (r *Receipt) PNG() ([]byte, error) {
	var b bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestCompression}
	if err := enc.Encode(&b, r.Image); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// paper is the strip printed since the last cut: 1 bit per dot, 1 = black.
type paper struct {
	dots, stride int
	maxRows      int
	noPixels     bool // count rows only (the fuzzer: rendering pixels is not what it tests)
	pix          []byte
	rows         int

	mu   sync.Mutex // text is read by other goroutines (Emulator.Pending)
	text []string
}

// grow adds n white rows and returns the index of the first. A strip longer than maxRows is
// cut off as a receipt of its own first, so no input can make the emulator grow without bound.
func (p *paper) grow(n int, m *machine) int {
	if p.maxRows > 0 && p.rows+n > p.maxRows && p.rows > 0 {
		p.addText("[emulator: receipt too long, cut]")
		m.finishReceipt()
	}
	if p.maxRows > 0 {
		n = min(n, p.maxRows)
	}
	y := p.rows
	p.rows += n
	if p.noPixels {
		return y
	}
	need := p.rows * p.stride
	if need > cap(p.pix) {
		grown := make([]byte, need, max(need, 2*cap(p.pix)))
		copy(grown, p.pix)
		p.pix = grown
	} else {
		old := len(p.pix)
		p.pix = p.pix[:need]
		clear(p.pix[old:])
	}
	return y
}

func (p *paper) set(x, y int) {
	if p.noPixels || x < 0 || x >= p.dots || y < 0 || y >= p.rows {
		return
	}
	p.pix[y*p.stride+x/8] |= 0x80 >> uint(x%8)
}

func (p *paper) addText(s string) {
	p.mu.Lock()
	p.text = append(p.text, s)
	p.mu.Unlock()
}

// take returns the strip as a receipt and starts a new one; nil when nothing was printed.
func (p *paper) take() *Receipt {
	p.mu.Lock()
	empty := p.rows == 0 && len(p.text) == 0
	p.mu.Unlock()
	if empty {
		return nil
	}
	img := image.NewPaletted(image.Rect(0, 0, p.dots, max(p.rows, 1)), color.Palette{color.White, color.Black})
	if p.noPixels {
		img = &image.Paletted{Rect: img.Rect, Palette: img.Palette} // no pixels to look at
	}
	for y := 0; y < p.rows && !p.noPixels; y++ {
		row := p.pix[y*p.stride : (y+1)*p.stride]
		out := img.Pix[y*img.Stride : y*img.Stride+p.dots]
		for x := range out {
			out[x] = row[x/8] >> uint(7-x%8) & 1
		}
	}
	p.mu.Lock()
	r := &Receipt{Text: strings.Join(p.text, "\n") + "\n", Image: img}
	p.text = nil
	p.mu.Unlock()
	p.pix, p.rows = p.pix[:0], 0
	return r
}

// snapshot is the text printed since the last cut.
func (p *paper) snapshot() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.text) == 0 {
		return ""
	}
	return strings.Join(p.text, "\n") + "\n"
}
