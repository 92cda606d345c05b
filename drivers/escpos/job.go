package escpos

import (
	"fmt"
	"image"
	"io"
)

// Align is the justification of a line or a graphic.
type Align uint8

// Justifications.
const (
	Left Align = iota
	Center
	Right
)

// Style is how text looks. Width and Height are magnifications 1..8 (0 means 1).
type Style struct {
	Align     Align
	Bold      bool
	Underline bool
	Width     int
	Height    int
}

func (s Style) norm() Style {
	s.Width, s.Height = clampMag(s.Width), clampMag(s.Height)
	if s.Align > Right {
		s.Align = Left
	}
	return s
}

func clampMag(n int) int { return min(max(n, 1), 8) }

// QRLevel is the QR error correction level.
type QRLevel uint8

// QR error correction levels.
const (
	QRLevelL QRLevel = iota
	QRLevelM
	QRLevelQ
	QRLevelH
)

// QROptions shape a QR code. Size is the module size in dots, 1..16 (default 6).
type QROptions struct {
	Size  int
	Level QRLevel
}

// HRI is where a barcode's human-readable text goes.
type HRI uint8

// HRI positions.
const (
	HRIBelow HRI = iota
	HRINone
	HRIAbove
	HRIBoth
)

// BarcodeOptions shape a barcode. Height in dots (default 80), Module is the narrow bar
// width in dots, 2..6 (default 2).
type BarcodeOptions struct {
	Height int
	Module int
	HRI    HRI
}

// maxQRData is the byte-mode capacity of a version 40 QR code at level L.
const maxQRData = 2953

// Job is a receipt to print: a list of elements (lines, feeds, codes, images, a cut) built
// with the methods below, which chain and record the first mistake (see Err).
//
// A job remembers how far it got: Done elements were printed, as the printer confirmed, and
// Resume goes on from there. Elements are the unit of resumption.
type Job struct {
	elems []element
	style Style
	spans []span // the line being built
	err   error
	done  int
}

// NewJob starts an empty job in the default style.
func NewJob() *Job { return &Job{style: Style{}.norm()} }

type element interface {
	encode(e *encoder)
	check(m Model) error
}

// Err is the first building mistake, wrapping ErrBadJob.
func (j *Job) Err() error { return j.err }

func (j *Job) fail(format string, args ...any) *Job {
	if j.err == nil {
		j.err = fmt.Errorf("%w: "+format, append([]any{ErrBadJob}, args...)...)
	}
	return j
}

// Style sets the whole style for what follows.
func (j *Job) Style(s Style) *Job { j.style = s.norm(); return j }

// Align sets the justification of the following lines and graphics.
func (j *Job) Align(a Align) *Job { j.style.Align = a; j.style = j.style.norm(); return j }

// Bold turns emphasis on or off.
func (j *Job) Bold(on bool) *Job { j.style.Bold = on; return j }

// Underline turns underlining on or off.
func (j *Job) Underline(on bool) *Job { j.style.Underline = on; return j }

// Size sets the character magnification, 1..8 each way.
func (j *Job) Size(width, height int) *Job {
	j.style.Width, j.style.Height = width, height
	j.style = j.style.norm()
	return j
}

// Text adds s to the current line in the current style.
func (j *Job) Text(s string) *Job {
	if s != "" {
		j.spans = append(j.spans, span{j.style, s})
	}
	return j
}

// Line adds s and ends the line; Line("") on an empty line feeds one blank line.
func (j *Job) Line(s string) *Job {
	j.Text(s)
	j.endLine(true)
	return j
}

// endLine makes the pending spans a line element; with force an empty line is one too.
func (j *Job) endLine(force bool) {
	if len(j.spans) == 0 && !force {
		return
	}
	j.elems = append(j.elems, &lineElem{align: j.style.Align, spans: j.spans})
	j.spans = nil
}

// Feed feeds n blank lines.
func (j *Job) Feed(n int) *Job {
	j.endLine(false)
	if n < 1 || n > 255 {
		return j.fail("feed of %d lines", n)
	}
	j.elems = append(j.elems, &feedElem{n: n})
	return j
}

