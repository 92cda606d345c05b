package signal

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3/gpio"
)

// Status is what the status LEDs tell a person at a glance.
type Status int

// Statuses.
const (
	Off      Status = iota
	Online          // connected to the TMS: steady
	Offline         // no TMS link: slow blink
	Error           // a fault needs attention: fast blink (the red LED where there is one)
	Updating        // installing software, do not unplug: double blink, or green/red alternating
)

func (s Status) String() string {
	switch s {
	case Off:
		return "off"
	case Online:
		return "online"
	case Offline:
		return "offline"
	case Error:
		return "error"
	case Updating:
		return "updating"
	}
	return fmt.Sprintf("status(%d)", int(s))
}

func on(mask uint8, d time.Duration) Step { return Step{On: mask, For: d} }
func off(d time.Duration) Step            { return Step{For: d} }

// OneLEDPatterns are the patterns of a single status LED.
var OneLEDPatterns = map[Status]Pattern{
	Off:      {Steps: []Step{off(0)}, Repeat: true},
	Online:   {Steps: []Step{on(1, 0)}, Repeat: true},
	Offline:  {Steps: []Step{on(1, time.Second), off(time.Second)}, Repeat: true},
	Error:    {Steps: []Step{on(1, 150*time.Millisecond), off(150 * time.Millisecond)}, Repeat: true},
	Updating: {Steps: []Step{on(1, 120*time.Millisecond), off(120 * time.Millisecond), on(1, 120*time.Millisecond), off(640 * time.Millisecond)}, Repeat: true},
}

// TwoLEDPatterns are the patterns of a green (line 0) and a red (line 1) LED.
var TwoLEDPatterns = map[Status]Pattern{
	Off:      {Steps: []Step{off(0)}, Repeat: true},
	Online:   {Steps: []Step{on(1, 0)}, Repeat: true},
	Offline:  {Steps: []Step{on(1, time.Second), off(time.Second)}, Repeat: true},
	Error:    {Steps: []Step{on(2, 150*time.Millisecond), off(150 * time.Millisecond)}, Repeat: true},
	Updating: {Steps: []Step{on(1, 250*time.Millisecond), on(2, 250*time.Millisecond)}, Repeat: true},
}

// Indicator shows a Status on one or two LEDs.
type Indicator struct {
	player   *Player
	patterns map[Status]Pattern

	mu     sync.Mutex
	status Status
}

// IndicatorOptions tune an Indicator; the zero value is usable.
type IndicatorOptions struct {
	Clock clockwork.Clock // nil: the real clock
	// Patterns replaces the defaults (OneLEDPatterns or TwoLEDPatterns), e.g. for a model
	// whose manual gives its own; statuses missing from it show as Off.
	Patterns map[Status]Pattern
}

// NewIndicator drives leds: one status LED, or green then red. It starts Off.
func NewIndicator(o IndicatorOptions, leds ...gpio.PinOut) (*Indicator, error) {
	if len(leds) < 1 || len(leds) > 2 {
		return nil, fmt.Errorf("signal: %d status LEDs, want 1 or 2", len(leds))
	}
	pats := o.Patterns
	if pats == nil {
		pats = OneLEDPatterns
		if len(leds) == 2 {
			pats = TwoLEDPatterns
		}
	}
	for s, p := range pats {
		if err := p.Validate(len(leds)); err != nil {
			return nil, fmt.Errorf("%s: %w", s, err)
		}
	}
	pl, err := NewPlayer(o.Clock, leds...)
	if err != nil {
		return nil, err
	}
	return &Indicator{player: pl, patterns: pats}, nil
}

// Show switches to s. Showing the status already shown changes nothing, so a caller may
// repeat it freely without restarting the blink.
func (i *Indicator) Show(s Status) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if s == i.status {
		return nil
	}
	pat, ok := i.patterns[s]
	var err error
	if ok {
		err = i.player.Play(pat)
	} else {
		err = i.player.Off()
	}
	if err == nil {
		i.status = s
	}
	return err
}

// Status is the status shown.
func (i *Indicator) Status() Status {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.status
}

// Close turns the LEDs off.
func (i *Indicator) Close() error {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.status = Off
	return i.player.Off()
}

// Beeps of the buzzer.
var (
	Short  = Pattern{Steps: []Step{on(1, 100*time.Millisecond)}}
	Long   = Pattern{Steps: []Step{on(1, 600*time.Millisecond)}}
	Double = Pattern{Steps: []Step{on(1, 100*time.Millisecond), off(100 * time.Millisecond), on(1, 100*time.Millisecond)}}
	Alarm  = Pattern{Steps: []Step{on(1, 80*time.Millisecond), off(80 * time.Millisecond), on(1, 80*time.Millisecond), off(80 * time.Millisecond), on(1, 80*time.Millisecond)}}
)

// Buzzer beeps an active (self-oscillating) buzzer: the line switches it on and off. A
// passive piezo needs a PWM tone instead and is not handled here.
type Buzzer struct {
	player *Player
}

// NewBuzzer drives pin, silent at first. A nil clock is the real one.
func NewBuzzer(clock clockwork.Clock, pin gpio.PinOut) (*Buzzer, error) {
	pl, err := NewPlayer(clock, pin)
	if err != nil {
		return nil, err
	}
	return &Buzzer{player: pl}, nil
}

// Beep starts p, cutting short a beep still sounding, and returns at once. Patterns must
// end: a buzzer that never stops is a bug, not a signal.
func (b *Buzzer) Beep(p Pattern) error {
	if p.Repeat {
		return fmt.Errorf("signal: a beep must not repeat")
	}
	return b.player.Play(p)
}

// Wait returns when the last beep has ended, or with ctx's error.
func (b *Buzzer) Wait(ctx context.Context) error {
	select {
	case <-b.player.Done():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close silences the buzzer.
func (b *Buzzer) Close() error { return b.player.Off() }
