package hardware

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/posagent/posagent/board"
	"github.com/posagent/posagent/drivers/cardreader"
	"github.com/posagent/posagent/drivers/escpos"
	"github.com/posagent/posagent/drivers/gpio/signal"
	"github.com/posagent/posagent/drivers/pinpad"
)

// Result is one device's self-test outcome.
type Result struct {
	Device string `cbor:"device"`
	Kind   string `cbor:"kind"`
	OK     bool   `cbor:"ok"`
	// Skipped: the device could not be tested (its driver is not attached yet); it does not
	// fail the self-test.
	Skipped bool   `cbor:"skipped,omitempty"`
	Detail  string `cbor:"detail,omitempty"`
}

// Failed reports whether r fails the self-test.
func (r Result) Failed() bool { return !r.OK && !r.Skipped }

func (r Result) String() string {
	verdict := "ok"
	switch {
	case r.Skipped:
		verdict = "skipped"
	case !r.OK:
		verdict = "FAILED"
	}
	if r.Detail == "" {
		return fmt.Sprintf("%s (%s): %s", r.Device, r.Kind, verdict)
	}
	return fmt.Sprintf("%s (%s): %s: %s", r.Device, r.Kind, verdict, r.Detail)
}

// Failed reports whether any result fails the self-test.
func Failed(rs []Result) bool {
	for _, r := range rs {
		if r.Failed() {
			return true
		}
	}
	return false
}

// Summary is every result on one line, for a log or an ack message.
func Summary(rs []Result) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = r.String()
	}
	return strings.Join(parts, "; ")
}

// Kinds of the GPIO outputs in self-test results.
const (
	KindLED    = "led"
	KindBuzzer = "buzzer"
)

// DeviceTimeout bounds the self-test of one device.
const DeviceTimeout = 15 * time.Second

// ledShow is how long the self-test shows its LED pattern.
const ledShow = 600 * time.Millisecond

// SelfTest tests every device of the profile in turn: PIN pad (INFO, the PIN key's check
// value when one is loaded, DISPLAY, BEEP), card reader (INFO, STATUS), the status LEDs and
// the buzzer (a short pattern), and reports the printer as skipped until its driver is
// attached. progress, if not nil, is called after each device with the count done and the
// total. Only one self-test runs at a time.
func (m *Manager) SelfTest(ctx context.Context, progress func(done, total int)) []Result {
	m.testMu.Lock()
	defer m.testMu.Unlock()

	m.mu.Lock()
	running := m.running
	devs := append([]*serialDevice(nil), m.serial...)
	ind, bz := m.ind, m.buzzer
	m.mu.Unlock()
	prof := m.o.Board.Profile()

	var tests []func(context.Context) Result
	if !running {
		for _, d := range prof.Serial {
			tests = append(tests, func(context.Context) Result {
				return Result{Device: d.Name, Kind: d.Kind, Detail: "hardware service not running"}
			})
		}
	}
	printer := false
	for _, d := range devs {
		switch {
		case d.err != nil:
			tests = append(tests, func(context.Context) Result {
				return Result{Device: d.dev.Name, Kind: d.dev.Kind, Detail: d.err.Error()}
			})
		case d.pad != nil:
			tests = append(tests, func(ctx context.Context) Result { return testPINPad(ctx, d.dev, d.pad) })
		case d.reader != nil:
			tests = append(tests, func(ctx context.Context) Result { return testCardReader(ctx, d.dev, d.reader) })
		case d.printer != nil:
			printer = true
			tests = append(tests, func(ctx context.Context) Result { return testPrinter(ctx, d.dev, d.printer) })
		}
	}
	if prof.Printer != nil && !printer && !hasKind(prof, board.KindPrinter) {
		tests = append(tests, func(context.Context) Result { return printerPending(board.KindPrinter) })
	}
	if ind != nil {
		tests = append(tests, func(ctx context.Context) Result { return m.testLEDs(ctx, ind) })
	}
	if bz != nil {
		tests = append(tests, func(ctx context.Context) Result { return testBuzzer(ctx, bz) })
	}

	results := make([]Result, 0, len(tests))
	for i, test := range tests {
		tctx, cancel := context.WithTimeout(ctx, DeviceTimeout)
		r := test(tctx)
		cancel()
		results = append(results, r)
		m.log.Info("self-test", "device", r.Device, "ok", r.OK, "skipped", r.Skipped, "detail", r.Detail)
		if progress != nil {
			progress(i+1, len(tests))
		}
	}
	return results
}

func hasKind(p board.Profile, kind string) bool {
	for _, d := range p.Serial {
		if d.Kind == kind {
			return true
		}
	}
	return false
}

// printerPending is the result for a printer the profile declares without a serial port
// (an Android terminal's built-in printer behind the vendor SDK, say): not testable here yet.
func printerPending(name string) Result {
	return Result{Device: name, Kind: board.KindPrinter, Skipped: true, Detail: "no serial port declared for the printer"}
}

