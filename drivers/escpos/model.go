package escpos

import (
	"errors"
	"fmt"
)

// Charset is a single-byte character table a printer selects with ESC t n.
type Charset string

// Character tables the driver can encode.
const (
	PC437   Charset = "pc437"
	CP866   Charset = "cp866"   // DOS Cyrillic: Russian; no Kazakh letters, no І
	WPC1251 Charset = "wpc1251" // Windows Cyrillic: Russian, І і; no other Kazakh letter
	KZ1048  Charset = "kz1048"  // Windows-1251 with the Kazakh letters (KZ-1048, STRK1048-2002)
)

// CodePage is one ESC t table of a printer: its number and what it holds.
type CodePage struct {
	N       byte
	Charset Charset
}

// Page numbers Epson uses. Printers of other makers often follow them; each model's own
// table must be checked on the hardware.
const (
	PageCP866   = 17
	PageWPC1251 = 46
)

// Model is what the driver needs to know about a printer model. Board profiles carry one per
// terminal model; see the package documentation for what is confirmed.
type Model struct {
	Name string
	// Dots is the printable width in dots: 384 for 58 mm paper, 576 for 80 mm.
	Dots int
	// Pages are the printer's character tables, in order of preference: a character is sent
	// in the current table if it has it, else in the first table here that has it.
	Pages []CodePage
	// Chinese: the printer has a GB18030 (GBK) font, entered with FS & and left with FS .
	Chinese bool
	// NoClearBuffers: the printer lacks DLE DC4 fn=8 (clear buffers, answered 37 25 00); the
	// driver then sends DLE ENQ 2 and cannot confirm the buffers were cleared.
	NoClearBuffers bool
}

// Generic58 and Generic80 are Epson-compatible 58 mm and 80 mm printers with the Epson page
// numbers for CP866 and WPC1251 and a GB18030 font. Kazakh letters other than І і fall back
// to Russian look-alikes (see Model.Pages and the package documentation).
var (
	Generic58 = Model{Name: "generic-58", Dots: 384, Pages: []CodePage{{PageWPC1251, WPC1251}, {PageCP866, CP866}}, Chinese: true}
	Generic80 = Model{Name: "generic-80", Dots: 576, Pages: []CodePage{{PageWPC1251, WPC1251}, {PageCP866, CP866}}, Chinese: true}
)

// Columns is the number of font A characters (12 dots) on a line.
func (m Model) Columns() int { return m.Dots / fontAWidth }

const fontAWidth = 12

func (m Model) validate() error {
	if m.Dots < 64 || m.Dots%8 != 0 {
		return fmt.Errorf("escpos: model %q: Dots %d must be a multiple of 8, at least 64", m.Name, m.Dots)
	}
	for _, p := range m.Pages {
		if charsetEncoder(p.Charset) == nil {
			return fmt.Errorf("escpos: model %q: unknown character table %q", m.Name, p.Charset)
		}
	}
	return nil
}

var errNoModel = errors.New("escpos: Options.Model is not set")
