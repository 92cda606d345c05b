package printeremu

import (
	"errors"
	"sync"
)

// Render interprets an ESC/POS byte stream without a line or timing, as the emulator would
// print it with paper loaded, and returns the receipts: one per cut, then whatever was
// printed after the last cut. Real-time commands in data are skipped. Replies (status, process
// ID) are returned in order as the printer would have sent them.
func Render(data []byte, cfg Config) (receipts []*Receipt, replies []byte, err error) {
	return render(data, cfg, false)
}

func render(data []byte, cfg Config, noPixels bool) (receipts []*Receipt, replies []byte, err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		return nil, nil, err
	}
	h := &offline{keep: cfg.KeepReceipts}
	m := newMachine(&cfg, sharedFont(cfg.FontPath), h)
	m.paper.noPixels = noPixels
	src := &byteSource{data: data}
	for {
		if err := m.step(src); err != nil {
			if !errors.Is(err, errEnd) {
				return nil, nil, err
			}
			break
		}
	}
	if r := m.paper.take(); r != nil {
		h.finish(r)
	}
	return h.receipts, h.replies, nil
}

var errEnd = errors.New("printeremu: end of data")

type byteSource struct {
	data []byte
	pos  int
}

func (s *byteSource) next() (byte, error) {
	if s.pos >= len(s.data) {
		return 0, errEnd
	}
	b := s.data[s.pos]
	s.pos++
	return b, nil
}

type offline struct {
	keep     int
	seq      int
	receipts []*Receipt
	replies  []byte
}

func (o *offline) advance(lines, dots int) error { return nil }
func (o *offline) reply(b []byte)                { o.replies = append(o.replies, b...) }
func (o *offline) sensors() (bool, bool)         { return false, false }
func (o *offline) finish(r *Receipt) {
	o.seq++
	r.Seq = o.seq
	o.receipts = append(o.receipts, r)
	if len(o.receipts) > o.keep {
		o.receipts = o.receipts[len(o.receipts)-o.keep:]
	}
}

var (
	fontsMu sync.Mutex
	fonts   = map[string]*font{}
)

// sharedFont keeps one font per path for Render, so repeated renders (the fuzzer) do not
// reopen the file; its glyph cache is bounded.
func sharedFont(path string) *font {
	fontsMu.Lock()
	defer fontsMu.Unlock()
	f, ok := fonts[path]
	if !ok {
		f = openFont(path)
		fonts[path] = f
	}
	return f
}
