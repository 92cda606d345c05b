package fleet

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/posagent/posagent/agent"
	"github.com/posagent/posagent/agent/backoff"
	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/agent/termconfig"
	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/board"
	"github.com/posagent/posagent/internal/fleet/wire"
	"github.com/posagent/posagent/internal/otatest"
	"github.com/posagent/posagent/internal/testbroker"
	"github.com/posagent/posagent/internal/tmsclient"
	"github.com/posagent/posagent/ota/manifest"
	"github.com/posagent/posagent/ota/update"
)

// rig is a broker with accounts for a fleet, the TMS side (a command key the fleet trusts, a
// client, an Observer that also collects final acks) and the fleet.
type rig struct {
	t      testing.TB
	broker *testbroker.Broker
	ids    []string
	key    tmsclient.SignKey
	tms    *tmsclient.Client
	obs    *Observer
	opts   Options
	fleet  *Fleet

	mu     sync.Mutex
	finals map[string]tmsproto.Ack // command id → final ack
	kinds  map[string][]string     // device → event kinds, in order received
	stats  map[string]agent.Stats  // device → last statistics record
}

func newRig(t testing.TB, prefix string, n int, edit func(*Options)) *rig {
	t.Helper()
	r := prepareRig(t, prefix, n)
	r.startFleet(edit)
	return r
}

// prepareRig starts the broker and the TMS side; startFleet then starts the fleet.
func prepareRig(t testing.TB, prefix string, n int) *rig {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r := &rig{t: t, ids: DeviceIDs(prefix, 0, n, 0), finals: map[string]tmsproto.Ack{},
		kinds: map[string][]string{}, stats: map[string]agent.Stats{}}
	r.broker = testbroker.Start(t, testbroker.Options{Devices: r.ids})
	passwords := make(map[string]string, n)
	for _, id := range r.ids {
		passwords[id] = r.broker.DevicePassword(id)
	}
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	r.key = tmsclient.SignKey{ID: "fleet-test", Key: priv}
	if r.tms, err = tmsclient.Connect(ctx, tmsclient.Options{Broker: r.broker.URL(), Username: r.broker.TMSUser(),
		Password: r.broker.TMSPassword()}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.tms.Close)
	if r.obs, err = Observe(ctx, ObserverOptions{Broker: r.broker.URL(), Username: r.broker.TMSUser(),
		Password: r.broker.TMSPassword(), OnUplink: r.record}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.obs.Close)
	r.opts = Options{
		N: n, Prefix: prefix, Dir: t.TempDir(), Broker: r.broker.URL(),
		Password:    func(id string) string { return passwords[id] },
		CommandKeys: map[string]ed25519.PublicKey{r.key.ID: pub},
		Backoff:     backoff.Policy{Base: 300 * time.Millisecond, Cap: 2 * time.Second},
		Logger:      slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	}
	return r
}

func (r *rig) startFleet(edit func(*Options)) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if edit != nil {
		edit(&r.opts)
	}
	var err error
	if r.fleet, err = Start(ctx, r.opts); err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() {
		if err := r.fleet.Close(); err != nil {
			r.t.Error(err)
		}
	})
}

// testWriter sends the terminals' warnings to the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

func (r *rig) record(u tmsclient.Uplink) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch u.Stream {
	case tmsproto.StreamEvent:
		r.kinds[u.DeviceID] = append(r.kinds[u.DeviceID], u.Envelope.Kind)
	case tmsproto.StreamStats:
		var s agent.Stats
		if err := tmsproto.Unmarshal(u.Envelope.Body, &s); err != nil {
			r.t.Errorf("stats of %s: %v", u.DeviceID, err)
			return
		}
		r.stats[u.DeviceID] = s
	case tmsproto.StreamAck:
		a, err := tmsclient.DecodeAck(u.Envelope.Body)
		if err != nil {
			r.t.Errorf("ack of %s: %v", u.DeviceID, err)
			return
		}
		switch a.State {
		case tmsproto.StateSucceeded, tmsproto.StateFailed, tmsproto.StateRejected:
			r.finals[a.ID] = a
		}
	}
}

