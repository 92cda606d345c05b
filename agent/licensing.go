package agent

import (
	"context"
	"crypto/ed25519"
	"errors"
	"time"

	"github.com/posagent/posagent/agent/command"
	"github.com/posagent/posagent/agent/license"
	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/agent/tmsproto"
)

// The licence side of the agent (docs/licensing.md). The store is passed in explicitly so this
// file builds before the Agent struct carries it; see the wiring in the package license doc.

// Licence timing: how often the service re-judges the licence, and how often a terminal
// without a valid licence asks the TMS for one.
var (
	licenseTick     = time.Hour
	licenseAskEvery = 24 * time.Hour
)

// openLicense opens the licence store on the agent's database, bound to this terminal's
// serial number (the board's, else the device id) and platform.
func (a *Agent) openLicense(releaseKeys map[string]ed25519.PublicKey) (*license.Store, error) {
	if len(releaseKeys) == 0 {
		a.log.Warn("no licence release keys configured: no licence can be installed and payments stay refused")
	}
	return license.Open(a.db, license.Options{ReleaseKeys: releaseKeys, Terminal: a.licenseTerminal(),
		Commit: a.commit, Logger: a.log})
}

func (a *Agent) licenseTerminal() license.Terminal {
	serial := a.board.Identity().Serial
	if serial == "" {
		serial = a.cfg.DeviceID
	}
	return license.Terminal{Serial: serial, Platform: license.CurrentPlatform()}
}

// licensePutBody is the body of license.put.
type licensePutBody struct {
	License []byte `cbor:"license"` // the licence file as issued (a COSE_Sign1)
}

// registerLicense plugs license.put into the dispatcher.
func (a *Agent) registerLicense(lic *license.Store) {
	a.disp.Register("license.put", command.Kind{
		Check: checkLicensePut,
		Run: func(ctx context.Context, req *command.Request) (any, error) {
			return a.licensePut(ctx, lic, req.Body.(licensePutBody))
		},
	})
}

func checkLicensePut(body []byte) (any, error) {
	var b licensePutBody
	if err := tmsproto.Unmarshal(body, &b); err != nil {
		return nil, err
	}
	switch {
	case len(b.License) == 0:
		return nil, errors.New("license: missing or empty")
	case len(b.License) > license.MaxSize:
		return nil, errors.New("license: larger than a licence can be")
	}
	return b, nil
}

// licensePut verifies and installs the licence. Idempotent: installing the licence in use
// again changes nothing. A refused licence fails the command with the reason in the result.
func (a *Agent) licensePut(ctx context.Context, lic *license.Store, b licensePutBody) (any, error) {
	info, err := lic.Install(ctx, b.License)
	if err != nil {
		a.log.Warn("licence refused", "err", err)
		return map[string]any{"reason": license.ReasonOf(err)}, err
	}
	res := map[string]any{"id": info.ID, "expires": info.Expires, "features": info.Features}
	a.event(ctx, "license.installed", res)
	a.triggerStats()
	return res, nil
}

// licenseStats is the stats section "license".
func licenseStats(lic *license.Store) license.Status { return lic.Status() }

// runLicense is the licence service: at start, and every licenseTick after, it judges the
// licence; without a valid one it raises license.missing (at start) and asks the TMS for one
// on up/req at most once per licenseAskEvery (the time asked survives restarts). A licence
// expiring while the agent runs raises license.expired.
func (a *Agent) runLicense(lic *license.Store) func(context.Context) error {
	return func(ctx context.Context) error {
		st := lic.Status()
		if st.State != license.StateValid {
			body := a.licenseRequestBody(st)
			body["state"] = st.State
			if st.Reason != "" {
				body["reason"] = st.Reason
			}
			a.log.Warn("no valid licence: payments are refused until one is installed", "state", st.State, "reason", st.Reason)
			a.event(ctx, "license.missing", body)
		}
		last := st.State
		t := time.NewTicker(licenseTick)
		defer t.Stop()
		for {
			if st.State != license.StateValid {
				if err := a.askLicense(ctx, lic, st); err != nil && ctx.Err() == nil {
					a.log.Error("licence request not queued", "err", err)
				}
			}
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
			st = lic.Status()
			if last == license.StateValid && st.State == license.StateExpired {
				a.log.Warn("licence expired: payments are refused", "id", st.ID)
				a.event(ctx, "license.expired", map[string]any{"id": st.ID, "expires": st.Expires})
				a.triggerStats()
			}
			last = st.State
		}
	}
}

func (a *Agent) licenseRequestBody(st license.Status) map[string]any {
	term := a.licenseTerminal()
	body := map[string]any{"serial": term.Serial, "platform": term.Platform}
	if st.ID != "" {
		body["current"] = st.ID
	}
	return body
}

// askLicense queues a license.request on up/req unless one was queued within
// licenseAskEvery; the record and the time asked commit together.
func (a *Agent) askLicense(ctx context.Context, lic *license.Store, st license.Status) error {
	now := time.Now()
	last := lic.LastAsked()
	// A last-asked time far in the future is a clock that went back: ask.
	if !last.IsZero() && now.Sub(last) < licenseAskEvery && !now.Before(last.Add(-time.Hour)) {
		return nil
	}
	body := a.licenseRequestBody(st)
	return a.commit.Do(ctx, func(tx *store.Tx) error {
		if _, err := a.Outbox.AppendTx(tx, tmsproto.StreamReq, "license.request", body); err != nil {
			return err
		}
		return lic.MarkAskedTx(tx, now)
	})
}
