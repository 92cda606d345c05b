package cardreader

import (
	"bytes"
	"fmt"
	"time"

	"github.com/posagent/posagent/drivers/cardreader/wire"
	"github.com/posagent/posagent/drivers/serial"
)

// link is the protocol goroutine's state. Only run touches it.
type link struct {
	r        *Reader
	dec      wire.Decoder
	lastByte time.Time // when the bytes of a pending frame last grew
	seq      byte
	cur      *exchange
	// lastEvent is the last event frame delivered: the reader repeats an event whose ACK it
	// missed, and a repeat must not become a second swipe.
	lastEvent []byte
}

// exchange is the request in progress.
type exchange struct {
	c        *call
	seq      byte
	frame    []byte
	started  time.Time
	sent     int  // transmissions so far
	acked    bool // the reader said ACK (or answered, which implies it)
	deadline time.Time
	// why the last transmission failed, and whether corrupted frames came meanwhile.
	lastFail  error
	corrupted bool
}

func (r *Reader) run(in <-chan chunk) {
	defer close(r.done)
	l := &link{r: r, seq: byte(time.Now().UnixNano())}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := l.nextDeadline()
		if next.IsZero() {
			timer.Stop()
		} else {
			timer.Reset(time.Until(next))
		}
		var reqs chan *call
		var ctxDone <-chan struct{}
		if l.cur == nil {
			reqs = r.reqs
		} else {
			ctxDone = l.cur.c.ctx.Done()
		}
		select {
		case <-r.quit:
			if l.cur != nil {
				l.finish(nil, ErrClosed)
			}
			return
		case c := <-reqs:
			l.start(c)
		case ch := <-in:
			l.input(ch)
		case <-timer.C:
			l.expire(time.Now())
		case <-ctxDone:
			l.finish(nil, l.cur.c.ctx.Err())
		}
	}
}

func (l *link) nextDeadline() time.Time {
	var next time.Time
	if l.cur != nil {
		next = l.cur.deadline
	}
	if l.dec.Pending() {
		if t := l.lastByte.Add(l.r.opt.FrameTimeout); next.IsZero() || t.Before(next) {
			next = t
		}
	}
	return next
}

func (l *link) start(c *call) {
	if err := l.r.Err(); err != nil {
		c.done <- result{err: fmt.Errorf("cardreader: %s: %w", cmdName(c.cmd), err)}
		return
	}
	l.seq++
	l.cur = &exchange{
		c:       c,
		seq:     l.seq,
		frame:   wire.AppendFrame(nil, wire.Frame{Seq: l.seq, Type: c.cmd, Data: c.data}),
		started: time.Now(),
	}
	l.r.requests.Add(1)
	l.transmit()
}

// transmit sends (again) the request in progress and waits for its ACK.
func (l *link) transmit() {
	x := l.cur
	if x.sent > 0 {
		l.r.retransmissions.Add(1)
	}
	x.sent++
	x.acked = false
	x.deadline = time.Now().Add(l.r.opt.AckTimeout)
	if err := l.write(x.frame); err != nil {
		l.finish(nil, err)
	}
}

func (l *link) write(b []byte) error {
	if _, err := l.r.port.Write(b); err != nil {
		err = fmt.Errorf("cardreader: write: %w", err)
		if serial.IsGone(err) {
			l.r.setGone(err)
		}
		return err
	}
	return nil
}

// retry sends the request again after a NAK or a missed ACK, or gives up when the attempts
// are spent.
func (l *link) retry(why error) {
	x := l.cur
	x.lastFail = why
	if x.sent > l.r.opt.Retries {
		err := why
		if err == ErrTimeout && x.corrupted {
			err = ErrChecksum
		}
		if err != ErrNAK {
			l.r.timeouts.Add(1)
		}
		l.finish(nil, fmt.Errorf("%w (%s, %d attempts)", err, cmdName(x.c.cmd), x.sent))
		return
	}
	l.transmit()
}

func (l *link) finish(data []byte, err error) {
	x := l.cur
	l.cur = nil
	x.c.done <- result{data: data, err: err}
	l.r.log.Debug("card reader exchange", "cmd", cmdName(x.c.cmd), "attempts", x.sent,
		"took", time.Since(x.started), "err", err)
}

func (l *link) input(ch chunk) {
	switch {
	case ch.err != nil:
		l.r.setGone(ch.err)
		l.dec.Reset()
		if l.cur != nil {
			l.finish(nil, fmt.Errorf("cardreader: %s: %w", cmdName(l.cur.c.cmd), ch.err))
		}
		return
	case ch.alive:
		l.r.setGone(nil)
		return
	}
	l.r.setGone(nil)
	l.lastByte = time.Now()
	g := l.dec.Garbage()
	l.dec.Write(ch.b)
	for {
		it, ok := l.dec.Next()
		if !ok {
			break
		}
		l.item(it)
	}
	l.r.garbage.Add(uint64(l.dec.Garbage() - g))
}

