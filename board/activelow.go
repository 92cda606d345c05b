package board

import (
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/physic"
)

// ActiveLow wraps a line wired active-low so that its users see High as on: levels read
// and written are inverted, and so are the rising and falling edges asked for. The pull
// stays physical (it biases the wire, not the meaning).
func ActiveLow(p gpio.PinIO) gpio.PinIO { return &inverted{p} }

type inverted struct{ gpio.PinIO }

func (p *inverted) Read() gpio.Level { return !p.PinIO.Read() }

func (p *inverted) Out(l gpio.Level) error { return p.PinIO.Out(!l) }

func (p *inverted) In(pull gpio.Pull, edge gpio.Edge) error {
	switch edge {
	case gpio.RisingEdge:
		edge = gpio.FallingEdge
	case gpio.FallingEdge:
		edge = gpio.RisingEdge
	}
	return p.PinIO.In(pull, edge)
}

// Real implements gpio.RealPin.
func (p *inverted) Real() gpio.PinIO { return p.PinIO }

func (p *inverted) String() string { return p.PinIO.String() + " (active-low)" }

func (p *inverted) PWM(duty gpio.Duty, f physic.Frequency) error {
	return p.PinIO.PWM(gpio.DutyMax-duty, f)
}
