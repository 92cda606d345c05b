// Package pinpademu emulates a PIN pad on the far end of a pseudo-terminal: it speaks the
// framed protocol of docs/pinpad-protocol.md, keeps keys in a software secure element, builds
// ISO 9564 format 0 PIN blocks from a scripted cardholder, and misbehaves on demand (noise,
// cut and damaged frames, wrong checksums, NAK storms, silence, slow answers, unplugging).
//
// It is for the demo and for tests; the agent binary never links it.
package pinpademu

import (
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/posagent/posagent/board/sim/pty"
)

// DefaultTransportKey is the factory transport key when Options leave it out: the widely
// published TDES test key 0123456789ABCDEF FEDCBA9876543210 (KCV 08D7B4). An emulator only
// ever holds test keys.
var DefaultTransportKey = mustHex("0123456789ABCDEFFEDCBA9876543210")

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// Options configure an emulator.
type Options struct {
	// Dir and Name place the device path (Dir/Name) the driver opens. Name defaults to "pinpad".
	Dir, Name string
	// Identity reported by INFO.
	Model, Serial, Firmware string
	// TransportKey is the factory key that wraps KEKs: TDES of 8, 16 or 24 bytes, or AES of
	// 16, 24 or 32 bytes when TransportKeyAES is set (it then unwraps TR-31 key blocks only).
	TransportKey    []byte
	TransportKeyAES bool
	// KeyFile, when set, keeps the loaded keys across restarts (a 0600 file).
	KeyFile string
	// DefaultPIN is typed when a GET PIN finds the script empty; empty means the entry waits
	// for a scripted step, an abort or its timeout.
	DefaultPIN string
	// AckTimeout and Retries: the pad's side of the retransmission rules (300 ms, 3).
	AckTimeout time.Duration
	Retries    int
	// Seed makes noise and sequence numbers reproducible.
	Seed uint64
	// Logger; nil discards.
	Logger *slog.Logger
}

// Faults are the fault switches. For the counts, n > 0 affects the next n frames, a negative
// value every frame, 0 none.
type Faults struct {
	// Noise garbage bytes precede every frame the pad sends.
	Noise int
	// Truncate cuts frames the pad sends in the middle.
	Truncate int
	// Corrupt flips a bit in frames the pad sends (their CRC no longer matches).
	Corrupt int
	// BadCRC sends frames with a wrong checksum.
	BadCRC int
	// NAKStorm answers frames from the host with NAK and ignores them.
	NAKStorm int
	// Silent makes the pad deaf and mute: no ACK, NAK, answer or EOT.
	Silent bool
	// Slow delays every answer.
	Slow time.Duration
}

// Counters report what the pad saw and did.
type Counters struct {
	FramesIn, FramesOut, Retransmissions, GaveUp int64
	NAKsSent, NAKsReceived, BadFrames, Aborts    int64
	Duplicates                                   int64
}

// Key codes of the pad's function keys.
const (
	KeyConfirm byte = 0x01
	KeyCancel  byte = 0x02
	KeyClear   byte = 0x03
)

// Emulator is one emulated PIN pad.
type Emulator struct {
	opt  Options
	log  *slog.Logger
	line *pty.Line
	se   *secureElement

	mu      sync.Mutex
	script  []Entry
	faults  Faults
	lines   [2]string
	beeps   int
	rng     *rand.Rand
	sess    *session
	closed  bool
	wg      sync.WaitGroup
	counter struct {
		framesIn, framesOut, retrans, gaveUp, naksSent, naksRecv, bad, aborts, dups atomic.Int64
	}
}

// New starts an emulator whose device appears at Dir/Name.
func New(o Options) (*Emulator, error) {
	if o.Dir == "" {
		return nil, errors.New("pinpademu: Options.Dir is required")
	}
	if o.Name == "" {
		o.Name = "pinpad"
	}
	if o.Model == "" {
		o.Model = "SIM-PINPAD"
	}
	if o.Serial == "" {
		o.Serial = "PP00000001"
	}
	if o.Firmware == "" {
		o.Firmware = "1.0.0"
	}
	if o.TransportKey == nil {
		o.TransportKey = DefaultTransportKey
	}
	if o.AckTimeout <= 0 {
		o.AckTimeout = 300 * time.Millisecond
	}
	if o.Retries == 0 {
		o.Retries = 3
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.DefaultPIN != "" {
		if en, err := ParseEntry(o.DefaultPIN); err != nil || en.Outcome != EnterPIN {
			return nil, errors.New("pinpademu: DefaultPIN must be 4..12 digits")
		}
	}
	se, err := newSecureElement(o.TransportKey, o.TransportKeyAES, o.KeyFile)
	if err != nil {
		return nil, err
	}
	line, err := pty.Open(o.Dir, o.Name)
	if err != nil {
		return nil, err
	}
	e := &Emulator{opt: o, log: o.Logger, line: line, se: se, rng: rand.New(rand.NewPCG(o.Seed, 0x9E3779B97F4A7C15))}
	e.mu.Lock()
	err = e.start()
	e.mu.Unlock()
	if err != nil {
		_ = line.Close()
		return nil, err
	}
	return e, nil
}

// Path is the device path a driver opens.
func (e *Emulator) Path() string { return e.line.Path() }

// Close unplugs the pad for good and removes its device path.
func (e *Emulator) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.mu.Unlock()
	e.Unplug()
	return e.line.Close()
}

