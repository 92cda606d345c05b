package diag

import (
	"regexp"
	"sort"
	"testing"

	"github.com/posagent/posagent/agent/hardware"
	"github.com/posagent/posagent/board"
	"github.com/posagent/posagent/board/sim"
	"github.com/posagent/posagent/drivers/escpos"
)

// consoleDeviceLevels reads the console's table of device states (DEVICE_STATES in app.js):
// state → ok, warning, fault or neutral.
func consoleDeviceLevels(t *testing.T) map[string]string {
	t.Helper()
	js, err := web.ReadFile("web/app.js")
	if err != nil {
		t.Fatal(err)
	}
	block := regexp.MustCompile(`(?s)const DEVICE_STATES = new Map\(\[(.*?)\]\);`).FindSubmatch(js)
	if block == nil {
		t.Fatal("app.js has no DEVICE_STATES table")
	}
	levels := map[string]string{}
	for _, m := range regexp.MustCompile(`\['([^']*)',\s*'([^']*)'\]`).FindAllSubmatch(block[1], -1) {
		state, level := string(m[1]), string(m[2])
		if _, dup := levels[state]; dup {
			t.Errorf("DEVICE_STATES lists %q twice", state)
		}
		switch level {
		case "ok", "warning", "fault", "neutral":
		default:
			t.Errorf("DEVICE_STATES: %q is %q, not a level the console draws", state, level)
		}
		levels[state] = level
	}
	return levels
}

// reportedStates are the device states the agent can report, taken from their sources: the
// board's common states, the hardware manager's own, the simulated board's sensors in each
// position, and every printer status summary.
func reportedStates() map[string]bool {
	states := map[string]bool{
		board.StateOK: true, board.StateFault: true, board.StateAbsent: true, board.StateUnknown: true,
		hardware.StateGone: true, hardware.StateError: true,
	}
	b := sim.New(board.Options{})
	for _, on := range []bool{true, false} {
		b.SetDocked(on)
		b.SetPaperLow(on)
		for _, d := range b.Devices() {
			states[d.State] = true
		}
	}
	for _, st := range []escpos.Status{
		{Online: true}, {Online: true, PaperNearEnd: true}, {Online: true, PaperOut: true},
		{Online: true, CoverOpen: true}, {Online: true, CutterError: true}, {Online: false},
	} {
		states[st.State()] = true
	}
	return states
}

// TestConsoleDeviceStates: the console colours every state the agent reports, and colours it
// by what it means (a docked terminal is not red).
func TestConsoleDeviceStates(t *testing.T) {
	levels := consoleDeviceLevels(t)
	want := map[string]string{
		"ok": "ok", "docked": "ok", "undocked": "ok",
		"low": "warning", "paper-near-end": "warning",
		"fault": "fault", "error": "fault", "gone": "fault", "offline": "fault", "paper-out": "fault", "cover-open": "fault",
		"absent": "neutral", "unknown": "neutral",
	}
	reported := reportedStates()
	states := make([]string, 0, len(reported))
	for s := range reported {
		states = append(states, s)
	}
	sort.Strings(states)
	if len(states) < 10 {
		t.Fatalf("only %d states found in the sources: %q", len(states), states)
	}
	for _, s := range states {
		w, ok := want[s]
		if !ok {
			t.Errorf("a device may report %q: decide how the console shows it (app.js DEVICE_STATES and this test)", s)
			continue
		}
		if got, ok := levels[s]; !ok {
			t.Errorf("app.js does not classify %q (it would show as a warning)", s)
		} else if got != w {
			t.Errorf("app.js shows %q as %s, want %s", s, got, w)
		}
	}
	// The console draws each level with its own class.
	js, err := web.ReadFile("web/app.js")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`LEVEL_CLASS = \{ok: 'ok', warning: 'warn', fault: 'bad', neutral: ''\}`).Match(js) {
		t.Error("app.js has no LEVEL_CLASS mapping the levels to the styles ok, warn and bad")
	}
	if !regexp.MustCompile(`'data-level': level`).Match(js) {
		t.Error("the hardware list does not say each device's level (data-level)")
	}
}
