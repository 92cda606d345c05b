// Package printeremu is an ESC/POS receipt printer on the other end of a pseudo-terminal: the
// printer driver (drivers/escpos) opens the line's device path exactly as it opens a real
// serial printer, and this emulator answers as the printer would.
//
// What it models, because the driver depends on it:
//   - the serial line: it reads and writes no faster than the configured baud (8N1), so a
//     throughput figure measured through it means something even though a pty has no baud;
//   - a receive buffer (BufferSize) drained by a print engine at PrintSpeed; software flow
//     control: XOFF (0x13) when fewer than XOffFree bytes are free or the printer goes offline,
//     repeated while data keeps arriving, XON (0x11) once XOnFree bytes are free and it is
//     online again; bytes arriving into a full buffer are lost and counted (Stats.Overflow);
//   - real-time commands recognised on reception, ahead of the buffer, as Epson printers do:
//     DLE EOT n (status), DLE ENQ n, DLE DC4 fn=1 (drawer pulse) and fn=8 (clear buffers,
//     answered 37 25 00);
//   - GS ( H fn=48 (process ID response: answered only when everything before it was
//     printed) and GS r 1/2;
//   - paper: out, near end, cover open, "runs out after N lines" — printing stops before the
//     line that has no paper, the printer goes offline and keeps its buffer, and continues when
//     paper is loaded (unless the host cleared the buffers meanwhile).
//
// Every receipt (cut to cut) is rendered to text and to a 1-bit PNG, Dots wide, kept in
// memory and written to OutDir when set. Glyphs come from GNU Unifont (Debian package
// unifont), read lazily from its .hex file, with basicfont (ASCII) as the fallback.
//
// Fault switches (Faults): noise on the printer-to-host line, truncated or corrupted replies,
// silence, slow replies; Unplug and Replug act on the pty line. Noise goes only towards the
// host: ESC/POS has no checksums, so noise towards the printer would print garbage that no
// driver could detect.
package printeremu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/posagent/posagent/board/sim/pty"
)

// Config describes the emulated printer. The zero value is a 58 mm printer at 115200 baud
// that prints instantly, with CP866 and WPC1251, GB18030 Chinese mode and no KZ-1048.
type Config struct {
	// Dots is the printable width: 384 (58 mm paper) or 576 (80 mm). Default 384.
	Dots int
	// Baud is the line rate the emulator paces itself to (10 bits per byte). Default 115200.
	Baud int
	// Unpaced reads and writes as fast as the pty allows.
	Unpaced bool
	// PrintSpeed in mm/s (8 dots per mm); 0 prints instantly.
	PrintSpeed int
	// BufferSize is the receive buffer; default 4096. XOffFree and XOnFree are the free space
	// thresholds for XOFF and XON; defaults 512 and 1024.
	BufferSize, XOffFree, XOnFree int
	// Pages maps ESC t numbers to character tables (PC437, CP866, WPC1251, KZ1048). Default
	// {0: PC437, 17: CP866, 46: WPC1251}.
	Pages map[int]string
	// KZ1048Page, when not 0, adds the KZ-1048 table at that ESC t number.
	KZ1048Page int
	// NoChinese makes FS & a no-op (a printer without a Chinese font).
	NoChinese bool
	// ChineseAtInit starts in Chinese mode after power-on and ESC @, as many printers made for
	// the Chinese market do.
	ChineseAtInit bool
	// OutDir receives NNNN.txt and NNNN.png for every receipt; "" keeps them in memory only.
	OutDir string
	// FontPath is a unifont .hex file; default DefaultFontPath. A missing file falls back to
	// basicfont.
	FontPath string
	// MaxReceiptRows cuts a receipt that grows longer than this many dot rows; default 16000
	// (2 m of paper).
	MaxReceiptRows int
	// KeepReceipts is how many finished receipts Receipts returns; default 32.
	KeepReceipts int
	// Seed makes noise and corruption repeatable; 0 picks one.
	Seed   uint64
	Logger *slog.Logger
}