// Unplug pulls the cable: the driver's reads and writes fail.
func (e *Emulator) Unplug() {
	e.mu.Lock()
	s := e.sess
	e.sess = nil
	e.mu.Unlock()
	if s != nil {
		close(s.stop)
	}
	e.line.Unplug()
	e.wg.Wait()
}

// Replug brings the pad back under the same path, freshly powered: keys and script survive,
// the session does not.
func (e *Emulator) Replug() error {
	e.Unplug()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return errors.New("pinpademu: closed")
	}
	if err := e.line.Replug(); err != nil {
		return err
	}
	return e.start()
}

// start runs a session on the current line; e.mu is held.
func (e *Emulator) start() error {
	// The line's end is under Go's poller (board/sim/pty), so the line's Unplug interrupts the
	// session's Read.
	f := e.line.Emulator()
	if f == nil {
		return errors.New("pinpademu: line is unplugged")
	}
	s := &session{
		e:      e,
		f:      f,
		rx:     make(chan lineEvent, 16),
		stop:   make(chan struct{}),
		poke:   make(chan struct{}, 1),
		keys:   make(chan keyPress),
		tamper: make(chan struct{}, 1),
		seq:    firstSeq + byte(e.rng.IntN(lastSeq-firstSeq+1)),
	}
	e.sess = s
	e.wg.Add(2)
	go s.read()
	go s.run()
	return nil
}

// SetFaults replaces the fault switches.
func (e *Emulator) SetFaults(f Faults) {
	e.mu.Lock()
	e.faults = f
	e.mu.Unlock()
	e.poke()
}

// Faults are the switches as they are now (counts go down as frames use them).
func (e *Emulator) Faults() Faults {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.faults
}

// Display is what the pad's two lines show.
func (e *Emulator) Display() (string, string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lines[0], e.lines[1]
}

// Beeps counts the beeps sounded so far.
func (e *Emulator) Beeps() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.beeps
}

// Counters reports the pad's line counters.
func (e *Emulator) Counters() Counters {
	c := &e.counter
	return Counters{
		FramesIn: c.framesIn.Load(), FramesOut: c.framesOut.Load(), Retransmissions: c.retrans.Load(),
		GaveUp: c.gaveUp.Load(), NAKsSent: c.naksSent.Load(), NAKsReceived: c.naksRecv.Load(),
		BadFrames: c.bad.Load(), Aborts: c.aborts.Load(), Duplicates: c.dups.Load(),
	}
}

// Press presses a function key. Outside PIN entry an open pad reports it as an event; during
// PIN entry cancel cancels and confirm confirms an empty entry (a bypass).
func (e *Emulator) Press(key byte) {
	e.mu.Lock()
	s := e.sess
	e.mu.Unlock()
	if s == nil {
		return
	}
	// Wait until the pad has taken the key, so that what it means (event, cancel, nothing)
	// depends on the pad's state when Press was called, not on scheduling.
	done := make(chan struct{})
	select {
	case s.keys <- keyPress{key: key, done: done}:
	case <-s.stop:
		return
	}
	select {
	case <-done:
	case <-s.stop:
	}
}

type keyPress struct {
	key  byte
	done chan struct{}
}

// Tamper simulates a tamper response: every key, the transport key included, is zeroised and
// the pad reports it.
func (e *Emulator) Tamper() {
	e.se.erase(true)
	e.mu.Lock()
	s := e.sess
	e.mu.Unlock()
	if s != nil {
		select {
		case s.tamper <- struct{}{}:
		default:
		}
	}
}

// KCV is the check value of the key in slot, for tests; ok is false for an empty slot.
func (e *Emulator) KCV(slot int) (kcv [3]byte, ok bool) {
	ki, st := e.se.kcv(slot)
	return ki.kcv, st == stOK
}

func (e *Emulator) poke() {
	e.mu.Lock()
	s := e.sess
	e.mu.Unlock()
	if s != nil {
		select {
		case s.poke <- struct{}{}:
		default:
		}
	}
}

// takeFault consumes one use of a counted fault switch.
func takeFault(n *int) bool {
	switch {
	case *n > 0:
		*n--
		return true
	case *n < 0:
		return true
	}
	return false
}

func (e *Emulator) fault(pick func(*Faults) *int) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return takeFault(pick(&e.faults))
}

func (e *Emulator) snapshot() Faults {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.faults
}

func (e *Emulator) noise(n int) []byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(e.rng.Uint32())
	}
	return b
}

func (e *Emulator) setLines(l1, l2 string) {
	e.mu.Lock()
	e.lines = [2]string{l1, l2}
	e.mu.Unlock()
}

func (e *Emulator) String() string { return fmt.Sprintf("pinpademu(%s)", e.line.Path()) }
