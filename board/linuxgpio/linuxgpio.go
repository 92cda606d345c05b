// Package linuxgpio opens a board profile's GPIO lines on real hardware, through the Linux
// GPIO character device (periph's gpioioctl; Linux 5.10 or later).
//
// Only gpioioctl and driverreg are imported, not periph's host package, which would bring
// every SoC driver into the binary.
package linuxgpio

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"periph.io/x/conn/v3/driver/driverreg"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/host/v3/gpioioctl"

	"github.com/posagent/posagent/board"
)

// chip is what a lookup needs of a gpiochip.
type chip interface {
	Name() string
	Label() string
	named(name string) gpio.PinIO // nil when absent
	line(number int) gpio.PinIO   // nil when out of range
}

// Lines opens the lines of a profile on first use and keeps them open until Close.
type Lines struct {
	specs []board.GPIOLine
	chips func() ([]chip, error)

	once    sync.Once
	found   []chip
	initErr error

	mu   sync.Mutex
	open map[string]gpio.PinIO
}

// New prepares the lines of a profile; nothing is touched until Pin.
func New(specs []board.GPIOLine) *Lines {
	return &Lines{specs: specs, chips: systemChips, open: map[string]gpio.PinIO{}}
}

// systemChips initialises periph's drivers (once per process) and lists the chips found.
func systemChips() ([]chip, error) {
	if _, err := driverreg.Init(); err != nil {
		return nil, fmt.Errorf("gpio: %w", err)
	}
	if len(gpioioctl.Chips) == 0 {
		return nil, errors.New("gpio: no GPIO character devices (/dev/gpiochip*) usable")
	}
	chips := make([]chip, len(gpioioctl.Chips))
	for i, c := range gpioioctl.Chips {
		chips[i] = ioctlChip{c}
	}
	return chips, nil
}

type ioctlChip struct{ *gpioioctl.GPIOChip }

func (c ioctlChip) named(name string) gpio.PinIO {
	if l := c.ByName(name); l != nil {
		return l
	}
	return nil
}

func (c ioctlChip) line(n int) gpio.PinIO {
	if n < 0 || n >= c.LineCount() {
		return nil // ByNumber would log the miss itself
	}
	if l := c.ByNumber(n); l != nil {
		return l
	}
	return nil
}

// Pin is the line of function, inverted when it is active-low. Errors wrap board.ErrNoLine
// when the profile has no such line.
func (ls *Lines) Pin(function string) (gpio.PinIO, error) {
	var spec *board.GPIOLine
	for i := range ls.specs {
		if ls.specs[i].Function == function {
			spec = &ls.specs[i]
		}
	}
	if spec == nil {
		return nil, fmt.Errorf("%w: %s", board.ErrNoLine, function)
	}
	ls.once.Do(func() { ls.found, ls.initErr = ls.chips() })
	if ls.initErr != nil {
		return nil, ls.initErr
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if p, ok := ls.open[function]; ok {
		return p, nil
	}
	p, err := lookup(ls.found, *spec)
	if err != nil {
		return nil, fmt.Errorf("gpio %s: %w", function, err)
	}
	if spec.ActiveLow {
		p = board.ActiveLow(p)
	}
	ls.open[function] = p
	return p, nil
}

// lookup finds a line by name, then by number.
func lookup(chips []chip, spec board.GPIOLine) (gpio.PinIO, error) {
	candidates := chips
	if spec.Chip != "" {
		candidates = nil
		for _, c := range chips {
			if c.Name() == spec.Chip || c.Label() == spec.Chip {
				candidates = append(candidates, c)
			}
		}
		if len(candidates) == 0 {
			return nil, fmt.Errorf("no gpiochip %q", spec.Chip)
		}
	}
	if spec.Name != "" {
		var hits []gpio.PinIO
		var where []string
		for _, c := range candidates {
			if p := c.named(spec.Name); p != nil {
				hits = append(hits, p)
				where = append(where, c.Name())
			}
		}
		switch len(hits) {
		case 1:
			return hits[0], nil
		case 0:
		default:
			// Some SoCs publish the same name on two chips; a silent pick could drive the
			// wrong line.
			return nil, fmt.Errorf("line %q is on %s: name the chip", spec.Name, strings.Join(where, " and "))
		}
	}
	if spec.Number == nil {
		return nil, fmt.Errorf("no line named %q", spec.Name)
	}
	on := spec.Chip
	if on == "" {
		on = "gpiochip0"
	}
	for _, c := range chips {
		if c.Name() == on || c.Label() == on {
			if p := c.line(*spec.Number); p != nil {
				return p, nil
			}
			return nil, fmt.Errorf("%s has no line %d", on, *spec.Number)
		}
	}
	return nil, fmt.Errorf("no gpiochip %q for line %d", on, *spec.Number)
}

// Close releases every line opened.
func (ls *Lines) Close() error {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	for f, p := range ls.open {
		if r, ok := p.(gpio.RealPin); ok {
			p = r.Real()
		}
		if c, ok := p.(interface{ Close() }); ok {
			c.Close()
		}
		delete(ls.open, f)
	}
	return nil
}
