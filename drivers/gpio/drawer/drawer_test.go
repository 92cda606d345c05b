package drawer

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"
)

func waitTimer(t *testing.T, c *clockwork.FakeClock) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := c.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
}

func TestKickIsOnePulseAndRefusesOverlap(t *testing.T) {
	c := clockwork.NewFakeClock()
	pin := &gpiotest.Pin{N: "DRAWER", L: gpio.High}
	d, err := New(pin, Options{Pulse: 150 * time.Millisecond, Clock: c})
	if err != nil {
		t.Fatal(err)
	}
	if pin.Read() != gpio.Low || d.Pulse() != 150*time.Millisecond {
		t.Fatalf("New left the line %v", pin.Read())
	}
	done := make(chan error, 1)
	go func() { done <- d.Kick(t.Context()) }()
	waitTimer(t, c)
	if pin.Read() != gpio.High {
		t.Fatal("solenoid not energised during the pulse")
	}
	if err := d.Kick(t.Context()); !errors.Is(err, ErrBusy) {
		t.Errorf("overlapping kick: %v", err)
	}
	c.Advance(149 * time.Millisecond)
	if pin.Read() != gpio.High {
		t.Error("pulse ended early")
	}
	c.Advance(time.Millisecond)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if pin.Read() != gpio.Low {
		t.Error("line left high after the pulse")
	}
	// Free again once the pulse is over.
	go func() { done <- d.Kick(t.Context()) }()
	waitTimer(t, c)
	c.Advance(150 * time.Millisecond)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestCancelledKickStillReleases(t *testing.T) {
	c := clockwork.NewFakeClock()
	pin := &gpiotest.Pin{N: "DRAWER"}
	d, err := New(pin, Options{Clock: c})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- d.Kick(ctx) }()
	waitTimer(t, c)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled kick: %v", err)
	}
	if pin.Read() != gpio.Low {
		t.Error("cancelled kick left the solenoid energised")
	}
	if err := d.Kick(ctx); !errors.Is(err, context.Canceled) || pin.Read() != gpio.Low {
		t.Errorf("kick with a dead context: %v", err)
	}
}

type failingPin struct{ gpiotest.Pin }

func (p *failingPin) Out(l gpio.Level) error {
	if l == gpio.High {
		return errors.New("line busy")
	}
	return p.Pin.Out(l)
}

func TestBadPulseAndFailingLine(t *testing.T) {
	for _, w := range []time.Duration{time.Millisecond, 2 * time.Second, -time.Second} {
		if _, err := New(&gpiotest.Pin{}, Options{Pulse: w}); err == nil {
			t.Errorf("pulse %v accepted", w)
		}
	}
	d, err := New(&failingPin{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Kick(t.Context()); err == nil {
		t.Error("failed line write not reported")
	}
}
