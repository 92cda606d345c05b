package fleet

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/posagent/posagent/agent"
	"github.com/posagent/posagent/agent/command"
	"github.com/posagent/posagent/agent/termconfig"
	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/ota/blob"
	"github.com/posagent/posagent/ota/manifest"
	"github.com/posagent/posagent/ota/transfer"
	"github.com/posagent/posagent/ota/update"
)

// ErrSourceCA is the failure of an HTTPS source that names a CA of the certificate store,
// which a simulated terminal does not keep.
var ErrSourceCA = errors.New("fleet: a source CA needs the certificate store")

// httpClient fetches HTTPS sources for every terminal of the process.
var httpClient = &http.Client{Transport: &http.Transport{
	Proxy: nil, ResponseHeaderTimeout: 30 * time.Second, IdleConnTimeout: 30 * time.Second,
}}

// registerCommands plugs in the kinds a fleet terminal runs, with the agent's semantics:
// config.apply, stats.now, ota.install, file.put and ota.cancel.
func (t *Terminal) registerCommands() {
	t.disp.Register("config.apply", command.Kind{Check: agent.CheckConfig, Run: t.configApply})
	t.disp.Register("stats.now", command.Kind{
		Check:      emptyBody,
		Concurrent: true,
		Run: func(ctx context.Context, _ *command.Request) (any, error) {
			seq, err := t.SendStats(ctx)
			if err != nil {
				return nil, err
			}
			return map[string]any{"statsSeq": seq}, nil
		},
	})
	// The agent's own handlers (apps.set fails with no package manager on a simulated
	// terminal, as on a Linux terminal without one).
	agent.RegisterUpdateKinds(t.disp, t.up, t.sh.releases)
}

func emptyBody(body []byte) (any, error) {
	var v struct{}
	return nil, tmsproto.Unmarshal(body, &v)
}

func (t *Terminal) configApply(ctx context.Context, req *command.Request) (any, error) {
	doc := req.Body.(*termconfig.Document)
	changed, err := t.term.Apply(doc)
	if err != nil {
		return nil, err
	}
	if changed {
		t.event(ctx, "config.applied", map[string]any{"version": doc.Version})
		t.triggerStats()
	}
	return map[string]any{"version": doc.Version, "changed": changed}, nil
}

// applyConfigBundle installs a release's configuration component like config.apply.
func (t *Terminal) applyConfigBundle(ctx context.Context, raw []byte) error {
	v, err := agent.CheckConfig(raw)
	if err != nil {
		return err
	}
	doc := v.(*termconfig.Document)
	changed, err := t.term.Apply(doc)
	if err == nil && changed {
		t.event(ctx, "config.applied", map[string]any{"version": doc.Version, "from": "release"})
	}
	return err
}

// otaSource opens a component's bytes: MQTT block pull on the terminal's link (by default
// under the id derived from its hash) or an HTTPS Range source.
func (t *Terminal) otaSource(c manifest.Component, spec update.SourceSpec) (transfer.Source, error) {
	if spec.URL != "" {
		if spec.CA != "" {
			return nil, fmt.Errorf("source ca %q: %w", spec.CA, ErrSourceCA)
		}
		return &transfer.HTTPSource{URL: spec.URL, Client: httpClient}, nil
	}
	id := spec.Transfer
	if id == "" {
		id = blob.ID(c.SHA256)
	}
	return t.blobs.Source(id, c.Size), nil
}