func (c Config) withDefaults() (Config, error) {
	if c.Dots == 0 {
		c.Dots = 384
	}
	if c.Dots < 64 || c.Dots%8 != 0 || c.Dots > 2048 {
		return c, fmt.Errorf("printeremu: Dots %d: want a multiple of 8 between 64 and 2048", c.Dots)
	}
	if c.Baud == 0 {
		c.Baud = 115200
	}
	if c.BufferSize == 0 {
		c.BufferSize = 4096
	}
	if c.XOffFree == 0 {
		c.XOffFree = min(512, c.BufferSize/4)
	}
	if c.XOnFree == 0 {
		c.XOnFree = min(1024, c.BufferSize/2)
	}
	if c.XOffFree >= c.XOnFree || c.XOnFree > c.BufferSize {
		return c, fmt.Errorf("printeremu: want XOffFree < XOnFree <= BufferSize")
	}
	pages := map[int]string{PagePC437: PC437, PageCP866: CP866, PageWPC1251: WPC1251}
	if c.Pages != nil {
		pages = make(map[int]string, len(c.Pages))
		for k, v := range c.Pages {
			pages[k] = v
		}
	}
	if c.KZ1048Page != 0 {
		pages[c.KZ1048Page] = KZ1048
	}
	c.Pages = pages
	if c.MaxReceiptRows == 0 {
		c.MaxReceiptRows = 16000
	}
	if c.KeepReceipts == 0 {
		c.KeepReceipts = 32
	}
	if c.Seed == 0 {
		c.Seed = rand.Uint64()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// Faults are the fault switches. The zero value is a healthy printer.
type Faults struct {
	Noise    bool          // random bytes towards the host every few milliseconds
	Truncate bool          // every reply loses its last byte (a one-byte status: all of it)
	Corrupt  bool          // one byte of every reply is damaged (always in a fixed bit)
	Silent   bool          // nothing at all goes to the host, not even XON/XOFF
	Delay    time.Duration // every reply goes out this late
}

// Stats are the emulator's counters.
type Stats struct {
	Received int64 // bytes read from the line
	Overflow int64 // bytes lost because the buffer was full
	Unknown  int64 // commands skipped as unknown
	Replies  int64 // replies sent
	Dropped  int64 // replies withheld by a fault or lost while unplugged
	Noise    int64 // noise bytes sent
	XOFF     int64 // XOFF bytes sent
	Clears   int64 // buffer clears by DLE DC4 fn=8 or DLE ENQ 2
}

// Flow control bytes.
const (
	XON  = 0x11
	XOFF = 0x13
)

var errCleared = errors.New("printeremu: buffers cleared")

// Emulator is a running printer on a pty line.
type Emulator struct {
	cfg  Config
	line *pty.Line
	log  *slog.Logger
	font *font
	m    *machine // owned by the engine goroutine

	mu        sync.Mutex
	cond      *sync.Cond
	buf       []byte
	gen       uint64 // bumped by every clear
	engineGen uint64
	closed    bool
	unplugged bool
	coverOpen bool
	paperOut  bool
	nearEnd   bool
	cutterErr bool
	paperLeft int // lines until the paper runs out; -1: a full roll
	xoff      bool
	faults    Faults
	rng       *rand.Rand
	receipts  []*Receipt
	seq       int
	stats     Stats
	printAt   time.Time // when the print engine will have finished what it printed so far

	txq   chan []byte // replies, subject to Delay/Truncate/Corrupt
	rawq  chan []byte // flow control and noise, sent at once
	done  chan struct{}
	wg    sync.WaitGroup
	close sync.Once
}

// New starts a printer on line.
func New(line *pty.Line, cfg Config) (*Emulator, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if cfg.OutDir != "" {
		if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
			return nil, fmt.Errorf("printeremu: %w", err)
		}
	}
	e := &Emulator{
		cfg:       cfg,
		line:      line,
		log:       cfg.Logger.With("device", "printer-emulator"),
		font:      openFont(cfg.FontPath),
		paperLeft: -1,
		rng:       rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9E3779B97F4A7C15)),
		txq:       make(chan []byte, 256),
		rawq:      make(chan []byte, 64),
		done:      make(chan struct{}),
	}
	e.cond = sync.NewCond(&e.mu)
	e.m = newMachine(&e.cfg, e.font, e)
	e.wg.Add(4)
	go e.rxLoop()
	go e.engineLoop()
	go e.txLoop()
	go e.noiseLoop()
	return e, nil
}

