package board

import (
	"testing"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"
	"periph.io/x/conn/v3/physic"
)

func TestActiveLowInverts(t *testing.T) {
	raw := &gpiotest.Pin{N: "LED", L: gpio.High}
	p := ActiveLow(raw)
	if p.Read() != gpio.Low {
		t.Error("a high line reads as off")
	}
	if err := p.Out(gpio.High); err != nil || raw.Read() != gpio.Low {
		t.Errorf("on drives the line low: %v %v", err, raw.Read())
	}
	if err := p.PWM(gpio.DutyMax/4, physic.KiloHertz); err != nil || raw.D != gpio.DutyMax-gpio.DutyMax/4 {
		t.Errorf("duty %v", raw.D)
	}
	raw.EdgesChan = make(chan gpio.Level)
	if err := p.In(gpio.PullUp, gpio.RisingEdge); err != nil || raw.P != gpio.PullUp {
		t.Errorf("In: %v, pull %v", err, raw.P)
	}
	if r, ok := p.(gpio.RealPin); !ok || r.Real() != raw {
		t.Error("Real does not give the wire")
	}
	if p.String() != "LED(0) (active-low)" {
		t.Errorf("String = %q", p.String())
	}
}
