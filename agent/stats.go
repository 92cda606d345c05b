package agent

import (
	"context"
	"errors"
	"time"

	"github.com/posagent/posagent/agent/buildinfo"
	"github.com/posagent/posagent/agent/license"
	"github.com/posagent/posagent/agent/outbox"
	"github.com/posagent/posagent/agent/payment"
	"github.com/posagent/posagent/agent/supervisor"
	"github.com/posagent/posagent/agent/sysinfo"
	"github.com/posagent/posagent/agent/tmslink"
	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/board"
	"github.com/posagent/posagent/ota/update"
)

// Stats is the body of an up/stats record. Field names are short on purpose: this record is
// the bulk of an idle terminal's mobile data.
type Stats struct {
	Agent    AgentInfo           `cbor:"agent"`
	Device   board.Identity      `cbor:"device"`
	Board    string              `cbor:"board"`
	UptimeS  int64               `cbor:"uptimeS"` // agent uptime, seconds
	Config   uint64              `cbor:"config"`  // active terminal configuration version
	Outbox   outbox.State        `cbor:"outbox"`
	Link     tmslink.Status      `cbor:"link"`
	System   sysinfo.Snapshot    `cbor:"system"`
	Hardware []board.DeviceState `cbor:"hardware"`
	Keys     *KeysInfo           `cbor:"keys,omitempty"`
	License  license.Status      `cbor:"license"`
	Payment  payment.Status      `cbor:"payment"`
	OTA      OTAInfo             `cbor:"ota"`
	Services []ServiceInfo       `cbor:"services,omitempty"` // only those not running cleanly
}

// AgentInfo names the running build.
type AgentInfo struct {
	Version string `cbor:"version"`
	Commit  string `cbor:"commit"`
	Target  string `cbor:"target"`
}

// OTAInfo is what software the terminal runs beyond the agent, and the update in progress.
type OTAInfo struct {
	Slot       string            `cbor:"slot"`                 // the agent's slot: factory, a or b
	Components map[string]string `cbor:"components,omitempty"` // installed component → version
	Job        string            `cbor:"job,omitempty"`        // update command in progress
	Stage      string            `cbor:"stage,omitempty"`
	Progress   int               `cbor:"progress,omitempty"`
	LastTrial  string            `cbor:"lastTrial,omitempty"` // the last agent trial: committed / rolled_back: reason
}

// OTAInfoOf is the part of OTAInfo an updater's status gives (everything but the launcher's
// last trial).
func OTAInfoOf(st update.Status) OTAInfo {
	info := OTAInfo{Slot: st.Slot, Job: st.Job, Stage: string(st.Stage), Progress: st.Progress}
	if len(st.Installed) > 0 {
		info.Components = make(map[string]string, len(st.Installed))
		for name, in := range st.Installed {
			info.Components[name] = in.Version
		}
	}
	return info
}

func (a *Agent) otaInfo() OTAInfo {
	info := OTAInfoOf(a.ota.up.Status())
	if a.ota.slots != nil {
		if bs, err := a.ota.slots.State(); err == nil && bs.Last != nil {
			info.LastTrial = bs.Last.Version + " " + bs.Last.Result
			if bs.Last.Reason != "" {
				info.LastTrial += ": " + bs.Last.Reason
			}
		}
	}
	return info
}

// ServiceInfo is a service's health, compacted for the air.
type ServiceInfo struct {
	Name      string `cbor:"name"`
	State     string `cbor:"state"`
	Restarts  int    `cbor:"restarts,omitempty"`
	LastError string `cbor:"lastError,omitempty"`
}

// Snapshot gathers the current statistics.
func (a *Agent) Snapshot(ctx context.Context) Stats {
	s := Stats{
		Agent:    AgentInfo{Version: buildinfo.Version, Commit: buildinfo.Commit, Target: buildinfo.Target()},
		Device:   a.board.Identity(),
		Board:    a.board.Name(),
		UptimeS:  int64(time.Since(a.started).Seconds()),
		Config:   a.term.Active().Version,
		Outbox:   a.Outbox.State(),
		Link:     a.link.Status(),
		System:   a.sys.Snapshot(ctx),
		Hardware: a.hw.Devices(),
		Keys:     a.keysInfo(),
		License:  licenseStats(a.lic),
		Payment:  a.pay.Status(),
		OTA:      a.otaInfo(),
	}
	// Healthy services are the norm and not worth the air; only trouble is reported.
	for _, st := range a.sup.Status() {
		if st.State == supervisor.StateRunning && st.Restarts == 0 {
			continue
		}
		s.Services = append(s.Services, ServiceInfo{Name: st.Name, State: string(st.State), Restarts: st.Restarts, LastError: st.LastError})
	}
	return s
}

func (a *Agent) sendStats(ctx context.Context) (uint64, error) {
	return a.Outbox.Append(ctx, tmsproto.StreamStats, "stats", a.Snapshot(ctx))
}

func (a *Agent) triggerStats() {
	select {
	case a.statsNow <- struct{}{}:
	default:
	}
}

// statsInterval: the TMS-pushed configuration wins over the local file, so an operator can
// tune a fleet's data use without touching terminals.
func (a *Agent) statsInterval() time.Duration {
	// Only a document the TMS pushed (version > 0) overrides; the factory document's value is
	// a default like the file's, and the file is the more specific of the two.
	if doc := a.term.Active(); doc.Version > 0 && doc.TMS.StatsIntervalSec > 0 {
		s := doc.TMS.StatsIntervalSec
		return time.Duration(s) * time.Second
	}
	return a.cfg.TMS.StatsInterval.D()
}

// tmsKeepAlive is the keepalive of a TMS-pushed configuration, or 0 to use the local one.
func (a *Agent) tmsKeepAlive() time.Duration {
	if doc := a.term.Active(); doc.Version > 0 {
		return time.Duration(doc.TMS.KeepaliveSec) * time.Second
	}
	return 0
}

// runStats sends statistics once at start, then every interval and on demand.
func (a *Agent) runStats(ctx context.Context) error {
	send := func() error {
		_, err := a.sendStats(ctx)
		if errors.Is(err, outbox.ErrThinned) {
			return nil // the outbox is full of records that matter more
		}
		return err
	}
	if err := send(); err != nil && ctx.Err() == nil {
		return err
	}
	for {
		t := time.NewTimer(a.statsInterval())
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		case <-a.statsNow:
			t.Stop()
		}
		if err := send(); err != nil && ctx.Err() == nil {
			return err
		}
	}
}
