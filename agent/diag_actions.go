package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/posagent/posagent/agent/checkout"
	"github.com/posagent/posagent/agent/diag"
	"github.com/posagent/posagent/agent/hardware"
	"github.com/posagent/posagent/agent/payment"
	"github.com/posagent/posagent/board"
	"github.com/posagent/posagent/drivers/gpio/drawer"
)

// settleResult is what settle answers on the diagnostics port.
type settleResult struct {
	Batch       int                `json:"batch"`
	Totals      []diag.BatchTotals `json:"totals"`
	DomBalanced bool               `json:"domesticBalanced"`
	ForBalanced bool               `json:"foreignBalanced"`
}

func (t diagTerminal) Act(ctx context.Context, action string, params json.RawMessage, progress func(pct int)) (any, error) {
	a := t.a
	noParams := func() error {
		var none struct{}
		return decodeParams(params, &none)
	}
	switch action {
	case diag.ActSelfTest:
		if err := noParams(); err != nil {
			return nil, err
		}
		return a.diagSelfTest(ctx, progress)
	case diag.ActPrintTest:
		if err := noParams(); err != nil {
			return nil, err
		}
		return a.printTestPage(ctx, func(pct int) error {
			if progress != nil {
				progress(pct)
			}
			return nil
		})
	case diag.ActCardTest:
		return a.diagCardTest(ctx, params)
	case diag.ActPINPadTest:
		if err := noParams(); err != nil {
			return nil, err
		}
		return a.diagPINPadTest(ctx)
	case diag.ActLEDTest:
		if err := noParams(); err != nil {
			return nil, err
		}
		return a.diagLEDTest(ctx)
	case diag.ActBuzzerTest:
		if err := noParams(); err != nil {
			return nil, err
		}
		return a.diagBuzzerTest(ctx)
	case diag.ActDrawerTest:
		if err := noParams(); err != nil {
			return nil, err
		}
		return a.diagDrawerTest(ctx)
	case diag.ActEchoTMS:
		if err := noParams(); err != nil {
			return nil, err
		}
		rtt, err := a.link.Ping(ctx)
		if err != nil {
			return nil, err
		}
		return diag.EchoResult{RTTMs: rtt.Milliseconds()}, nil
	case diag.ActEchoHost:
		if err := noParams(); err != nil {
			return nil, err
		}
		start := time.Now()
		if err := a.pay.Echo(ctx); err != nil {
			return nil, err
		}
		return diag.EchoResult{RTTMs: time.Since(start).Milliseconds()}, nil
	case diag.ActECRApprove, diag.ActECRReject:
		var p struct {
			ID string `json:"id"`
		}
		if err := decodeParams(params, &p); err != nil {
			return nil, err
		}
		if p.ID == "" {
			return nil, &diag.ParamError{Reason: "id: required"}
		}
		// The audit entry names who decided: the technician, when the port says who it is.
		by := "diag"
		if tech := diag.ActorFrom(ctx); tech != "" {
			by = "diag:" + tech
		}
		var err error
		if action == diag.ActECRApprove {
			err = a.ecr.access.Approve(ctx, p.ID, by)
		} else {
			err = a.ecr.access.Deny(ctx, p.ID, by)
		}
		if err != nil {
			return nil, err
		}
		return map[string]any{"id": p.ID}, nil
	case diag.ActLock:
		if err := noParams(); err != nil {
			return nil, err
		}
		return a.lockTerminal(ctx)
	case diag.ActUnlock:
		if err := noParams(); err != nil {
			return nil, err
		}
		return a.unlockTerminal(ctx)
	case diag.ActSettle:
		if err := noParams(); err != nil {
			return nil, err
		}
		st, err := a.Settle(ctx, "")
		res := settleResult{Batch: st.Batch, Totals: batchTotals(st, a.term.Active()), DomBalanced: st.DomBalanced, ForBalanced: st.ForBalanced}
		if err != nil {
			return nil, err
		}
		return res, nil
	case diag.ActParamsSet:
		return a.setParam(ctx, params)
	}
	// bundle and audit.verify are the server's own; anything else is unknown.
	return nil, fmt.Errorf("%w: %q", diag.ErrUnknownAction, action)
}

// decodeParams decodes an action's JSON parameters strictly; empty parameters leave v zero.
func decodeParams(raw json.RawMessage, v any) error {
	if len(strings.TrimSpace(string(raw))) == 0 {
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &diag.ParamError{Reason: err.Error()}
	}
	if dec.More() {
		return &diag.ParamError{Reason: "trailing data after the parameters"}
	}
	return nil
}