// until polls cond every 50 ms until it holds, failing the test after timeout.
func (r *rig) until(timeout time.Duration, what string, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			r.t.Fatalf("timed out waiting for %s (%+v)", what, r.fleet.Snapshot())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *rig) allConnected() {
	r.t.Helper()
	r.until(60*time.Second, "every terminal connected", func() bool { return r.fleet.Snapshot().Connected == len(r.ids) })
}

func (r *rig) drained() {
	r.t.Helper()
	r.until(60*time.Second, "every outbox drained", func() bool { return r.fleet.Snapshot().OutboxRecords == 0 })
}

// noLoss waits until the Observer has every record the terminals appended.
func (r *rig) noLoss() Loss {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := r.obs.Await(ctx, r.fleet, 100*time.Millisecond)
	if err != nil {
		r.t.Fatalf("%v: %+v", err, l)
	}
	return l
}

// sendAll signs kind with body for every terminal and returns the command ids by device.
func (r *rig) sendAll(kind string, body []byte) map[string]string {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ids := make(map[string]string, len(r.ids))
	for _, dev := range r.ids {
		s, err := r.tms.Send(ctx, dev, r.key, tmsproto.Command{Kind: kind, Body: body})
		if err != nil {
			r.t.Fatal(err)
		}
		ids[dev] = s.Command.ID
	}
	return ids
}

// finalAcks waits for the final ack of every command.
func (r *rig) finalAcks(cmds map[string]string, timeout time.Duration) map[string]tmsproto.Ack {
	r.t.Helper()
	r.until(timeout, "every final ack", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, id := range cmds {
			if _, ok := r.finals[id]; !ok {
				return false
			}
		}
		return true
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]tmsproto.Ack, len(cmds))
	for dev, id := range cmds {
		out[dev] = r.finals[id]
	}
	return out
}

func TestDeviceIDs(t *testing.T) {
	ids := DeviceIDs("", 9998, 3, 0)
	if want := []string{"FS-09998", "FS-09999", "FS-10000"}; fmt.Sprint(ids) != fmt.Sprint(want) {
		t.Errorf("ids %v, want %v", ids, want)
	}
	// Two worker processes' slices of one fleet agree on the width.
	a, b := DeviceIDs("W-", 0, 6, 0), DeviceIDs("W-", 6, 6, 0)
	if len(a[5]) != len(b[0]) {
		t.Errorf("widths differ: %s %s", a[5], b[0])
	}
	if got := DeviceIDs("X", 7, 1, 2)[0]; got != "X07" {
		t.Errorf("width 2: %s", got)
	}
}

func TestStartRefusesBadOptions(t *testing.T) {
	good := Options{N: 1, Dir: t.TempDir(), Broker: "tcp://127.0.0.1:1", Password: func(string) string { return "" }}
	cases := map[string]func(*Options){
		"no terminals":     func(o *Options) { o.N = 0 },
		"no dir":           func(o *Options) { o.Dir = "" },
		"no broker":        func(o *Options) { o.Broker = "" },
		"no password":      func(o *Options) { o.Password = nil },
		"negative rate":    func(o *Options) { o.StartRate = -1 },
		"invalid id":       func(o *Options) { o.Prefix = "bad/" },
		"bad command keys": func(o *Options) { o.CommandKeys = map[string]ed25519.PublicKey{"k": {1, 2}} },
	}
	for name, edit := range cases {
		t.Run(name, func(t *testing.T) {
			o := good
			edit(&o)
			f, err := Start(context.Background(), o)
			if !errors.Is(err, ErrOptions) {
				if f != nil {
					_ = f.Close()
				}
				t.Fatalf("err %v, want ErrOptions", err)
			}
		})
	}
}

