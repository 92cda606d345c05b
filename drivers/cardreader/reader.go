// Package cardreader drives a combined card reader module — magnetic stripe, contact chip and
// contactless — over a serial port, with the framed protocol of docs/cardreader-protocol.md.
//
// One goroutine owns the protocol: requests are serialised, each retransmitted on NAK or
// silence and bounded by a timeout; unsolicited events (card inserted, removed, swiped,
// tapped) come out on a channel. Garbage on the line is skipped and the decoder
// resynchronises on the next frame. Swipes are parsed here (parity, sentinels, LRC, track
// layouts); chip cards are reached through ICC, an emv.Transport.
//
// Nothing here logs card data: PANs appear masked, track data and APDU contents never.
package cardreader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/posagent/posagent/drivers/cardreader/wire"
	"github.com/posagent/posagent/drivers/serial"
)

// Interface is a set of the reader's card interfaces.
type Interface uint8

// The interfaces.
const (
	Magstripe   Interface = wire.IfMagstripe
	Contact     Interface = wire.IfContact
	Contactless Interface = wire.IfContactless
	All                   = Magstripe | Contact | Contactless
)

func (i Interface) String() string {
	if i == 0 {
		return "none"
	}
	var parts []string
	for _, x := range []struct {
		bit  Interface
		name string
	}{{Magstripe, "magstripe"}, {Contact, "contact"}, {Contactless, "contactless"}} {
		if i&x.bit != 0 {
			parts = append(parts, x.name)
		}
	}
	if rest := i &^ All; rest != 0 {
		parts = append(parts, fmt.Sprintf("0x%02X", byte(rest)))
	}
	return strings.Join(parts, "|")
}

// Options tune the link. Zero values take the defaults.
type Options struct {
	Logger *slog.Logger
	// AckTimeout is how long to wait for ACK before sending the request again (250 ms).
	AckTimeout time.Duration
	// ResponseTimeout bounds the wait for the answer after the ACK for STATUS, INFO,
	// ENABLE, DISABLE and POWER OFF (1 s).
	ResponseTimeout time.Duration
	// CardTimeout bounds it for POWER ON and APDU, which wait for the card (5 s).
	CardTimeout time.Duration
	// Retries is how many times a request is sent again after NAK or no ACK (3).
	Retries int
	// FrameTimeout: a frame whose bytes stop coming for this long is dropped and NAKed
	// (100 ms).
	FrameTimeout time.Duration
	// EventBuffer is the capacity of the event channel (16); events beyond it are dropped
	// and counted.
	EventBuffer int
}

func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.AckTimeout, 250*time.Millisecond)
	def(&o.ResponseTimeout, time.Second)
	def(&o.CardTimeout, 5*time.Second)
	def(&o.FrameTimeout, 100*time.Millisecond)
	if o.Retries <= 0 {
		o.Retries = 3
	}
	if o.EventBuffer <= 0 {
		o.EventBuffer = 16
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// EventKind says what happened at the reader.
type EventKind int

// Event kinds.
const (
	CardInserted EventKind = iota + 1
	CardRemoved
	CardSwiped
	CardTapped
)

func (k EventKind) String() string {
	switch k {
	case CardInserted:
		return "inserted"
	case CardRemoved:
		return "removed"
	case CardSwiped:
		return "swiped"
	case CardTapped:
		return "tapped"
	}
	return fmt.Sprintf("event(%d)", int(k))
}

// Event is an unsolicited report of the reader.
type Event struct {
	Kind      EventKind
	Interface Interface // Contact or Contactless; Magstripe for a swipe
	Card      *Card     // swipe: the tracks that read (nil when none did)
	Err       error     // swipe: the tracks that failed; any kind: a malformed event
	UID       []byte    // tap: the contactless card's anticollision UID
}

// LogValue implements slog.LogValuer; the card inside is masked.
func (e Event) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("kind", e.Kind.String()), slog.String("interface", e.Interface.String())}
	if e.Card != nil {
		attrs = append(attrs, slog.Any("card", e.Card))
	}
	if e.Err != nil {
		attrs = append(attrs, slog.String("error", e.Err.Error()))
	}
	return slog.GroupValue(attrs...)
}

// Status is the reader's state.
type Status struct {
	Enabled Interface // interfaces reading cards
	Present Interface // Contact: a card in the slot; Contactless: a card in the field
	Powered Interface // interfaces whose card is powered
}

// Info identifies the reader.
type Info struct {
	Model, Serial, Firmware string
}

// Stats are the link counters since New.
type Stats struct {
	Requests        uint64 // requests sent (first transmissions)
	Retransmissions uint64
	NAKs            uint64 // NAKs received
	BadFrames       uint64 // frames received corrupted (NAKed)
	GarbageBytes    uint64 // bytes skipped between frames
	Timeouts        uint64 // requests that ended in ErrTimeout or ErrChecksum
	Stale           uint64 // answers to requests no longer waited for, and repeated events
	Events          uint64
	EventsDropped   uint64 // events lost because nobody read the channel
}

