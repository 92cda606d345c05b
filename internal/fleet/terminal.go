package fleet

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/posagent/posagent/agent/backoff"
	"github.com/posagent/posagent/agent/buildinfo"
	"github.com/posagent/posagent/agent/command"
	"github.com/posagent/posagent/agent/outbox"
	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/agent/termconfig"
	"github.com/posagent/posagent/agent/tmslink"
	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/board"
	"github.com/posagent/posagent/internal/fleet/wire"
	"github.com/posagent/posagent/ota/blob"
	"github.com/posagent/posagent/ota/install/files"
	"github.com/posagent/posagent/ota/update"
)

// Model is the board model every simulated terminal reports (and the one a release must
// target, if it targets models).
const Model = "FLEET-SIM"

// BoardName is the board name in the statistics.
const BoardName = "fleet-sim"

// fileLocations are file.put's named locations, as on an agent configured with none.
var fileLocations = []string{"images", "lang", "params", "certs"}

// ErrNoCertificates is the failure of a certificate component: a simulated terminal keeps no
// certificate store.
var ErrNoCertificates = errors.New("fleet: simulated terminals have no certificate store")

// ErrUnknownDevice is returned by SetDevice for a name the terminal does not have.
var ErrUnknownDevice = errors.New("fleet: unknown device")

// Terminal is one simulated terminal: the agent's TMS-facing parts on their own database.
type Terminal struct {
	id      string
	dir     string
	sh      *shared
	fleet   *Fleet
	started time.Time

	meter *wire.Meter
	wlink *wire.Link

	db     *store.DB
	commit *store.Committer
	out    *outbox.Outbox
	term   *termconfig.Store
	disp   *command.Dispatcher
	link   *tmslink.Link
	blobs  *blob.Client
	up     *update.Updater

	devMu   sync.Mutex
	devices []board.DeviceState

	// statsMu guards the timer of the periodic statistics; stopped is set once at close,
	// after which no send starts. statsBusy counts sends under way, which close waits for.
	statsMu    sync.Mutex
	statsTimer *time.Timer
	stopped    bool
	statsBusy  sync.WaitGroup
	ctx        context.Context

	wg sync.WaitGroup
}

// openTerminal opens a terminal's storage and builds its parts, without starting anything.
func (f *Fleet) openTerminal(id string) (t *Terminal, err error) {
	sh := f.shared
	t = &Terminal{id: id, dir: terminalDir(sh.opts.Dir, id), sh: sh, fleet: f,
		meter: new(wire.Meter), wlink: new(wire.Link),
		devices: []board.DeviceState{
			{Name: "printer", Kind: board.KindPrinter, State: board.StateOK},
			{Name: "pinpad", Kind: board.KindPINPad, State: board.StateOK},
			{Name: "cardreader", Kind: board.KindCardReader, State: board.StateOK},
		}}
	log := sh.log.With("device", id)
	if t.db, err = store.Open(t.dir); err != nil {
		return nil, fmt.Errorf("fleet: terminal %s: %w", id, err)
	}
	t.commit = store.NewCommitter(t.db)
	defer func() {
		if err != nil {
			t.commit.Close()
			_ = t.db.Close()
			err = fmt.Errorf("fleet: terminal %s: %w", id, err)
		}
	}()
	if t.out, err = outbox.Open(t.db, t.commit, outbox.Options{Logger: log, OnAlarm: t.outboxAlarm}); err != nil {
		return nil, err
	}
	if t.term, err = termconfig.Open(t.db, termconfig.WithLogger(log)); err != nil {
		return nil, err
	}
	if t.disp, err = command.New(command.Options{DB: t.db, Commit: t.commit, Outbox: t.out,
		Verifier: sh.commands, Logger: log}); err != nil {
		return nil, err
	}
	t.blobs = blob.NewClient(linkBlobs{t}, log)
	locs := files.Locations{}
	for _, name := range fileLocations {
		locs[name] = filepath.Join(t.dir, "files", name)
	}
	if t.up, err = update.Open(update.Options{
		DB: t.db, Commit: t.commit, Dir: filepath.Join(t.dir, "ota"), Verifier: sh.releases,
		Model: Model, Arch: runtime.GOOS + "/" + runtime.GOARCH, Source: t.otaSource, Slot: "factory",
		Files: locs, Config: t.applyConfigBundle, Cert: noCertificates, Gate: openGate{}, Logger: log,
		Events: func(kind string, body map[string]any) { t.event(context.Background(), kind, body) },
	}); err != nil {
		return nil, err
	}
	t.registerCommands()
	o := sh.opts
	if t.link, err = tmslink.New(tmslink.Options{
		DeviceID: id, Broker: o.Broker, Password: o.Password(id), TLS: o.TLS,
		KeepAlive: o.KeepAlive, PingTimeout: o.PingTimeout, ConnectTimeout: o.ConnectTimeout,
		Backoff: o.Backoff, AgentVersion: buildinfo.Version,
		DB: t.db, Commit: t.commit, Outbox: t.out, Inbox: t.disp, Logger: log,
		OnConnect:    func() { f.tl.connect(time.Since(f.started)) },
		KeepAliveNow: t.tmsKeepAlive, OnBlob: t.blobs.Deliver,
		Dial: func(ctx context.Context, addr string) (net.Conn, error) { return sh.dial(ctx, addr, t) },
	}); err != nil {
		return nil, err
	}
	return t, nil
}

