package pinpademu

import (
	"os"
	"time"
	"unicode/utf8"
)

// Command codes as on the wire; an answer carries code|0x80.
const (
	cOpen     = 0x01
	cClose    = 0x02
	cInfo     = 0x03
	cDisplay  = 0x10
	cBeep     = 0x11
	cGetPIN   = 0x20
	cLoadKey  = 0x30
	cKCV      = 0x31
	cErase    = 0x32
	cLoadTR31 = 0x33
	cMAC      = 0x34

	// layout1: INFO and KEY CHECK VALUE with the algorithm byte.
	layout1 = 0x01

	eventCode = 0xC0
	evKey     = 0x01
	evTamper  = 0x02

	lineChars = 20
	idleText  = "WELCOME"
)

// session is the pad between a plug-in and an unplug. One goroutine (run) owns it; read only
// turns line bytes into events.
type session struct {
	e      *Emulator
	f      *os.File
	rx     chan lineEvent
	stop   chan struct{}
	poke   chan struct{}
	keys   chan keyPress
	tamper chan struct{}

	open     bool
	seq      byte
	lastSeq  byte
	lastCRC  uint16
	haveLast bool

	queue []outFrame // waiting to be sent, in order
	cur   *outFrame  // sent, its ACK awaited
	sends int

	pin *pinEntry
}

type outFrame struct {
	payload   []byte
	notBefore time.Time
	answer    bool // an answer to a command (not an event)
	seq       byte
}

type pinEntry struct {
	reqSeq   byte
	slot     int
	min, max int
	bypassOK bool
	pan      string
	deadline time.Time
	step     *Entry // nil: waiting for the script
	at       time.Time
}