func (a *Agent) diagSelfTest(ctx context.Context, progress func(int)) (any, error) {
	results := a.hw.SelfTest(ctx, func(done, total int) {
		if progress != nil && total > 0 {
			progress(done * 100 / total)
		}
	})
	res := diag.SelfTestResult{OK: !hardware.Failed(results), Results: make([]diag.DeviceResult, 0, len(results))}
	for _, r := range results {
		res.Results = append(res.Results, diag.DeviceResult{Device: r.Device, Kind: r.Kind, OK: r.OK, Skipped: r.Skipped, Detail: r.Detail})
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	if !res.OK {
		return res, fmt.Errorf("self-test failed: %s", hardware.Summary(results))
	}
	return res, nil
}

// Card test bounds: the technician presents a card within this time.
const (
	cardTestDefault = 30 * time.Second
	cardTestMax     = 180 * time.Second
)

func (a *Agent) diagCardTest(ctx context.Context, params json.RawMessage) (any, error) {
	var p struct {
		TimeoutSec int `json:"timeoutSec"`
	}
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	wait := cardTestDefault
	if p.TimeoutSec != 0 {
		wait = time.Duration(p.TimeoutSec) * time.Second
		if wait < time.Second || wait > cardTestMax {
			return nil, &diag.ParamError{Reason: fmt.Sprintf("timeoutSec: %d is outside 1..%d", p.TimeoutSec, int(cardTestMax.Seconds()))}
		}
	}
	if a.hw.CardReader() == nil {
		return nil, fmt.Errorf("card reader: %w", ErrNoDevice)
	}
	// The reader is the payments' too: a card test is refused while an update installs and
	// counts as a payment for the install's wait.
	release, err := a.gate.enter()
	if err != nil {
		return nil, err
	}
	defer release()
	rctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	co := checkout.New(checkout.Options{Engine: a.pay, Reader: a.hw.CardReader, Pad: a.hw.PINPad,
		PINSlot: a.keys.PINKeySlot, Config: a.term.Active, Logger: a.log, CardWait: wait})
	card, err := co.ReadCard(rctx, checkout.Sale{Op: payment.OpBalance})
	if err != nil {
		return nil, fmt.Errorf("card test: %w", err)
	}
	// The mask and the entry mode only: the expiry, the track data and the full number never
	// leave the checkout.
	return diag.CardTestResult{PAN: card.Mask, EntryMode: entryMode(card.Entry)}, nil
}

func entryMode(code string) string {
	switch code {
	case "05":
		return "chip"
	case "07":
		return "contactless"
	case "02", "90":
		return "stripe"
	}
	return code
}

func (a *Agent) diagPINPadTest(ctx context.Context) (any, error) {
	pad := a.hw.PINPad()
	if pad == nil {
		return nil, fmt.Errorf("PIN pad: %w", ErrNoDevice)
	}
	if err := pad.Display(ctx, "Technician test", a.board.Identity().Serial); err != nil {
		return nil, fmt.Errorf("PIN pad display: %w", err)
	}
	if err := pad.Beep(ctx, 150*time.Millisecond, 2); err != nil {
		return nil, fmt.Errorf("PIN pad beep: %w", err)
	}
	return map[string]any{"display": true, "beep": true}, nil
}

// diagLEDTest and diagBuzzerTest run the self-test's own LED and buzzer tests through the
// hardware manager, which owns those lines (the status loop drives the LEDs).
func (a *Agent) diagLEDTest(ctx context.Context) (any, error) {
	return outputTest(a.hw.TestLEDs(ctx))
}

func (a *Agent) diagBuzzerTest(ctx context.Context) (any, error) {
	return outputTest(a.hw.TestBuzzer(ctx))
}

func outputTest(r hardware.Result, ok bool) (any, error) {
	if !ok {
		return nil, ErrNoDevice
	}
	res := diag.DeviceResult{Device: r.Device, Kind: r.Kind, OK: r.OK, Detail: r.Detail}
	if !r.OK {
		return res, fmt.Errorf("%s: %s", r.Device, r.Detail)
	}
	return res, nil
}

func (a *Agent) diagDrawerTest(ctx context.Context) (any, error) {
	if _, ok := a.board.Profile().Line(board.LineDrawer); !ok {
		return nil, fmt.Errorf("cash drawer: %w", ErrNoDevice)
	}
	pin, err := a.board.Pin(board.LineDrawer)
	if err != nil {
		return nil, fmt.Errorf("cash drawer: %w", err)
	}
	d, err := drawer.New(pin, drawer.Options{})
	if err != nil {
		return nil, err
	}
	if err := d.Kick(ctx); err != nil {
		return nil, err
	}
	return map[string]any{"pulseMs": d.Pulse().Milliseconds()}, nil
}

// ---- lock, unlock, settle: shared with the TMS commands ----

// lockTerminal takes the terminal out of service: payments are refused until unlocked.
func (a *Agent) lockTerminal(ctx context.Context) (map[string]any, error) {
	if err := a.pay.Lock(ctx); err != nil {
		return nil, err
	}
	a.log.Info("terminal locked")
	a.event(ctx, "terminal.locked", nil)
	a.triggerStats()
	return map[string]any{"state": string(a.pay.Status().State)}, nil
}

// unlockTerminal puts a locked terminal back in service; the payments service signs it in
// again at once.
func (a *Agent) unlockTerminal(ctx context.Context) (map[string]any, error) {
	if err := a.pay.Unlock(ctx); err != nil {
		return nil, err
	}
	a.log.Info("terminal unlocked")
	a.event(ctx, "terminal.unlocked", nil)
	select {
	case a.diag.wakePay <- struct{}{}:
	default:
	}
	a.triggerStats()
	return map[string]any{"state": string(a.pay.Status().State)}, nil
}