// start runs the dispatcher and the link, queues agent.started and arms the statistics
// timer at a random point of the first interval, so that a fleet started at once does not
// report in lock-step.
func (t *Terminal) start(ctx context.Context) {
	t.ctx = ctx
	t.started = time.Now()
	t.wg.Go(func() { t.keepRunning(ctx, "commands", t.disp.Run) })
	t.wg.Go(func() { t.keepRunning(ctx, "tmslink", t.link.Run) })
	t.event(ctx, "agent.started", map[string]any{"version": buildinfo.Version, "board": BoardName,
		"configVersion": t.term.Active().Version})
	first := time.Duration(rand.Int64N(int64(t.statsInterval())))
	t.statsMu.Lock()
	t.statsTimer = time.AfterFunc(first, t.statsDue)
	t.statsMu.Unlock()
}

// keepRunning restarts a service that returns early with an error, like the agent's
// supervisor does, until ctx ends.
func (t *Terminal) keepRunning(ctx context.Context, name string, run func(context.Context) error) {
	policy := backoff.Policy{Base: time.Second, Cap: time.Minute}
	for attempt := 0; ctx.Err() == nil; attempt++ {
		err := run(ctx)
		if ctx.Err() != nil {
			return
		}
		t.sh.log.Warn("service stopped; restarting", "device", t.id, "svc", name, "err", err)
		if backoff.Sleep(ctx, policy.Delay(attempt, nil)) != nil {
			return
		}
	}
}

// close waits for the services (stopped by the fleet's context) and closes the storage.
func (t *Terminal) close() error {
	t.statsMu.Lock()
	t.stopped = true
	if t.statsTimer != nil {
		t.statsTimer.Stop()
	}
	t.statsMu.Unlock()
	t.statsBusy.Wait()
	t.wg.Wait()
	t.commit.Close()
	if err := t.db.Close(); err != nil {
		return fmt.Errorf("fleet: terminal %s: %w", t.id, err)
	}
	return nil
}

// ID is the terminal's device id.
func (t *Terminal) ID() string { return t.id }

// Dir is the terminal's data directory.
func (t *Terminal) Dir() string { return t.dir }

// Link is the terminal's network path: Set(wire.Blackhole) or Set(wire.Reset) cuts it.
func (t *Terminal) Link() *wire.Link { return t.wlink }

// Meter counts the terminal's traffic over all its connections.
func (t *Terminal) Meter() *wire.Meter { return t.meter }

// Status is the TMS link's status.
func (t *Terminal) Status() tmslink.Status { return t.link.Status() }

// Outbox is the state of the terminal's uplink queue.
func (t *Terminal) Outbox() outbox.State { return t.out.State() }

// Event queues an up/event record and returns its seq.
func (t *Terminal) Event(ctx context.Context, kind string, body map[string]any) (uint64, error) {
	return t.out.Append(ctx, tmsproto.StreamEvent, kind, body)
}

