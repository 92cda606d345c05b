package payment

import (
	"context"
	"fmt"
	"sort"
	"strconv"

	"github.com/posagent/posagent/agent/iso8583"
)

// Field 62 of a parameter download (0800, 60.3 360) and of a status upload (0820, 60.3
// 362) is a list of items: tag (2 ASCII digits), length (3 ASCII digits), value (ASCII).

// Parameter tags the host downloads (docs/hostsim.md) and what the engine does with them.
const (
	ParamMerchantName = "11"
	ParamTimeout      = "12" // answer timeout, seconds
	ParamResend       = "13" // reversal attempts
	ParamTPDU         = "14"
	ParamTips         = "15"
	ParamMaxRefund    = "16" // n12, minor units
	ParamOfflineMode  = "17"
	ParamKeyIndex     = "18"
)

// Status tags of a status upload: one per device, "0" working, "1" faulty, "2" absent.
const (
	StatusCardReader = "21"
	StatusPINPad     = "22"
	StatusPrinter    = "23"
	StatusDisplay    = "24"
)

func encodeTLV(items map[string]string) ([]byte, error) {
	tags := make([]string, 0, len(items))
	for t := range items {
		tags = append(tags, t)
	}
	sort.Strings(tags)
	var out []byte
	for _, t := range tags {
		v := items[t]
		if len(t) != 2 || len(v) > 999 {
			return nil, fmt.Errorf("%w: tag %q of %d bytes", ErrBadRequest, t, len(v))
		}
		out = fmt.Appendf(out, "%s%03d%s", t, len(v), v)
	}
	return out, nil
}

func parseTLV(b []byte) (map[string]string, error) {
	out := map[string]string{}
	for len(b) > 0 {
		if len(b) < 5 {
			return nil, fmt.Errorf("payment: parameter item cut short")
		}
		n, err := strconv.Atoi(string(b[2:5]))
		if err != nil || n < 0 || 5+n > len(b) {
			return nil, fmt.Errorf("payment: parameter item %q: bad length", b[:2])
		}
		out[string(b[:2])] = string(b[5 : 5+n])
		b = b[5+n:]
	}
	return out, nil
}

// DownloadParameters asks the host for the terminal's downloaded parameters and keeps them;
// they are reported in Status. The TMS configuration stays the authority: the host's values
// are shown, not applied over it.
func (e *Engine) DownloadParameters(ctx context.Context) (map[string]string, error) {
	e.opMu.Lock()
	defer e.opMu.Unlock()
	doc := e.o.Config()
	if err := e.ready(doc); err != nil {
		return nil, err
	}
	stan, batch, err := e.nextSTAN(ctx)
	if err != nil {
		return nil, err
	}
	tid, mid := identity(doc)
	req := &iso8583.Msg{MTI: "0800", STAN: stan, TID: tid, MID: mid,
		F60: iso8583.F60{Type: "00", Batch: fmt.Sprintf("%06d", batch), NetCode: "360"}}
	ans, err := e.exchange(ctx, doc, req, false)
	if err != nil {
		return nil, hostErr(err)
	}
	if ans.RespCode != "00" {
		return nil, fmt.Errorf("%w: parameter download: %s", ErrDeclined, ans.RespCode)
	}
	params, err := parseTLV(ans.F62)
	if err != nil {
		return nil, err
	}
	if err := e.commitMeta(ctx, func(m *meta) error { m.Params = params; return nil }, nil); err != nil {
		return nil, err
	}
	e.event(ctx, "payment.parameters", map[string]any{"count": len(params)})
	return params, nil
}

// StatusUpload reports the terminal's devices to the host (seed 004 §6.3.7).
func (e *Engine) StatusUpload(ctx context.Context, states map[string]string) error {
	e.opMu.Lock()
	defer e.opMu.Unlock()
	doc := e.o.Config()
	if err := e.ready(doc); err != nil {
		return err
	}
	f62, err := encodeTLV(states)
	if err != nil {
		return err
	}
	stan, batch, err := e.nextSTAN(ctx)
	if err != nil {
		return err
	}
	tid, mid := identity(doc)
	req := &iso8583.Msg{MTI: "0820", STAN: stan, TID: tid, MID: mid, F62: f62,
		F60: iso8583.F60{Type: "00", Batch: fmt.Sprintf("%06d", batch), NetCode: "362"}}
	ans, err := e.exchange(ctx, doc, req, false)
	if err != nil {
		return hostErr(err)
	}
	if ans.RespCode != "00" {
		return fmt.Errorf("%w: status upload: %s", ErrDeclined, ans.RespCode)
	}
	return nil
}
