package agent

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/posagent/posagent/agent/command"
	"github.com/posagent/posagent/agent/hardware"
	"github.com/posagent/posagent/agent/termconfig"
	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/ota/blob"
	"github.com/posagent/posagent/ota/certstore"
	"github.com/posagent/posagent/ota/install/apk"
	"github.com/posagent/posagent/ota/install/component"
	"github.com/posagent/posagent/ota/install/files"
	"github.com/posagent/posagent/ota/manifest"
	"github.com/posagent/posagent/ota/slots"
	"github.com/posagent/posagent/ota/transfer"
	"github.com/posagent/posagent/ota/update"
)

// otaParts are the updater and what it is wired to.
type otaParts struct {
	up       *update.Updater
	blobs    *blob.Client
	slots    *slots.Slots // nil without the launcher
	certs    *certstore.Store
	releases *manifest.Verifier
}

// defaultLocations are file.put's named locations when the configuration names none.
var defaultLocations = []string{"images", "lang", "params", "certs"}

// openOTA opens the certificate store and the updater. The release keys are the licence
// keys: the distributor signs software as it signs licences, never the TMS.
func (a *Agent) openOTA(releaseKeys map[string]ed25519.PublicKey) error {
	var err error
	if a.ota.releases, err = manifest.NewVerifier(releaseKeys); err != nil {
		return fmt.Errorf("release keys: %w", err)
	}
	if a.ota.certs, err = certstore.Open(a.db, a.commit); err != nil {
		return err
	}
	slot, underLauncher := slots.Current()
	if underLauncher {
		if a.ota.slots, err = slots.Open(slots.LauncherDir()); err != nil {
			return err
		}
	}
	a.ota.blobs = blob.NewClient(linkBlobs{a}, a.log.With("svc", "blob"))
	locs := files.Locations{}
	for _, name := range defaultLocations {
		locs[name] = filepath.Join(a.cfg.DataDir, "files", name)
	}
	for name, dir := range a.cfg.OTA.Locations {
		locs[name] = dir
	}
	installer := a.board.Profile().Installer
	if len(a.cfg.OTA.ComponentInstaller) > 0 {
		installer = a.cfg.OTA.ComponentInstaller
	}
	var pm update.PackageManager
	switch {
	case a.cfg.OTA.PackageManager != "":
		pm = apk.PM{Path: a.cfg.OTA.PackageManager}
	case runtime.GOOS == "android":
		pm = apk.PM{}
	}
	a.ota.up, err = update.Open(update.Options{
		DB: a.db, Commit: a.commit, Dir: filepath.Join(a.cfg.DataDir, "ota"), Verifier: a.ota.releases,
		Model: a.board.Identity().Model, Arch: runtime.GOOS + "/" + runtime.GOARCH,
		Source: a.otaSource, Slots: a.ota.slots, Slot: slot,
		Installer: component.Hook{Argv: installer}, Apps: pm, Files: locs,
		Config: a.applyConfigBundle, Cert: a.putCertificate, Gate: a.gate,
		Health: a.healthCheck, Restart: a.requestRestart, MaxSize: int64(a.cfg.OTA.MaxComponentSize),
		Logger: a.log,
		Events: func(kind string, body map[string]any) { a.event(context.Background(), kind, body) },
	})
	return err
}

// linkBlobs publishes block requests on the TMS link (which is made after the updater).
type linkBlobs struct{ a *Agent }

func (l linkBlobs) PublishBlob(ctx context.Context, id string, payload []byte) error {
	return l.a.link.PublishBlob(ctx, id, payload)
}

// otaSource opens where a component's bytes come from: a virtual host over HTTPS Range, or
// the TMS over MQTT block pull (by default under the id derived from its hash).
func (a *Agent) otaSource(c manifest.Component, spec update.SourceSpec) (transfer.Source, error) {
	if spec.URL != "" {
		client := &http.Client{Timeout: 0, Transport: &http.Transport{
			Proxy: nil, ResponseHeaderTimeout: 30 * time.Second, IdleConnTimeout: 30 * time.Second,
		}}
		if spec.CA != "" {
			pool, err := a.ota.certs.Pool(spec.CA)
			if err != nil {
				return nil, fmt.Errorf("source ca %q: %w", spec.CA, err)
			}
			client.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		return &transfer.HTTPSource{URL: spec.URL, Client: client}, nil
	}
	id := spec.Transfer
	if id == "" {
		id = blob.ID(c.SHA256)
	}
	return a.ota.blobs.Source(id, c.Size), nil
}

// healthCheck is what a new agent must pass before it commits: connected to the TMS, and a
// self-test without a failed device.
func (a *Agent) healthCheck(ctx context.Context) error {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for !a.link.Status().Connected {
		select {
		case <-ctx.Done():
			return fmt.Errorf("not connected to the TMS: %w", ctx.Err())
		case <-tick.C:
		}
	}
	results := a.hw.SelfTest(ctx, nil)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("self-test: %w", err)
	}
	if hardware.Failed(results) {
		return fmt.Errorf("self-test failed: %s", hardware.Summary(results))
	}
	return nil
}

// applyConfigBundle installs a configuration component of a release like config.apply.
func (a *Agent) applyConfigBundle(ctx context.Context, raw []byte) error {
	v, err := CheckConfig(raw)
	if err != nil {
		return err
	}
	doc := v.(*termconfig.Document)
	changed, err := a.term.Apply(doc)
	if err == nil && changed {
		a.event(ctx, "config.applied", map[string]any{"version": doc.Version, "from": "release"})
	}
	return err
}

