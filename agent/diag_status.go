package agent

import (
	"context"
	"time"

	"github.com/posagent/posagent/agent/buildinfo"
	"github.com/posagent/posagent/agent/diag"
	"github.com/posagent/posagent/agent/logging"
	"github.com/posagent/posagent/agent/payment"
	"github.com/posagent/posagent/agent/supervisor"
	"github.com/posagent/posagent/agent/termconfig"
)

func (t diagTerminal) Status(ctx context.Context) diag.Status {
	a := t.a
	doc := a.term.Active()
	id := a.board.Identity()
	ota := a.otaInfo()
	link := a.link.Status()
	pay := a.pay.Status()
	st := diag.Status{
		Time: time.Now(),
		Identity: diag.Identity{DeviceID: a.cfg.DeviceID, Serial: id.Serial, Model: id.Model, Vendor: id.Vendor,
			Board: a.board.Name(), TerminalID: doc.AuthHost.TerminalID, MerchantID: doc.AuthHost.MerchantID,
			MerchantName: doc.AuthHost.MerchantName},
		Agent: diag.AgentStatus{Version: buildinfo.Version, Commit: buildinfo.Commit, Target: buildinfo.Target(),
			Slot: ota.Slot, UptimeS: int64(time.Since(a.started).Seconds()), LastTrial: ota.LastTrial},
		TMS: diag.TMSStatus{Connected: link.Connected, Broker: displayBroker(a.diag.broker), Connects: link.Connects,
			Failures: link.Failures, LastError: logging.MaskPANs(link.LastError)},
		Host: diag.HostStatus{Configured: doc.AuthHost.Configured(), State: string(pay.State), Test: pay.Test,
			Reversals: pay.Reversals, Held: pay.Held},
		Hardware: []diag.Device{},
		Config:   diag.ConfigStatus{Version: doc.Version},
		Keys:     []diag.KeySlot{},
		OTA: diag.OTAStatus{Slot: ota.Slot, Components: ota.Components, Job: ota.Job, Stage: ota.Stage,
			Progress: ota.Progress, LastTrial: ota.LastTrial},
		Params: a.localParams(),
	}
	if link.ConnectedAt > 0 {
		st.TMS.ConnectedAt = time.UnixMilli(link.ConnectedAt)
	}
	if len(doc.AuthHost.Addresses) > 0 {
		st.Host.Address = doc.AuthHost.Addresses[0]
	}
	for _, d := range a.hw.Devices() {
		st.Hardware = append(st.Hardware, diag.Device{Name: d.Name, Kind: d.Kind, State: d.State, Detail: d.Detail})
	}
	ob := a.Outbox.State()
	st.Outbox = diag.OutboxStatus{Records: ob.Records, Bytes: ob.Bytes, Alarm: ob.Alarm}
	if ki := a.keysInfo(); ki != nil {
		for _, k := range ki.Keys {
			ks := diag.KeySlot{Role: k.Role, KCV: k.KCV, Alg: k.Alg}
			if k.At > 0 {
				ks.LoadedAt = time.Unix(k.At, 0)
			}
			st.Keys = append(st.Keys, ks)
		}
	}
	lic := a.lic.Status()
	st.License = diag.LicenseStatus{State: lic.State, ID: lic.ID, Features: lic.Features, Reason: lic.Reason}
	if lic.Expires > 0 {
		st.License.Expires = time.Unix(lic.Expires, 0)
	}
	st.Batch = diag.BatchStatus{Number: pay.Batch, Count: pay.Txns, Settling: pay.Settling}
	if totals, err := a.pay.Totals(); err == nil {
		st.Batch.Totals = batchTotals(totals, doc)
	}
	if s, ok := a.diag.history.latest(); ok {
		st.Resources = s
	} else {
		st.Resources = a.sample(ctx)
	}
	st.ECR = diag.ECRStatus{Listen: a.ECRAddr(), Protected: doc.ECR.ProtectedMode}
	if a.ecr.access != nil {
		if r, ok := a.ecr.access.Pending(); ok {
			st.ECR.Pending = []diag.ECRRegistration{{ID: r.ID, Name: r.Name, Remote: r.Remote, Requested: r.Since}}
		}
	}
	for _, s := range a.sup.Status() {
		if s.State == supervisor.StateRunning && s.Restarts == 0 {
			continue
		}
		st.Services = append(st.Services, diag.ServiceState{Name: s.Name, State: string(s.State), Restarts: s.Restarts,
			LastError: logging.MaskPANs(s.LastError)})
	}
	return st
}

// batchTotals splits settlement totals by region: domestic cards in the transaction currency,
// foreign ones apart (the host settles them separately).
func batchTotals(t payment.SettlementTotals, doc *termconfig.Document) []diag.BatchTotals {
	dom := "domestic"
	if c, ok := doc.DefaultCurrency(); ok && c.Alpha != "" {
		dom = c.Alpha
	}
	out := []diag.BatchTotals{{Currency: dom, SalesCount: t.DomDebitCount, SalesAmount: t.DomDebit,
		RefundCount: t.DomCreditCount, RefundAmount: t.DomCredit}}
	if t.ForDebitCount+t.ForCreditCount > 0 {
		out = append(out, diag.BatchTotals{Currency: "foreign", SalesCount: t.ForDebitCount, SalesAmount: t.ForDebit,
			RefundCount: t.ForCreditCount, RefundAmount: t.ForCredit})
	}
	return out
}
