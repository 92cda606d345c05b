// Package cardemu emulates the card reader module of docs/cardreader-protocol.md on a
// pseudo-terminal, with a file of test cards whose chips answer the APDUs of an EMV read.
// Tests and the demo insert, remove, swipe and tap cards by name, and switch faults on the
// line: noise, cut or corrupted frames, wrong checksums, NAK storms, silence, slow replies,
// unplug and replug.
//
// It is for the sim board and tests; the agent binary never links it.
package cardemu

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/posagent/posagent/board/sim/pty"
	"github.com/posagent/posagent/drivers/cardreader/wire"
)

// Faults are the line faults the emulator can play. The zero value is a healthy reader.
type Faults struct {
	Noise       bool // random garbage before everything the reader sends
	Truncate    bool // frames cut short
	Corrupt     bool // a byte of each frame's body flipped, so its CRC fails
	BadChecksum bool // frames sent with a wrong CRC
	NAKStorm    bool // every frame from the host answered NAK, none carried out
	Silence     bool // the reader hears but never answers: no ACK, no frame, no event
	// Delay holds each response back this long after the request (a slow reader or card).
	Delay time.Duration
	// Limit, when > 0, plays Truncate, Corrupt and BadChecksum on that many frames only and
	// then clears them: a transient fault the retransmissions must absorb.
	Limit int
}

func (f Faults) damaging() bool { return f.Truncate || f.Corrupt || f.BadChecksum }

// Options configure an emulator.
type Options struct {
	Logger                  *slog.Logger
	Model, Serial, Firmware string
	// AckTimeout is how long the reader waits for the host's ACK before sending a frame
	// again (150 ms); it gives up after Retries more sends (3).
	AckTimeout time.Duration
	Retries    int
	// Seed makes the noise reproducible.
	Seed uint64
}

// Emulator is a card reader on the emulator end of a pseudo-terminal line.
type Emulator struct {
	line  *pty.Line
	cards *CardSet
	opt   Options
	log   *slog.Logger

	mu      sync.Mutex
	faults  Faults
	damaged int // frames damaged under Faults.Limit
	served  int // requests carried out

	actions chan func()
	quit    chan struct{}
	done    chan struct{}
	once    sync.Once

	// Loop state, touched only by the loop goroutine.
	rng      *rand.Rand
	dec      wire.Decoder
	lastByte time.Time
	enabled  byte
	contact  slot
	field    slot
	evSeq    byte
	queue    []outFrame // frames to send, head first; the head waits for ACK when sent
	awaiting bool
	ackBy    time.Time
	later    []scheduled // responses held back by Faults.Delay
	lastReq  []byte      // SEQ TYPE DATA of the last request carried out
	lastResp []byte      // its response frame
	inFlight bool        // the last request's response is not sent yet
}

type slot struct {
	card *card
	sess *session // non-nil while powered
}

type outFrame struct {
	b     []byte
	sends int
	resp  bool
}

type scheduled struct {
	at time.Time
	b  []byte
}

// Start runs a reader on the line with the given cards (nil: Default()).
func Start(line *pty.Line, cards *CardSet, opt Options) *Emulator {
	if cards == nil {
		cards = Default()
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.AckTimeout <= 0 {
		opt.AckTimeout = 150 * time.Millisecond
	}
	if opt.Retries <= 0 {
		opt.Retries = 3
	}
	if opt.Model == "" {
		opt.Model = "SIM-CR1"
	}
	if opt.Serial == "" {
		opt.Serial = "CR0000001"
	}
	if opt.Firmware == "" {
		opt.Firmware = "1.0.0-sim"
	}
	e := &Emulator{
		line: line, cards: cards, opt: opt,
		log:     opt.Logger.With("emulator", "cardreader"),
		actions: make(chan func()),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
		rng:     rand.New(rand.NewPCG(opt.Seed, 0x63617264)),
	}
	in := make(chan []byte, 8)
	go e.pump(in)
	go e.run(in)
	return e
}

// Cards is the emulator's card set.
func (e *Emulator) Cards() *CardSet { return e.cards }

// Close stops the emulator; the line stays the caller's.
func (e *Emulator) Close() error {
	e.once.Do(func() {
		close(e.quit)
		<-e.done
	})
	return nil
}

// SetFaults replaces the fault switches.
func (e *Emulator) SetFaults(f Faults) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.faults, e.damaged = f, 0
}

// Faults returns the current switches (Limit-bound ones clear themselves once spent).
func (e *Emulator) Faults() Faults {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.faults
}

