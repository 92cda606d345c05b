package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/posagent/posagent/internal/fleet"
	"github.com/posagent/posagent/internal/mosquitto"
	"github.com/posagent/posagent/internal/rollout"
	"github.com/posagent/posagent/internal/tmsclient"
)

// ErrTimeout is returned when a wait exceeded -timeout.
var ErrTimeout = errors.New("timed out")

// pollEvery is how often a wait looks at the fleet.
const pollEvery = 100 * time.Millisecond

// Key ids the fleet is told to trust.
const (
	commandKeyID = "fleetsim-cmd"
	releaseKeyID = "fleetsim-rel"
)

// sim is one run: the broker and the TMS side (one of each per fleet: the observer, the
// rollout engine, the blob server) and the fleet's shards.
type sim struct {
	cfg    *config
	stderr io.Writer
	log    *slog.Logger
	rep    *Report

	dir, removeDir string
	broker         *mosquitto.Server
	brokerURL      string
	tmsUser        string
	tmsPass        string
	secret         string
	tlsConf        *tls.Config
	ids            []string

	cmdKey tmsclient.SignKey
	relKey ed25519.PrivateKey

	obs      *fleet.Observer
	tms      *tmsclient.Client
	blobs    *blobServer
	rollouts *rollout.Engine

	// The fleet run in progress.
	runCtx   context.Context
	shards   []shard
	run      *fleetRunReport
	started  time.Time
	phaseMu  sync.Mutex
	phase    string
	liveStop func()
}

// simulate runs the configured scenarios and returns the report, also when it stops early
// (then with Error set and the error returned).
func simulate(ctx context.Context, cfg *config, stderr io.Writer) (*Report, error) {
	level := slog.LevelInfo
	if cfg.Verbose {
		level = slog.LevelDebug
	}
	s := &sim{cfg: cfg, stderr: stderr, runCtx: ctx,
		log: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))}
	s.rep = newReport(cfg, "")
	err := s.setup(ctx)
	if err == nil {
		err = s.scenarios(ctx)
	}
	// Close with a context of its own: after ^C the fleet still says goodbye.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), workerStopTimeout)
	err = errors.Join(err, s.closeFleet(cctx))
	cancel()
	s.teardown()
	s.rep.Finished = time.Now()
	if err != nil {
		s.rep.Error = err.Error()
	}
	return s.rep, err
}

func (s *sim) setup(ctx context.Context) error {
	c := s.cfg
	var err error
	if c.Dir == "" {
		if s.dir, err = defaultDir(); err != nil {
			return err
		}
		if !c.Keep {
			s.removeDir = s.dir
		}
	} else {
		s.dir = c.Dir
		if err := os.MkdirAll(s.dir, 0o700); err != nil {
			return err
		}
	}
	s.log.Info("fleetsim", "terminals", c.N, "procs", c.Procs, "scenarios", c.Scenarios, "dir", s.dir)
	if s.tlsConf, err = c.TLS.Config(); err != nil {
		return err
	}
	s.tmsUser, s.tmsPass, s.secret = c.TMSUser, c.TMSPassword, c.DeviceSecret
	s.ids = c.deviceIDs()
	if c.Mosquitto {
		if s.tmsPass == "" {
			s.tmsPass = randomHex(16)
		}
		if s.secret == "" {
			s.secret = randomHex(16)
		}
		bdir := filepath.Join(s.dir, "broker")
		if err := os.MkdirAll(bdir, 0o700); err != nil {
			return err
		}
		t0 := time.Now()
		s.broker, err = mosquitto.Start(mosquitto.Options{Bin: c.MosquittoBin, Dir: bdir,
			TMSUser: s.tmsUser, TMSPassword: s.tmsPass, Devices: s.ids, DevicePassword: s.password,
			Persistence: true})
		if err != nil {
			return fmt.Errorf("mosquitto: %w", err)
		}
		s.brokerURL = s.broker.URL()
		s.log.Info("mosquitto started", "url", s.brokerURL, "accounts", len(s.ids)+1, "took", time.Since(t0).Round(time.Millisecond))
	} else {
		s.brokerURL = c.Broker
	}
	s.rep.Config.Broker = s.brokerURL

	if _, priv, err := ed25519.GenerateKey(rand.Reader); err == nil {
		s.cmdKey = tmsclient.SignKey{ID: commandKeyID, Key: priv}
	} else {
		return err
	}
	if _, s.relKey, err = ed25519.GenerateKey(rand.Reader); err != nil {
		return err
	}
	tmsLog := s.log.With("tms", true)
	// The observer first: it must see every record from seq 1.
	if s.obs, err = fleet.Observe(ctx, fleet.ObserverOptions{Broker: s.brokerURL, Username: s.tmsUser,
		Password: s.tmsPass, TLS: s.tlsConf, Logger: tmsLog}); err != nil {
		return err
	}
	if s.tms, err = tmsclient.Connect(ctx, tmsclient.Options{Broker: s.brokerURL, Username: s.tmsUser,
		Password: s.tmsPass, TLS: s.tlsConf, Logger: tmsLog}); err != nil {
		return err
	}
	return nil
}

