package sim

import (
	"slices"
	"sync"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"
)

// historyLen bounds an output's remembered changes: an LED blinking through a long demo must
// not grow memory.
const historyLen = 256

// OutputPin is a simulated output line (LED, buzzer, drawer solenoid) that remembers the
// levels it was driven to, so tests and the demo can see what a driver did.
type OutputPin struct {
	*gpiotest.Pin

	mu      sync.Mutex
	history []gpio.Level
}

func newOutput(name string, num int) *OutputPin {
	return &OutputPin{Pin: &gpiotest.Pin{N: name, Num: num, L: gpio.Low}}
}

// Out implements gpio.PinOut and records the level when it changes.
func (p *OutputPin) Out(l gpio.Level) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.Pin.Read() != l {
		if len(p.history) == historyLen {
			p.history = slices.Delete(p.history, 0, 1)
		}
		p.history = append(p.history, l)
	}
	return p.Pin.Out(l)
}

// History is the changes of level, oldest first (the last 256). The line starts low.
func (p *OutputPin) History() []gpio.Level {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.history)
}
