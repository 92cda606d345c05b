// Package drawer kicks the cash drawer: a pulse on the line of its solenoid.
//
// The line is logical (High energises the solenoid); a board wired active-low hands out an
// inverted pin. A solenoid held on for long overheats, so the pulse width is bounded, a
// pulse always ends (even when its context is cancelled), and a second kick while one is
// under way is refused rather than stretched into one long pulse.
package drawer

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3/gpio"
)

// Pulse widths accepted. Drawers commonly want 50–200 ms.
const (
	DefaultPulse = 100 * time.Millisecond
	MinPulse     = 10 * time.Millisecond
	MaxPulse     = time.Second
)

// ErrBusy is returned by Kick while a pulse is under way.
var ErrBusy = errors.New("drawer: a kick is under way")

// Options tune a Drawer; the zero value is usable.
type Options struct {
	Pulse time.Duration   // 0: DefaultPulse
	Clock clockwork.Clock // nil: the real clock
}

// Drawer is the cash drawer's kick line.
type Drawer struct {
	pin   gpio.PinOut
	pulse time.Duration
	clock clockwork.Clock
	busy  atomic.Bool
}

// New takes the kick line and drives it low.
func New(pin gpio.PinOut, o Options) (*Drawer, error) {
	if o.Pulse == 0 {
		o.Pulse = DefaultPulse
	}
	if o.Pulse < MinPulse || o.Pulse > MaxPulse {
		return nil, fmt.Errorf("drawer: pulse %v not in %v–%v", o.Pulse, MinPulse, MaxPulse)
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if err := pin.Out(gpio.Low); err != nil {
		return nil, fmt.Errorf("drawer: %s: %w", pin, err)
	}
	return &Drawer{pin: pin, pulse: o.Pulse, clock: o.Clock}, nil
}

// Kick energises the solenoid for the pulse width and returns when the line is low again.
// A cancelled ctx ends the pulse early and returns ctx's error.
func (d *Drawer) Kick(ctx context.Context) (err error) {
	if !d.busy.CompareAndSwap(false, true) {
		return ErrBusy
	}
	defer d.busy.Store(false)
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := d.pin.Out(gpio.High); err != nil {
		// It may have gone high all the same: make sure it does not stay there.
		return errors.Join(fmt.Errorf("drawer: %s: %w", d.pin, err), d.release())
	}
	t := d.clock.NewTimer(d.pulse)
	defer t.Stop()
	select {
	case <-t.Chan():
	case <-ctx.Done():
		err = ctx.Err()
	}
	return errors.Join(err, d.release())
}

func (d *Drawer) release() error {
	if err := d.pin.Out(gpio.Low); err != nil {
		return fmt.Errorf("drawer: %s: release: %w", d.pin, err)
	}
	return nil
}

// Pulse is the configured pulse width.
func (d *Drawer) Pulse() time.Duration { return d.pulse }
