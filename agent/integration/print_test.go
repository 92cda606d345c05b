package integration

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/spool"
	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/board/sim/printeremu"
	"github.com/posagent/posagent/board/sim/pty"
)

// print.test from the TMS prints the test page on the receipt printer (the emulator on a
// pseudo-terminal). The roll runs out part-way: the TMS hears print.stopped and sees the
// command still running; once paper is loaded the page finishes and the final ack says so.
func TestPrintTestCommandWaitsForPaper(t *testing.T) {
	const dev = "IT-PRINT-1"
	e := newEnv(t, dev)
	line, err := pty.Open(t.TempDir(), "printer")
	if err != nil {
		t.Fatal(err)
	}
	defer line.Close()
	emu, err := printeremu.New(line, printeremu.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	emu.PaperOutAfter(4)
	e.startInProcessWith(fmt.Sprintf(`
[[devices]]
name = "printer"
kind = "printer"
[devices.port]
path = %q
baud = 115200
`, line.Path()))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	waitFor(t, 20*time.Second, "first stats", func() bool { return len(e.stream(tmsproto.StreamStats)) > 0 })

	sent, err := e.tms.Send(ctx, dev, e.key, tmsproto.Command{Kind: "print.test"})
	if err != nil {
		t.Fatal(err)
	}
	var stopped map[string]any
	waitFor(t, 20*time.Second, "print.stopped event", func() bool {
		for _, ev := range e.stream(tmsproto.StreamEvent) {
			var body map[string]any
			if ev.Kind == spool.EventStopped && looseUnmarshal(ev.Body, &body) == nil {
				stopped = body
				return true
			}
		}
		return false
	})
	if stopped["reason"] != "paper-out" || stopped["name"] != "test page" {
		t.Errorf("print.stopped %v", stopped)
	}
	for _, a := range e.acks(sent.Match()) {
		if a.State == tmsproto.StateSucceeded || a.State == tmsproto.StateFailed {
			t.Fatalf("finished without paper: %+v", a)
		}
	}
	emu.LoadPaper()
	a := e.finalAck(sent.Match(), 0)
	if a.State != tmsproto.StateSucceeded {
		t.Fatalf("print.test: %+v", a)
	}
	var info spool.Info
	if err := tmsproto.Unmarshal(a.Result, &info); err != nil {
		t.Fatal(err)
	}
	if info.State != spool.Done || info.Done != info.Total || info.Total == 0 {
		t.Errorf("result %+v", info)
	}
	rs := emu.Receipts()
	if len(rs) != 1 || !strings.Contains(rs[0].Text, dev) || !strings.Contains(rs[0].Text, "END OF TEST") {
		t.Fatalf("receipts %v", rs)
	}
	waitFor(t, 20*time.Second, "print.resumed event", func() bool {
		for _, ev := range e.stream(tmsproto.StreamEvent) {
			if ev.Kind == spool.EventResumed {
				return true
			}
		}
		return false
	})
}