// Reader is a card reader on a serial port.
type Reader struct {
	port   serial.Port
	opt    Options
	log    *slog.Logger
	reqs   chan *call
	events chan Event
	quit   chan struct{}
	done   chan struct{} // the protocol goroutine has ended
	pumped chan struct{} // the read goroutine has ended
	once   sync.Once

	goneMu sync.Mutex
	gone   error

	requests, retransmissions, naks, badFrames, garbage, timeouts, stale, nEvents, dropped atomic.Uint64
}

type call struct {
	ctx     context.Context
	cmd     byte
	data    []byte
	timeout time.Duration
	done    chan result
}

type result struct {
	data []byte
	err  error
}

// New starts driving the reader on port. The Reader owns the port from now on and closes it
// in Close.
func New(port serial.Port, opt Options) *Reader {
	opt = opt.withDefaults()
	r := &Reader{
		port:   port,
		opt:    opt,
		log:    opt.Logger.With("device", "cardreader"),
		reqs:   make(chan *call),
		events: make(chan Event, opt.EventBuffer),
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
		pumped: make(chan struct{}),
	}
	// Whatever the reader said before we listened belongs to nobody.
	_ = port.ResetInputBuffer()
	in := make(chan chunk, 8)
	go r.pump(in)
	go r.run(in)
	return r
}

// Events delivers the reader's unsolicited events. It is closed by Close.
func (r *Reader) Events() <-chan Event { return r.events }

// Err is nil while the reader is reachable, and an error wrapping serial.ErrGone while its
// device is away.
func (r *Reader) Err() error {
	r.goneMu.Lock()
	defer r.goneMu.Unlock()
	return r.gone
}

func (r *Reader) setGone(err error) {
	r.goneMu.Lock()
	was := r.gone
	r.gone = err
	r.goneMu.Unlock()
	switch {
	case was == nil && err != nil:
		r.log.Warn("card reader gone", "err", err)
	case was != nil && err == nil:
		r.log.Info("card reader back")
	}
}

// Stats returns the link counters.
func (r *Reader) Stats() Stats {
	return Stats{
		Requests: r.requests.Load(), Retransmissions: r.retransmissions.Load(), NAKs: r.naks.Load(),
		BadFrames: r.badFrames.Load(), GarbageBytes: r.garbage.Load(), Timeouts: r.timeouts.Load(),
		Stale: r.stale.Load(), Events: r.nEvents.Load(), EventsDropped: r.dropped.Load(),
	}
}

// Close stops the driver, fails a request in progress with ErrClosed, closes the port and
// the event channel.
func (r *Reader) Close() error {
	var err error
	r.once.Do(func() {
		close(r.quit)
		err = r.port.Close()
		<-r.done
		<-r.pumped
		close(r.events)
	})
	return err
}

// Status asks for the reader's state.
func (r *Reader) Status(ctx context.Context) (Status, error) {
	d, err := r.do(ctx, wire.CmdStatus, nil, r.opt.ResponseTimeout)
	if err != nil {
		return Status{}, err
	}
	if len(d) != 3 {
		return Status{}, fmt.Errorf("%w: STATUS answer of %d bytes", ErrProtocol, len(d))
	}
	return Status{Enabled: Interface(d[0]), Present: Interface(d[1]), Powered: Interface(d[2])}, nil
}

// Info asks the reader who it is; the self-test uses it.
func (r *Reader) Info(ctx context.Context) (Info, error) {
	d, err := r.do(ctx, wire.CmdInfo, nil, r.opt.ResponseTimeout)
	if err != nil {
		return Info{}, err
	}
	var f [3]string
	for i := range f {
		if len(d) < 1 || len(d) < 1+int(d[0]) {
			return Info{}, fmt.Errorf("%w: INFO answer malformed", ErrProtocol)
		}
		f[i], d = string(d[1:1+int(d[0])]), d[1+int(d[0]):]
	}
	return Info{Model: f[0], Serial: f[1], Firmware: f[2]}, nil
}

// Enable turns on reading on the interfaces and returns the set now enabled.
func (r *Reader) Enable(ctx context.Context, i Interface) (Interface, error) {
	return r.mask(ctx, wire.CmdEnable, i)
}

// Disable turns off reading on the interfaces and returns the set still enabled.
func (r *Reader) Disable(ctx context.Context, i Interface) (Interface, error) {
	return r.mask(ctx, wire.CmdDisable, i)
}

func (r *Reader) mask(ctx context.Context, cmd byte, i Interface) (Interface, error) {
	if i&^All != 0 {
		return 0, fmt.Errorf("cardreader: unknown interface bits %s", i)
	}
	d, err := r.do(ctx, cmd, []byte{byte(i)}, r.opt.ResponseTimeout)
	if err != nil {
		return 0, err
	}
	if len(d) != 1 {
		return 0, fmt.Errorf("%w: %s answer of %d bytes", ErrProtocol, cmdName(cmd), len(d))
	}
	return Interface(d[0]), nil
}

