package pinpad

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/posagent/posagent/drivers/serial"
)

// Options tune a Client. Zero values take the protocol's defaults (docs/pinpad-protocol.md,
// "Timing").
type Options struct {
	// AckTimeout is how long to wait for the ACK of a frame before sending it again (300 ms).
	AckTimeout time.Duration
	// Retries is how many times a frame is sent again after a NAK or a silence (3).
	// A negative value means none.
	Retries int
	// ResponseTimeout is how long the pad may take to answer an acknowledged command (2 s).
	// GET PIN may take its entry timeout on top.
	ResponseTimeout time.Duration
	// BaudRate, when known, adds each frame's transmission time to its ACK timeout.
	BaudRate int
	// EventBuffer is the capacity of the Events channel (16); when it is full the oldest
	// event is dropped.
	EventBuffer int
	// Logger; nil discards. Nothing secret is ever logged.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.AckTimeout <= 0 {
		o.AckTimeout = 300 * time.Millisecond
	}
	switch {
	case o.Retries == 0:
		o.Retries = 3
	case o.Retries < 0:
		o.Retries = 0
	}
	if o.ResponseTimeout <= 0 {
		o.ResponseTimeout = 2 * time.Second
	}
	if o.EventBuffer <= 0 {
		o.EventBuffer = 16
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// States of the pad as the client last saw it, for the hardware state in statistics.
const (
	StateUnknown  = "unknown"   // nothing exchanged yet
	StateReady    = "ready"     // the last exchange went through
	StatePINEntry = "pin-entry" // a GET PIN is pending
	StateNoAnswer = "no-answer" // the last exchange timed out or was refused
	StateGone     = "gone"      // the port reports the device gone
	StateClosed   = "closed"    // the client was closed
)

// Stats count what happened on the line since the client started.
type Stats struct {
	FramesSent, Retransmissions, FramesReceived uint64
	NAKsSent, NAKsReceived                      uint64
	BadFrames, GarbageBytes                     uint64
	Timeouts, EventsDropped                     uint64
}

// Client talks to one PIN pad. One goroutine owns the protocol and every write to the port;
// another only reads bytes into tokens. Calls are served one at a time in arrival order;
// Abort is served at once, even while another call is pending.
type Client struct {
	port serial.Port
	opt  Options
	log  *slog.Logger

	reqs   chan *request
	aborts chan chan error
	rx     chan token
	events chan Event
	quit   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup

	// session is set between a successful OpenSession and CloseSession: a pad that lost its
	// session (it restarted) is then opened again transparently.
	session atomic.Bool
	state   atomic.Value // string

	// Owned by the protocol goroutine.
	seq      byte
	lastSeq  byte
	lastCRC  uint16
	haveLast bool

	st struct {
		framesSent, retrans, framesRecv, naksSent, naksRecv atomic.Uint64
		bad, garbage, timeouts, evDropped                   atomic.Uint64
	}
}

type request struct {
	ctx     context.Context
	cmd     byte
	payload []byte
	wait    time.Duration // for the answer, once the command is acknowledged
	done    chan result
}

type result struct {
	data []byte
	err  error
}

// New starts a client on port, which it owns from now on: Close closes it.
func New(port serial.Port, o Options) *Client {
	o = o.withDefaults()
	c := &Client{
		port:   port,
		opt:    o,
		log:    o.Logger,
		reqs:   make(chan *request),
		aborts: make(chan chan error),
		rx:     make(chan token, 16),
		events: make(chan Event, o.EventBuffer),
		quit:   make(chan struct{}),
		// A random first number makes it unlikely that a restarted client's first frame looks
		// like a retransmission of its predecessor's last one.
		seq: seqMin + byte(rand.IntN(seqMax-seqMin+1)),
	}
	c.state.Store(StateUnknown)
	// A bounded read lets the reader notice Close on ports whose Close does not interrupt a
	// blocked Read; one wake-up a second costs nothing.
	_ = port.SetReadTimeout(time.Second)
	c.wg.Add(2)
	go c.pump()
	go c.loop()
	return c
}

// Close stops the client and closes the port. Pending calls return ErrClosed.
func (c *Client) Close() error {
	var err error
	c.once.Do(func() {
		close(c.quit)
		err = c.port.Close()
		c.wg.Wait()
		close(c.events)
		c.state.Store(StateClosed)
	})
	return err
}

// Events delivers unsolicited events (function keys, tamper). It is closed by Close.
func (c *Client) Events() <-chan Event { return c.events }

// State is one of the StateXxx values.
func (c *Client) State() string { return c.state.Load().(string) }

// Stats returns the line counters.
func (c *Client) Stats() Stats {
	return Stats{
		FramesSent: c.st.framesSent.Load(), Retransmissions: c.st.retrans.Load(),
		FramesReceived: c.st.framesRecv.Load(), NAKsSent: c.st.naksSent.Load(),
		NAKsReceived: c.st.naksRecv.Load(), BadFrames: c.st.bad.Load(),
		GarbageBytes: c.st.garbage.Load(), Timeouts: c.st.timeouts.Load(),
		EventsDropped: c.st.evDropped.Load(),
	}
}

// pump turns the port's bytes into tokens. It never writes.
func (c *Client) pump() {
	defer c.wg.Done()
	var d decoder
	buf := make([]byte, 512)
	backoff := 50 * time.Millisecond
	for {
		n, err := c.port.Read(buf)
		for _, b := range buf[:n] {
			if t, ok := d.feed(b); ok && !c.deliver(t) {
				return
			}
		}
		if d.skipped > 0 {
			c.st.garbage.Add(uint64(d.skipped))
			d.skipped = 0
		}
		if err == nil || errors.Is(err, serial.ErrTimeout) {
			backoff = 50 * time.Millisecond
			continue
		}
		select {
		case <-c.quit:
			return
		default:
		}
		d.reset()
		if !c.deliver(token{kind: tokErr, err: err}) {
			return
		}
		// The port may come back by itself (a reopening port): keep reading, slowly.
		select {
		case <-c.quit:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

func (c *Client) deliver(t token) bool {
	select {
	case c.rx <- t:
		return true
	case <-c.quit:
		return false
	}
}

// loop is the protocol goroutine.
func (c *Client) loop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.quit:
			return
		case r := <-c.reqs:
			res := c.exchange(r)
			r.done <- res
		case a := <-c.aborts:
			a <- c.abortIdle()
		case t := <-c.rx:
			c.idle(t)
		}
	}
}

// idle handles what the pad says between commands.
func (c *Client) idle(t token) {
	switch t.kind {
	case tokFrame:
		if p, ok := c.receive(t); ok {
			c.log.Debug("pinpad: late answer dropped", "command", cmdName(p[0]&^answerBit))
		}
	case tokBad:
		c.badFrame(t)
	case tokNAK:
		c.st.naksRecv.Add(1)
	case tokErr:
		c.portFailed(t.err)
	}
}

func (c *Client) portFailed(err error) {
	if c.State() != StateGone {
		c.log.Warn("pinpad: port failed", "err", err)
	}
	if serial.IsGone(err) {
		c.state.Store(StateGone)
	}
}

func (c *Client) badFrame(t token) {
	c.st.bad.Add(1)
	c.log.Debug("pinpad: damaged frame", "err", t.err)
	_ = c.write([]byte{nak})
	c.st.naksSent.Add(1)
}

// receive acknowledges a good frame and handles it. It reports an answer, which the caller
// matches against its pending command; a retransmitted frame (our ACK was lost) is dropped.
func (c *Client) receive(t token) ([]byte, bool) {
	c.st.framesRecv.Add(1)
	_ = c.write([]byte{ack, t.seq})
	if c.haveLast && t.seq == c.lastSeq && t.crc == c.lastCRC {
		return nil, false
	}
	c.lastSeq, c.lastCRC, c.haveLast = t.seq, t.crc, true
	p := t.payload
	switch {
	case len(p) >= 1 && p[0] == evtCode:
		ev, err := parseEvent(p)
		if err != nil {
			c.log.Debug("pinpad: event dropped", "err", err)
			return nil, false
		}
		c.emit(ev)
	case len(p) >= 3 && p[0]&answerBit != 0:
		return p, true
	default:
		c.log.Debug("pinpad: unexpected frame dropped", "len", len(p))
	}
	return nil, false
}

func (c *Client) emit(ev Event) {
	select {
	case c.events <- ev:
		return
	default:
	}
	select {
	case <-c.events:
		c.st.evDropped.Add(1)
	default:
	}
	select {
	case c.events <- ev:
	default:
		c.st.evDropped.Add(1)
	}
}

func (c *Client) write(p []byte) error {
	if _, err := c.port.Write(p); err != nil {
		return fmt.Errorf("pinpad: write: %w", err)
	}
	return nil
}

func (c *Client) ackTimeout(frameLen int) time.Duration {
	d := c.opt.AckTimeout
	if c.opt.BaudRate > 0 {
		d += time.Duration(frameLen) * 10 * time.Second / time.Duration(c.opt.BaudRate)
	}
	return d
}

// Phases of an exchange.
const (
	delivering = iota // the command is sent, its ACK awaited
	awaiting          // acknowledged; the answer awaited
	aborting          // CAN sent; the pending answer or EOT awaited
)

// exchange runs one command: send, retransmit on NAK or silence, await the answer, abort on
// request or when the caller's context ends.
func (c *Client) exchange(r *request) result {
	c.seq = nextSeq(c.seq)
	seq := c.seq
	name := cmdName(r.cmd)
	wire := appendFrame(nil, seq, r.payload)
	if r.cmd == cmdGetPIN {
		c.state.Store(StatePINEntry)
	}

	var (
		phase    = delivering
		sends    int
		cans     int
		lastNAK  bool
		badCRCs  int
		ctxErr   error
		ctxDone  = r.ctx.Done()
		waiters  []chan error
		timer    = time.NewTimer(time.Hour)
		ackAfter = c.ackTimeout(len(wire))
	)
	defer timer.Stop()

	// end settles the exchange and everyone who asked for an abort: the abort worked when
	// the pad answered it, whatever the answer.
	end := func(res result, abortOK bool) result {
		var aerr error
		if !abortOK {
			aerr = res.err
			if aerr == nil {
				aerr = fmt.Errorf("pinpad: ABORT: %w", ErrProtocol)
			}
		}
		for _, w := range waiters {
			w <- aerr
		}
		switch {
		case res.err == nil || errors.As(res.err, new(*StatusError)):
			c.state.Store(StateReady)
		case serial.IsGone(res.err):
			c.state.Store(StateGone)
		case errors.Is(res.err, ErrTimeout) || errors.Is(res.err, ErrNAK):
			c.state.Store(StateNoAnswer)
		default:
			c.state.Store(StateReady)
		}
		if ctxErr != nil {
			// The caller has gone already; what the pad said no longer matters.
			res = result{err: ctxErr}
		}
		return res
	}
	fail := func(err error) result { return end(result{err: err}, false) }
	send := func() error {
		if sends > 0 {
			c.st.retrans.Add(1)
			c.log.Debug("pinpad: retransmitting", "command", name, "nak", lastNAK)
		}
		sends++
		c.st.framesSent.Add(1)
		timer.Reset(ackAfter)
		return c.write(wire)
	}
	abort := func() error {
		phase = aborting
		cans++
		timer.Reset(c.opt.AckTimeout)
		return c.write([]byte{can})
	}
	timeout := func(what string) result {
		c.st.timeouts.Add(1)
		if badCRCs > 0 {
			return fail(fmt.Errorf("pinpad: %s: %s after %d damaged frames: %w: %w", name, what, badCRCs, ErrTimeout, ErrChecksum))
		}
		return fail(fmt.Errorf("pinpad: %s: %s: %w", name, what, ErrTimeout))
	}

	if err := send(); err != nil {
		return fail(err)
	}
	for {
		select {
		case <-c.quit:
			return fail(ErrClosed)

		case <-ctxDone:
			ctxDone = nil
			ctxErr = r.ctx.Err()
			if phase != aborting {
				if err := abort(); err != nil {
					return fail(err)
				}
			}

		case w := <-c.aborts:
			waiters = append(waiters, w)
			if phase != aborting {
				if err := abort(); err != nil {
					return fail(err)
				}
			}

		case <-timer.C:
			switch phase {
			case delivering:
				if sends > c.opt.Retries {
					if lastNAK {
						return fail(fmt.Errorf("pinpad: %s: %w %d times", name, ErrNAK, sends))
					}
					return timeout("no ACK")
				}
				lastNAK = false
				if err := send(); err != nil {
					return fail(err)
				}
			case awaiting:
				return timeout(fmt.Sprintf("no answer within %s", r.wait))
			case aborting:
				if cans > c.opt.Retries {
					return timeout("abort not confirmed")
				}
				cans++
				timer.Reset(c.opt.AckTimeout)
				if err := c.write([]byte{can}); err != nil {
					return fail(err)
				}
			}

		case t := <-c.rx:
			switch t.kind {
			case tokACK:
				if phase == delivering && t.seq == seq {
					phase = awaiting
					timer.Reset(r.wait)
				}
			case tokNAK:
				c.st.naksRecv.Add(1)
				if phase != delivering {
					break
				}
				lastNAK = true
				if sends > c.opt.Retries {
					return fail(fmt.Errorf("pinpad: %s: %w %d times", name, ErrNAK, sends))
				}
				if err := send(); err != nil {
					return fail(err)
				}
			case tokEOT:
				if phase == aborting {
					// The pad had nothing pending: the command never got there, or its
					// answer is already on its way and will be dropped as late.
					return end(result{err: fmt.Errorf("pinpad: %s: %w", name, ErrAborted)}, true)
				}
			case tokBad:
				if errors.Is(t.err, ErrChecksum) {
					badCRCs++
				}
				c.badFrame(t)
			case tokFrame:
				p, ok := c.receive(t)
				if !ok || p[1] != seq {
					if ok {
						c.log.Debug("pinpad: late answer dropped", "command", cmdName(p[0]&^answerBit))
					}
					break
				}
				// An answer also acknowledges the command whose ACK we missed.
				return end(c.answer(r.cmd, p), phase == aborting)
			case tokErr:
				c.portFailed(t.err)
				if serial.IsGone(t.err) {
					return fail(fmt.Errorf("pinpad: %s: %w", name, t.err))
				}
			}
		}
	}
}

// answer turns an answer payload into the command's result.
func (c *Client) answer(cmd byte, p []byte) result {
	name := cmdName(cmd)
	if p[0] != cmd|answerBit {
		return result{err: fmt.Errorf("pinpad: %s: %w: answer code %#02x", name, ErrProtocol, p[0])}
	}
	if st := Status(p[2]); st != StatusOK {
		return result{err: &StatusError{Command: name, Status: st}}
	}
	return result{data: p[3:]}
}

// abortIdle sends CAN with nothing pending here: the pad may still be busy with a command
// of a previous client. Any answer, or EOT, confirms.
func (c *Client) abortIdle() error {
	timer := time.NewTimer(c.opt.AckTimeout)
	defer timer.Stop()
	for cans := 1; ; {
		if err := c.write([]byte{can}); err != nil {
			return err
		}
		for waiting := true; waiting; {
			select {
			case <-c.quit:
				return ErrClosed
			case <-timer.C:
				waiting = false
			case t := <-c.rx:
				switch t.kind {
				case tokEOT:
					return nil
				case tokFrame:
					if _, ok := c.receive(t); ok {
						return nil
					}
				case tokBad:
					c.badFrame(t)
				case tokErr:
					c.portFailed(t.err)
					if serial.IsGone(t.err) {
						return fmt.Errorf("pinpad: ABORT: %w", t.err)
					}
				}
			}
		}
		if cans > c.opt.Retries {
			c.st.timeouts.Add(1)
			return fmt.Errorf("pinpad: ABORT: not confirmed: %w", ErrTimeout)
		}
		cans++
		timer.Reset(c.opt.AckTimeout)
	}
}

// do hands one command to the protocol goroutine and waits for its result. When ctx ends
// first, it returns at once; the protocol goroutine aborts the command on the line.
func (c *Client) do(ctx context.Context, payload []byte, wait time.Duration) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r := &request{ctx: ctx, cmd: payload[0], payload: payload, wait: wait, done: make(chan result, 1)}
	select {
	case c.reqs <- r:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.quit:
		return nil, ErrClosed
	}
	select {
	case res := <-r.done:
		return res.data, res.err
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.quit:
		return nil, ErrClosed
	}
}

// call is do, opening the session again when the pad lost it (it restarted) and the caller
// had one open.
func (c *Client) call(ctx context.Context, payload []byte, wait time.Duration) ([]byte, error) {
	data, err := c.do(ctx, payload, wait)
	if errors.Is(err, ErrNotOpen) && c.session.Load() {
		c.log.Info("pinpad: pad lost its session; opening it again")
		if _, oerr := c.do(ctx, []byte{cmdOpen}, c.opt.ResponseTimeout); oerr != nil {
			return nil, err
		}
		data, err = c.do(ctx, payload, wait)
	}
	return data, err
}