// testPrinter reads the printer's real-time status. It prints nothing: a test print costs
// paper and is the technician's choice (diagnostics port), not the TMS's.
func testPrinter(ctx context.Context, d board.SerialDevice, p *escpos.Printer) Result {
	r := Result{Device: d.Name, Kind: d.Kind}
	st, err := p.Status(ctx)
	if err != nil {
		r.Detail = fmt.Sprintf("status: %v", err)
		return r
	}
	if err := st.Err(); err != nil {
		r.Detail = st.State()
		return r
	}
	r.OK, r.Detail = true, st.State()
	return r
}

func testPINPad(ctx context.Context, d board.SerialDevice, c *pinpad.Client) Result {
	r := Result{Device: d.Name, Kind: d.Kind}
	fail := func(step string, err error) Result {
		r.Detail = fmt.Sprintf("%s: %v", step, err)
		return r
	}
	info, err := c.Info(ctx)
	if err != nil {
		return fail("info", err)
	}
	detail := []string{fmt.Sprintf("model %s serial %s firmware %s", info.Model, info.Serial, info.Firmware)}
	if err := c.OpenSession(ctx); err != nil {
		return fail("open", err)
	}
	// The session is the pad's idle state for everything but PIN entry; close it on the way
	// out whatever happened, within a time of its own.
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = c.CloseSession(cctx)
	}()
	pik := -1
	for _, s := range info.Slots {
		if s.Usage == pinpad.UsagePIK {
			pik = s.Slot
			break
		}
	}
	if pik >= 0 {
		usage, kcv, err := c.KeyCheckValue(ctx, pik)
		if err != nil {
			return fail("key check value", err)
		}
		if usage != pinpad.UsagePIK {
			return fail("key check value", fmt.Errorf("slot %d holds a %s key", pik, usage))
		}
		detail = append(detail, fmt.Sprintf("PIN key slot %d KCV %s", pik, kcv))
	} else {
		detail = append(detail, "no PIN key loaded")
	}
	if err := c.Display(ctx, "Self-test", "OK"); err != nil {
		return fail("display", err)
	}
	if err := c.Beep(ctx, 100*time.Millisecond, 1); err != nil {
		return fail("beep", err)
	}
	r.OK, r.Detail = true, strings.Join(detail, "; ")
	return r
}

func testCardReader(ctx context.Context, d board.SerialDevice, c *cardreader.Reader) Result {
	r := Result{Device: d.Name, Kind: d.Kind}
	info, err := c.Info(ctx)
	if err != nil {
		r.Detail = fmt.Sprintf("info: %v", err)
		return r
	}
	st, err := c.Status(ctx)
	if err != nil {
		r.Detail = fmt.Sprintf("status: %v", err)
		return r
	}
	r.OK = true
	r.Detail = fmt.Sprintf("model %s serial %s firmware %s; enabled %s", info.Model, info.Serial, info.Firmware, st.Enabled)
	return r
}

// testLEDs shows the updating pattern for a moment, then the status again. A GPIO write
// failing is the only failure it can see: nobody looks at the LED from here.
func (m *Manager) testLEDs(ctx context.Context, ind *signal.Indicator) Result {
	r := Result{Device: board.LineStatusLED, Kind: KindLED}
	m.ledMu.Lock()
	prev := ind.Status()
	err := ind.Show(signal.Updating)
	if err == nil {
		t := time.NewTimer(ledShow)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		err = ind.Show(prev)
	}
	m.ledMu.Unlock()
	if err != nil {
		r.Detail = err.Error()
		return r
	}
	r.OK = true
	return r
}

func testBuzzer(ctx context.Context, bz *signal.Buzzer) Result {
	r := Result{Device: board.LineBuzzer, Kind: KindBuzzer}
	err := bz.Beep(signal.Double)
	if err == nil {
		err = bz.Wait(ctx)
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = errors.New("pattern did not end in time")
		}
		r.Detail = err.Error()
		return r
	}
	r.OK = true
	return r
}

// TestLEDs and TestBuzzer run one part of the self-test on its own (a technician's device
// test), on the outputs this manager drives, so a test never fights the status loop for the
// lines. ok is false when the profile has no such output.
func (m *Manager) TestLEDs(ctx context.Context) (r Result, ok bool) {
	m.testMu.Lock()
	defer m.testMu.Unlock()
	m.mu.Lock()
	ind := m.ind
	m.mu.Unlock()
	if ind == nil {
		return Result{}, false
	}
	tctx, cancel := context.WithTimeout(ctx, DeviceTimeout)
	defer cancel()
	return m.testLEDs(tctx, ind), true
}

// TestBuzzer: see TestLEDs.
func (m *Manager) TestBuzzer(ctx context.Context) (r Result, ok bool) {
	m.testMu.Lock()
	defer m.testMu.Unlock()
	m.mu.Lock()
	bz := m.buzzer
	m.mu.Unlock()
	if bz == nil {
		return Result{}, false
	}
	tctx, cancel := context.WithTimeout(ctx, DeviceTimeout)
	defer cancel()
	return testBuzzer(tctx, bz), true
}