// QR adds a QR code (model 2) holding data; data must be printable (no control characters).
func (j *Job) QR(data string, o QROptions) *Job {
	j.endLine(false)
	if o.Size == 0 {
		o.Size = 6
	}
	switch {
	case len(data) == 0 || len(data) > maxQRData:
		return j.fail("QR data of %d bytes", len(data))
	case o.Size < 1 || o.Size > 16:
		return j.fail("QR module size %d", o.Size)
	case o.Level > QRLevelH:
		return j.fail("QR level %d", o.Level)
	}
	for i := 0; i < len(data); i++ {
		if data[i] < 0x20 || data[i] == 0x7F {
			// Control bytes could form a real-time command the printer would execute.
			return j.fail("QR data has control byte %#02x", data[i])
		}
	}
	j.elems = append(j.elems, &qrElem{data: data, opt: o, align: j.style.Align})
	return j
}

// Barcode128 adds a CODE128 barcode of printable ASCII data. All-digit data of even length
// uses code set C (half as wide).
func (j *Job) Barcode128(data string, o BarcodeOptions) *Job {
	j.endLine(false)
	if o.Height == 0 {
		o.Height = 80
	}
	if o.Module == 0 {
		o.Module = 2
	}
	switch {
	case o.Height < 1 || o.Height > 255:
		return j.fail("barcode height %d", o.Height)
	case o.Module < 2 || o.Module > 6:
		return j.fail("barcode module width %d", o.Module)
	case o.HRI > HRIBoth:
		return j.fail("barcode HRI position %d", o.HRI)
	}
	payload, symbols, err := code128Payload(data)
	if err != nil {
		return j.fail("%v", err)
	}
	j.elems = append(j.elems, &barcodeElem{payload: payload, symbols: symbols, opt: o, align: j.style.Align})
	return j
}

// Image adds a raster graphic, dithered to black and white and scaled down to the paper
// width if wider. The image is read when the job is encoded, row by row.
func (j *Job) Image(img image.Image) *Job {
	j.endLine(false)
	if img == nil || img.Bounds().Empty() {
		return j.fail("empty image")
	}
	j.elems = append(j.elems, &imageElem{img: img, align: j.style.Align})
	return j
}

// Cut feeds the receipt past the cutter and cuts it (partial cut).
func (j *Job) Cut() *Job {
	j.endLine(false)
	j.elems = append(j.elems, cutElem{})
	return j
}

// Len is the number of elements (a pending line counts once it is ended).
func (j *Job) Len() int { return len(j.elems) }

// Done is the number of elements the printer confirmed printing.
func (j *Job) Done() int { return j.done }

// Complete reports whether every element was printed.
func (j *Job) Complete() bool { return j.done >= len(j.elems) && len(j.elems) > 0 }

// Rewind forgets the progress, for a reprint from the start.
func (j *Job) Rewind() { j.done = 0 }

// seal ends a pending line, so what was added is printed.
func (j *Job) seal() { j.endLine(false) }

// check validates the job for a model before anything is sent.
func (j *Job) check(m Model) error {
	if j.err != nil {
		return j.err
	}
	if len(j.elems) == 0 {
		return fmt.Errorf("%w: empty job", ErrBadJob)
	}
	for _, e := range j.elems {
		if err := e.check(m); err != nil {
			return err
		}
	}
	return nil
}

// Encode writes the whole job for model m as one ESC/POS stream, starting with ESC @: for a
// preview, a file, or a printer reached by other means. It streams: images are dithered row
// by row into w. Print does not use it; it adds the confirmations a job needs.
func (j *Job) Encode(w io.Writer, m Model) (int64, error) {
	j.seal()
	if err := j.check(m); err != nil {
		return 0, err
	}
	bw := &bufWriter{w: w}
	e := newEncoder(bw, m)
	e.init()
	for _, el := range j.elems {
		el.encode(e)
	}
	e.flush()
	return bw.n, e.err
}

// bufWriter batches small writes into a fixed buffer for an io.Writer.
type bufWriter struct {
	w   io.Writer
	buf [512]byte
	k   int
	n   int64
	err error
}

func (b *bufWriter) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) && b.err == nil {
		c := copy(b.buf[b.k:], p[n:])
		b.k += c
		n += c
		if b.k == len(b.buf) {
			b.flush()
		}
	}
	return n, b.err
}

func (b *bufWriter) flush() {
	if b.k == 0 || b.err != nil {
		return
	}
	n, err := b.w.Write(b.buf[:b.k])
	b.n += int64(n)
	b.err = err
	b.k = 0
}

func (b *bufWriter) Flush() error { b.flush(); return b.err }
