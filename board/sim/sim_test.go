package sim

import (
	"log/slog"
	"slices"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/posagent/posagent/board"
)

var quiet = board.Options{Logger: slog.New(slog.DiscardHandler)}

func TestIdentityAndInitialDevices(t *testing.T) {
	b := New(quiet)
	want := board.Identity{Vendor: "posagent", Model: "SIM-1", Serial: "SIM000001", Revision: "1"}
	if b.Identity() != want {
		t.Errorf("identity = %+v", b.Identity())
	}
	devs := b.Devices()
	wantDevs := []board.DeviceState{
		{Name: "dock", Kind: board.KindSensor, State: "docked"},
		{Name: "paper", Kind: board.KindSensor, State: board.StateOK},
	}
	if !slices.Equal(devs, wantDevs) {
		t.Errorf("devices = %+v", devs)
	}
	if err := b.Close(); err != nil {
		t.Error(err)
	}
}

func TestRegisteredWithSerialOverride(t *testing.T) {
	b, err := board.Open(Name, board.Options{Serial: "SIM000042", Logger: quiet.Logger})
	if err != nil {
		t.Fatal(err)
	}
	sb, ok := b.(*Board)
	if !ok || sb.Identity().Serial != "SIM000042" || sb.Name() != Name {
		t.Fatalf("Open = %T %+v", b, b.Identity())
	}
}

func TestFlipsShowInDevicesAndPins(t *testing.T) {
	b := New(quiet)
	b.SetPaperLow(true)
	b.SetDocked(false)
	if b.PaperLowPin().Read() != gpio.High || b.DockPin().Read() != gpio.Low {
		t.Errorf("pins: paper %v dock %v", b.PaperLowPin().Read(), b.DockPin().Read())
	}
	devs := b.Devices()
	if devs[0].State != "undocked" || devs[1].State != "low" {
		t.Errorf("devices = %+v", devs)
	}
	b.SetPaperLow(false)
	if b.Devices()[1].State != board.StateOK {
		t.Errorf("paper after refill = %+v", b.Devices()[1])
	}
}

func TestDriverSeesEdges(t *testing.T) {
	b := New(quiet)
	pin := b.DockPin()
	// A driver arms edge detection with a pull; the simulated line keeps its level.
	if err := pin.In(gpio.PullDown, gpio.BothEdges); err != nil {
		t.Fatal(err)
	}
	if pin.Read() != gpio.High {
		t.Fatal("In with a pull changed the simulated level")
	}

	got := make(chan gpio.Level)
	go func() {
		// The real driver's way: finite timeouts in a loop.
		for !pin.WaitForEdge(time.Second) {
		}
		got <- pin.Read()
	}()
	b.SetDocked(false)
	if l := <-got; l != gpio.Low {
		t.Errorf("after the edge the level is %v", l)
	}
}

func TestNoEdgeWithoutChangeAndNoBlocking(t *testing.T) {
	b := New(quiet)
	pin := b.DockPin().(*Pin)
	b.SetDocked(true) // already docked
	if n := len(pin.EdgesChan); n != 0 {
		t.Errorf("%d edges queued for no change", n)
	}
	// Nobody listens: flipping far more often than the buffer holds must not block.
	for i := range 10 * edgeBuffer {
		b.SetDocked(i%2 == 0)
	}
	if pin.WaitForEdge(-1) {
		t.Error("WaitForEdge(-1) must return at once without consuming, like the real driver")
	}
	if !pin.WaitForEdge(time.Second) {
		t.Error("queued edge not delivered")
	}
	if err := pin.In(gpio.Float, gpio.BothEdges); err != nil || len(pin.EdgesChan) != 0 {
		t.Errorf("In left %d stale edges (%v)", len(pin.EdgesChan), err)
	}
}