// Every terminal connects, announces agent.started and reports statistics built from its
// own parts; a device fault shows in the next stats.now; nothing appended is missing at the
// TMS; the timeline and the meters saw every connection.
func TestFleetConnectsAndReports(t *testing.T) {
	const n = 100
	r := newRig(t, "FC-", n, func(o *Options) {
		o.StatsInterval = 3 * time.Second
		o.StartRate = 500
	})
	r.allConnected()
	r.until(30*time.Second, "agent.started and statistics from every terminal", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.kinds) == n && len(r.stats) == n
	})
	r.mu.Lock()
	for _, id := range r.ids {
		if k := r.kinds[id]; len(k) == 0 || k[0] != "agent.started" {
			t.Errorf("%s: events %v, want agent.started first", id, k)
		}
		s := r.stats[id]
		if s.Device.Serial != id || s.Device.Model != Model || len(s.Hardware) != 3 || s.Board != BoardName {
			t.Errorf("%s: stats %+v", id, s)
		}
	}
	r.mu.Unlock()

	faulty := r.fleet.Terminal(r.ids[7])
	if err := faulty.SetDevice("printer", board.StateFault, "paper out"); err != nil {
		t.Fatal(err)
	}
	if err := faulty.SetDevice("nope", board.StateFault, ""); !errors.Is(err, ErrUnknownDevice) {
		t.Errorf("unknown device: %v", err)
	}
	cmds := r.sendAll("stats.now", nil)
	for dev, a := range r.finalAcks(cmds, 30*time.Second) {
		if a.State != tmsproto.StateSucceeded {
			t.Errorf("%s stats.now: %+v", dev, a)
		}
	}
	r.drained()
	r.mu.Lock()
	if hw := r.stats[faulty.ID()].Hardware; hw[0].State != board.StateFault || hw[0].Detail != "paper out" {
		t.Errorf("faulty printer reported as %+v", hw)
	}
	r.mu.Unlock()

	if l := r.noLoss(); l.Streams != 3*n {
		t.Errorf("loss %+v", l)
	}
	snap := r.fleet.Snapshot()
	if snap.Connects < n || snap.Published < uint64(3*n) || snap.Acked < uint64(3*n) || snap.Commands != n {
		t.Errorf("snapshot %+v", snap)
	}
	if snap.Traffic.Conns < n || snap.Traffic.BytesOut < int64(n)*1000 || snap.HeapBytes == 0 || snap.Goroutines == 0 {
		t.Errorf("snapshot traffic %+v heap %d goroutines %d", snap.Traffic, snap.HeapBytes, snap.Goroutines)
	}
	var connects int
	for _, b := range r.fleet.Timeline(time.Second) {
		connects += b.Connects
	}
	if uint64(connects) != snap.Connects {
		t.Errorf("timeline has %d connects, links %d", connects, snap.Connects)
	}
	for _, term := range r.fleet.Terminals() {
		if tr := term.Meter().Traffic(); tr.BytesIn == 0 || tr.BytesOut == 0 {
			t.Errorf("%s: traffic %+v", term.ID(), tr)
		}
	}
}

// A configuration pushed to the whole fleet: every terminal answers with a final succeeded
// ack, its active version changes, and it says so in a config.applied event.
func TestFleetConfigApply(t *testing.T) {
	const n = 60
	r := newRig(t, "FK-", n, nil)
	r.allConnected()
	doc := termconfig.Default()
	doc.Version = 5
	doc.TMS.StatsIntervalSec = 7200
	body, err := tmsproto.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	cmds := r.sendAll("config.apply", body)
	for dev, a := range r.finalAcks(cmds, 60*time.Second) {
		if a.State != tmsproto.StateSucceeded {
			t.Errorf("%s: %+v", dev, a)
		}
	}
	for _, term := range r.fleet.Terminals() {
		if v := term.ConfigVersion(); v != 5 {
			t.Errorf("%s: configuration version %d", term.ID(), v)
		}
		if iv := term.statsInterval(); iv != 2*time.Hour {
			t.Errorf("%s: statistics interval %v after the push", term.ID(), iv)
		}
	}
	r.drained()
	r.noLoss()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range r.ids {
		applied := false
		for _, k := range r.kinds[id] {
			applied = applied || k == "config.applied"
		}
		if !applied {
			t.Errorf("%s: no config.applied among %v", id, r.kinds[id])
		}
	}
}