// Served is the number of requests the reader carried out (retransmissions of a request it
// had already carried out are answered again, not carried out again).
func (e *Emulator) Served() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.served
}

// Unplug takes the reader off the line: the driver's port fails as on a USB unplug.
func (e *Emulator) Unplug() { e.line.Unplug() }

// Replug brings the reader back on a fresh line under the same device path.
func (e *Emulator) Replug() error {
	err := e.line.Replug()
	e.do(func() error { e.reset(); return nil })
	return err
}

// ErrDisabled: the reader is not reading on the interface the card was presented to.
var ErrDisabled = errors.New("cardemu: interface not enabled")

// Insert puts a card in the contact slot; the reader reports it.
func (e *Emulator) Insert(name string) error {
	return e.do(func() error {
		c, err := e.cards.card(name)
		if err != nil {
			return err
		}
		if e.contact.card != nil {
			return fmt.Errorf("cardemu: slot already holds a card")
		}
		e.contact = slot{card: c}
		e.event(wire.EvtInserted, []byte{wire.IfContact})
		return nil
	})
}

// Tap brings a card into the contactless field, where it stays until Remove.
func (e *Emulator) Tap(name string) error {
	return e.do(func() error {
		c, err := e.cards.card(name)
		if err != nil {
			return err
		}
		if e.enabled&wire.IfContactless == 0 {
			return ErrDisabled
		}
		if !c.cl {
			return fmt.Errorf("cardemu: card %q is not contactless", name)
		}
		e.field = slot{card: c}
		e.event(wire.EvtTapped, append([]byte{wire.IfContactless, byte(len(c.uid))}, c.uid...))
		return nil
	})
}

// Remove takes the card out of the slot and out of the field.
func (e *Emulator) Remove() {
	_ = e.do(func() error {
		if e.contact.card != nil {
			e.contact = slot{}
			e.event(wire.EvtRemoved, []byte{wire.IfContact})
		}
		if e.field.card != nil {
			e.field = slot{}
			e.event(wire.EvtRemoved, []byte{wire.IfContactless})
		}
		return nil
	})
}

// Swipe swipes a card's stripe through the reader.
func (e *Emulator) Swipe(name string) error {
	c, err := e.cards.card(name)
	if err != nil {
		return err
	}
	if !c.magstripe {
		return fmt.Errorf("cardemu: card %q has no stripe", name)
	}
	t1, _ := EncodeTrack(1, c.track1)
	t2, _ := EncodeTrack(2, c.track2)
	var t3 []byte
	if c.spec.Track3 != "" {
		t3, _ = EncodeTrack(3, c.spec.Track3)
	}
	return e.SwipeRaw(t1, t2, t3)
}

// SwipeRaw reports a swipe with the given raw tracks (see EncodeTrack), for damaged stripes.
func (e *Emulator) SwipeRaw(t1, t2, t3 []byte) error {
	if len(t1) > 255 || len(t2) > 255 || len(t3) > 255 {
		return fmt.Errorf("cardemu: track longer than 255 characters")
	}
	return e.do(func() error {
		if e.enabled&wire.IfMagstripe == 0 {
			return ErrDisabled
		}
		var d []byte
		for _, t := range [][]byte{t1, t2, t3} {
			d = append(append(d, byte(len(t))), t...)
		}
		e.event(wire.EvtSwiped, d)
		return nil
	})
}

// do runs f in the loop goroutine.
func (e *Emulator) do(f func() error) error {
	res := make(chan error, 1)
	select {
	case e.actions <- func() { res <- f() }:
		return <-res
	case <-e.quit:
		return fmt.Errorf("cardemu: closed")
	}
}

// pump reads the emulator end of the line, following it across unplug and replug.
func (e *Emulator) pump(out chan<- []byte) {
	var cur *os.File
	for {
		select {
		case <-e.quit:
			return
		default:
		}
		f := e.line.Emulator()
		if f == nil || f == cur {
			// Unplugged, or the file we read failed and no new line came yet.
			select {
			case <-time.After(20 * time.Millisecond):
			case <-e.quit:
				return
			}
			continue
		}
		_ = f.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		buf := make([]byte, 512)
		n, err := f.Read(buf)
		if n > 0 {
			select {
			case out <- buf[:n]:
			case <-e.quit:
				return
			}
		}
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			cur = f
		}
	}
}