func (l *link) expire(now time.Time) {
	if l.dec.Pending() && !now.Before(l.lastByte.Add(l.r.opt.FrameTimeout)) {
		if it, ok := l.dec.Expire(); ok {
			l.item(it)
		}
		g := l.dec.Garbage()
		for {
			it, ok := l.dec.Next()
			if !ok {
				break
			}
			l.item(it)
		}
		l.r.garbage.Add(uint64(l.dec.Garbage() - g))
	}
	if l.cur != nil && !now.Before(l.cur.deadline) {
		if l.cur.acked {
			// The reader took the request and never answered: sending it again would only
			// queue behind the same slow card.
			l.r.timeouts.Add(1)
			err := ErrTimeout
			if l.cur.corrupted {
				err = ErrChecksum
			}
			l.finish(nil, fmt.Errorf("%w (%s answer)", err, cmdName(l.cur.c.cmd)))
			return
		}
		l.retry(ErrTimeout)
	}
}

func (l *link) item(it wire.Item) {
	x := l.cur
	switch it.Kind {
	case wire.KindACK:
		if x != nil && !x.acked {
			x.acked = true
			x.deadline = time.Now().Add(x.c.timeout)
		}
	case wire.KindNAK:
		l.r.naks.Add(1)
		// After the ACK a NAK cannot be about our frame; it is noise.
		if x != nil && !x.acked {
			l.retry(ErrNAK)
		}
	case wire.KindBad:
		l.r.badFrames.Add(1)
		if x != nil {
			x.corrupted = true
		}
		_ = l.write([]byte{wire.NAK})
	case wire.KindFrame:
		l.frame(it.Frame)
	}
}

func (l *link) frame(f wire.Frame) {
	if wire.IsEvent(f.Type) {
		_ = l.write([]byte{wire.ACK})
		l.event(f)
		return
	}
	if f.Type&wire.Response == 0 {
		// A reader never sends commands; whatever this is, it is not for us.
		l.r.stale.Add(1)
		return
	}
	_ = l.write([]byte{wire.ACK})
	x := l.cur
	if x == nil || f.Seq != x.seq || f.Type != x.c.cmd|wire.Response {
		l.r.stale.Add(1)
		return
	}
	x.acked = true
	if len(f.Data) == 0 {
		l.finish(nil, fmt.Errorf("%w: %s answer without status", ErrProtocol, cmdName(x.c.cmd)))
		return
	}
	if f.Data[0] != wire.StatusOK {
		l.finish(nil, &StatusError{Cmd: cmdName(x.c.cmd), Code: f.Data[0]})
		return
	}
	l.finish(f.Data[1:], nil)
}

func (l *link) event(f wire.Frame) {
	sig := append([]byte{f.Seq, f.Type}, f.Data...)
	if bytes.Equal(sig, l.lastEvent) {
		l.r.stale.Add(1)
		return
	}
	l.lastEvent = sig
	ev := decodeEvent(f)
	l.r.nEvents.Add(1)
	l.r.log.Info("card reader event", "event", ev)
	select {
	case l.r.events <- ev:
	default:
		l.r.dropped.Add(1)
		l.r.log.Warn("card reader event dropped: nobody reads the events", "kind", ev.Kind.String())
	}
}

func decodeEvent(f wire.Frame) Event {
	d := f.Data
	bad := func(k EventKind) Event {
		return Event{Kind: k, Err: fmt.Errorf("%w: event %02X of %d bytes", ErrProtocol, f.Type, len(d))}
	}
	switch f.Type {
	case wire.EvtInserted, wire.EvtRemoved:
		k := CardInserted
		if f.Type == wire.EvtRemoved {
			k = CardRemoved
		}
		if len(d) != 1 {
			return bad(k)
		}
		return Event{Kind: k, Interface: Interface(d[0])}
	case wire.EvtTapped:
		if len(d) < 2 || len(d) != 2+int(d[1]) {
			return bad(CardTapped)
		}
		return Event{Kind: CardTapped, Interface: Interface(d[0]), UID: append([]byte(nil), d[2:]...)}
	case wire.EvtSwiped:
		var tracks [3][]byte
		for i := range tracks {
			if len(d) < 1 || len(d) < 1+int(d[0]) {
				return bad(CardSwiped)
			}
			tracks[i], d = d[1:1+int(d[0])], d[1+int(d[0]):]
		}
		if len(d) != 0 {
			return bad(CardSwiped)
		}
		card, err := ParseSwipe(tracks[0], tracks[1], tracks[2])
		return Event{Kind: CardSwiped, Interface: Magstripe, Card: card, Err: err}
	}
	return Event{Err: fmt.Errorf("%w: unknown event %02X", ErrProtocol, f.Type)}
}
