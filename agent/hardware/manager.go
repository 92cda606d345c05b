// Package hardware attaches the terminal's peripherals to the agent: it reads the board's
// profile, opens each serial device on a reconnecting port with its driver, watches the
// GPIO inputs (dock, paper low), drives the status LED and the buzzer, reports every
// device's state for statistics and runs the self-test.
//
// Devices missing from the profile are simply absent. Nothing secret (PINs, keys, PANs)
// reaches logs or events from here: the drivers never hand such things out, and the
// self-test reports identities and key check values only.
package hardware

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/posagent/posagent/agent/spool"
	"github.com/posagent/posagent/board"
	"github.com/posagent/posagent/drivers/cardreader"
	"github.com/posagent/posagent/drivers/escpos"
	gpioinput "github.com/posagent/posagent/drivers/gpio/input"
	"github.com/posagent/posagent/drivers/gpio/signal"
	"github.com/posagent/posagent/drivers/pinpad"
	"github.com/posagent/posagent/drivers/serial"
)

// Event kinds queued on up/event.
const (
	EventDeviceGone  = "device.gone"  // {device, kind}
	EventDeviceBack  = "device.back"  // {device, kind}
	EventDockChanged = "dock.changed" // {docked}
	EventPaperLow    = "paper.low"    // {low}
)

// Device states beyond board's common ones.
const (
	StateGone  = "gone"
	StateError = "error"
)

// DefaultStatusPoll is how often the status LED follows the TMS link.
const DefaultStatusPoll = 3 * time.Second

// Options configure a Manager.
type Options struct {
	Board board.Board
	// Backoff is the wait before reopen attempt n of a serial device (the agent's policy).
	Backoff func(attempt int) time.Duration
	// Event queues an up/event record; nil drops events.
	Event func(ctx context.Context, kind string, body map[string]any)
	// Online reports whether the TMS link is connected, for the status LED; nil: never.
	Online func() bool
	// StatusPoll is how often the status LED is brought up to date; 0: DefaultStatusPoll.
	StatusPoll time.Duration
	// PortCheck is how often an idle serial device file is looked at (serial.ReopenOptions.Check).
	PortCheck time.Duration
	// Driver options; their loggers default to Logger.
	PINPad     pinpad.Options
	CardReader cardreader.Options
	// OnPadEvent receives the PIN pad's events (function keys, tamper) while Run runs; nil
	// drops them. It must not block for long: the driver drops the oldest event when full.
	OnPadEvent func(pinpad.Event)
	// Spool configures the printer's queue; Printer, Event and Logger are set here.
	Spool  spool.Options
	Logger *slog.Logger
}

// Manager owns the peripherals while Run runs.
type Manager struct {
	o   Options
	log *slog.Logger

	mu      sync.Mutex
	running bool
	serial  []*serialDevice
	ind     *signal.Indicator
	buzzer  *signal.Buzzer

	ledMu  sync.Mutex // the status loop and the self-test take turns on the LEDs
	testMu sync.Mutex // one self-test at a time

	ready     chan struct{} // closed once Run has set the devices up
	readyOnce sync.Once
}

// serialDevice is one serial device of the profile and its driver.
type serialDevice struct {
	dev     board.SerialDevice
	port    *serial.Reconnecting // nil when the configuration is invalid or no driver owns it
	pad     *pinpad.Client
	reader  *cardreader.Reader
	printer *escpos.Printer
	spool   *spool.Spooler // the printer's queue
	err     error          // why the device could not be set up
}

// New creates a manager; nothing is opened before Run.
func New(o Options) *Manager {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.StatusPoll <= 0 {
		o.StatusPoll = DefaultStatusPoll
	}
	if o.PINPad.Logger == nil {
		o.PINPad.Logger = o.Logger.With("device", board.KindPINPad)
	}
	if o.CardReader.Logger == nil {
		o.CardReader.Logger = o.Logger.With("device", board.KindCardReader)
	}
	return &Manager{o: o, log: o.Logger.With("svc", "hardware"), ready: make(chan struct{})}
}

// Ready is closed once Run has set every device up (serial ports keep reopening in the
// background), so a self-test started after it sees them all.
func (m *Manager) Ready() <-chan struct{} { return m.ready }

// ErrRunning is returned by Run when the manager runs already.
var ErrRunning = errors.New("hardware: already running")