func (a *Agent) putCertificate(ctx context.Context, name, usage string, pem []byte) error {
	_, err := a.ota.certs.Put(ctx, name, certstore.Usage(usage), pem, nil, time.Now())
	return err
}

// certPool resolves a configuration's reference to a CA certificate of the store (cert.put),
// holding it to the fingerprint the configuration pins, if it pins one.
func (a *Agent) certPool(doc *termconfig.Document, name string) (*x509.CertPool, error) {
	info, ok, err := a.ota.certs.Get(name)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("certificate %q is not installed (cert.put)", name)
	}
	for _, ref := range doc.Certificates {
		if ref.Name == name && ref.SHA256 != "" && !strings.EqualFold(ref.SHA256, info.SHA256) {
			return nil, fmt.Errorf("certificate %q installed is %s, the configuration pins %s", name, info.SHA256, ref.SHA256)
		}
	}
	return a.ota.certs.Pool(name)
}

// certBody is cert.put's body.
type certBody struct {
	Name  string `cbor:"name"`
	Usage string `cbor:"usage"`
	PEM   string `cbor:"pem,omitempty"`
	Key   string `cbor:"key,omitempty"`
	// Revert puts the previous certificate of name back (the new one did not work).
	Revert bool `cbor:"revert,omitempty"`
}

func checkCertPut(raw []byte) (any, error) {
	var b certBody
	if err := tmsproto.Unmarshal(raw, &b); err != nil {
		return nil, err
	}
	if b.Name == "" {
		return nil, errors.New("name: required")
	}
	if !b.Revert && b.PEM == "" {
		return nil, errors.New("pem: required")
	}
	return b, nil
}

// otaFailure gives an update error its own reason on the ack.
func otaFailure(err error) error {
	if r := manifest.ReasonOf(err); r != "" {
		return command.Fail(tmsproto.Reason(r), err)
	}
	return err
}

// RegisterUpdateKinds plugs the update command kinds (ota.install, apps.set, file.put,
// ota.cancel) of up into d. They are not concurrent: an install never overlaps another
// install, a configuration or a reboot. ota.cancel is, or it would wait behind the very update
// it cancels. Exported so that the fleet simulator's terminals run these very handlers.
func RegisterUpdateKinds(d *command.Dispatcher, up *update.Updater, releases *manifest.Verifier) {
	d.Register("ota.install", command.Kind{
		Check: func(raw []byte) (any, error) {
			b, err := update.DecodeInstall(raw, releases)
			return b, otaFailure(err)
		},
		Run: func(ctx context.Context, req *command.Request) (any, error) {
			res, err := up.Install(ctx, req, req.Command.ID, req.Body.(*update.InstallBody))
			return res, otaFailure(err)
		},
	})
	d.Register("apps.set", command.Kind{
		Check: func(raw []byte) (any, error) {
			b, err := update.DecodeApps(raw, releases)
			return b, otaFailure(err)
		},
		Run: func(ctx context.Context, req *command.Request) (any, error) {
			res, err := up.SetApps(ctx, req, req.Command.ID, req.Body.(*update.AppsBody))
			return res, otaFailure(err)
		},
	})
	d.Register("file.put", command.Kind{
		Check: func(raw []byte) (any, error) {
			b, err := update.DecodeFile(raw)
			return b, otaFailure(err)
		},
		Run: func(ctx context.Context, req *command.Request) (any, error) {
			res, err := up.PutFile(ctx, req, req.Command.ID, req.Body.(*update.FileBody))
			return res, otaFailure(err)
		},
	})
	d.Register("ota.cancel", command.Kind{
		Concurrent: true,
		Check: func(raw []byte) (any, error) {
			b, err := update.DecodeCancel(raw)
			return b, otaFailure(err)
		},
		Run: func(ctx context.Context, req *command.Request) (any, error) {
			b := req.Body.(update.CancelBody)
			if err := up.Cancel(ctx, b.Command); err != nil {
				return nil, otaFailure(err)
			}
			return map[string]any{"cancelled": b.Command}, nil
		},
	})
}

// registerOTA plugs in the update command kinds and cert.put.
func (a *Agent) registerOTA() {
	RegisterUpdateKinds(a.disp, a.ota.up, a.ota.releases)
	a.disp.Register("cert.put", command.Kind{
		Check: checkCertPut,
		Run: func(ctx context.Context, req *command.Request) (any, error) {
			b := req.Body.(certBody)
			if b.Revert {
				if err := a.ota.certs.Revert(ctx, b.Name); err != nil {
					return nil, err
				}
				info, _, err := a.ota.certs.Get(b.Name)
				return info, err
			}
			info, err := a.ota.certs.Put(ctx, b.Name, certstore.Usage(b.Usage), []byte(b.PEM), []byte(b.Key), time.Now())
			if err != nil {
				return nil, err
			}
			a.event(ctx, "cert.installed", map[string]any{"name": info.Name, "sha256": info.SHA256, "notAfter": info.NotAfter})
			return info, nil
		},
	})
}

// OTA is the updater (tests, the diagnostics port).
func (a *Agent) OTA() *update.Updater { return a.ota.up }

// Certificates is the certificate store.
func (a *Agent) Certificates() *certstore.Store { return a.ota.certs }
