// Package signal drives the terminal's signalling outputs — status LEDs and the buzzer — with
// timed on/off patterns on periph output lines.
//
// Lines are logical: High means lit or sounding. A board whose LED is wired active-low hands
// out an inverted pin (board.ActiveLow), so nothing here knows about wiring. Time comes from
// an injected clock so tests step through a pattern without sleeping.
package signal

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3/gpio"
)

// MaxLines is how many lines one pattern can drive together.
const MaxLines = 8

// Step is one interval of a pattern: which lines are on (bit i for line i) and for how long.
type Step struct {
	On  uint8
	For time.Duration
}

// Pattern is a sequence of steps, played once or repeated until replaced. A single step
// with Repeat is a steady state (its duration does not matter).
type Pattern struct {
	Steps  []Step
	Repeat bool
}

// Validate checks p against the number of lines it will drive.
func (p Pattern) Validate(lines int) error {
	if len(p.Steps) == 0 {
		return errors.New("signal: pattern has no steps")
	}
	if p.steady() {
		return checkMask(p.Steps[0].On, lines)
	}
	for i, s := range p.Steps {
		if s.For <= 0 {
			return fmt.Errorf("signal: step %d lasts %v", i, s.For)
		}
		if err := checkMask(s.On, lines); err != nil {
			return err
		}
	}
	return nil
}

func checkMask(on uint8, lines int) error {
	if lines < MaxLines && on>>lines != 0 {
		return fmt.Errorf("signal: step turns on line %08b of %d", on, lines)
	}
	return nil
}

func (p Pattern) steady() bool { return p.Repeat && len(p.Steps) == 1 }

// Player plays patterns on a fixed set of output lines, one pattern at a time.
type Player struct {
	clock clockwork.Clock
	pins  []gpio.PinOut

	mu   sync.Mutex
	stop chan struct{} // closes to end the pattern being played
	done chan struct{} // closed when it has ended
}

// NewPlayer drives pins (1 to MaxLines) and turns them all off. A nil clock is the real one.
func NewPlayer(clock clockwork.Clock, pins ...gpio.PinOut) (*Player, error) {
	if len(pins) == 0 || len(pins) > MaxLines {
		return nil, fmt.Errorf("signal: %d lines, want 1 to %d", len(pins), MaxLines)
	}
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	p := &Player{clock: clock, pins: pins, done: make(chan struct{})}
	close(p.done)
	return p, p.set(0)
}

// Play replaces whatever is playing with pat. The first step is on the lines when Play
// returns; the rest follows in the background.
func (p *Player) Play(pat Pattern) error {
	if err := pat.Validate(len(p.pins)); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.halt()
	if err := p.set(pat.Steps[0].On); err != nil {
		return err
	}
	if pat.steady() {
		return nil
	}
	p.stop, p.done = make(chan struct{}), make(chan struct{})
	go p.run(pat, p.stop, p.done)
	return nil
}

// Off stops the pattern and turns every line off.
func (p *Player) Off() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.halt()
	return p.set(0)
}

// Done is closed when the pattern last started has ended (played once, replaced or
// stopped); a repeating pattern ends only when replaced.
func (p *Player) Done() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// halt ends the running pattern and waits for it; p.mu must be held.
func (p *Player) halt() {
	if p.stop != nil {
		close(p.stop)
		<-p.done
		p.stop = nil
	}
}

func (p *Player) run(pat Pattern, stop, done chan struct{}) {
	defer close(done)
	i := 0
	for {
		t := p.clock.NewTimer(pat.Steps[i].For)
		select {
		case <-stop:
			t.Stop()
			return
		case <-t.Chan():
		}
		i++
		if i == len(pat.Steps) {
			if !pat.Repeat {
				// A failed write here has no caller to tell; the next Play or Off tries again.
				_ = p.set(0)
				return
			}
			i = 0
		}
		_ = p.set(pat.Steps[i].On)
	}
}

func (p *Player) set(on uint8) error {
	var errs []error
	for i, pin := range p.pins {
		l := gpio.Low
		if on&(1<<i) != 0 {
			l = gpio.High
		}
		if err := pin.Out(l); err != nil {
			errs = append(errs, fmt.Errorf("signal: %s: %w", pin, err))
		}
	}
	return errors.Join(errs...)
}
