package integration

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/hardware"
	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/board"
)

// The selftest command runs on the sim board (no serial devices: the LEDs and the buzzer)
// and answers with per-device results; the stats carry the board's hardware states.
func TestSelfTestCommand(t *testing.T) {
	const dev = "IT-SELFTEST-1"
	e := newEnv(t, dev)
	e.startInProcess()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	waitFor(t, 20*time.Second, "first stats", func() bool { return len(e.stream(tmsproto.StreamStats)) > 0 })

	sent, err := e.tms.Send(ctx, dev, e.key, tmsproto.Command{Kind: "selftest"})
	if err != nil {
		t.Fatal(err)
	}
	a := e.finalAck(sent.Match(), 0)
	if a.State != tmsproto.StateSucceeded {
		t.Fatalf("selftest: %+v", a)
	}
	var res struct {
		Results []hardware.Result `cbor:"results"`
	}
	if err := tmsproto.Unmarshal(a.Result, &res); err != nil {
		t.Fatalf("result: %v", err)
	}
	var devices []string
	for _, r := range res.Results {
		if !r.OK {
			t.Errorf("not ok: %s", r)
		}
		devices = append(devices, r.Device)
	}
	if want := []string{board.LineStatusLED, board.LineBuzzer}; !slices.Equal(devices, want) {
		t.Errorf("devices %v, want %v", devices, want)
	}

	stats := e.stream(tmsproto.StreamStats)
	var s struct {
		Hardware []board.DeviceState `cbor:"hardware"`
	}
	if err := looseUnmarshal(stats[len(stats)-1].Body, &s); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(s.Hardware, func(d board.DeviceState) bool { return d.Name == "dock" && d.State == "docked" }) {
		t.Errorf("stats hardware %+v", s.Hardware)
	}
}
