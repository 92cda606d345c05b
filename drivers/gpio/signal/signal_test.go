package signal

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"
)

// recorder is an output line that remembers each level it was driven to.
type recorder struct {
	gpiotest.Pin
	mu   sync.Mutex
	seen []gpio.Level
}

func newRecorder(name string) *recorder { return &recorder{Pin: gpiotest.Pin{N: name}} }

func (r *recorder) Out(l gpio.Level) error {
	r.mu.Lock()
	r.seen = append(r.seen, l)
	r.mu.Unlock()
	return r.Pin.Out(l)
}

func (r *recorder) history() []gpio.Level {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seen)
}

// step lets the pattern's goroutine reach its next wait, then moves time on by d.
func step(t *testing.T, c *clockwork.FakeClock, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := c.BlockUntilContext(ctx, 1); err != nil {
		t.Fatalf("pattern not waiting: %v", err)
	}
	c.Advance(d)
}

// settle waits until the goroutine has acted on the last step (it waits again, or ended).
func settle(t *testing.T, c *clockwork.FakeClock, p *Player, want int) {
	t.Helper()
	if want == 0 {
		<-p.Done()
		return
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := c.BlockUntilContext(ctx, want); err != nil {
		t.Fatal(err)
	}
}

func levels(ls ...gpio.Level) []gpio.Level { return ls }

const H, L = gpio.High, gpio.Low

func TestOneLEDStatuses(t *testing.T) {
	c := clockwork.NewFakeClock()
	led := newRecorder("LED")
	ind, err := NewIndicator(IndicatorOptions{Clock: c}, led)
	if err != nil {
		t.Fatal(err)
	}
	if err := ind.Show(Offline); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		step(t, c, time.Second)
		settle(t, c, ind.player, 1)
	}
	if got := led.history(); !slices.Equal(got, levels(L, H, L, H)) {
		t.Errorf("offline: %v", got)
	}
	// Repeating the status keeps the rhythm instead of restarting it.
	if err := ind.Show(Offline); err != nil || len(led.history()) != 4 {
		t.Errorf("Show(Offline) again: %v, %v", err, led.history())
	}
	if err := ind.Show(Online); err != nil {
		t.Fatal(err)
	}
	if got := led.Read(); got != H || ind.Status() != Online {
		t.Errorf("online: %v %s", got, ind.Status())
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if c.BlockUntilContext(ctx, 0) != nil {
		t.Error("steady state left a timer running")
	}
	if err := ind.Close(); err != nil || led.Read() != L || ind.Status() != Off {
		t.Errorf("close: %v %v", err, led.Read())
	}
}

func TestTwoLEDsAlternateWhileUpdating(t *testing.T) {
	c := clockwork.NewFakeClock()
	green, red := newRecorder("GREEN"), newRecorder("RED")
	ind, err := NewIndicator(IndicatorOptions{Clock: c}, green, red)
	if err != nil {
		t.Fatal(err)
	}
	if err := ind.Show(Updating); err != nil {
		t.Fatal(err)
	}
	type both struct{ g, r gpio.Level }
	got := []both{{green.Read(), red.Read()}}
	for range 3 {
		step(t, c, 250*time.Millisecond)
		settle(t, c, ind.player, 1)
		got = append(got, both{green.Read(), red.Read()})
	}
	want := []both{{H, L}, {L, H}, {H, L}, {L, H}}
	if !slices.Equal(got, want) {
		t.Errorf("updating: %v, want %v", got, want)
	}
	if err := ind.Show(Error); err != nil || green.Read() != L || red.Read() != H {
		t.Errorf("error shows on red: %v green %v red %v", err, green.Read(), red.Read())
	}
}

func TestBuzzerDoubleBeep(t *testing.T) {
	c := clockwork.NewFakeClock()
	pin := newRecorder("BUZZER")
	b, err := NewBuzzer(c, pin)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Beep(Double); err != nil {
		t.Fatal(err)
	}
	step(t, c, 100*time.Millisecond)
	step(t, c, 100*time.Millisecond)
	step(t, c, 100*time.Millisecond)
	if err := b.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := pin.history(); !slices.Equal(got, levels(L, H, L, H, L)) {
		t.Errorf("double beep: %v", got)
	}
	if err := b.Beep(Pattern{Steps: []Step{{On: 1, For: time.Second}}, Repeat: true}); err == nil {
		t.Error("endless beep accepted")
	}
	// A new beep cuts the one sounding short and the line ends low.
	if err := b.Beep(Long); err != nil {
		t.Fatal(err)
	}
	if err := b.Beep(Short); err != nil {
		t.Fatal(err)
	}
	step(t, c, 100*time.Millisecond)
	if err := b.Wait(t.Context()); err != nil || pin.Read() != L {
		t.Errorf("after the short beep: %v %v", err, pin.Read())
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := b.Beep(Long); err != nil {
		t.Fatal(err)
	}
	if err := b.Wait(ctx); err == nil {
		t.Error("Wait ignored its context")
	}
	if err := b.Close(); err != nil || pin.Read() != L {
		t.Errorf("close: %v %v", err, pin.Read())
	}
}

func TestPatternValidation(t *testing.T) {
	for name, p := range map[string]Pattern{
		"empty":        {},
		"zero step":    {Steps: []Step{{On: 1, For: time.Second}, {For: 0}}},
		"line 2 of 1":  {Steps: []Step{{On: 2, For: time.Second}}},
		"steady red":   {Steps: []Step{{On: 2}}, Repeat: true},
		"negative for": {Steps: []Step{{On: 1, For: -time.Second}}},
	} {
		if p.Validate(1) == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := (Pattern{Steps: []Step{{On: 3}}, Repeat: true}).Validate(2); err != nil {
		t.Errorf("steady two lines: %v", err)
	}
	if _, err := NewIndicator(IndicatorOptions{}); err == nil {
		t.Error("indicator without LEDs")
	}
	if _, err := NewIndicator(IndicatorOptions{Patterns: map[Status]Pattern{Error: {Steps: []Step{{On: 2, For: time.Second}}, Repeat: true}}}, newRecorder("x")); err == nil {
		t.Error("pattern for a missing LED accepted")
	}
	for s := Off; s <= Updating; s++ {
		for _, pats := range []map[Status]Pattern{OneLEDPatterns, TwoLEDPatterns} {
			if _, ok := pats[s]; !ok {
				t.Errorf("no default pattern for %s", s)
			}
		}
	}
}