func chip(i Interface) error {
	if i != Contact && i != Contactless {
		return fmt.Errorf("cardreader: %s is not a chip interface", i)
	}
	return nil
}

// PowerOn powers the card on a chip interface and returns its ATR (contact) or the ATR the
// reader builds from the card's ATS (contactless).
func (r *Reader) PowerOn(ctx context.Context, i Interface) ([]byte, error) {
	if err := chip(i); err != nil {
		return nil, err
	}
	d, err := r.do(ctx, wire.CmdPowerOn, []byte{byte(i)}, r.opt.CardTimeout)
	if err != nil {
		return nil, err
	}
	if len(d) < 2 || len(d) > 33 {
		return nil, fmt.Errorf("%w: ATR of %d bytes", ErrProtocol, len(d))
	}
	return d, nil
}

// Transmit sends a command APDU to the powered card on a chip interface and returns the
// response APDU, status word included.
func (r *Reader) Transmit(ctx context.Context, i Interface, apdu []byte) ([]byte, error) {
	if err := chip(i); err != nil {
		return nil, err
	}
	if len(apdu) < 4 || len(apdu) > 261 {
		return nil, fmt.Errorf("cardreader: APDU of %d bytes", len(apdu))
	}
	d, err := r.do(ctx, wire.CmdAPDU, append([]byte{byte(i)}, apdu...), r.opt.CardTimeout)
	if err != nil {
		return nil, err
	}
	if len(d) < 2 || len(d) > 258 {
		return nil, fmt.Errorf("%w: response APDU of %d bytes", ErrProtocol, len(d))
	}
	return d, nil
}

// PowerOff powers the card on a chip interface down.
func (r *Reader) PowerOff(ctx context.Context, i Interface) error {
	if err := chip(i); err != nil {
		return err
	}
	_, err := r.do(ctx, wire.CmdPowerOff, []byte{byte(i)}, r.opt.ResponseTimeout)
	return err
}

// ICC is a chip interface of the reader as an emv.Transport.
type ICC struct {
	r     *Reader
	iface Interface
}

// ICC returns the chip interface (Contact or Contactless) for the EMV reader.
func (r *Reader) ICC(i Interface) ICC { return ICC{r: r, iface: i} }

// Transmit implements emv.Transport.
func (c ICC) Transmit(ctx context.Context, apdu []byte) ([]byte, error) {
	return c.r.Transmit(ctx, c.iface, apdu)
}

func (r *Reader) do(ctx context.Context, cmd byte, data []byte, timeout time.Duration) ([]byte, error) {
	c := &call{ctx: ctx, cmd: cmd, data: data, timeout: timeout, done: make(chan result, 1)}
	select {
	case r.reqs <- c:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-r.quit:
		return nil, ErrClosed
	}
	res := <-c.done
	return res.data, res.err
}

func cmdName(cmd byte) string {
	switch cmd {
	case wire.CmdStatus:
		return "STATUS"
	case wire.CmdInfo:
		return "INFO"
	case wire.CmdEnable:
		return "ENABLE"
	case wire.CmdDisable:
		return "DISABLE"
	case wire.CmdPowerOn:
		return "POWER ON"
	case wire.CmdAPDU:
		return "APDU"
	case wire.CmdPowerOff:
		return "POWER OFF"
	}
	return fmt.Sprintf("command %02X", cmd)
}

// chunk is what the read goroutine hands over: bytes, or the port's failure, or word that a
// failed port reads again.
type chunk struct {
	b     []byte
	err   error
	alive bool
}

// pollInterval bounds each read so that Close is noticed even on a port whose Close does not
// interrupt a read; it costs a couple of wake-ups a second when idle.
const pollInterval = 500 * time.Millisecond

// pump reads the port and hands what it reads to the protocol goroutine. After a failure it
// keeps trying, slowly, so a port that reopens its device underneath comes back by itself.
func (r *Reader) pump(out chan<- chunk) {
	defer close(r.pumped)
	_ = r.port.SetReadTimeout(pollInterval)
	failed := false
	backoff := 50 * time.Millisecond
	send := func(c chunk) bool {
		select {
		case out <- c:
			return true
		case <-r.quit:
			return false
		}
	}
	buf := make([]byte, 256)
	for {
		n, err := r.port.Read(buf)
		select {
		case <-r.quit:
			return
		default:
		}
		if n > 0 || err == nil || errors.Is(err, serial.ErrTimeout) {
			if failed {
				failed, backoff = false, 50*time.Millisecond
				if !send(chunk{alive: true}) {
					return
				}
			}
			if n > 0 {
				if !send(chunk{b: buf[:n]}) {
					return
				}
				// The protocol goroutine owns what it was sent.
				buf = make([]byte, 256)
			}
			continue
		}
		if !serial.IsGone(err) {
			err = fmt.Errorf("%w: %w", serial.ErrGone, err)
		}
		if !failed {
			failed = true
			if !send(chunk{err: err}) {
				return
			}
		}
		select {
		case <-time.After(backoff):
		case <-r.quit:
			return
		}
		backoff = min(2*backoff, time.Second)
	}
}