// LastSeq is the highest seq appended on stream (0: none yet).
func (t *Terminal) LastSeq(stream string) (uint64, error) { return t.out.LastSeq(stream) }

// ConfigVersion is the version of the active terminal configuration.
func (t *Terminal) ConfigVersion() uint64 { return t.term.Active().Version }

// OTA is the updater's status.
func (t *Terminal) OTA() update.Status { return t.up.Status() }

// Devices are the simulated devices' states, as the statistics report them.
func (t *Terminal) Devices() []board.DeviceState {
	t.devMu.Lock()
	defer t.devMu.Unlock()
	return append([]board.DeviceState(nil), t.devices...)
}

// SetDevice sets a simulated device's state (board.StateOK, board.StateFault …) and detail;
// the next statistics record shows it.
func (t *Terminal) SetDevice(name, state, detail string) error {
	t.devMu.Lock()
	defer t.devMu.Unlock()
	for i := range t.devices {
		if t.devices[i].Name == name {
			t.devices[i].State, t.devices[i].Detail = state, detail
			return nil
		}
	}
	return fmt.Errorf("%w %q", ErrUnknownDevice, name)
}

// event queues an up/event record; like the agent, a failure is only logged.
func (t *Terminal) event(ctx context.Context, kind string, body map[string]any) {
	if _, err := t.out.Append(context.WithoutCancel(ctx), tmsproto.StreamEvent, kind, body); err != nil {
		t.sh.log.Error("event not queued", "device", t.id, "kind", kind, "err", err)
	}
}

// outboxAlarm is called from a commit hook: the event is queued from another goroutine, not
// inside the commit that raised the alarm (as the agent does).
func (t *Terminal) outboxAlarm(on bool) {
	go t.event(context.Background(), "outbox.alarm", map[string]any{"on": on, "state": t.out.State()})
}

// statsInterval: a TMS-pushed configuration wins over the fleet's option, as it wins over an
// agent's local file.
func (t *Terminal) statsInterval() time.Duration {
	if doc := t.term.Active(); doc.Version > 0 && doc.TMS.StatsIntervalSec > 0 {
		return time.Duration(doc.TMS.StatsIntervalSec) * time.Second
	}
	return t.sh.opts.StatsInterval
}

// tmsKeepAlive is the keepalive of a TMS-pushed configuration, or 0 for the fleet's.
func (t *Terminal) tmsKeepAlive() time.Duration {
	if doc := t.term.Active(); doc.Version > 0 {
		return time.Duration(doc.TMS.KeepaliveSec) * time.Second
	}
	return 0
}

// statsDue runs on the timer's own goroutine: send, then arm the next one.
func (t *Terminal) statsDue() {
	t.statsMu.Lock()
	if t.stopped {
		t.statsMu.Unlock()
		return
	}
	t.statsBusy.Add(1)
	t.statsMu.Unlock()
	defer t.statsBusy.Done()
	if _, err := t.SendStats(t.ctx); err != nil && !errors.Is(err, outbox.ErrThinned) && t.ctx.Err() == nil {
		t.sh.log.Warn("statistics not queued", "device", t.id, "err", err)
	}
	t.statsMu.Lock()
	if !t.stopped && t.ctx.Err() == nil {
		t.statsTimer.Reset(t.statsInterval())
	}
	t.statsMu.Unlock()
}

// triggerStats sends statistics now (after a configuration change); the period restarts.
func (t *Terminal) triggerStats() {
	t.statsMu.Lock()
	if !t.stopped && t.statsTimer != nil {
		t.statsTimer.Reset(0)
	}
	t.statsMu.Unlock()
}

// linkBlobs publishes block requests on the terminal's link (made after the blob client).
type linkBlobs struct{ t *Terminal }

func (l linkBlobs) PublishBlob(ctx context.Context, id string, payload []byte) error {
	return l.t.link.PublishBlob(ctx, id, payload)
}

// openGate lets every install through: a simulated terminal takes no payments.
type openGate struct{}

func (openGate) Wait(context.Context, update.GatePolicy) (func(), error) { return func() {}, nil }

func noCertificates(context.Context, string, string, []byte) error { return ErrNoCertificates }
