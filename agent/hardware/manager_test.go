package hardware_test

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/hardware"
	"github.com/posagent/posagent/agent/spool"
	"github.com/posagent/posagent/board"
	"github.com/posagent/posagent/board/sim"
	"github.com/posagent/posagent/board/sim/cardemu"
	"github.com/posagent/posagent/board/sim/pinpademu"
	"github.com/posagent/posagent/board/sim/printeremu"
	"github.com/posagent/posagent/board/sim/pty"
	"github.com/posagent/posagent/drivers/pinpad"
	"github.com/posagent/posagent/drivers/serial"
)

var quiet = slog.New(slog.DiscardHandler)

// profiled is the sim board with a profile that lists the emulators' lines.
type profiled struct {
	*sim.Board
	prof board.Profile
}

func (p profiled) Profile() board.Profile { return p.prof }

type event struct {
	kind string
	body map[string]any
}

type rig struct {
	sim     *sim.Board
	pad     *pinpademu.Emulator
	reader  *cardemu.Emulator
	printer *printeremu.Emulator // with newRig(t, true)
	m       *hardware.Manager
	events  chan event
	stop    func()
}

// newRig starts a PIN pad and a card reader emulator on pseudo-terminals and a manager over a
// profile naming their paths, with the sim board's GPIO lines.
func newRig(t *testing.T, printer bool) *rig {
	t.Helper()
	dir := t.TempDir()
	pad, err := pinpademu.New(pinpademu.Options{Dir: dir, Name: "pinpad", Model: "EMU-PP", Serial: "PP0001", Firmware: "1.0", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pad.Close() })
	line, err := pty.Open(dir, "cardreader")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = line.Close() })
	reader := cardemu.Start(line, nil, cardemu.Options{Logger: quiet, Model: "EMU-CR", Serial: "CR0001", Firmware: "2.0"})
	t.Cleanup(func() { _ = reader.Close() })

	sb := sim.New(board.Options{Logger: quiet})
	prof := sb.Profile()
	prof.Serial = []board.SerialDevice{
		{Name: "pinpad", Kind: board.KindPINPad, Port: serial.Config{Path: pad.Path(), Baud: 115200}},
		{Name: "cardreader", Kind: board.KindCardReader, Port: serial.Config{Path: line.Path(), Baud: 115200}},
	}
	var pe *printeremu.Emulator
	if printer {
		prof.Printer = &board.Printer{WidthDots: 384}
		pline, err := pty.Open(dir, "printer")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = pline.Close() })
		if pe, err = printeremu.New(pline, printeremu.Config{Baud: 115200}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = pe.Close() })
		prof.Serial = append(prof.Serial, board.SerialDevice{Name: "printer", Kind: board.KindPrinter,
			Port: serial.Config{Path: pline.Path(), Baud: 115200}})
	}
	if err := prof.Validate(); err != nil {
		t.Fatal(err)
	}
	r := &rig{sim: sb, pad: pad, reader: reader, printer: pe, events: make(chan event, 64)}
	r.m = hardware.New(hardware.Options{
		Board:     profiled{Board: sb, prof: prof},
		Backoff:   func(int) time.Duration { return 10 * time.Millisecond },
		PortCheck: 20 * time.Millisecond,
		Event: func(_ context.Context, kind string, body map[string]any) {
			r.events <- event{kind, body}
		},
		Online: func() bool { return true },
		Spool:  spool.Options{WaitPoll: 50 * time.Millisecond},
		Logger: quiet,
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := r.m.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	r.stop = func() { cancel(); wg.Wait() }
	t.Cleanup(r.stop)
	r.waitState(t, "pinpad", board.StateOK)
	r.waitState(t, "cardreader", board.StateOK)
	return r
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func state(devs []board.DeviceState, name string) board.DeviceState {
	i := slices.IndexFunc(devs, func(d board.DeviceState) bool { return d.Name == name })
	if i < 0 {
		return board.DeviceState{}
	}
	return devs[i]
}

// waitState waits (bounded, not timed) for a device to reach a state.
func (r *rig) waitState(t *testing.T, name, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := state(r.m.Devices(), name)
		if got.State == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: state %+v, want %s", name, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitEvent skips events until one of kind arrives.
func (r *rig) waitEvent(t *testing.T, kind string) event {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e := <-r.events:
			if e.kind == kind {
				return e
			}
		case <-timeout:
			t.Fatalf("no %s event", kind)
		}
	}
}

func checkAllOK(t *testing.T, rs []hardware.Result) {
	t.Helper()
	if hardware.Failed(rs) {
		t.Fatalf("self-test failed: %s", hardware.Summary(rs))
	}
	for _, r := range rs {
		if !r.OK {
			t.Errorf("not ok: %s", r)
		}
	}
}

func TestSelfTestOnEmulators(t *testing.T) {
	r := newRig(t, false)
	var done []int
	rs := r.m.SelfTest(ctxT(t), func(n, total int) {
		done = append(done, n)
		if total != 4 {
			t.Errorf("total %d", total)
		}
	})
	checkAllOK(t, rs)
	var devices []string
	for _, res := range rs {
		devices = append(devices, res.Device)
	}
	if want := []string{"pinpad", "cardreader", board.LineStatusLED, board.LineBuzzer}; !slices.Equal(devices, want) {
		t.Errorf("devices %v, want %v", devices, want)
	}
	if !slices.Equal(done, []int{1, 2, 3, 4}) {
		t.Errorf("progress %v", done)
	}
	if !strings.Contains(rs[0].Detail, "PP0001") || !strings.Contains(rs[0].Detail, "no PIN key") {
		t.Errorf("pinpad detail %q", rs[0].Detail)
	}
	if !strings.Contains(rs[1].Detail, "CR0001") {
		t.Errorf("cardreader detail %q", rs[1].Detail)
	}
	if r.pad.Beeps() == 0 {
		t.Error("the pad never beeped")
	}
	if h := r.sim.Buzzer().History(); len(h) == 0 {
		t.Error("the buzzer line never moved")
	}
}

// With a PIN key loaded, the self-test reports its check value, and nothing of the key.
func TestSelfTestReportsPINKeyCheckValue(t *testing.T) {
	r := newRig(t, true)
	ctx := ctxT(t)
	c := r.m.PINPad()
	kek := []byte("0123456789abcdef")
	pik := []byte("fedcba9876543210")
	if err := c.OpenSession(ctx); err != nil {
		t.Fatal(err)
	}
	for _, k := range []pinpad.KeyLoad{
		{Slot: 1, Usage: pinpad.UsageKEK, Parent: pinpad.TransportSlot, Encrypted: encrypt(pinpademu.DefaultTransportKey, kek), CheckValue: checkValue(kek)},
		{Slot: 2, Usage: pinpad.UsagePIK, Parent: 1, Encrypted: encrypt(kek, pik), CheckValue: checkValue(pik)},
	} {
		if _, err := c.LoadKey(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	rs := r.m.SelfTest(ctx, nil)
	if hardware.Failed(rs) {
		t.Fatalf("self-test failed: %s", hardware.Summary(rs))
	}
	kcv, _ := r.pad.KCV(2)
	want := pinpad.KCV(kcv).String()
	if !strings.Contains(rs[0].Detail, "slot 2 KCV "+want) {
		t.Errorf("pinpad detail %q, want KCV %s", rs[0].Detail, want)
	}
	// The printer answers its real-time status.
	if i := slices.IndexFunc(rs, func(x hardware.Result) bool { return x.Kind == board.KindPrinter }); i < 0 || !rs[i].OK {
		t.Errorf("printer result missing or wrong: %s", hardware.Summary(rs))
	}
}

// The printer's status is its hardware state, and paper out fails the self-test.
func TestPrinterStatusInSelfTestAndStates(t *testing.T) {
	r := newRig(t, true)
	ctx := ctxT(t)
	r.printer.SetPaperOut(true)
	rs := r.m.SelfTest(ctx, nil)
	i := slices.IndexFunc(rs, func(x hardware.Result) bool { return x.Kind == board.KindPrinter })
	if i < 0 || rs[i].OK || !strings.Contains(rs[i].Detail, "paper-out") || !hardware.Failed(rs) {
		t.Fatalf("self-test with paper out: %s", hardware.Summary(rs))
	}
	if st := state(r.m.Devices(), "printer"); st.State != "paper-out" {
		t.Fatalf("printer state %+v", st)
	}
	r.printer.LoadPaper()
	if rs := r.m.SelfTest(ctx, nil); hardware.Failed(rs) {
		t.Fatalf("self-test after loading paper: %s", hardware.Summary(rs))
	}
	if st := state(r.m.Devices(), "printer"); st.State != board.StateOK {
		t.Fatalf("printer state after loading paper %+v", st)
	}
}

// A receipt that runs out of paper waits in the printer's queue, with events and the
// device's state saying so, and finishes once paper is loaded.
func TestPrinterQueueWaitsForPaper(t *testing.T) {
	r := newRig(t, true)
	sp := r.m.Spooler()
	model, ok := r.m.PrinterModel()
	if sp == nil || !ok {
		t.Fatal("no printer queue")
	}
	r.printer.PaperOutAfter(3)
	tk, err := sp.Submit("test page", spool.TestPage(spool.TestInfo{Serial: "SIM1"}, model))
	if err != nil {
		t.Fatal(err)
	}
	if e := r.waitEvent(t, spool.EventStopped); e.body["reason"] != "paper-out" || e.body["name"] != "test page" {
		t.Errorf("stopped event %v", e.body)
	}
	r.waitState(t, "printer", "paper-out")
	if st := state(r.m.Devices(), "printer"); !strings.Contains(st.Detail, `job "test page" waits: paper-out`) {
		t.Errorf("printer detail %q", st.Detail)
	}
	r.printer.LoadPaper()
	r.waitEvent(t, spool.EventResumed)
	if err := tk.Wait(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if rs := r.printer.Receipts(); len(rs) != 1 || !strings.Contains(rs[0].Text, "END OF TEST") {
		t.Fatalf("receipts %v", rs)
	}
	r.waitState(t, "printer", board.StateOK)
}

// Unplugging the PIN pad's line is an event and a gone state; the replug brings both back.
func TestUnplugReplugEventsAndStates(t *testing.T) {
	r := newRig(t, false)
	r.pad.Unplug()
	e := r.waitEvent(t, hardware.EventDeviceGone)
	if e.body["device"] != "pinpad" || e.body["kind"] != board.KindPINPad {
		t.Errorf("gone event %v", e.body)
	}
	r.waitState(t, "pinpad", hardware.StateGone)
	if st := state(r.m.Devices(), "cardreader"); st.State != board.StateOK {
		t.Errorf("cardreader %+v while the pad is away", st)
	}
	rs := r.m.SelfTest(ctxT(t), nil)
	if !hardware.Failed(rs) || rs[0].OK {
		t.Errorf("self-test with the pad unplugged: %s", hardware.Summary(rs))
	}

	if err := r.pad.Replug(); err != nil {
		t.Fatal(err)
	}
	e = r.waitEvent(t, hardware.EventDeviceBack)
	if e.body["device"] != "pinpad" || e.body["kind"] != board.KindPINPad {
		t.Errorf("back event %v", e.body)
	}
	r.waitState(t, "pinpad", board.StateOK)
	checkAllOK(t, r.m.SelfTest(ctxT(t), nil))
}

// The dock and paper-low inputs become events; the board's sensors stay in the states.
func TestInputEvents(t *testing.T) {
	r := newRig(t, false)
	r.sim.SetDocked(false)
	if e := r.waitEvent(t, hardware.EventDockChanged); e.body["docked"] != false {
		t.Errorf("dock event %v", e.body)
	}
	r.sim.SetPaperLow(true)
	if e := r.waitEvent(t, hardware.EventPaperLow); e.body["low"] != true {
		t.Errorf("paper event %v", e.body)
	}
	if st := state(r.m.Devices(), sim.SensorDock); st.State != "undocked" {
		t.Errorf("dock %+v", st)
	}
}

// After Run returns, every device is closed and the states say the service is not started.
func TestStopClosesEverything(t *testing.T) {
	r := newRig(t, false)
	r.stop()
	if st := state(r.m.Devices(), "pinpad"); st.State != board.StateUnknown {
		t.Errorf("pinpad after stop %+v", st)
	}
	if r.m.PINPad() != nil || r.m.CardReader() != nil {
		t.Error("drivers still handed out after stop")
	}
	rs := r.m.SelfTest(ctxT(t), nil)
	if !hardware.Failed(rs) {
		t.Errorf("self-test of a stopped manager: %s", hardware.Summary(rs))
	}
}

// encrypt and checkValue are the key-loading host's side, from the emulator's tooling.
func encrypt(parent, key []byte) []byte {
	out, err := pinpademu.WrapKey(parent, key)
	if err != nil {
		panic(err)
	}
	return out
}

func checkValue(key []byte) []byte {
	cv, err := pinpademu.KeyCheckValue(key)
	if err != nil {
		panic(err)
	}
	return cv
}