// terminalLogger is the terminals' logger: errors only, warnings too with -v.
func terminalLogger(w io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelError
	if verbose {
		level = slog.LevelWarn
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// password is a terminal's MQTT password.
func (s *sim) password(id string) string {
	if s.cfg.password != nil {
		return s.cfg.password(id)
	}
	return devicePassword(s.secret, id)
}

func (s *sim) teardown() {
	if s.blobs != nil {
		s.blobs.close()
	}
	if s.tms != nil {
		s.tms.Close()
	}
	if s.obs != nil {
		s.obs.Close()
	}
	if s.broker != nil {
		u := pidUsage("broker", s.broker.PID())
		s.rep.Broker = &u
		if err := s.broker.Stop(); err != nil {
			s.log.Warn("mosquitto stop", "err", err)
		}
	}
	if s.removeDir != "" {
		if err := os.RemoveAll(s.removeDir); err != nil {
			s.log.Warn("removing the data directory", "err", err)
		}
	}
}

// scenarios runs the configured scenarios on one fleet, then the lock-step storm on a second
// one when asked to compare.
func (s *sim) scenarios(ctx context.Context) error {
	c := s.cfg
	if err := s.startFleet(ctx, c.Jitter, 1); err != nil {
		return err
	}
	for _, name := range c.Scenarios {
		s.setPhase(name)
		var err error
		switch name {
		case scSteady:
			err = s.steady(ctx)
		case scIdle:
			err = s.idle(ctx)
		case scStorm:
			err = s.storm(ctx)
		case scPartition:
			err = s.partition(ctx)
		case scConfig:
			err = s.configPush(ctx)
		case scOTA:
			err = s.ota(ctx)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	if !c.StormCompare || !c.has(scStorm) {
		return nil
	}
	if err := s.closeFleet(ctx); err != nil {
		return err
	}
	if err := s.startFleet(ctx, !c.Jitter, 2); err != nil {
		return err
	}
	s.setPhase(scStorm)
	if err := s.storm(ctx); err != nil {
		return fmt.Errorf("storm (jitter %v): %w", !c.Jitter, err)
	}
	return nil
}

// startFleet starts a fleet over the shards: this process for -procs 1, else worker
// processes each running a contiguous slice of the ids.
func (s *sim) startFleet(ctx context.Context, jitter bool, run int) error {
	c := s.cfg
	dir := filepath.Join(s.dir, "fleet-"+strconv.Itoa(run))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	k := c.Procs
	s.shards = make([]shard, k)
	if k == 1 {
		s.shards[0] = &localShard{runCtx: s.runCtx,
			st: &shardState{role: "fleetsim", termLog: terminalLogger(s.stderr, c.Verbose), password: c.password}}
	} else {
		if c.password != nil {
			return errors.New("explicit device passwords work with -procs 1 only")
		}
		for i := range k {
			w, err := startWorker(i, k, c.Verbose, s.stderr)
			if err != nil {
				s.shards = s.shards[:i]
				return err
			}
			s.shards[i] = w
		}
	}
	pub := func(p ed25519.PrivateKey) ed25519.PublicKey { return p.Public().(ed25519.PublicKey) }
	s.setPhase("start")
	t0 := time.Now()
	resps, err := s.callAll(ctx, func(i int) request {
		first, end := i*c.N/k, (i+1)*c.N/k
		return request{Op: opStart, Spec: &fleetSpec{
			First: first, N: end - first, Width: idWidth(c.N), Prefix: c.Prefix, Dir: dir,
			Broker: s.brokerURL, TLS: c.TLS, DeviceSecret: s.secret,
			CommandKeys: map[string]ed25519.PublicKey{commandKeyID: pub(s.cmdKey.Key)},
			ReleaseKeys: map[string]ed25519.PublicKey{releaseKeyID: pub(s.relKey)},
			KeepAlive:   c.KeepAlive, PingTimeout: c.PingTimeout, StatsInterval: c.StatsInterval,
			BackoffBase: c.BackoffBase, BackoffCap: c.BackoffCap, NoJitter: !jitter,
			StartRate: c.StartRate / float64(k), LocalAddrs: c.LocalAddrs,
		}}
	})
	s.run = &fleetRunReport{Jitter: jitter, Terminals: c.N, Procs: k, StartSec: time.Since(t0).Seconds()}
	s.rep.Fleets = append(s.rep.Fleets, s.run)
	if err != nil {
		return err
	}
	s.started = time.Now()
	for _, r := range resps {
		if r.Started.Before(s.started) {
			s.started = r.Started
		}
	}
	s.log.Info("fleet started", "run", run, "terminals", c.N, "procs", k, "jitter", jitter,
		"took", time.Since(t0).Round(time.Millisecond))
	s.startLive(ctx)
	return nil
}

// closeFleet records the fleet's final figures and closes every shard.
func (s *sim) closeFleet(ctx context.Context) error {
	if len(s.shards) == 0 {
		return nil
	}
	if s.liveStop != nil {
		s.liveStop()
		s.liveStop = nil
	}
	var errs []error
	if snap, _, err := s.fullSnapshot(ctx); err == nil {
		s.run.Final = totalsOf(snap)
	} else {
		errs = append(errs, err)
	}
	usages := make([]*procUsage, len(s.shards))
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i, sh := range s.shards {
		wg.Go(func() {
			u, err := sh.close(ctx)
			mu.Lock()
			defer mu.Unlock()
			usages[i] = u
			if err != nil {
				errs = append(errs, fmt.Errorf("closing %s: %w", sh.label(), err))
			}
		})
	}
	wg.Wait()
	if _, local := s.shards[0].(*localShard); !local {
		u := selfUsage("fleetsim")
		s.run.Processes = append(s.run.Processes, u)
	}
	for _, u := range usages {
		if u != nil {
			s.run.Processes = append(s.run.Processes, *u)
		}
	}
	s.shards = nil
	return errors.Join(errs...)
}

// callAll sends one request to every shard at once; req(i) makes shard i's.
func (s *sim) callAll(ctx context.Context, req func(i int) request) ([]response, error) {
	resps := make([]response, len(s.shards))
	errs := make([]error, len(s.shards))
	var wg sync.WaitGroup
	for i, sh := range s.shards {
		wg.Go(func() { resps[i], errs[i] = sh.call(ctx, req(i)) })
	}
	wg.Wait()
	return resps, errors.Join(errs...)
}

func (s *sim) same(op request) func(int) request { return func(int) request { return op } }

// snapshot is the whole fleet's snapshot and every fleet process's usage. Its traffic counts
// the TCP segments of closed connections only: see fullSnapshot.
func (s *sim) snapshot(ctx context.Context) (fleet.Snapshot, []procUsage, error) {
	return s.snapshotOf(ctx, false)
}

// fullSnapshot is snapshot with the segments of the live connections, for measurements.
func (s *sim) fullSnapshot(ctx context.Context) (fleet.Snapshot, []procUsage, error) {
	return s.snapshotOf(ctx, true)
}

func (s *sim) snapshotOf(ctx context.Context, full bool) (fleet.Snapshot, []procUsage, error) {
	resps, err := s.callAll(ctx, s.same(request{Op: opSnapshot, Full: full}))
	if err != nil {
		return fleet.Snapshot{}, nil, err
	}
	parts := make([]fleet.Snapshot, 0, len(resps))
	usages := make([]procUsage, 0, len(resps)+1)
	if _, local := s.shards[0].(*localShard); !local {
		usages = append(usages, selfUsage("fleetsim"))
	}
	for _, r := range resps {
		if r.Snapshot != nil {
			parts = append(parts, *r.Snapshot)
		}
		if r.Usage != nil {
			usages = append(usages, *r.Usage)
		}
	}
	return mergeSnapshots(parts), usages, nil
}

// terminals collects every terminal's row, in index order.
func (s *sim) terminals(ctx context.Context, streams []string, component string) ([]terminalRow, error) {
	resps, err := s.callAll(ctx, s.same(request{Op: opTerminals, Streams: streams, Component: component}))
	if err != nil {
		return nil, err
	}
	var rows []terminalRow
	for _, r := range resps {
		rows = append(rows, r.Terminals...)
	}
	return rows, nil
}

// waitFor polls the fleet until cond holds, for at most -timeout (or limit when longer).
func (s *sim) waitFor(ctx context.Context, what string, limit time.Duration, cond func(fleet.Snapshot) bool) (fleet.Snapshot, time.Duration, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, max(limit, s.cfg.Timeout))
	defer cancel()
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	var last fleet.Snapshot
	for {
		snap, _, err := s.snapshot(ctx)
		if err == nil {
			last = snap
			if cond(snap) {
				return snap, time.Since(start), nil
			}
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = ErrTimeout
			}
			return last, time.Since(start), fmt.Errorf("waiting for %s: %w after %v (connected %d/%d, outbox %d records)",
				what, err, time.Since(start).Round(time.Millisecond), last.Connected, last.Terminals, last.OutboxRecords)
		case <-tick.C:
		}
	}
}

// waitConnected waits until every terminal is connected at once; the first time in a fleet
// run it records how long that took from the start.
func (s *sim) waitConnected(ctx context.Context) (fleet.Snapshot, error) {
	snap, _, err := s.waitFor(ctx, "every terminal connected", 0, func(f fleet.Snapshot) bool {
		return f.Connected == s.cfg.N
	})
	if err == nil && s.run.AllConnectedSec == 0 {
		s.run.AllConnectedSec = snap.At.Sub(s.started).Seconds()
		s.log.Info("all connected", "terminals", s.cfg.N, "after", snap.At.Sub(s.started).Round(time.Millisecond))
	}
	return snap, err
}

// sleep waits d unless ctx ends first.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (s *sim) setPhase(p string) {
	s.phaseMu.Lock()
	s.phase = p
	s.phaseMu.Unlock()
}

func (s *sim) currentPhase() string {
	s.phaseMu.Lock()
	defer s.phaseMu.Unlock()
	return s.phase
}

func (s *sim) brokerUsage() *procUsage {
	if s.broker == nil {
		return nil
	}
	u := pidUsage("broker", s.broker.PID())
	return &u
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// writePasswd writes a Mosquitto password file with the TMS account and every terminal's, for
// an external broker.
func writePasswd(c *config) error {
	f, err := os.OpenFile(c.WritePasswd, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	line, err := mosquitto.PasswordLine(c.TMSUser, c.TMSPassword)
	if err == nil {
		_, err = fmt.Fprintln(f, line)
	}
	for _, id := range c.deviceIDs() {
		if err != nil {
			break
		}
		if line, err = mosquitto.PasswordLine(id, devicePassword(c.DeviceSecret, id)); err == nil {
			_, err = fmt.Fprintln(f, line)
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(c.WritePasswd)
		return fmt.Errorf("write %s: %w", c.WritePasswd, err)
	}
	return nil
}