// Close stops the printer. The line stays with its owner.
func (e *Emulator) Close() error {
	e.close.Do(func() {
		e.mu.Lock()
		e.closed = true
		e.cond.Broadcast()
		e.mu.Unlock()
		close(e.done)
		e.wg.Wait()
		e.font.close()
	})
	return nil
}

// Config is the configuration in effect, defaults filled in.
func (e *Emulator) Config() Config { return e.cfg }

// --- switches -------------------------------------------------------------------------------

// SetCoverOpen opens or closes the cover; an open cover stops printing and takes the printer
// offline.
func (e *Emulator) SetCoverOpen(open bool) { e.set(func() { e.coverOpen = open }) }

// SetPaperOut empties the roll (true) or loads a fresh one (false, like LoadPaper).
func (e *Emulator) SetPaperOut(out bool) {
	if !out {
		e.LoadPaper()
		return
	}
	e.set(func() { e.paperOut, e.paperLeft = true, 0 })
}

// SetPaperNearEnd sets the near-end sensor; printing goes on.
func (e *Emulator) SetPaperNearEnd(near bool) { e.set(func() { e.nearEnd = near }) }

// PaperOutAfter leaves paper for n more lines (text lines, feed lines, graphics): the next
// one finds no paper.
func (e *Emulator) PaperOutAfter(n int) { e.set(func() { e.paperLeft = max(n, 0) }) }

// LoadPaper puts in a full roll: paper out and near end clear, and a printer that stopped
// for paper continues with what is still in its buffer.
func (e *Emulator) LoadPaper() {
	e.set(func() { e.paperOut, e.nearEnd, e.paperLeft = false, false, -1 })
}

// SetCutterError raises or clears an autocutter error (the printer goes offline).
func (e *Emulator) SetCutterError(on bool) { e.set(func() { e.cutterErr = on }) }

// SetFaults sets the fault switches.
func (e *Emulator) SetFaults(f Faults) {
	e.mu.Lock()
	e.faults = f
	e.mu.Unlock()
}

func (e *Emulator) set(f func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	was := e.offlineLocked()
	f()
	if now := e.offlineLocked(); now != was {
		e.log.Info("printer state changed", "online", !now, "cover_open", e.coverOpen, "paper_out", e.paperOut)
	}
	e.flowLocked(false)
	e.cond.Broadcast()
}

// Unplug pulls the cable: the driver's port fails. The printer keeps its state.
func (e *Emulator) Unplug() {
	e.mu.Lock()
	e.unplugged = true
	e.mu.Unlock()
	e.line.Unplug()
}

// Replug puts the cable back under the same device path.
func (e *Emulator) Replug() error {
	err := e.line.Replug()
	e.mu.Lock()
	e.unplugged = false
	e.xoff = false
	e.cond.Broadcast()
	e.mu.Unlock()
	return err
}

// --- observation ----------------------------------------------------------------------------

// Receipts returns the finished receipts, oldest first (at most KeepReceipts).
func (e *Emulator) Receipts() []*Receipt {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*Receipt(nil), e.receipts...)
}

// Pending is the text printed since the last cut.
func (e *Emulator) Pending() string { return e.m.paper.snapshot() }

// Stats returns the counters.
func (e *Emulator) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.stats
	return s
}