// A share of the fleet is cut (black hole and reset) while events queue; after the heal every
// outbox drains and the TMS has every seq of every stream.
func TestFleetPartitionLosesNothing(t *testing.T) {
	const n, events = 60, 5
	r := newRig(t, "FP-", n, func(o *Options) {
		o.KeepAlive, o.PingTimeout = 2*time.Second, time.Second
		o.ConnectTimeout = 2 * time.Second
		o.Dialer = &wire.Dialer{Timeout: time.Second}
	})
	r.allConnected()
	terms := r.fleet.Terminals()
	holed, reset := terms[:15], terms[15:25]
	for _, term := range holed {
		term.Link().Set(wire.Blackhole)
	}
	for _, term := range reset {
		term.Link().Set(wire.Reset)
	}
	ctx := context.Background()
	cut := terms[:25]
	for _, term := range cut {
		for i := range events {
			if _, err := term.Event(ctx, "test.partition", map[string]any{"i": i}); err != nil {
				t.Fatal(err)
			}
		}
	}
	r.until(30*time.Second, "the cut terminals to notice", func() bool {
		for _, term := range cut {
			if term.Status().Connected {
				return false
			}
		}
		return true
	})
	for _, term := range cut {
		if term.Outbox().Records < events {
			t.Errorf("%s: %d records queued while cut, want ≥ %d", term.ID(), term.Outbox().Records, events)
		}
		term.Link().Set(wire.Up)
	}
	r.allConnected()
	r.drained()
	l := r.noLoss()
	if l.Streams != 3*n || l.Complete != 3*n {
		t.Errorf("loss %+v", l)
	}
	for _, term := range cut {
		if last, _ := term.LastSeq(tmsproto.StreamEvent); last < events+1 {
			t.Errorf("%s: last event seq %d", term.ID(), last)
		}
		if st := term.Status(); st.Connects < 2 {
			t.Errorf("%s: %d connects, want a reconnection", term.ID(), st.Connects)
		}
	}
}

// The broker restarts: every terminal reconnects, the timeline shows the drop and the
// reconnections, and records queued around the restart all arrive.
func TestFleetBrokerRestart(t *testing.T) {
	const n = 100
	r := newRig(t, "FR-", n, nil)
	r.allConnected()
	before := r.fleet.Snapshot().Connects
	restartAt := time.Since(r.fleet.Started())
	r.broker.Restart(t)
	r.until(60*time.Second, "every terminal reconnected", func() bool {
		for _, term := range r.fleet.Terminals() {
			if st := term.Status(); !st.Connected || st.Connects < 2 {
				return false
			}
		}
		return true
	})
	ctx := context.Background()
	for _, term := range r.fleet.Terminals() {
		if _, err := term.Event(ctx, "test.after", nil); err != nil {
			t.Fatal(err)
		}
	}
	r.drained()
	r.noLoss()

	snap := r.fleet.Snapshot()
	if snap.Connects < before+n {
		t.Errorf("connects %d before, %d after", before, snap.Connects)
	}
	tl := r.fleet.Timeline(100 * time.Millisecond)
	var connects, after int
	dipped := false
	for _, b := range tl {
		connects += b.Connects
		if b.At >= restartAt {
			after += b.Connects
			dipped = dipped || b.Connected < n
		}
	}
	if uint64(connects) != snap.Connects || after < n {
		t.Errorf("timeline: %d connects (%d after the restart), links %d", connects, after, snap.Connects)
	}
	if !dipped || tl[len(tl)-1].Connected != n {
		t.Errorf("timeline does not show the restart: dipped %v, last %+v", dipped, tl[len(tl)-1])
	}
}

