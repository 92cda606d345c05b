package sim

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3/gpio"

	"github.com/posagent/posagent/board"
	"github.com/posagent/posagent/drivers/gpio/drawer"
	gpioinput "github.com/posagent/posagent/drivers/gpio/input"
	"github.com/posagent/posagent/drivers/gpio/signal"
)

func TestProfileNamesEveryLine(t *testing.T) {
	b := New(quiet)
	p := b.Profile()
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, l := range p.GPIO {
		pin, err := b.Pin(l.Function)
		if err != nil || pin.Name() != l.Name {
			t.Errorf("%s: pin %v, %v", l.Function, pin, err)
		}
	}
	if len(p.GPIO) != 6 {
		t.Errorf("profile lines %+v", p.GPIO)
	}
	if _, err := b.Pin("laser"); !errors.Is(err, board.ErrNoLine) {
		t.Errorf("unknown line: %v", err)
	}
}

// The GPIO drivers run on the simulated lines as on hardware, and the lines remember what
// the drivers did.
func TestDriversOnSimulatedLines(t *testing.T) {
	b := New(quiet)
	c := clockwork.NewFakeClock()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	pin, _ := b.Pin(board.LineDrawer)
	d, err := drawer.New(pin, drawer.Options{Clock: c})
	if err != nil {
		t.Fatal(err)
	}
	kicked := make(chan error, 1)
	go func() { kicked <- d.Kick(ctx) }()
	if err := c.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	c.Advance(drawer.DefaultPulse)
	if err := <-kicked; err != nil {
		t.Fatal(err)
	}
	if h := b.Drawer().History(); !slices.Equal(h, []gpio.Level{gpio.High, gpio.Low}) {
		t.Errorf("drawer line history %v", h)
	}

	green, red := b.StatusLEDs()
	ind, err := signal.NewIndicator(signal.IndicatorOptions{Clock: c}, green, red)
	if err != nil {
		t.Fatal(err)
	}
	if err := ind.Show(signal.Error); err != nil {
		t.Fatal(err)
	}
	if green.Read() != gpio.Low || red.Read() != gpio.High {
		t.Errorf("error status: green %v red %v", green.Read(), red.Read())
	}
	if err := ind.Close(); err != nil {
		t.Fatal(err)
	}

	events := make(chan gpioinput.Event, 4)
	dock, _ := b.Pin(board.LineDock)
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	in, err := gpioinput.Watch(wctx, dock, gpioinput.Options{Name: SensorDock, Debounce: time.Millisecond, Poll: 10 * time.Millisecond,
		OnChange: func(e gpioinput.Event) { events <- e }})
	if err != nil {
		t.Fatal(err)
	}
	if e := <-events; !e.Initial || !e.Active {
		t.Fatalf("initial dock event %+v", e)
	}
	b.SetDocked(false)
	select {
	case e := <-events:
		if e.Active || e.Name != SensorDock {
			t.Errorf("undock event %+v", e)
		}
	case <-ctx.Done():
		t.Fatal("undocking not reported")
	}
	stop()
	<-in.Done()
}

func TestOutputHistoryIsBounded(t *testing.T) {
	p := newOutput("X", 9)
	for i := range 3 * historyLen {
		_ = p.Out(gpio.Level(i%2 == 0))
	}
	_ = p.Out(gpio.Low) // no change, not recorded
	h := p.History()
	if len(h) != historyLen || h[len(h)-1] != gpio.Low {
		t.Errorf("history of %d, last %v", len(h), h[len(h)-1])
	}
}