// WaitIdle waits until the receive buffer is empty and the printer is not stopped.
func (e *Emulator) WaitIdle(ctx context.Context) error {
	for {
		e.mu.Lock()
		idle := len(e.buf) == 0
		e.mu.Unlock()
		if idle {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// --- status ---------------------------------------------------------------------------------

func (e *Emulator) offlineLocked() bool { return e.coverOpen || e.paperOut || e.cutterErr }

// statusLocked is the DLE EOT n answer. Bits 1 and 4 are always on, 0 and 7 always off.
func (e *Emulator) statusLocked(n byte) byte {
	s := byte(0x12)
	switch n {
	case 1:
		if e.offlineLocked() {
			s |= 0x08
		}
	case 2:
		if e.coverOpen {
			s |= 0x04
		}
		if e.paperOut {
			s |= 0x20
		}
		if e.cutterErr {
			s |= 0x40
		}
	case 3:
		if e.cutterErr {
			s |= 0x08
		}
	case 4:
		if e.nearEnd {
			s |= 0x0C
		}
		if e.paperOut {
			s |= 0x60
		}
	}
	return s
}

// --- receiving ------------------------------------------------------------------------------

func (e *Emulator) master() *os.File {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.unplugged || e.closed {
		return nil
	}
	return e.line.Emulator()
}

func (e *Emulator) isClosed() bool {
	select {
	case <-e.done:
		return true
	default:
		return false
	}
}

// sleep waits d unless the emulator closes first.
func (e *Emulator) sleep(d time.Duration) bool {
	if d <= 0 {
		return !e.isClosed()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-e.done:
		return false
	case <-t.C:
		return true
	}
}

// rxChunk is how many bytes the paced reader waits for before reading: about 2.8 ms of line
// time at 115200, like a UART FIFO interrupt.
const rxChunk = 32

func (e *Emulator) rxLoop() {
	defer e.wg.Done()
	buf := make([]byte, 4096)
	var rt rtFilter
	rate := float64(e.cfg.Baud) / 10
	// Line model: tokens are bytes the wire could have delivered. When the read comes back
	// short the host had nothing more to send, so the line was idle and the credit is dropped;
	// when it comes back full the credit is kept, as a wire never loses time.
	tokens, last := 0.0, time.Now()
	for !e.isClosed() {
		f := e.master()
		if f == nil {
			if !e.sleep(10 * time.Millisecond) {
				return
			}
			rt.reset()
			continue
		}
		n := len(buf)
		if !e.cfg.Unpaced {
			now := time.Now()
			tokens = min(tokens+now.Sub(last).Seconds()*rate, float64(len(buf)))
			last = now
			if tokens < rxChunk {
				if !e.sleep(time.Duration((rxChunk - tokens) / rate * float64(time.Second))) {
					return
				}
				continue
			}
			n = int(tokens)
		}
		_ = f.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		k, err := f.Read(buf[:n])
		if !e.cfg.Unpaced {
			if k < n {
				tokens, last = 0, time.Now()
			} else {
				tokens -= float64(k)
			}
		}
		if k > 0 {
			e.receive(buf[:k], &rt)
		}
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			// Unplugged or hung up: wait for the line to come back.
			if !e.sleep(10 * time.Millisecond) {
				return
			}
		}
	}
}

func (e *Emulator) receive(data []byte, rt *rtFilter) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stats.Received += int64(len(data))
	gotData := false
	for _, b := range data {
		rt.feed(b, func(d byte) {
			gotData = true
			if len(e.buf) >= e.cfg.BufferSize {
				e.stats.Overflow++
				return
			}
			e.buf = append(e.buf, d)
		}, e.realTimeLocked)
	}
	if gotData {
		e.cond.Broadcast()
	}
	e.flowLocked(gotData)
}

// realTimeLocked executes a real-time command the moment it is received.
func (e *Emulator) realTimeLocked(cmd []byte) {
	switch cmd[1] {
	case 0x04:
		e.replyLocked([]byte{e.statusLocked(cmd[2])})
	case 0x05:
		if cmd[2] == 2 {
			e.clearLocked()
		}
	case 0x14:
		if cmd[2] == 8 {
			e.clearLocked()
			e.replyLocked([]byte{0x37, 0x25, 0x00})
		}
	}
}

func (e *Emulator) clearLocked() {
	e.buf = e.buf[:0]
	e.gen++
	e.stats.Clears++
	e.cond.Broadcast()
	e.flowLocked(false)
}

// flowLocked sends XOFF/XON as the buffer and the printer state require. XOFF is repeated
// while data keeps arriving, so a host that lost one (or took noise for an XON) stops again.
func (e *Emulator) flowLocked(gotData bool) {
	free := e.cfg.BufferSize - len(e.buf)
	if e.offlineLocked() || free < e.cfg.XOffFree {
		if !e.xoff || gotData {
			e.xoff = true
			e.stats.XOFF++
			e.rawLocked([]byte{XOFF})
		}
		return
	}
	if e.xoff && free >= e.cfg.XOnFree {
		e.xoff = false
		e.rawLocked([]byte{XON})
	}
}

// --- print engine ---------------------------------------------------------------------------

func (e *Emulator) engineLoop() {
	defer e.wg.Done()
	for {
		err := e.m.step(e)
		switch {
		case err == nil:
		case errors.Is(err, errCleared):
			e.m.cleared()
		default:
			return
		}
		e.mu.Lock()
		e.stats.Unknown = int64(e.m.unknown)
		e.mu.Unlock()
	}
}

// next implements source: the next buffered byte, once the printer is online.
func (e *Emulator) next() (byte, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for {
		if e.closed {
			return 0, errClosed
		}
		if e.gen != e.engineGen {
			e.engineGen = e.gen
			return 0, errCleared
		}
		if len(e.buf) > 0 && !e.offlineLocked() {
			b := e.buf[0]
			e.buf = e.buf[1:]
			if e.xoff {
				e.flowLocked(false)
			}
			return b, nil
		}
		e.cond.Wait()
	}
}

// advance implements hooks: it waits for paper and an online printer, uses up the roll and
// takes the time printing takes.
func (e *Emulator) advance(lines, dots int) error {
	e.mu.Lock()
	for {
		if e.closed {
			e.mu.Unlock()
			return errClosed
		}
		if e.gen != e.engineGen {
			e.engineGen = e.gen
			e.mu.Unlock()
			return errCleared
		}
		if !e.offlineLocked() {
			if lines > 0 && e.paperLeft >= 0 && lines > e.paperLeft {
				e.paperOut = true
				e.log.Info("paper out: printing stopped")
				e.flowLocked(false)
				continue
			}
			if lines > 0 && e.paperLeft >= 0 {
				e.paperLeft -= lines
			}
			break
		}
		e.cond.Wait()
	}
	var wait time.Duration
	if e.cfg.PrintSpeed > 0 && dots > 0 {
		now := time.Now()
		if e.printAt.Before(now) {
			e.printAt = now
		}
		e.printAt = e.printAt.Add(time.Duration(float64(dots) / float64(8*e.cfg.PrintSpeed) * float64(time.Second)))
		if d := e.printAt.Sub(now); d > 2*time.Millisecond {
			wait = d
		}
	}
	e.mu.Unlock()
	if !e.sleep(wait) {
		return errClosed
	}
	return nil
}

func (e *Emulator) sensors() (nearEnd, out bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.nearEnd, e.paperOut
}

func (e *Emulator) reply(b []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.replyLocked(b)
}

func (e *Emulator) finish(r *Receipt) {
	e.mu.Lock()
	e.seq++
	r.Seq = e.seq
	dir := e.cfg.OutDir
	e.mu.Unlock()
	if dir != "" {
		base := filepath.Join(dir, fmt.Sprintf("%04d", r.Seq))
		if err := os.WriteFile(base+".txt", []byte(r.Text), 0o644); err == nil {
			r.TextPath = base + ".txt"
		}
		if data, err := r.PNG(); err == nil {
			if err := os.WriteFile(base+".png", data, 0o644); err == nil {
				r.PNGPath = base + ".png"
			}
		}
	}
	e.log.Info("receipt printed", "seq", r.Seq, "rows", r.Image.Rect.Dy(), "png", r.PNGPath)
	e.mu.Lock()
	e.receipts = append(e.receipts, r)
	if len(e.receipts) > e.cfg.KeepReceipts {
		e.receipts = e.receipts[len(e.receipts)-e.cfg.KeepReceipts:]
	}
	e.mu.Unlock()
}

// --- sending --------------------------------------------------------------------------------

func (e *Emulator) replyLocked(b []byte) {
	e.stats.Replies++
	select {
	case e.txq <- append([]byte(nil), b...):
	default:
		e.stats.Dropped++
	}
}

func (e *Emulator) rawLocked(b []byte) {
	select {
	case e.rawq <- b:
	default:
		e.stats.Dropped++
	}
}

type delayed struct {
	due time.Time
	b   []byte
}

// txLoop writes to the host: flow control and noise at once, replies after the reply delay.
func (e *Emulator) txLoop() {
	defer e.wg.Done()
	var pending []delayed
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var due <-chan time.Time
		if len(pending) > 0 {
			timer.Reset(time.Until(pending[0].due))
			due = timer.C
		}
		select {
		case <-e.done:
			return
		case b := <-e.rawq:
			e.write(b)
		case b := <-e.txq:
			e.mu.Lock()
			delay := e.faults.Delay
			e.mu.Unlock()
			pending = append(pending, delayed{time.Now().Add(delay), b})
		case <-due:
			now := time.Now()
			for len(pending) > 0 && !pending[0].due.After(now) {
				e.write(e.damage(pending[0].b))
				pending = pending[1:]
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// damage applies the truncate and corrupt switches to a reply.
func (e *Emulator) damage(b []byte) []byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.faults.Truncate {
		b = b[:len(b)-1]
	}
	if e.faults.Corrupt && len(b) > 0 {
		// Bit 7 is fixed off in every status byte and XON/XOFF never have it: the damage is
		// always detectable, which is what a test of the switch needs.
		b[e.rng.IntN(len(b))] ^= 0x80 | byte(e.rng.IntN(0x80))
	}
	return b
}

func (e *Emulator) write(b []byte) {
	e.mu.Lock()
	silent := e.faults.Silent
	e.mu.Unlock()
	f := e.master()
	if silent || f == nil || len(b) == 0 {
		if len(b) > 0 {
			e.mu.Lock()
			e.stats.Dropped++
			e.mu.Unlock()
		}
		return
	}
	_ = f.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := f.Write(b); err != nil {
		e.mu.Lock()
		e.stats.Dropped++
		e.mu.Unlock()
		return
	}
	if !e.cfg.Unpaced {
		// The reply occupies the line for its length; short replies are not worth a sleep.
		if d := time.Duration(len(b)) * 10 * time.Second / time.Duration(e.cfg.Baud); d > time.Millisecond {
			e.sleep(d)
		}
	}
}

func (e *Emulator) noiseLoop() {
	defer e.wg.Done()
	for {
		e.mu.Lock()
		on := e.faults.Noise
		gap := time.Duration(5+e.rng.IntN(20)) * time.Millisecond
		var junk []byte
		if on {
			junk = make([]byte, 1+e.rng.IntN(6))
			for i := range junk {
				junk[i] = byte(e.rng.IntN(256))
			}
			e.stats.Noise += int64(len(junk))
		}
		e.mu.Unlock()
		if on {
			e.write(junk)
		}
		if !e.sleep(gap) {
			return
		}
	}
}

// --- real-time command recogniser -----------------------------------------------------------

// rtFilter picks real-time commands out of the received bytes regardless of what command
// they sit in, as Epson printers do; the host must never send these sequences as data.
type rtFilter struct{ held []byte }

func (f *rtFilter) reset() { f.held = f.held[:0] }

type rtMatch int

const (
	rtNone rtMatch = iota
	rtPartial
	rtDone
)

// rtPatterns are the recognised commands; each position lists the allowed byte range.
var rtPatterns = [][][2]byte{
	{{0x10, 0x10}, {0x04, 0x04}, {1, 4}},                 // DLE EOT n
	{{0x10, 0x10}, {0x05, 0x05}, {1, 2}},                 // DLE ENQ n
	{{0x10, 0x10}, {0x14, 0x14}, {1, 1}, {0, 1}, {1, 8}}, // DLE DC4 1 m t: drawer pulse
	{{0x10, 0x10}, {0x14, 0x14}, {8, 8}, {1, 1}, {3, 3}, {20, 20}, // DLE DC4 8: clear buffers
		{1, 1}, {6, 6}, {2, 2}, {8, 8}},
}

func (f *rtFilter) match() rtMatch {
	best := rtNone
	for _, p := range rtPatterns {
		if len(f.held) > len(p) {
			continue
		}
		ok := true
		for i, b := range f.held {
			if b < p[i][0] || b > p[i][1] {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		if len(f.held) == len(p) {
			return rtDone
		}
		best = rtPartial
	}
	return best
}

// feed takes one received byte; data gets the bytes that belong in the buffer, exec the
// complete real-time commands.
func (f *rtFilter) feed(b byte, data func(byte), exec func([]byte)) {
	f.held = append(f.held, b)
	for len(f.held) > 0 {
		switch f.match() {
		case rtPartial:
			return
		case rtDone:
			exec(f.held)
			f.held = f.held[:0]
			return
		default:
			data(f.held[0])
			f.held = append(f.held[:0], f.held[1:]...)
		}
	}
}