func (s *session) read() {
	defer s.e.wg.Done()
	defer close(s.rx)
	var r reader
	buf := make([]byte, 512)
	for {
		n, err := s.f.Read(buf)
		for _, b := range buf[:n] {
			if ev, ok := r.push(b); ok {
				if ev.kind == evFrame {
					ev.payload = append([]byte(nil), ev.payload...)
				}
				select {
				case s.rx <- ev:
				case <-s.stop:
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}

func (s *session) run() {
	defer s.e.wg.Done()
	ackTimer := time.NewTimer(time.Hour)
	readyTimer := time.NewTimer(time.Hour)
	pinTimer := time.NewTimer(time.Hour)
	defer ackTimer.Stop()
	defer readyTimer.Stop()
	defer pinTimer.Stop()
	s.e.setLines(idleText, "")
	for {
		s.pump(ackTimer, readyTimer)
		s.armPIN(pinTimer)
		select {
		case <-s.stop:
			return
		case ev, ok := <-s.rx:
			if !ok {
				return
			}
			s.handle(ev, ackTimer)
		case <-ackTimer.C:
			if s.cur != nil {
				s.retransmit(ackTimer)
			}
		case <-readyTimer.C:
		case <-pinTimer.C:
			s.pinTimeUp()
		case k := <-s.keys:
			s.key(k.key)
			close(k.done)
		case <-s.tamper:
			s.send(outFrame{payload: []byte{eventCode, evTamper}})
		case <-s.poke:
			if s.pin != nil && s.pin.step == nil {
				s.takeStep()
			}
		}
	}
}

// pump starts sending the next queued frame when the line is free and its time has come.
func (s *session) pump(ackTimer, readyTimer *time.Timer) {
	if s.cur != nil || len(s.queue) == 0 {
		return
	}
	if wait := time.Until(s.queue[0].notBefore); wait > 0 {
		readyTimer.Reset(wait)
		return
	}
	fr := s.queue[0]
	s.queue = s.queue[1:]
	if s.seq >= lastSeq {
		s.seq = firstSeq
	} else {
		s.seq++
	}
	fr.seq = s.seq
	s.cur, s.sends = &fr, 0
	s.transmit(ackTimer)
}

// transmit writes the current frame, through whatever fault switches are on.
func (s *session) transmit(ackTimer *time.Timer) {
	e := s.e
	s.sends++
	e.counter.framesOut.Add(1)
	ackTimer.Reset(e.opt.AckTimeout)
	body := frameBody(s.cur.seq, s.cur.payload)
	if e.fault(func(f *Faults) *int { return &f.Corrupt }) {
		body[len(body)/2] ^= 0x01 // after the CRC was computed
	}
	if e.fault(func(f *Faults) *int { return &f.BadCRC }) {
		body[len(body)-1] ^= 0xFF
	}
	w := wire(body)
	if e.fault(func(f *Faults) *int { return &f.Truncate }) {
		w = w[:len(w)/2]
	}
	if n := e.snapshot().Noise; n > 0 {
		w = append(e.noise(n), w...)
	}
	s.write(w)
}

func (s *session) retransmit(ackTimer *time.Timer) {
	if s.sends > s.e.opt.Retries {
		s.e.counter.gaveUp.Add(1)
		s.e.log.Debug("pinpademu: gave up sending a frame")
		s.cur = nil
		ackTimer.Stop()
		return
	}
	s.e.counter.retrans.Add(1)
	s.transmit(ackTimer)
}

func (s *session) write(p []byte) {
	if s.e.snapshot().Silent {
		return
	}
	// A failed write means the line is gone; the reader sees it too and ends the session.
	_, _ = s.f.Write(p)
}

func (s *session) send(fr outFrame) { s.queue = append(s.queue, fr) }

func (s *session) answer(cmd, reqSeq, st byte, data ...byte) {
	p := append([]byte{cmd | 0x80, reqSeq, st}, data...)
	s.send(outFrame{payload: p, answer: true, notBefore: time.Now().Add(s.e.snapshot().Slow)})
}

func (s *session) handle(ev lineEvent, ackTimer *time.Timer) {
	e := s.e
	if e.snapshot().Silent {
		return
	}
	switch ev.kind {
	case evACK:
		if s.cur != nil && ev.seq == s.cur.seq {
			s.cur = nil
			ackTimer.Stop()
		}
	case evNAK:
		e.counter.naksRecv.Add(1)
		if s.cur != nil {
			s.retransmit(ackTimer)
		}
	case evCAN:
		s.abort()
	case evBad:
		e.counter.bad.Add(1)
		e.counter.naksSent.Add(1)
		s.write([]byte{bNAK})
	case evFrame:
		e.counter.framesIn.Add(1)
		if e.fault(func(f *Faults) *int { return &f.NAKStorm }) {
			e.counter.naksSent.Add(1)
			s.write([]byte{bNAK})
			return
		}
		s.write([]byte{bACK, ev.seq})
		p := ev.payload
		dup := s.haveLast && ev.seq == s.lastSeq && ev.crc == s.lastCRC
		s.lastSeq, s.lastCRC, s.haveLast = ev.seq, ev.crc, true
		// OPEN is carried out even when it looks repeated: it is harmless twice, and a host
		// that restarted may well reuse the number of its predecessor's last frame.
		if dup && !(len(p) > 0 && p[0] == cOpen) {
			e.counter.dups.Add(1)
			return
		}
		if len(p) == 0 {
			return
		}
		s.command(ev.seq, p)
	}
}

// abort handles CAN: the pending PIN entry ends with ABORTED; with nothing pending the pad
// says EOT, unless an answer is already on its way (that answer settles the host's wait).
func (s *session) abort() {
	s.e.counter.aborts.Add(1)
	if s.pin != nil {
		seq := s.pin.reqSeq
		s.endPIN()
		s.answer(cGetPIN, seq, stAborted)
		return
	}
	if s.cur != nil && s.cur.answer {
		return
	}
	for _, fr := range s.queue {
		if fr.answer {
			return
		}
	}
	s.write([]byte{bEOT})
}

func (s *session) key(k byte) {
	switch {
	case s.pin != nil && k == KeyCancel:
		s.pin.step, s.pin.at = &Entry{Outcome: Cancel}, time.Now()
	case s.pin != nil && k == KeyConfirm:
		s.pin.step, s.pin.at = &Entry{Outcome: Bypass}, time.Now()
	case s.pin == nil && s.open:
		s.send(outFrame{payload: []byte{eventCode, evKey, k}})
	}
}

func (s *session) command(seq byte, p []byte) {
	e := s.e
	cmd := p[0]
	if s.pin != nil {
		s.answer(cmd, seq, stBusy)
		return
	}
	switch cmd {
	case cOpen:
		s.open = true
		s.answer(cmd, seq, stOK)
		return
	case cClose:
		s.open = false
		e.setLines(idleText, "")
		s.answer(cmd, seq, stOK)
		return
	case cInfo:
		// No parameter: the original layout; 01: with each slot's algorithm.
		switch {
		case len(p) == 1:
			s.answer(cmd, seq, stOK, s.info(false)...)
		case len(p) == 2 && p[1] == layout1:
			s.answer(cmd, seq, stOK, s.info(true)...)
		default:
			s.answer(cmd, seq, stBadParameter)
		}
		return
	case cDisplay, cBeep, cGetPIN, cLoadKey, cKCV, cErase, cLoadTR31, cMAC:
		if !s.open {
			s.answer(cmd, seq, stNotOpen)
			return
		}
	default:
		s.answer(cmd, seq, stUnknownCommand)
		return
	}
	args := &args{p: p[1:]}
	switch cmd {
	case cDisplay:
		l1, l2 := args.text(), args.text()
		if !args.done() {
			s.answer(cmd, seq, stBadParameter)
			return
		}
		e.setLines(l1, l2)
		s.answer(cmd, seq, stOK)
	case cBeep:
		ms := int(args.u8())<<8 | int(args.u8())
		n := int(args.u8())
		if !args.done() || ms < 10 || ms > 2000 || n < 1 || n > 5 {
			s.answer(cmd, seq, stBadParameter)
			return
		}
		e.mu.Lock()
		e.beeps += n
		e.mu.Unlock()
		// The answer comes when the last beep has sounded.
		d := time.Duration(2*n-1) * time.Duration(ms) * time.Millisecond
		s.send(outFrame{payload: []byte{cmd | 0x80, seq, stOK}, answer: true, notBefore: time.Now().Add(d + e.snapshot().Slow)})
	case cGetPIN:
		s.getPIN(seq, args)
	case cLoadKey:
		slot, usage, parent := int(args.u8()), args.u8(), int(args.u8())
		enc := args.bytes(int(args.u8()))
		kcv := args.bytes(int(args.u8()))
		if !args.done() {
			s.answer(cmd, seq, stBadParameter)
			return
		}
		out, st := e.se.load(slot, usage, parent, enc, kcv)
		if st != stOK {
			s.answer(cmd, seq, st)
			return
		}
		s.answer(cmd, seq, stOK, out[:]...)
	case cKCV:
		slot := int(args.u8())
		withAlg := false
		if len(args.p) == 1 && args.p[0] == layout1 {
			withAlg = true
			args.u8()
		}
		if !args.done() {
			s.answer(cmd, seq, stBadParameter)
			return
		}
		ki, st := e.se.kcv(slot)
		if st != stOK {
			s.answer(cmd, seq, st)
			return
		}
		if withAlg {
			s.answer(cmd, seq, stOK, ki.usage, ki.alg, byte(ki.keyLen), ki.kcv[0], ki.kcv[1], ki.kcv[2])
			return
		}
		s.answer(cmd, seq, stOK, ki.usage, byte(ki.keyLen), ki.kcv[0], ki.kcv[1], ki.kcv[2])
	case cLoadTR31:
		slot, parent := int(args.u8()), int(args.u8())
		n := int(args.u8())<<8 | int(args.u8())
		block := args.bytes(n)
		if !args.done() || n == 0 {
			s.answer(cmd, seq, stBadParameter)
			return
		}
		r, st := e.se.loadBlock(slot, parent, string(block))
		if st != stOK {
			s.answer(cmd, seq, st)
			return
		}
		s.answer(cmd, seq, stOK, r.usage, r.alg, r.kcv[0], r.kcv[1], r.kcv[2])
	case cMAC:
		slot, alg := int(args.u8()), args.u8()
		n := int(args.u8())<<8 | int(args.u8())
		data := args.bytes(n)
		if !args.done() {
			s.answer(cmd, seq, stBadParameter)
			return
		}
		out, st := e.se.mac(slot, alg, data)
		if st != stOK {
			s.answer(cmd, seq, st)
			return
		}
		s.answer(cmd, seq, stOK, out...)
	case cErase:
		scope := args.u8()
		if !args.done() || scope > 1 {
			s.answer(cmd, seq, stBadParameter)
			return
		}
		s.answer(cmd, seq, e.se.erase(scope == 1))
	}
}

func (s *session) info(withAlg bool) []byte {
	o := s.e.opt
	var p []byte
	for _, t := range []string{o.Model, o.Serial, o.Firmware} {
		p = append(p, byte(len(t)))
		p = append(p, t...)
	}
	slots := s.e.se.info()
	p = append(p, byte(len(slots)))
	for _, sl := range slots {
		if withAlg {
			p = append(p, sl.slot, sl.usage, sl.alg, byte(sl.keyLen))
			continue
		}
		p = append(p, sl.slot, sl.usage, byte(sl.keyLen))
	}
	return p
}

func (s *session) getPIN(seq byte, a *args) {
	slot, lo, hi, secs, flags := int(a.u8()), int(a.u8()), int(a.u8()), int(a.u8()), a.u8()
	pan := string(a.bytes(int(a.u8())))
	prompt := a.text()
	if !a.done() || lo < 4 || hi > 12 || lo > hi || secs < 1 || flags&^0x01 != 0 || !digits(pan) || len(pan) < 13 || len(pan) > 19 {
		s.answer(cGetPIN, seq, stBadParameter)
		return
	}
	if st := s.e.se.pinKey(slot); st != stOK {
		s.answer(cGetPIN, seq, st)
		return
	}
	if prompt == "" {
		prompt = "ENTER PIN"
	}
	s.e.setLines(prompt, "")
	s.pin = &pinEntry{reqSeq: seq, slot: slot, min: lo, max: hi, bypassOK: flags&0x01 != 0, pan: pan,
		deadline: time.Now().Add(time.Duration(secs) * time.Second)}
	s.takeStep()
}

// takeStep gives the pending entry its next scripted step, if there is one.
func (s *session) takeStep() {
	st, ok := s.e.nextStep()
	if !ok {
		return
	}
	s.pin.step, s.pin.at = &st, time.Now().Add(st.Delay)
}

// armPIN points the PIN timer at the next moment the entry changes.
func (s *session) armPIN(t *time.Timer) {
	if s.pin == nil {
		t.Stop()
		return
	}
	at := s.pin.deadline
	if s.pin.step != nil && s.pin.at.Before(at) {
		at = s.pin.at
	}
	t.Reset(time.Until(at))
}

func (s *session) pinTimeUp() {
	p := s.pin
	if p == nil {
		return
	}
	now := time.Now()
	if p.step == nil || p.at.After(p.deadline) {
		if now.Before(p.deadline) {
			return
		}
		s.finishPIN(stEntryTimeout)
		return
	}
	if now.Before(p.at) {
		return
	}
	switch p.step.Outcome {
	case Cancel:
		s.finishPIN(stCancelled)
	case TimeOut:
		s.finishPIN(stEntryTimeout)
	case Bypass:
		if p.bypassOK {
			s.finishPIN(stBypassed)
		} else {
			s.finishPIN(stBypassNotAllowed)
		}
	case EnterPIN:
		pin := []byte(p.step.PIN)
		p.step.PIN = ""
		if len(pin) < p.min {
			// The pad refuses confirm on a short PIN; this cardholder gives up.
			clear(pin)
			p.step = nil
			return
		}
		if len(pin) > p.max {
			pin = pin[:p.max] // keys beyond the maximum are ignored
		}
		blk, st := s.e.se.pinBlock(p.slot, pin, p.pan)
		clear(pin)
		seq := p.reqSeq
		s.endPIN()
		if st != stOK {
			s.answer(cGetPIN, seq, st)
			return
		}
		s.answer(cGetPIN, seq, stOK, blk[:]...)
	}
}

func (s *session) finishPIN(st byte) {
	seq := s.pin.reqSeq
	s.endPIN()
	s.answer(cGetPIN, seq, st)
}

func (s *session) endPIN() {
	s.pin = nil
	s.e.setLines(idleText, "")
}

// args reads a command's parameters; a shortfall sticks and done reports it.
type args struct {
	p   []byte
	bad bool
}

func (a *args) u8() byte {
	if len(a.p) < 1 {
		a.bad = true
		return 0
	}
	b := a.p[0]
	a.p = a.p[1:]
	return b
}

func (a *args) bytes(n int) []byte {
	if len(a.p) < n {
		a.bad = true
		return nil
	}
	b := a.p[:n]
	a.p = a.p[n:]
	return b
}

func (a *args) text() string {
	t := a.bytes(int(a.u8()))
	if !utf8.Valid(t) || utf8.RuneCount(t) > lineChars {
		a.bad = true
	}
	return string(t)
}

func (a *args) done() bool { return !a.bad && len(a.p) == 0 }

func digits(s string) bool {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
