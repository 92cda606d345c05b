package input

import (
	"context"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"
)

func TestDebouncer(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	d := newDebouncer(50*time.Millisecond, false, t0)
	type obs struct {
		ms      int
		level   bool
		changed bool
		recheck time.Duration
	}
	for i, o := range []obs{
		{0, false, false, 0},                       // nothing new
		{10, true, false, 50 * time.Millisecond},   // new level: wait the window
		{30, true, false, 30 * time.Millisecond},   // holding
		{40, false, false, 0},                      // bounced back: nothing to wait for
		{45, true, false, 50 * time.Millisecond},   // again: the window starts over
		{94, true, false, time.Millisecond},        // not quite
		{95, true, true, 0},                        // held the whole window
		{96, true, false, 0},                       // stable
		{200, false, false, 50 * time.Millisecond}, // and back, same rules
		{250, false, true, 0},
	} {
		changed, recheck := d.observe(at(o.ms), o.level)
		if changed != o.changed || recheck != o.recheck {
			t.Errorf("#%d at %dms level %v: changed %v recheck %v, want %v %v", i, o.ms, o.level, changed, recheck, o.changed, o.recheck)
		}
	}
}

type watched struct {
	pin     *gpiotest.Pin
	clock   *clockwork.FakeClock
	events  chan Event
	samples chan struct{}
	in      *Input
}

func watch(t *testing.T, initial gpio.Level, o Options) *watched {
	t.Helper()
	w := &watched{
		pin:     &gpiotest.Pin{N: "SENSOR", L: initial, EdgesChan: make(chan gpio.Level, 8)},
		clock:   clockwork.NewFakeClock(),
		events:  make(chan Event, 8),
		samples: make(chan struct{}, 64),
	}
	o.Clock = w.clock
	o.OnChange = func(e Event) { w.events <- e }
	o.sampled = func() {
		select {
		case w.samples <- struct{}{}:
		default: // a test polling on its own does not count samples
		}
	}
	if o.Poll == 0 {
		o.Poll = time.Hour // no sampling but the ones a test causes
	}
	ctx, cancel := context.WithCancel(t.Context())
	in, err := Watch(ctx, w.pin, o)
	if err != nil {
		t.Fatal(err)
	}
	w.in = in
	t.Cleanup(func() {
		cancel()
		<-in.Done()
	})
	return w
}

func (w *watched) next(t *testing.T) Event {
	t.Helper()
	select {
	case e := <-w.events:
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no event")
	}
	return Event{}
}

// sampled waits until the watcher has looked at the level once more.
func (w *watched) sampled(t *testing.T) {
	t.Helper()
	select {
	case <-w.samples:
	case <-time.After(10 * time.Second):
		t.Fatal("the watcher did not look at the level")
	}
}

// set drives the line and signals an edge, as a sensor does.
func (w *watched) set(l gpio.Level) {
	w.pin.Lock()
	w.pin.L = l
	w.pin.Unlock()
	w.pin.EdgesChan <- l
}

func TestChangeDeliveredAfterDebounce(t *testing.T) {
	w := watch(t, gpio.Low, Options{Name: "dock", Debounce: 30 * time.Millisecond})
	if e := w.next(t); !e.Initial || e.Active || e.Name != "dock" {
		t.Fatalf("initial event %+v", e)
	}
	start := w.clock.Now()
	w.set(gpio.High)
	w.sampled(t)
	if w.in.Active() {
		t.Fatal("active before the level held")
	}
	w.clock.Advance(30 * time.Millisecond)
	w.sampled(t)
	e := w.next(t)
	if !e.Active || e.Initial || !e.At.Equal(start.Add(30*time.Millisecond)) || !w.in.Active() {
		t.Errorf("change %+v (active %v)", e, w.in.Active())
	}
}

func TestBounceIsIgnored(t *testing.T) {
	w := watch(t, gpio.Low, Options{Debounce: 30 * time.Millisecond})
	w.next(t)
	start := w.clock.Now()
	// A contact bouncing: high, low again 10 ms later, high again 10 ms after that.
	w.set(gpio.High)
	w.sampled(t)
	w.clock.Advance(10 * time.Millisecond)
	w.set(gpio.Low)
	w.sampled(t)
	w.clock.Advance(10 * time.Millisecond)
	w.set(gpio.High)
	w.sampled(t)
	// 30 ms after the first edge the level has not held for 30 ms: nothing yet.
	w.clock.Advance(10 * time.Millisecond)
	select {
	case e := <-w.events:
		t.Fatalf("bounce reported: %+v", e)
	default:
	}
	// It holds until 30 ms after the last edge.
	w.clock.Advance(20 * time.Millisecond)
	w.sampled(t)
	if e := w.next(t); !e.Active || !e.At.Equal(start.Add(50*time.Millisecond)) {
		t.Errorf("event after the bounce %+v", e)
	}
}

func TestActiveLowAndLostEdge(t *testing.T) {
	w := watch(t, gpio.High, Options{ActiveLow: true, Poll: 5 * time.Millisecond})
	if e := w.next(t); e.Active {
		t.Fatalf("active-low input high: %+v", e)
	}
	// The line changes but no edge comes (the kernel's event queue overflowed): the poll
	// reads the level anyway.
	w.pin.Lock()
	w.pin.L = gpio.Low
	w.pin.Unlock()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := w.clock.BlockUntilContext(ctx, 1); err != nil { // timing the new level
		t.Fatal(err)
	}
	w.clock.Advance(DefaultDebounce)
	if e := w.next(t); !e.Active {
		t.Errorf("low line on an active-low input: %+v", e)
	}
}

func TestWatchErrors(t *testing.T) {
	if _, err := Watch(t.Context(), &gpiotest.Pin{}, Options{}); err == nil {
		t.Error("pin without edge support accepted")
	}
	if _, err := Watch(t.Context(), &gpiotest.Pin{EdgesChan: make(chan gpio.Level)}, Options{Debounce: -1}); err == nil {
		t.Error("negative debounce accepted")
	}
}
