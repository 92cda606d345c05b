package receipt

import (
	"strings"
	"unicode/utf8"

	"github.com/posagent/posagent/drivers/escpos"
)

// page lays a slip out once for two outputs: an escpos job (when j is set) and plain text
// lines (when text is set), as the printer emulator renders them — centred and right-aligned
// lines start with spaces, magnified text counts its magnified width.
type page struct {
	j     *escpos.Job
	m     escpos.Model
	cols  int
	text  bool
	lines []string
}

func newPage(m escpos.Model, job, text bool) *page {
	p := &page{m: m, cols: m.Columns(), text: text}
	if job {
		p.j = escpos.NewJob()
	}
	return p
}

// width is the columns s takes at normal size.
func (p *page) width(s string) int { return p.m.TextWidth(s) }

// styled writes one line in a style; s must fit (callers cut or wrap first).
func (p *page) styled(s string, a escpos.Align, bold bool, w, h int) {
	if p.j != nil {
		p.j.Style(escpos.Style{Align: a, Bold: bold, Width: w, Height: h}).Line(s)
	}
	if p.text {
		pad := 0
		if free := p.cols - p.width(s)*max(w, 1); free > 0 {
			switch a {
			case escpos.Center:
				pad = free / 2
			case escpos.Right:
				pad = free
			}
		}
		p.lines = append(p.lines, strings.Repeat(" ", pad)+s)
	}
}

func (p *page) left(s string) { p.styled(s, escpos.Left, false, 1, 1) }

// center writes s centred, wrapped onto as many lines as it needs.
func (p *page) center(s string, bold bool) {
	for _, l := range p.wrap(s, p.cols) {
		p.styled(l, escpos.Center, bold, 1, 1)
	}
}

// big writes s centred and bold at double size, or double height when that is too wide.
func (p *page) big(s string) {
	switch w := p.width(s); {
	case 2*w <= p.cols:
		p.styled(s, escpos.Center, true, 2, 2)
	case w <= p.cols:
		p.styled(s, escpos.Center, true, 1, 2)
	default:
		for _, l := range p.wrap(s, p.cols) {
			p.styled(l, escpos.Center, true, 1, 2)
		}
	}
}

// rule is a line of dashes across the paper.
func (p *page) rule() { p.left(strings.Repeat("-", p.cols)) }

// blank is an empty line.
func (p *page) blank() { p.styled("", escpos.Left, false, 1, 1) }

// pair writes "label      value" across the paper; when both do not fit, the label goes on
// its own line and the value right-aligned on the next.
func (p *page) pair(label, value string) { p.pairStyled(label, value, false) }

func (p *page) pairStyled(label, value string, bold bool) {
	if value == "" {
		return
	}
	lw, vw := p.width(label), p.width(value)
	if lw+1+vw <= p.cols {
		p.styled(label+strings.Repeat(" ", p.cols-lw-vw)+value, escpos.Left, bold, 1, 1)
		return
	}
	for _, l := range p.wrap(label, p.cols) {
		p.styled(l, escpos.Left, bold, 1, 1)
	}
	for _, l := range p.wrap(value, p.cols) {
		p.styled(l, escpos.Right, bold, 1, 1)
	}
}

// amount writes a label, then the amount bold and right-aligned at double size, or double
// height when double size is too wide.
func (p *page) amount(label, value string) {
	p.left(label)
	if 2*p.width(value) <= p.cols {
		p.styled(value, escpos.Right, true, 2, 2)
	} else {
		p.styled(value, escpos.Right, true, 1, 2)
	}
}

// wrap cuts s into lines of at most width columns, at spaces where it can.
func (p *page) wrap(s string, width int) []string {
	s = clean(s)
	if p.width(s) <= width {
		return []string{s}
	}
	var out []string
	for s != "" {
		if p.width(s) <= width {
			out = append(out, s)
			break
		}
		// The longest prefix that fits, then back to the last space in it.
		cut, w := 0, 0
		for i, r := range s {
			rw := p.width(string(r))
			if w+rw > width {
				break
			}
			w += rw
			cut = i + utf8.RuneLen(r)
		}
		if cut == 0 { // a character wider than the paper
			_, cut = utf8.DecodeRuneInString(s)
		}
		if sp := strings.LastIndexByte(s[:cut], ' '); sp > 0 {
			cut = sp
		} else if cm := strings.LastIndex(s[:cut], "，"); cm > 0 {
			cut = cm + len("，") // Chinese: after the comma
		}
		out = append(out, strings.TrimRight(s[:cut], " "))
		s = strings.TrimLeft(s[cut:], " ")
	}
	return out
}

// clean replaces control characters (which the driver would print as spaces anyway) and
// trims the ends.
func clean(s string) string {
	if strings.IndexFunc(s, isControl) >= 0 {
		s = strings.Map(func(r rune) rune {
			if isControl(r) {
				return ' '
			}
			return r
		}, s)
	}
	return strings.TrimSpace(s)
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7F || (r >= 0x80 && r < 0xA0) }

// fitLeft pads or cuts s to exactly w columns, text on the left.
func (p *page) fitLeft(s string, w int) string {
	sw := p.width(s)
	if sw <= w {
		return s + strings.Repeat(" ", w-sw)
	}
	var b strings.Builder
	n := 0
	for _, r := range s {
		rw := p.width(string(r))
		if n+rw > w {
			break
		}
		b.WriteRune(r)
		n += rw
	}
	return b.String() + strings.Repeat(" ", w-n)
}
