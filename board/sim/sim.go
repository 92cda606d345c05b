// Package sim is the simulated board: a terminal with no hardware attached, whose devices are
// fakes that tests and the demo control. Drivers use them exactly as they would use the real
// ones — the sensors are periph gpio.PinIO inputs — so the code above the board cannot tell.
//
// Devices so far: a dock-presence input and a paper-low input, and output lines for a green
// and a red status LED, the buzzer and the cash-drawer kick that remember what drivers did
// with them. More (printer, PIN pad, card reader emulators on pseudo-terminals) join as
// entries of the devices list and of the profile's serial devices.
package sim

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"

	"github.com/posagent/posagent/board"
)

// Name is the name the board is registered under.
const Name = "sim"

// Identity of the simulated terminal.
const (
	Vendor        = "posagent"
	Model         = "SIM-1"
	DefaultSerial = "SIM000001"
	Revision      = "1"
)

func init() {
	board.Register(Name, func(o board.Options) (board.Board, error) { return New(o), nil })
}

// Sensor names, as used in Devices and by the drivers that find a sensor by name.
const (
	SensorDock     = "dock"
	SensorPaperLow = "paper"
)

// Board is the simulated board.
type Board struct {
	id  board.Identity
	log *slog.Logger

	dock  *input
	paper *input

	green, red, buzzer, drawer *OutputPin

	serial []board.SerialDevice
}

// input is a simulated two-state sensor on a GPIO line.
type input struct {
	name string
	kind string
	pin  *Pin
	// states when the line is High and Low.
	high, low string
}

func (in *input) state() board.DeviceState {
	st := in.low
	if in.pin.Read() == gpio.High {
		st = in.high
	}
	return board.DeviceState{Name: in.name, Kind: in.kind, State: st}
}

// New opens the simulated board. Options.Serial overrides the serial number. It starts
// docked, with paper.
func New(o board.Options) *Board {
	serial := o.Serial
	if serial == "" {
		serial = DefaultSerial
	}
	b := &Board{
		id:  board.Identity{Vendor: Vendor, Model: Model, Serial: serial, Revision: Revision},
		log: o.Log().With("board", Name),
		// Levels follow the usual wiring: the dock contact pulls the line high when docked; the
		// paper sensor goes high when the roll runs low.
		dock:  &input{name: SensorDock, kind: board.KindSensor, pin: newPin("SIM_DOCK", 1, gpio.High), high: "docked", low: "undocked"},
		paper: &input{name: SensorPaperLow, kind: board.KindSensor, pin: newPin("SIM_PAPER_LOW", 2, gpio.Low), high: "low", low: board.StateOK},

		// The serial devices are emulators the demo or a test attached on pseudo-terminals;
		// their paths come from the agent's configuration.
		serial: profileSerial(o.Profile),

		green:  newOutput("SIM_LED_GREEN", 3),
		red:    newOutput("SIM_LED_RED", 4),
		buzzer: newOutput("SIM_BUZZER", 5),
		drawer: newOutput("SIM_DRAWER", 6),
	}
	return b
}

func profileSerial(p *board.Profile) []board.SerialDevice {
	if p == nil {
		return nil
	}
	return slices.Clone(p.Serial)
}

// Profile implements board.Board. The lines are active-high; the serial devices are the
// emulators named in Options.Profile.
func (b *Board) Profile() board.Profile {
	p := board.Profile{Name: Name, Vendor: Vendor, Model: Model, Serial: slices.Clone(b.serial)}
	for fn, pin := range b.pins() {
		p.GPIO = append(p.GPIO, board.GPIOLine{Function: fn, Chip: "sim", Name: pin.Name()})
	}
	slices.SortFunc(p.GPIO, func(a, b board.GPIOLine) int { return strings.Compare(a.Function, b.Function) })
	return p
}

func (b *Board) pins() map[string]gpio.PinIO {
	return map[string]gpio.PinIO{
		board.LineDock:      b.dock.pin,
		board.LinePaperLow:  b.paper.pin,
		board.LineStatusLED: b.green,
		board.LineErrorLED:  b.red,
		board.LineBuzzer:    b.buzzer,
		board.LineDrawer:    b.drawer,
	}
}