// Run opens every device of the profile and keeps them until ctx ends, then closes them.
func (m *Manager) Run(ctx context.Context) error {
	m.mu.Lock()
	if m.running {
		m.mu.Unlock()
		return ErrRunning
	}
	m.running = true
	prof := m.o.Board.Profile()
	for _, d := range prof.Serial {
		m.serial = append(m.serial, m.openSerial(ctx, d))
	}
	m.ind, m.buzzer = m.openOutputs(prof)
	m.mu.Unlock()
	m.readyOnce.Do(func() { close(m.ready) })

	inputs := m.watchInputs(ctx, prof)

	var wg sync.WaitGroup
	if m.ind != nil {
		wg.Go(func() { m.followLink(ctx) })
	}
	for _, d := range m.serial {
		if d.spool != nil {
			wg.Go(func() { _ = d.spool.Run(ctx) })
		}
		if d.pad != nil && m.o.OnPadEvent != nil {
			wg.Go(func() { m.padEvents(ctx, d.pad) })
		}
	}
	<-ctx.Done()
	wg.Wait()
	for _, in := range inputs {
		<-in.Done()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, d := range m.serial {
		d.close()
	}
	if m.ind != nil {
		_ = m.ind.Close()
	}
	if m.buzzer != nil {
		_ = m.buzzer.Close()
	}
	m.serial, m.ind, m.buzzer, m.running = nil, nil, nil, false
	return nil
}

func (m *Manager) openSerial(ctx context.Context, d board.SerialDevice) *serialDevice {
	sd := &serialDevice{dev: d}
	port, err := serial.Reopen(ctx, d.Port, serial.ReopenOptions{
		Backoff: m.o.Backoff,
		Check:   m.o.PortCheck,
		OnChange: func(e serial.Event) {
			kind := EventDeviceBack
			if e.State == serial.StateGone {
				kind = EventDeviceGone
				m.log.Warn("device gone", "device", d.Name, "err", e.Err)
			} else {
				m.log.Info("device back", "device", d.Name, "attempts", e.Attempts)
			}
			m.event(ctx, kind, map[string]any{"device": d.Name, "kind": d.Kind})
		},
	})
	if err != nil {
		m.log.Error("serial device not set up", "device", d.Name, "err", err)
		sd.err = err
		return sd
	}
	sd.port = port
	switch d.Kind {
	case board.KindPINPad:
		o := m.o.PINPad
		if o.BaudRate == 0 {
			o.BaudRate = d.Port.Baud
		}
		sd.pad = pinpad.New(port, o)
	case board.KindCardReader:
		sd.reader = cardreader.New(port, m.o.CardReader)
	case board.KindPrinter:
		// Flow control is the driver's: it paces writes to the baud and reads XON/XOFF
		// itself, because it must still send status requests while the printer holds off.
		pr, err := escpos.New(port, escpos.Options{Model: printerModel(m.o.Board.Profile().Printer),
			Baud: d.Port.Baud, Logger: m.log.With("device", d.Name)})
		if err != nil {
			_ = port.Close()
			sd.port, sd.err = nil, err
			return sd
		}
		sd.printer = pr
		so := m.o.Spool
		so.Printer, so.Event, so.Logger = pr, m.o.Event, m.log.With("device", d.Name)
		sd.spool = spool.New(so)
	}
	return sd
}

// printerModel picks the ESC/POS model of the profile's printer: paper width decides between
// the generic 58 mm and 80 mm models until model-specific tables are confirmed on hardware.
func printerModel(p *board.Printer) escpos.Model {
	if p != nil && p.WidthDots >= escpos.Generic80.Dots {
		return escpos.Generic80
	}
	return escpos.Generic58
}

func (d *serialDevice) close() {
	switch {
	case d.pad != nil:
		_ = d.pad.Close()
	case d.reader != nil:
		_ = d.reader.Close()
	case d.port != nil:
		_ = d.port.Close()
	}
}

// padEvents hands the PIN pad's events on until ctx ends.
func (m *Manager) padEvents(ctx context.Context, pad *pinpad.Client) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-pad.Events():
			if !ok {
				return
			}
			m.o.OnPadEvent(ev)
		}
	}
}

func (m *Manager) event(ctx context.Context, kind string, body map[string]any) {
	if m.o.Event != nil {
		m.o.Event(ctx, kind, body)
	}
}

// openOutputs takes the status LEDs and the buzzer the profile has.
func (m *Manager) openOutputs(prof board.Profile) (*signal.Indicator, *signal.Buzzer) {
	var ind *signal.Indicator
	if _, ok := prof.Line(board.LineStatusLED); ok {
		if green, err := m.o.Board.Pin(board.LineStatusLED); err != nil {
			m.log.Error("status LED", "err", err)
		} else {
			outs := []gpio.PinOut{green}
			if _, ok := prof.Line(board.LineErrorLED); ok {
				if red, err := m.o.Board.Pin(board.LineErrorLED); err == nil {
					outs = append(outs, red)
				} else {
					m.log.Error("error LED", "err", err)
				}
			}
			if ind, err = signal.NewIndicator(signal.IndicatorOptions{}, outs...); err != nil {
				m.log.Error("status LED", "err", err)
				ind = nil
			}
		}
	}
	var bz *signal.Buzzer
	if _, ok := prof.Line(board.LineBuzzer); ok {
		pin, err := m.o.Board.Pin(board.LineBuzzer)
		if err == nil {
			bz, err = signal.NewBuzzer(nil, pin)
		}
		if err != nil {
			m.log.Error("buzzer", "err", err)
			bz = nil
		}
	}
	return ind, bz
}

