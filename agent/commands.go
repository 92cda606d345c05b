package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/posagent/posagent/agent/buildinfo"
	"github.com/posagent/posagent/agent/command"
	"github.com/posagent/posagent/agent/hardware"
	"github.com/posagent/posagent/agent/spool"
	"github.com/posagent/posagent/agent/termconfig"
	"github.com/posagent/posagent/agent/tmsproto"
)

// registerCommands plugs the kinds this issue implements into the dispatcher. Later parts of
// the agent (payments, OTA, keys) register theirs the same way.
func (a *Agent) registerCommands() {
	a.disp.Register("config.apply", command.Kind{Check: CheckConfig, Run: a.configApply})
	a.disp.Register("stats.now", command.Kind{
		Check:      emptyBody,
		Concurrent: true,
		Run: func(ctx context.Context, req *command.Request) (any, error) {
			seq, err := a.sendStats(ctx)
			if err != nil {
				return nil, err
			}
			return map[string]any{"statsSeq": seq}, nil
		},
	})
	a.disp.Register("reboot", command.Kind{
		Check: emptyBody,
		Run: func(ctx context.Context, req *command.Request) (any, error) {
			if req.Resumed {
				// The agent went down while this ran: that was the restart.
				return map[string]any{"restarted": true}, nil
			}
			return map[string]any{"restarting": true}, nil
		},
		// Only after the succeeded ack is durably queued, so it goes out after the restart.
		Then: a.requestRestart,
	})
	a.disp.Register("logs.upload", command.Kind{Check: checkLogsUpload, Run: a.logsUpload, Concurrent: true})
	// Not concurrent: a self-test beeps, writes on the PIN pad and blinks the LEDs.
	a.disp.Register("selftest", command.Kind{Check: emptyBody, Run: a.selfTest})
	// Concurrent: a test page out of paper waits for the shop to load a roll (print.stopped
	// tells the TMS); other commands need not wait with it.
	a.disp.Register("print.test", command.Kind{Check: emptyBody, Run: a.printTest, Concurrent: true})
	a.disp.Register("keys.load", command.Kind{Check: checkKeysLoad, Run: a.keysLoad})
	a.disp.Register("keys.erase", command.Kind{Check: checkKeysErase, Run: a.keysErase})
	// The same functions as the diagnostics port's terminal.lock, terminal.unlock and settle.
	a.disp.Register("terminal.lock", command.Kind{Check: emptyBody, Run: func(ctx context.Context, _ *command.Request) (any, error) {
		return a.lockTerminal(ctx)
	}})
	a.disp.Register("terminal.unlock", command.Kind{Check: emptyBody, Run: func(ctx context.Context, _ *command.Request) (any, error) {
		return a.unlockTerminal(ctx)
	}})
	// Not concurrent: one settlement at a time, after the commands before it. Resumed after a
	// restart, the engine carries an interrupted settlement on from its last committed step.
	a.disp.Register("settle", command.Kind{Check: emptyBody, Run: func(ctx context.Context, _ *command.Request) (any, error) {
		st, err := a.Settle(ctx, "")
		if err != nil {
			return nil, err
		}
		return st, nil
	}})
}

// printTest prints the test page and follows it to its end, with the elements printed as
// progress. Resumed after a restart, it prints the page again: the queue is in memory.
func (a *Agent) printTest(ctx context.Context, req *command.Request) (any, error) {
	return a.printTestPage(ctx, func(pct int) error { return req.Progress(ctx, pct) })
}

// printTestPage prints the test page (the print.test command and the diagnostics port's
// test.print) and follows it to its end, reporting the elements printed as a percentage; an
// error from progress cancels the job.
func (a *Agent) printTestPage(ctx context.Context, progress func(pct int) error) (spool.Info, error) {
	sp := a.hw.Spooler()
	model, ok := a.hw.PrinterModel()
	if sp == nil || !ok {
		return spool.Info{}, fmt.Errorf("receipt printer: %w", ErrNoDevice)
	}
	id := a.board.Identity()
	tk, err := sp.Submit("test page", spool.TestPage(spool.TestInfo{Serial: id.Serial, Model: id.Model,
		Board: a.board.Profile().Name, Version: buildinfo.Version, Time: time.Now()}, model))
	if err != nil {
		return spool.Info{}, err
	}
	for {
		changed := tk.Changed()
		info := tk.Info()
		switch info.State {
		case spool.Done:
			return info, nil
		case spool.Failed, spool.Cancelled:
			return info, tk.Err()
		}
		if info.Total > 0 {
			if err := progress(info.Done * 100 / info.Total); err != nil {
				tk.Cancel()
				return spool.Info{}, err
			}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			tk.Cancel() // stopping: the command resumes at the next start
			return spool.Info{}, ctx.Err()
		}
	}
}