func (e *Emulator) run(in <-chan []byte) {
	defer close(e.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		e.flush()
		if next := e.nextDeadline(); next.IsZero() {
			timer.Stop()
		} else {
			timer.Reset(time.Until(next))
		}
		select {
		case <-e.quit:
			return
		case a := <-e.actions:
			a()
		case b := <-in:
			e.lastByte = time.Now()
			e.dec.Write(b)
			e.drain()
		case <-timer.C:
			e.tick(time.Now())
		}
	}
}

// reset forgets the link state after a replug; the cards stay where they are, unpowered.
func (e *Emulator) reset() {
	e.dec.Reset()
	e.queue, e.later, e.awaiting = nil, nil, false
	e.lastReq, e.lastResp, e.inFlight = nil, nil, false
	e.contact.sess, e.field.sess = nil, nil
}

func (e *Emulator) nextDeadline() time.Time {
	var next time.Time
	consider := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	if e.awaiting {
		consider(e.ackBy)
	}
	for _, s := range e.later {
		consider(s.at)
	}
	if e.dec.Pending() {
		consider(e.lastByte.Add(100 * time.Millisecond))
	}
	return next
}

func (e *Emulator) tick(now time.Time) {
	if e.dec.Pending() && !now.Before(e.lastByte.Add(100*time.Millisecond)) {
		if it, ok := e.dec.Expire(); ok {
			e.item(it)
		}
		e.drain()
	}
	kept := e.later[:0]
	for _, s := range e.later {
		if now.Before(s.at) {
			kept = append(kept, s)
			continue
		}
		e.queue = append(e.queue, outFrame{b: s.b, resp: true})
		e.inFlight = false
	}
	e.later = kept
	if e.awaiting && !now.Before(e.ackBy) {
		e.awaiting = false
		if e.queue[0].sends > e.opt.Retries {
			e.queue = e.queue[1:] // the host is not listening; give the frame up
		}
	}
}

// flush sends the head of the queue when nothing waits for an ACK.
func (e *Emulator) flush() {
	if e.awaiting || len(e.queue) == 0 {
		return
	}
	h := &e.queue[0]
	h.sends++
	e.send(h.b, true)
	e.awaiting = true
	e.ackBy = time.Now().Add(e.opt.AckTimeout)
}

func (e *Emulator) drain() {
	for {
		it, ok := e.dec.Next()
		if !ok {
			return
		}
		e.item(it)
	}
}

func (e *Emulator) item(it wire.Item) {
	f := e.Faults()
	if f.Silence {
		return
	}
	switch it.Kind {
	case wire.KindACK:
		if e.awaiting {
			e.awaiting = false
			e.queue = e.queue[1:]
		}
	case wire.KindNAK:
		if e.awaiting {
			e.awaiting = false // flush sends the head again
			if e.queue[0].sends > e.opt.Retries {
				e.queue = e.queue[1:]
			}
		}
	case wire.KindBad:
		e.send([]byte{wire.NAK}, false)
	case wire.KindFrame:
		if f.NAKStorm {
			e.send([]byte{wire.NAK}, false)
			return
		}
		e.send([]byte{wire.ACK}, false)
		e.request(it.Frame, f)
	}
}

func (e *Emulator) request(fr wire.Frame, f Faults) {
	if wire.IsEvent(fr.Type) || fr.Type&wire.Response != 0 {
		return // not a command: a confused host; the ACK is all it gets
	}
	sig := append([]byte{fr.Seq, fr.Type}, fr.Data...)
	if bytes.Equal(sig, e.lastReq) {
		// A retransmission: our ACK or response was lost. Answer again, do not redo.
		if !e.inFlight && !e.queued(e.lastResp) {
			e.queue = append(e.queue, outFrame{b: e.lastResp, resp: true})
		}
		return
	}
	// A new request means the host has our last response, whatever became of its ACK.
	if e.awaiting && e.queue[0].resp {
		e.awaiting = false
		e.queue = e.queue[1:]
	}
	e.mu.Lock()
	e.served++
	e.mu.Unlock()
	data := e.execute(fr.Type, fr.Data)
	resp := wire.AppendFrame(nil, wire.Frame{Seq: fr.Seq, Type: fr.Type | wire.Response, Data: data})
	e.lastReq, e.lastResp = sig, resp
	if f.Delay > 0 {
		e.inFlight = true
		e.later = append(e.later, scheduled{at: time.Now().Add(f.Delay), b: resp})
		return
	}
	e.queue = append(e.queue, outFrame{b: resp, resp: true})
}

func (e *Emulator) queued(b []byte) bool {
	for _, q := range e.queue {
		if bytes.Equal(q.b, b) {
			return true
		}
	}
	return false
}

