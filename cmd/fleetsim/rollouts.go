package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/posagent/posagent/agent/termconfig"
	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/rollout"
	"github.com/posagent/posagent/ota/blob"
	"github.com/posagent/posagent/ota/manifest"
	"github.com/posagent/posagent/ota/update"
)

// otaComponent names the file component of the OTA release; the fleet's terminals install it
// under their "images" location.
const (
	otaComponent = "fleetfile"
	otaLocation  = "images"
)

// maxLoggedFailures bounds the failed terminals a rollout logs by name.
const maxLoggedFailures = 10

// pushConfig is the configuration the config push sends: the factory document with a new
// version, keeping the fleet's keepalive and stats interval as far as validation allows
// (statsIntervalSec ≥ 60, keepaliveSec 10..1200): a pushed document overrides the fleet's
// options on every terminal.
func pushConfig(c *config, version uint64) ([]byte, error) {
	doc := termconfig.Default()
	doc.Version = version
	doc.TMS.StatsIntervalSec = uint32(clamp(orDefault(c.StatsInterval, defaultStatsInterval).Seconds(), 60, 86400))
	doc.TMS.KeepaliveSec = uint16(clamp(orDefault(c.KeepAlive, defaultKeepAlive).Seconds(), 10, 1200))
	// The OTA scenario installs at once; Now in its body says so too.
	doc.TMS.UpdatesOnlyInWindow = false
	if err := doc.Validate(); err != nil {
		return nil, err
	}
	return termconfig.Encode(doc)
}

func clamp(v, lo, hi float64) float64 { return min(max(v, lo), hi) }

// engine opens the rollout engine (its store in the run's directory) on first use.
func (s *sim) engine() (*rollout.Engine, error) {
	if s.rollouts != nil {
		return s.rollouts, nil
	}
	store, err := rollout.OpenStore(filepath.Join(s.dir, "rollout.db"))
	if err != nil {
		return nil, err
	}
	log := s.log.With("rollout", true)
	s.rollouts = rollout.New(store, rollout.NewTMSSender(s.tms), s.cmdKey, rollout.NewTMSAckSource(s.tms, log), log)
	return s.rollouts, nil
}

// rollout runs plan to its end and fills fig from its summary and terminal states.
func (s *sim) rollout(ctx context.Context, plan rollout.Plan, fig *rolloutFig) error {
	eng, err := s.engine()
	if err != nil {
		return err
	}
	if err := eng.Create(plan); err != nil {
		return err
	}
	t0 := time.Now()
	rctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout+time.Minute)
	sum, runErr := eng.Run(rctx, plan.Name)
	cancel()
	fig.AllFinalSec = time.Since(t0).Seconds()
	if !sum.Started.IsZero() && !sum.Finished.IsZero() {
		fig.AllFinalSec = sum.Finished.Sub(sum.Started).Seconds()
	}
	_, states, err := eng.Status(plan.Name)
	if err != nil {
		return errors.Join(runErr, err)
	}
	fig.Targets, fig.RatePerMin = len(plan.Targets), plan.Pace.PerMinute
	fig.States = map[string]int{}
	for _, st := range states {
		fig.States[string(st.State)]++
	}
	fig.Succeeded, fig.Failed, fig.TimedOut = sum.Succeeded, sum.Failed, sum.TimedOut
	fig.Halted, fig.HaltReason = sum.Halted, sum.HaltReason
	logged := 0
	for _, st := range states {
		if st.State == rollout.StateFailed && logged < maxLoggedFailures {
			logged++
			s.log.Warn("rollout: terminal failed", "rollout", plan.Name, "device", st.ID, "reason", st.Reason, "detail", st.Detail)
		}
	}
	if runErr != nil && !errors.Is(runErr, rollout.ErrHalted) {
		return runErr
	}
	return nil
}