func emptyBody(body []byte) (any, error) {
	var v struct{}
	return nil, tmsproto.Unmarshal(body, &v)
}

// selfTest tests every device, reporting progress per device. A failed device fails the
// command; the per-device results are the result either way, and a summary is the message.
func (a *Agent) selfTest(ctx context.Context, req *command.Request) (any, error) {
	var perr error
	results := a.hw.SelfTest(ctx, func(done, total int) {
		if done < total && perr == nil {
			perr = req.Progress(ctx, done*100/total)
		}
	})
	if perr != nil {
		return nil, perr
	}
	if err := ctx.Err(); err != nil {
		return nil, err // stopping: the command resumes at the next start
	}
	if hardware.Failed(results) {
		return map[string]any{"results": results}, fmt.Errorf("self-test failed: %s", hardware.Summary(results))
	}
	return map[string]any{"results": results}, nil
}

// CheckConfig is config.apply's check: the body decodes as a terminal configuration
// (*termconfig.Document) that validates. Exported for the fleet simulator's terminals.
func CheckConfig(body []byte) (any, error) {
	doc, err := termconfig.Decode(body)
	if err != nil {
		return nil, err
	}
	if err := doc.Validate(); err != nil {
		return nil, err
	}
	return doc, nil
}

func (a *Agent) configApply(ctx context.Context, req *command.Request) (any, error) {
	doc := req.Body.(*termconfig.Document)
	changed, err := a.term.Apply(doc)
	if err != nil {
		return nil, err
	}
	a.log.Info("terminal configuration applied", "version", doc.Version, "changed", changed)
	if changed {
		a.event(ctx, "config.applied", map[string]any{"version": doc.Version})
		a.triggerStats()
	}
	return map[string]any{"version": doc.Version, "changed": changed}, nil
}

// logsUploadBody asks for the lines of one log between two times.
type logsUploadBody struct {
	Log  string `cbor:"log"`            // "agent" or "ecr"; later issues add pos, audit
	From int64  `cbor:"from,omitempty"` // unix seconds; 0 = oldest kept
	To   int64  `cbor:"to,omitempty"`   // unix seconds; 0 = now
}

func checkLogsUpload(body []byte) (any, error) {
	var b logsUploadBody
	if err := tmsproto.Unmarshal(body, &b); err != nil {
		return nil, err
	}
	if b.Log != "agent" && b.Log != "ecr" {
		return nil, fmt.Errorf("log: %q is not kept on this terminal (known: %s)", b.Log, knownLogs)
	}
	if b.To != 0 && b.From > b.To {
		return nil, errors.New("from: after to")
	}
	return b, nil
}

// maxBatch keeps a log batch well below the uplink size bound, including the envelope.
const maxBatch = 48 << 10

// logsUpload sends the asked lines on the log's stream (up/log/agent, up/log/ecr), batched
// into log.batch records that name the command. Resumed after a restart, it sends them again.
func (a *Agent) logsUpload(ctx context.Context, req *command.Request) (any, error) {
	b := req.Body.(logsUploadBody)
	src, err := a.logSource(b.Log)
	if err != nil {
		return nil, err
	}
	from, to := time.Unix(b.From, 0), time.Now()
	if b.To != 0 {
		to = time.Unix(b.To, 0)
	}
	batcher := logBatcher{emit: func(lines []string, batch int) error {
		_, err := a.Outbox.Append(ctx, src.stream, "log.batch", map[string]any{
			"command": req.Command.ID, "batch": batch, "lines": lines,
		})
		return err
	}}
	err = src.read.ReadRange(from, to, batcher.add)
	if err == nil {
		err = batcher.flush()
	}
	if err != nil {
		return nil, err
	}
	return map[string]any{"log": b.Log, "lines": batcher.total, "batches": batcher.batches}, nil
}
