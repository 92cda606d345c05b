// Package input watches two-state sensors on GPIO inputs — dock presence, paper low, a
// drawer's open switch — and reports debounced changes.
//
// Waiting follows the real driver's rules (see LIBRARY-NOTES): WaitForEdge is only ever
// called with a finite, positive timeout, in a loop that checks for cancellation, because
// 0 waits for ever and -1 returns at once. Debouncing runs on an injected clock.
package input

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3/gpio"
)

// Defaults.
const (
	DefaultDebounce = 50 * time.Millisecond
	DefaultPoll     = time.Second
)

// Event is a debounced change of an input (or its first reading).
type Event struct {
	Name    string
	Active  bool      // the sensor's condition holds: docked, paper low …
	At      time.Time // when it was confirmed, on the watcher's clock
	Initial bool      // the reading when watching began, not a change
}

// Options tune a watcher.
type Options struct {
	// Name goes into events, e.g. "dock".
	Name string
	// ActiveLow: the condition holds when the line is low. Boards that hand out inverted pins
	// leave it false.
	ActiveLow bool
	// Pull is the bias to configure, if the board does not fix it; PullNoChange by default.
	Pull gpio.Pull
	// Debounce is how long a new level must hold before it counts; 0 means DefaultDebounce.
	Debounce time.Duration
	// Poll bounds each wait for an edge, so cancellation is seen and a level change whose
	// edge the kernel dropped is still picked up; 0 means DefaultPoll.
	Poll time.Duration
	// Clock times the debounce; nil is the real clock.
	Clock clockwork.Clock
	// OnChange receives the initial reading (before Watch returns) and then every debounced
	// change, in order, from the watcher's goroutine. It must not block for long.
	OnChange func(Event)

	sampled func() // tests: called after each look at the level
}

// Input is a watched sensor.
type Input struct {
	pin  gpio.PinIn
	o    Options
	done chan struct{}

	mu     sync.Mutex
	active bool
}

// Watch configures pin for edge detection and watches it until ctx ends.
func Watch(ctx context.Context, pin gpio.PinIn, o Options) (*Input, error) {
	if o.Debounce == 0 {
		o.Debounce = DefaultDebounce
	}
	if o.Poll == 0 {
		o.Poll = DefaultPoll
	}
	if o.Debounce < 0 || o.Poll < 0 {
		return nil, fmt.Errorf("input %s: negative debounce or poll", o.Name)
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if err := pin.In(o.Pull, gpio.BothEdges); err != nil {
		return nil, fmt.Errorf("input %s: %s: %w", o.Name, pin, err)
	}
	in := &Input{pin: pin, o: o, done: make(chan struct{})}
	in.active = in.read()
	in.emit(Event{Name: o.Name, Active: in.active, At: o.Clock.Now(), Initial: true})
	edges := make(chan struct{}, 1)
	go in.waitEdges(ctx, edges)
	go in.run(ctx, edges)
	return in, nil
}

func (in *Input) read() bool { return (in.pin.Read() == gpio.High) != in.o.ActiveLow }

func (in *Input) emit(e Event) {
	if in.o.OnChange != nil {
		in.o.OnChange(e)
	}
}

// waitEdges turns the pin's blocking waits into a channel the debounce loop can select on.
// A wait that times out signals too: the loop then re-reads the level, which costs nothing
// when it is unchanged and catches a change whose edge was lost.
func (in *Input) waitEdges(ctx context.Context, edges chan<- struct{}) {
	for ctx.Err() == nil {
		in.pin.WaitForEdge(in.o.Poll)
		select {
		case edges <- struct{}{}:
		default: // the loop has one pending already; it reads the level, not the edge
		}
	}
}

func (in *Input) run(ctx context.Context, edges <-chan struct{}) {
	defer close(in.done)
	clock := in.o.Clock
	in.mu.Lock()
	d := newDebouncer(in.o.Debounce, in.active, clock.Now())
	in.mu.Unlock()
	var timer clockwork.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		var recheck <-chan time.Time
		if timer != nil {
			recheck = timer.Chan()
		}
		select {
		case <-ctx.Done():
			return
		case <-edges:
		case <-recheck:
			timer = nil
		}
		now := clock.Now()
		changed, wait := d.observe(now, in.read())
		if timer != nil {
			timer.Stop()
			timer = nil
		}
		if wait > 0 {
			timer = clock.NewTimer(wait)
		}
		if changed {
			in.mu.Lock()
			in.active = d.state
			in.mu.Unlock()
			in.emit(Event{Name: in.o.Name, Active: d.state, At: now})
		}
		if in.o.sampled != nil {
			in.o.sampled()
		}
	}
}

// Active is the debounced state.
func (in *Input) Active() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.active
}

// Done is closed when the watcher has stopped (its context ended).
func (in *Input) Done() <-chan struct{} { return in.done }