// watchInputs starts the dock and paper-low watchers; they stop when ctx ends.
func (m *Manager) watchInputs(ctx context.Context, prof board.Profile) []*gpioinput.Input {
	var out []*gpioinput.Input
	for _, w := range []struct{ line, event, field string }{
		{board.LineDock, EventDockChanged, "docked"},
		{board.LinePaperLow, EventPaperLow, "low"},
	} {
		if _, ok := prof.Line(w.line); !ok {
			continue
		}
		pin, err := m.o.Board.Pin(w.line)
		if err != nil {
			m.log.Error("input line", "line", w.line, "err", err)
			continue
		}
		in, err := gpioinput.Watch(ctx, pin, gpioinput.Options{Name: w.line, OnChange: func(e gpioinput.Event) {
			if e.Initial {
				return
			}
			m.log.Info("input changed", "line", w.line, "active", e.Active)
			m.event(ctx, w.event, map[string]any{w.field: e.Active})
		}})
		if err != nil {
			m.log.Error("input line", "line", w.line, "err", err)
			continue
		}
		out = append(out, in)
	}
	return out
}

// followLink keeps the status LED on online, offline or error.
func (m *Manager) followLink(ctx context.Context) {
	t := time.NewTicker(m.o.StatusPoll)
	defer t.Stop()
	for {
		m.showStatus()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (m *Manager) status() signal.Status {
	for _, d := range m.Devices() {
		if d.State == StateError || d.State == StateGone || d.State == board.StateFault {
			return signal.Error
		}
	}
	if m.o.Online != nil && m.o.Online() {
		return signal.Online
	}
	return signal.Offline
}

func (m *Manager) showStatus() {
	st := m.status()
	m.ledMu.Lock()
	defer m.ledMu.Unlock()
	m.mu.Lock()
	ind := m.ind
	m.mu.Unlock()
	if ind != nil {
		if err := ind.Show(st); err != nil {
			m.log.Warn("status LED", "err", err)
		}
	}
}

// Devices is the state of every device: the board's own (sensors) followed by the serial
// devices of the profile as their drivers see them.
func (m *Manager) Devices() []board.DeviceState {
	out := m.o.Board.Devices()
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.running {
		for _, d := range m.o.Board.Profile().Serial {
			out = append(out, board.DeviceState{Name: d.Name, Kind: d.Kind, State: board.StateUnknown, Detail: "not started"})
		}
		return out
	}
	for _, d := range m.serial {
		out = append(out, d.state())
	}
	return out
}

func (d *serialDevice) state() board.DeviceState {
	s := board.DeviceState{Name: d.dev.Name, Kind: d.dev.Kind, State: board.StateOK}
	switch {
	case d.err != nil:
		s.State, s.Detail = board.StateFault, d.err.Error()
	case d.port == nil:
		s.State, s.Detail = board.StateUnknown, "driver not attached yet"
	case d.port.State() == serial.StateGone:
		s.State = StateGone
	case d.pad != nil:
		switch st := d.pad.State(); st {
		case pinpad.StateNoAnswer:
			s.State, s.Detail = StateError, "no answer"
		case pinpad.StateClosed:
			s.State, s.Detail = StateError, "closed"
		case pinpad.StateGone:
			// The port is back but nothing was exchanged since: it is there.
		default:
			s.Detail = st
		}
	case d.reader != nil:
		if err := d.reader.Err(); err != nil {
			if serial.IsGone(err) {
				s.State = StateGone
			} else {
				s.State, s.Detail = StateError, err.Error()
			}
		}
	case d.printer != nil:
		// The last status the printer reported (before and after every job, and in the
		// self-test): paper-near-end, paper-out, cover-open, error, offline — or ok.
		if st, at := d.printer.LastStatus(); at.IsZero() {
			s.State, s.Detail = board.StateUnknown, "not asked yet"
		} else if st.State() != "ok" {
			s.State = st.State()
		}
		if d.spool != nil {
			if jobs := d.spool.Jobs(); len(jobs) > 0 && jobs[0].State == spool.Waiting {
				s.Detail = fmt.Sprintf("job %q waits: %s; %d queued", jobs[0].Name, jobs[0].Reason, len(jobs))
			}
		}
	}
	return s
}

// PINPad is the PIN pad's client, nil when the profile has none or the manager is not running.
func (m *Manager) PINPad() *pinpad.Client {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, d := range m.serial {
		if d.pad != nil {
			return d.pad
		}
	}
	return nil
}

// Spooler is the receipt printer's queue, nil when the profile has no printer or the
// manager is not running.
func (m *Manager) Spooler() *spool.Spooler {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, d := range m.serial {
		if d.spool != nil {
			return d.spool
		}
	}
	return nil
}

// PrinterModel is the ESC/POS model of the receipt printer, for laying out receipts; false
// when there is no printer.
func (m *Manager) PrinterModel() (escpos.Model, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, d := range m.serial {
		if d.printer != nil {
			return d.printer.Model(), true
		}
	}
	return escpos.Model{}, false
}

// CardReader is the card reader's driver, nil when the profile has none or the manager is
// not running.
func (m *Manager) CardReader() *cardreader.Reader {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, d := range m.serial {
		if d.reader != nil {
			return d.reader
		}
	}
	return nil
}