func (e *Emulator) event(typ byte, data []byte) {
	if e.Faults().Silence {
		return
	}
	e.evSeq++
	e.queue = append(e.queue, outFrame{b: wire.AppendFrame(nil, wire.Frame{Seq: e.evSeq, Type: typ, Data: data})})
}

// send writes to the line, playing the faults; frame says b is a frame (not a control byte).
func (e *Emulator) send(b []byte, frame bool) {
	e.mu.Lock()
	f := e.faults
	damage := frame && f.damaging()
	if damage && f.Limit > 0 {
		e.damaged++
		if e.damaged >= f.Limit {
			e.faults.Truncate, e.faults.Corrupt, e.faults.BadChecksum = false, false, false
		}
	}
	e.mu.Unlock()
	if f.Silence {
		return
	}
	var out []byte
	if f.Noise {
		for range 1 + e.rng.IntN(8) {
			out = append(out, byte(e.rng.Uint32()))
		}
	}
	start := len(out)
	out = append(out, b...)
	if damage {
		fr := out[start:]
		switch {
		case f.Corrupt:
			fr[3+e.rng.IntN(len(fr)-wire.Overhead)] ^= 0x5A
		case f.BadChecksum:
			fr[len(fr)-1] ^= 0xFF
		}
		if f.Truncate {
			out = out[:start+1+e.rng.IntN(len(fr)-1)]
		}
	}
	file := e.line.Emulator()
	if file == nil {
		return
	}
	_ = file.SetWriteDeadline(time.Now().Add(time.Second))
	if _, err := file.Write(out); err != nil {
		e.log.Debug("card reader emulator write failed", "err", err)
	}
}

// execute carries out a command and returns the response data (status byte first).
func (e *Emulator) execute(cmd byte, d []byte) []byte {
	ok := func(b ...byte) []byte { return append([]byte{wire.StatusOK}, b...) }
	fail := func(st byte) []byte { return []byte{st} }
	switch cmd {
	case wire.CmdStatus:
		if len(d) != 0 {
			return fail(wire.StatusBadParameter)
		}
		var present, powered byte
		for _, s := range []struct {
			bit byte
			sl  *slot
		}{{wire.IfContact, &e.contact}, {wire.IfContactless, &e.field}} {
			if s.sl.card != nil {
				present |= s.bit
			}
			if s.sl.sess != nil {
				powered |= s.bit
			}
		}
		return ok(e.enabled, present, powered)
	case wire.CmdInfo:
		out := ok()
		for _, s := range []string{e.opt.Model, e.opt.Serial, e.opt.Firmware} {
			out = append(append(out, byte(len(s))), s...)
		}
		return out
	case wire.CmdEnable, wire.CmdDisable:
		if len(d) != 1 || d[0]&^(wire.IfMagstripe|wire.IfContact|wire.IfContactless) != 0 {
			return fail(wire.StatusBadParameter)
		}
		if cmd == wire.CmdEnable {
			e.enabled |= d[0]
		} else {
			e.enabled &^= d[0]
			if d[0]&wire.IfContactless != 0 {
				e.field = slot{} // the field goes off: the card in it is gone
			}
		}
		return ok(e.enabled)
	case wire.CmdPowerOn, wire.CmdAPDU, wire.CmdPowerOff:
		if len(d) < 1 || d[0] != wire.IfContact && d[0] != wire.IfContactless {
			return fail(wire.StatusBadParameter)
		}
		s, contactless := &e.contact, d[0] == wire.IfContactless
		if contactless {
			s = &e.field
		}
		switch {
		case e.enabled&d[0] == 0:
			return fail(wire.StatusDisabled)
		case cmd == wire.CmdPowerOff:
			s.sess = nil
			return ok()
		case s.card == nil:
			return fail(wire.StatusNoCard)
		case cmd == wire.CmdPowerOn:
			if len(d) != 1 {
				return fail(wire.StatusBadParameter)
			}
			if contactless && !s.card.cl || !contactless && !s.card.contact {
				// A card without a chip on this interface does not answer the reset.
				return fail(wire.StatusCardMute)
			}
			s.sess = newSession(s.card, contactless)
			atr := s.card.atr
			if contactless {
				atr, _ = unhex("atr", defaultCLATR)
			}
			return ok(atr...)
		case s.sess == nil:
			return fail(wire.StatusNotPowered)
		case len(d) < 5:
			return fail(wire.StatusBadParameter)
		}
		return ok(s.sess.apdu(d[1:])...)
	}
	return fail(wire.StatusUnknownCommand)
}
