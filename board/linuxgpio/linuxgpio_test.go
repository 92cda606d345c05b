package linuxgpio

import (
	"errors"
	"strings"
	"testing"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"

	"github.com/posagent/posagent/board"
)

type fakeChip struct {
	name, label string
	lines       []*gpiotest.Pin // index = offset; N = name ("" unnamed)
}

func (c *fakeChip) Name() string  { return c.name }
func (c *fakeChip) Label() string { return c.label }

func (c *fakeChip) named(name string) gpio.PinIO {
	for _, l := range c.lines {
		if l.N == name {
			return l
		}
	}
	return nil
}

func (c *fakeChip) line(n int) gpio.PinIO {
	if n < 0 || n >= len(c.lines) {
		return nil
	}
	return c.lines[n]
}

func chips() []chip {
	return []chip{
		&fakeChip{name: "gpiochip0", label: "pinctrl-soc", lines: []*gpiotest.Pin{
			{N: "LED_GREEN"}, {Num: 1}, {N: "WAKE", Num: 2}, {Num: 3, L: gpio.High},
		}},
		&fakeChip{name: "gpiochip1", label: "pmic", lines: []*gpiotest.Pin{
			{N: "WAKE"}, {N: "BUZZER", Num: 1}, {Num: 2},
		}},
	}
}

func num(n int) *int { return &n }

func open(specs ...board.GPIOLine) *Lines {
	ls := New(specs)
	ls.chips = func() ([]chip, error) { return chips(), nil }
	return ls
}

func TestLookupByNameThenNumber(t *testing.T) {
	ls := open(
		board.GPIOLine{Function: board.LineStatusLED, Name: "LED_GREEN"},
		board.GPIOLine{Function: board.LineBuzzer, Name: "BUZZER"},
		// Unnamed on this revision: the number is the fallback.
		board.GPIOLine{Function: board.LineDrawer, Name: "DRAWER", Number: num(1)},
		board.GPIOLine{Function: board.LineDock, Chip: "pmic", Number: num(2)},
		board.GPIOLine{Function: board.LinePaperLow, Number: num(3), ActiveLow: true},
	)
	defer ls.Close()
	for fn, want := range map[string]string{
		board.LineStatusLED: "LED_GREEN", board.LineBuzzer: "BUZZER", board.LineDrawer: "(1)", board.LineDock: "(2)",
	} {
		p, err := ls.Pin(fn)
		if err != nil || !strings.Contains(p.String(), want) {
			t.Errorf("%s: %v, %v; want %s", fn, p, err, want)
		}
	}
	paper, err := ls.Pin(board.LinePaperLow)
	if err != nil || paper.Read() != gpio.Low { // the wire is high, the function off
		t.Errorf("active-low line: %v %v", paper, err)
	}
	again, _ := ls.Pin(board.LinePaperLow)
	if again != paper {
		t.Error("a line is opened once")
	}
}

func TestLookupErrors(t *testing.T) {
	ls := open(
		board.GPIOLine{Function: board.LineStatusLED, Name: "WAKE"},
		board.GPIOLine{Function: board.LineBuzzer, Name: "NOPE"},
		board.GPIOLine{Function: board.LineDrawer, Number: num(9)},
		board.GPIOLine{Function: board.LineDock, Chip: "gpiochip7", Name: "WAKE"},
		board.GPIOLine{Function: board.LinePaperLow, Chip: "pmic", Name: "WAKE"},
	)
	for fn, want := range map[string]string{
		board.LineStatusLED: "name the chip",
		board.LineBuzzer:    `no line named "NOPE"`,
		board.LineDrawer:    "gpiochip0 has no line 9",
		board.LineDock:      `no gpiochip "gpiochip7"`,
	} {
		if _, err := ls.Pin(fn); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", fn, err, want)
		}
	}
	if p, err := ls.Pin(board.LinePaperLow); err != nil || p.Name() != "WAKE" {
		t.Errorf("chip given by label: %v %v", p, err)
	}
	if _, err := ls.Pin("laser"); !errors.Is(err, board.ErrNoLine) {
		t.Errorf("unknown function: %v", err)
	}
}

func TestNoChips(t *testing.T) {
	ls := New([]board.GPIOLine{{Function: board.LineDock, Name: "DOCK"}})
	ls.chips = func() ([]chip, error) { return nil, errors.New("gpio: no chips") }
	if _, err := ls.Pin(board.LineDock); err == nil {
		t.Fatal("no error without chips")
	}
}

// On this machine (or under qemu) the real initialisation runs; without /dev/gpiochip* it
// must fail cleanly rather than panic or hand out dummy lines.
func TestSystemChips(t *testing.T) {
	chips, err := systemChips()
	if err != nil {
		t.Logf("no GPIO here: %v", err)
		return
	}
	for _, c := range chips {
		t.Logf("%s (%s)", c.Name(), c.Label())
	}
}