// A signed release with one file component, pulled by every terminal over MQTT from the
// TMS's blob server, installs everywhere.
func TestFleetOTAInstall(t *testing.T) {
	const n = 20
	rel := otatest.NewKey(t, "rel-fleet")
	r := newRig(t, "FO-", n, func(o *Options) {
		o.ReleaseKeys = map[string]ed25519.PublicKey{rel.ID: rel.Public()}
	})
	payload := []byte("welcome to the fleet\n")
	path := filepath.Join(t.TempDir(), "motd.txt")
	if err := os.WriteFile(path, payload, 0o600); err != nil {
		t.Fatal(err)
	}
	srv := otatest.Serve(t, r.broker.URL(), r.broker.TMSUser(), r.broker.TMSPassword())
	srv.Add(t, path)
	comp := otatest.FileComponent(t, manifest.Component{Name: "motd", Kind: manifest.KindFile, Version: "1.0",
		Location: "images", Path: "motd.txt", Models: []string{Model}}, path)
	signed := rel.Sign(t, manifest.Release{Name: "fleet-1", Serial: 1, Components: []manifest.Component{comp}})
	body, err := tmsproto.Marshal(update.InstallBody{Manifest: signed, Now: true})
	if err != nil {
		t.Fatal(err)
	}
	r.allConnected()
	cmds := r.sendAll("ota.install", body)
	for dev, a := range r.finalAcks(cmds, 60*time.Second) {
		if a.State != tmsproto.StateSucceeded {
			t.Errorf("%s: %+v", dev, a)
		}
	}
	for _, term := range r.fleet.Terminals() {
		got, err := os.ReadFile(filepath.Join(term.Dir(), "files", "images", "motd.txt"))
		if err != nil || string(got) != string(payload) {
			t.Errorf("%s: installed file %q, %v", term.ID(), got, err)
		}
		if in := term.OTA().Installed["motd"]; in.Version != "1.0" || in.Release != "fleet-1" {
			t.Errorf("%s: installed %+v", term.ID(), term.OTA().Installed)
		}
	}
	if srv.Served.Load() < int64(n*len(payload)) {
		t.Errorf("blob server served %d bytes for %d terminals", srv.Served.Load(), n)
	}

	// file.put: a data file signed by the command key alone, pulled the same way.
	params := []byte(`{"tip":true}`)
	ppath := filepath.Join(t.TempDir(), "params.json")
	if err := os.WriteFile(ppath, params, 0o600); err != nil {
		t.Fatal(err)
	}
	srv.Add(t, ppath)
	pc := otatest.FileComponent(t, manifest.Component{}, ppath)
	fbody, err := tmsproto.Marshal(update.FileBody{Location: "params", Name: "params.json", Size: pc.Size, SHA256: pc.SHA256})
	if err != nil {
		t.Fatal(err)
	}
	for dev, a := range r.finalAcks(r.sendAll("file.put", fbody), 60*time.Second) {
		if a.State != tmsproto.StateSucceeded {
			t.Errorf("%s file.put: %+v", dev, a)
		}
	}
	for _, term := range r.fleet.Terminals() {
		if got, err := os.ReadFile(filepath.Join(term.Dir(), "files", "params", "params.json")); err != nil || string(got) != string(params) {
			t.Errorf("%s: put file %q, %v", term.ID(), got, err)
		}
	}
}

// A start cut short by its context fails with the context's error and leaves nothing
// running; the terminals already started are closed.
func TestStartInterrupted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	dir := t.TempDir()
	f, err := Start(ctx, Options{N: 50, StartRate: 20, Dir: dir, Broker: "tcp://127.0.0.1:1",
		Password: func(string) string { return "x" }, Logger: slog.New(slog.DiscardHandler)})
	if !errors.Is(err, context.DeadlineExceeded) || f != nil {
		t.Fatalf("Start: %v, %v", f, err)
	}
	// Every database opened is closed again: another process could open it now.
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) == 0 || len(entries) >= 50 {
		t.Fatalf("%d terminal directories, %v", len(entries), err)
	}
	for _, e := range entries {
		db, err := store.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		db.Close()
	}
}

func TestMaskAddrs(t *testing.T) {
	cases := map[string]string{
		"connection lost: read tcp 127.0.0.1:35734->127.0.0.1:23860: connection reset by peer": "connection lost: read tcp ADDR->ADDR: connection reset by peer",
		"connect: network Error : dial tcp 127.0.0.1:23860: network is unreachable":            "connect: network Error : dial tcp ADDR: network is unreachable",
		"inbox: 256 commands waiting":  "inbox: 256 commands waiting",
		"connect timed out":            "connect timed out",
		"version 2.0.11 at 10.0.0.1:1": "version 2.0.11 at ADDR",
		"no route to 192.168.1.20":     "no route to ADDR",
	}
	for in, want := range cases {
		if got := maskAddrs(in); got != want {
			t.Errorf("maskAddrs(%q) = %q, want %q", in, got, want)
		}
	}
}