// configPush sends a signed config.apply to every terminal through the rollout engine and
// waits for every final ack.
func (s *sim) configPush(ctx context.Context) error {
	c := s.cfg
	if _, err := s.waitConnected(ctx); err != nil {
		return err
	}
	// Versions only rise; the clock keeps a second fleet run's push above the first.
	version := uint64(time.Now().Unix())
	body, err := pushConfig(c, version)
	if err != nil {
		return err
	}
	r := &configReport{Version: version}
	s.rep.ConfigPush = r
	plan := rollout.Plan{Name: fmt.Sprintf("config-%d", version), Kind: "config.apply", Body: body,
		Targets: s.ids, Pace: rollout.Pace{PerMinute: c.ConfigRate}, MaxFailureRatio: 1, Timeout: c.Timeout}
	s.log.Info("config push", "version", version, "targets", len(s.ids))
	if err := s.rollout(ctx, plan, &r.rolloutFig); err != nil {
		return err
	}
	rows, err := s.terminals(ctx, nil, "")
	if err != nil {
		return err
	}
	for _, row := range rows {
		if row.ConfigVersion == version {
			r.AtVersion++
		}
	}
	r.OK = r.Succeeded == c.N && r.AtVersion == c.N
	if !r.OK {
		s.rep.fail("config push: %d of %d succeeded (%d failed, %d timed out), %d at version %d",
			r.Succeeded, c.N, r.Failed, r.TimedOut, r.AtVersion, version)
	}
	s.log.Info("config pushed", "succeeded", r.Succeeded, "all final after", fmtSec(&r.AllFinalSec))
	return nil
}

// ota rolls out a signed release of one file component, pulled by the terminals over MQTT
// from this process's blob server.
func (s *sim) ota(ctx context.Context) error {
	c := s.cfg
	if _, err := s.waitConnected(ctx); err != nil {
		return err
	}
	serial := uint64(time.Now().Unix())
	path := filepath.Join(s.dir, "ota-"+strconv.FormatUint(serial, 10)+".bin")
	sum, err := writeRandomFile(path, c.OTASize)
	if err != nil {
		return err
	}
	if s.blobs == nil {
		if s.blobs, err = startBlobServer(ctx, s.brokerURL, s.tmsUser, s.tmsPass, s.tlsConf, s.log); err != nil {
			return err
		}
	}
	if err := s.blobs.add(blob.ID(sum), path); err != nil {
		return err
	}
	version := "1.0." + strconv.FormatUint(serial, 10)
	now := time.Now()
	rel := manifest.Release{V: 1, Name: "fleetsim-" + strconv.FormatUint(serial, 10), Serial: serial,
		Issued: now.Add(-time.Minute).Unix(), Expires: now.Add(24 * time.Hour).Unix(),
		Components: []manifest.Component{{Name: otaComponent, Kind: manifest.KindFile, Version: version,
			Location: otaLocation, Path: "fleetsim.bin", Size: int64(c.OTASize), SHA256: sum}}}
	signed, err := manifest.Sign(s.relKey, releaseKeyID, rel)
	if err != nil {
		return err
	}
	body, err := tmsproto.Marshal(update.InstallBody{Manifest: signed, Now: true})
	if err != nil {
		return err
	}
	r := &otaReport{Release: rel.Name, FileBytes: c.OTASize}
	s.rep.OTA = r
	served0 := s.blobs.served.Load()
	plan := rollout.Plan{Name: rel.Name, Kind: "ota.install", Body: body, Targets: s.ids,
		Pace: rollout.Pace{PerMinute: c.OTARate}, MaxFailureRatio: 1, Timeout: c.Timeout}
	s.log.Info("ota rollout", "release", rel.Name, "bytes", c.OTASize, "targets", len(s.ids))
	if err := s.rollout(ctx, plan, &r.rolloutFig); err != nil {
		return err
	}
	r.BlobBytesServed = s.blobs.served.Load() - served0
	rows, err := s.terminals(ctx, nil, otaComponent)
	if err != nil {
		return err
	}
	for _, row := range rows {
		if row.OTAVersion == version {
			r.Installed++
		}
	}
	r.OK = r.Succeeded == c.N && r.Installed == c.N
	if !r.OK {
		s.rep.fail("ota: %d of %d succeeded (%d failed, %d timed out), %d installed", r.Succeeded, c.N, r.Failed, r.TimedOut, r.Installed)
	}
	s.log.Info("ota rolled out", "succeeded", r.Succeeded, "all final after", fmtSec(&r.AllFinalSec))
	return nil
}

// writeRandomFile writes size random bytes to path and returns their SHA-256.
func writeRandomFile(path string, size int) ([]byte, error) {
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	return sum[:], nil
}