// Pin implements board.Board.
func (b *Board) Pin(function string) (gpio.PinIO, error) {
	if p, ok := b.pins()[function]; ok {
		return p, nil
	}
	return nil, fmt.Errorf("%w: %s", board.ErrNoLine, function)
}

// StatusLEDs are the green and red status LED lines.
func (b *Board) StatusLEDs() (green, red *OutputPin) { return b.green, b.red }

// Buzzer is the buzzer's line.
func (b *Board) Buzzer() *OutputPin { return b.buzzer }

// Drawer is the cash drawer's kick line.
func (b *Board) Drawer() *OutputPin { return b.drawer }

// Name implements board.Board.
func (b *Board) Name() string { return Name }

// Identity implements board.Board.
func (b *Board) Identity() board.Identity { return b.id }

// Devices implements board.Board.
func (b *Board) Devices() []board.DeviceState {
	return []board.DeviceState{b.dock.state(), b.paper.state()}
}

// Close implements board.Board. The pins stay readable: a driver shutting down after the
// board may still read them once.
func (b *Board) Close() error { return nil }

// DockPin is the dock-presence input: High when docked.
func (b *Board) DockPin() gpio.PinIO { return b.dock.pin }

// PaperLowPin is the paper-low input: High when the paper runs low.
func (b *Board) PaperLowPin() gpio.PinIO { return b.paper.pin }

// SetDocked simulates putting the terminal on (true) or taking it off its dock.
func (b *Board) SetDocked(docked bool) { b.flip(b.dock, docked) }

// SetPaperLow simulates the paper roll running low (true) or being replaced.
func (b *Board) SetPaperLow(low bool) { b.flip(b.paper, low) }

func (b *Board) flip(in *input, high bool) {
	l := gpio.Low
	if high {
		l = gpio.High
	}
	if in.pin.set(l) {
		b.log.Info("simulated input changed", "device", in.name, "state", in.state().State)
	}
}

// Pin is a simulated input line: a gpiotest.Pin whose level is set by the simulation, as a
// real sensor drives its line, rather than by the pull a driver configures.
type Pin struct {
	*gpiotest.Pin
}

// edgeBuffer is how many unconsumed edges a pin keeps; a driver that never waits for edges
// must not block the simulation.
const edgeBuffer = 16

func newPin(name string, num int, initial gpio.Level) *Pin {
	return &Pin{Pin: &gpiotest.Pin{
		N:         name,
		Num:       num,
		L:         initial,
		EdgesChan: make(chan gpio.Level, edgeBuffer),
	}}
}

// In implements gpio.PinIn. It records the pull but keeps the level, and drops edges queued
// before the call, as a real line does when edge detection is (re)armed.
func (p *Pin) In(pull gpio.Pull, _ gpio.Edge) error {
	p.Lock()
	p.P = pull
	p.Unlock()
	for {
		select {
		case <-p.EdgesChan:
		default:
			return nil
		}
	}
}

// Pull implements gpio.PinIn, under the lock In takes (gpiotest reads it without).
func (p *Pin) Pull() gpio.Pull {
	p.Lock()
	defer p.Unlock()
	return p.P
}

// DefaultPull implements gpio.PinIn.
func (p *Pin) DefaultPull() gpio.Pull { return p.Pull() }

// WaitForEdge implements gpio.PinIn. Unlike gpiotest, a negative timeout returns at once,
// matching the real driver's behaviour (see LIBRARY-NOTES), so code tested here behaves the
// same on hardware.
func (p *Pin) WaitForEdge(timeout time.Duration) bool {
	if timeout < 0 {
		return false
	}
	if timeout == 0 {
		<-p.EdgesChan
		return true
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.EdgesChan:
		return true
	case <-t.C:
		return false
	}
}

// set drives the line and queues an edge if the level changed; it reports whether it did.
func (p *Pin) set(l gpio.Level) bool {
	p.Lock()
	changed := p.L != l
	p.L = l
	p.Unlock()
	if changed {
		select {
		case p.EdgesChan <- l:
		default: // nobody is listening; the level is what counts
		}
	}
	return changed
}
