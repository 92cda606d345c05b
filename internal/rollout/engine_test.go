package rollout

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/tmsclient"
)

// fakeAcks is the innermost stand-in for the broker's ack stream: what a test or the fake
// sender delivers goes straight to the engine's handler.
type fakeAcks struct {
	mu      sync.Mutex
	fn      func(string, tmsproto.Ack)
	watches int
}

func (f *fakeAcks) WatchAcks(_ context.Context, fn func(string, tmsproto.Ack)) (func(), error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fn = fn
	f.watches++
	return func() {
		f.mu.Lock()
		f.fn = nil
		f.mu.Unlock()
	}, nil
}

func (f *fakeAcks) deliver(dev string, a tmsproto.Ack) {
	f.mu.Lock()
	fn := f.fn
	f.mu.Unlock()
	if fn != nil {
		fn(dev, a)
	}
}

type sent struct {
	dev string
	raw []byte
	cmd *tmsproto.Command
}

// fakeSender plays the terminals: it records every publish and answers with the acks respond
// returns (delivered before Send returns), like an agent that is very quick.
type fakeSender struct {
	t       testing.TB
	acks    *fakeAcks
	respond func(dev string, cmd *tmsproto.Command, raw []byte) []tmsproto.Ack
	// before, if set, runs first and may fail the publish.
	before func(dev string, raw []byte) error

	mu    sync.Mutex
	sends []sent
}

func (f *fakeSender) Send(_ context.Context, dev string, raw []byte) error {
	if f.before != nil {
		if err := f.before(dev, raw); err != nil {
			return err
		}
	}
	cmd, err := tmsproto.ParseCommandUnverified(raw)
	if err != nil {
		if f.t != nil {
			f.t.Errorf("engine sent an unreadable command to %s: %v", dev, err)
		}
		return nil
	}
	f.mu.Lock()
	f.sends = append(f.sends, sent{dev: dev, raw: bytes.Clone(raw), cmd: cmd})
	f.mu.Unlock()
	if f.respond != nil {
		for _, a := range f.respond(dev, cmd, raw) {
			f.acks.deliver(dev, a)
		}
	}
	return nil
}

func (f *fakeSender) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sends)
}

// cmd is the last command sent to dev (publishes of one step run concurrently, in no order).
func (f *fakeSender) cmd(dev string) *tmsproto.Command {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.sends) - 1; i >= 0; i-- {
		if f.sends[i].dev == dev {
			return f.sends[i].cmd
		}
	}
	return nil
}

func (f *fakeSender) all() []sent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.sends)
}

func ackOf(cmd *tmsproto.Command, st tmsproto.State) tmsproto.Ack {
	return tmsproto.Ack{ID: cmd.ID, CmdSeq: cmd.Seq, Kind: cmd.Kind, State: st}
}

// succeed answers every command accepted, running, succeeded.
func succeed(_ string, cmd *tmsproto.Command, _ []byte) []tmsproto.Ack {
	run := ackOf(cmd, tmsproto.StateRunning)
	run.Progress = 50
	return []tmsproto.Ack{ackOf(cmd, tmsproto.StateAccepted), run, ackOf(cmd, tmsproto.StateSucceeded)}
}

func testKey(t *testing.T) tmsclient.SignKey { return testKeyB(t) }

func testKeyB(tb testing.TB) tmsclient.SignKey {
	tb.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return tmsclient.SignKey{ID: "tms1", Key: priv}
}

func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%02d", prefix, i)
	}
	return out
}

type rig struct {
	t      *testing.T
	path   string
	store  *FileStore
	acks   *fakeAcks
	sender *fakeSender
	key    tmsclient.SignKey
	eng    *Engine
}

func newRig(t *testing.T, plan Plan) *rig {
	t.Helper()
	g := &rig{t: t, path: filepath.Join(t.TempDir(), "rollout.db"), key: testKey(t), acks: &fakeAcks{}}
	g.sender = &fakeSender{t: t, acks: g.acks}
	var err error
	if g.store, err = OpenStore(g.path); err != nil {
		t.Fatal(err)
	}
	g.eng = New(g.store, g.sender, g.key, g.acks, nil)
	if err := g.eng.Create(plan); err != nil {
		t.Fatal(err)
	}
	return g
}

// restart is a new engine on the same database file, as after a crash of the process.
func (g *rig) restart() {
	g.t.Helper()
	st, err := OpenStore(g.path)
	if err != nil {
		g.t.Fatal(err)
	}
	g.store = st
	g.acks = &fakeAcks{}
	g.sender = &fakeSender{t: g.t, acks: g.acks}
	g.eng = New(st, g.sender, g.key, g.acks, nil)
}

// open starts a run driven by explicit steps at chosen times.
func (g *rig) open(name string, now time.Time) *run {
	g.t.Helper()
	r, err := g.eng.open(name, nil, false, now)
	if err != nil {
		g.t.Fatal(err)
	}
	if _, err := g.acks.WatchAcks(g.t.Context(), r.acks.push); err != nil {
		g.t.Fatal(err)
	}
	return r
}

// step runs one step at now and returns how many commands it published.
func (g *rig) step(r *run, now time.Time) (int, time.Time, bool) {
	g.t.Helper()
	before := g.sender.count()
	next, done, err := g.eng.step(g.t.Context(), r, now)
	if err != nil {
		g.t.Fatal(err)
	}
	return g.sender.count() - before, next, done
}

func (g *rig) status(name string) (Summary, map[string]TerminalState) {
	g.t.Helper()
	sum, states, err := LoadStatus(g.store, name)
	if err != nil {
		g.t.Fatal(err)
	}
	m := map[string]TerminalState{}
	for _, s := range states {
		m[s.ID] = s
	}
	return sum, m
}

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func TestLinearPaceCountsSendsOverTime(t *testing.T) {
	plan := Plan{Name: "lin", Kind: "stats.now", Targets: ids("T", 5), Pace: Pace{PerMinute: 6}, MaxFailureRatio: 1}
	g := newRig(t, plan)
	g.sender.respond = succeed
	r := g.open("lin", t0)

	// 6 per minute: one at once, then one every 10 s counted from the start.
	for _, c := range []struct {
		at       time.Duration
		want     int
		wantNext time.Duration
	}{
		{0, 1, 1 * time.Second}, // heartbeat before the next send at 10 s
		{9 * time.Second, 0, 10 * time.Second},
		{10 * time.Second, 1, 11 * time.Second},
		{35 * time.Second, 2, 36 * time.Second}, // allowed 4 by 35 s, 2 sent: catches up
		{39 * time.Second, 0, 40 * time.Second},
	} {
		n, next, done := g.step(r, t0.Add(c.at))
		if n != c.want || done {
			t.Fatalf("at %v: %d sends (done %v), want %d", c.at, n, done, c.want)
		}
		// In plan order: what went out so far is the plan's first terminals.
		var devs []string
		for _, s := range g.sender.all() {
			devs = append(devs, s.dev)
		}
		if slices.Sort(devs); !slices.Equal(devs, plan.Targets[:len(devs)]) {
			t.Fatalf("at %v: sent to %v", c.at, devs)
		}
		if got := next.Sub(t0); got != c.wantNext {
			t.Errorf("at %v: next wake at %v, want %v", c.at, got, c.wantNext)
		}
	}
	if n, _, _ := g.step(r, t0.Add(40*time.Second)); n != 1 {
		t.Fatalf("at 40s: %d sends, want the last one", n)
	}
	// The last acks arrived with the send; the next step sees all final.
	if _, _, done := g.step(r, t0.Add(41*time.Second)); !done {
		t.Fatal("not done after every terminal succeeded")
	}
	sum, states := g.status("lin")
	if sum.Succeeded != 5 || sum.Pending != 0 || sum.Finished.IsZero() {
		t.Fatalf("summary %+v", sum)
	}
	for _, s := range g.sender.all() {
		if st := states[s.dev]; st.Command != s.cmd.ID || st.Progress != 100 {
			t.Errorf("%s: stored %+v for command %s", s.dev, st, s.cmd.ID)
		}
	}
}

func TestExponentialWavesWaitForTheWaveAndTheInterval(t *testing.T) {
	plan := Plan{Name: "exp", Kind: "stats.now", Targets: ids("W", 14), Pace: Pace{Start: 2, Factor: 2, Every: time.Minute}, MaxFailureRatio: 1}
	g := newRig(t, plan)
	r := g.open("exp", t0)
	ackAll := func(from int) {
		for _, s := range g.sender.all()[from:] {
			g.acks.deliver(s.dev, ackOf(s.cmd, tmsproto.StateSucceeded))
		}
	}
	var waves []int
	at := t0
	for len(waves) < 10 {
		n, _, done := g.step(r, at)
		if done {
			break
		}
		if n == 0 {
			t.Fatalf("no wave began at %v although the previous one is final and the interval passed", at.Sub(t0))
		}
		waves = append(waves, n)
		from := g.sender.count() - n
		// While the wave is in flight nothing more goes out, however late it is.
		if n, _, _ := g.step(r, at.Add(5*time.Minute)); n != 0 {
			t.Fatalf("wave %d: %d more sends while it is in flight", len(waves), n)
		}
		ackAll(from)
		// Final, but the interval since the wave began has not passed.
		n, next, done := g.step(r, at.Add(59500*time.Millisecond))
		if done {
			break // that was the last wave
		}
		if n != 0 || !next.Equal(at.Add(time.Minute)) {
			t.Fatalf("wave %d: %d sends before the interval, next wake %v", len(waves), n, next.Sub(t0))
		}
		at = at.Add(time.Minute)
	}
	if !slices.Equal(waves, []int{2, 4, 8}) {
		t.Fatalf("waves %v, want [2 4 8]", waves)
	}
}

func TestWaveLargerThanMaxInFlightIsSentInChunks(t *testing.T) {
	plan := Plan{Name: "chunk", Kind: "stats.now", Targets: ids("C", 5), Pace: Pace{Start: 5, Factor: 2}, MaxInFlight: 2, MaxFailureRatio: 1}
	g := newRig(t, plan)
	r := g.open("chunk", t0)
	var chunks []int
	for range 10 {
		n, _, done := g.step(r, t0)
		if done {
			break
		}
		chunks = append(chunks, n)
		for _, s := range g.sender.all()[g.sender.count()-n:] {
			g.acks.deliver(s.dev, ackOf(s.cmd, tmsproto.StateSucceeded))
		}
	}
	if !slices.Equal(chunks, []int{2, 2, 1}) {
		t.Fatalf("chunks %v, want [2 2 1]", chunks)
	}
}

func TestTimeoutThenLateFinalAck(t *testing.T) {
	plan := Plan{Name: "to", Kind: "reboot", Targets: []string{"A", "B"}, Timeout: time.Minute, MaxFailureRatio: 1}
	g := newRig(t, plan)
	r := g.open("to", t0)
	if n, next, _ := g.step(r, t0); n != 2 || !next.Equal(t0.Add(time.Second)) {
		t.Fatalf("%d sends, next %v", n, next)
	}
	g.acks.deliver("A", ackOf(g.sender.cmd("A"), tmsproto.StateAccepted))
	g.step(r, t0.Add(59*time.Second))
	if sum, _ := g.status("to"); sum.InFlight != 2 {
		t.Fatalf("before the deadline: %+v", sum)
	}
	if _, _, done := g.step(r, t0.Add(time.Minute)); !done {
		t.Fatal("not done once both timed out")
	}
	sum, st := g.status("to")
	if sum.TimedOut != 2 || st["A"].Reason != "timeout" || st["A"].Detail == "" {
		t.Fatalf("after the deadline: %+v %+v", sum, st["A"])
	}
	// The truth arrives late: it replaces timed_out.
	g.acks.deliver("B", ackOf(g.sender.cmd("B"), tmsproto.StateSucceeded))
	g.step(r, t0.Add(2*time.Minute))
	if sum, st := g.status("to"); sum.TimedOut != 1 || sum.Succeeded != 1 || st["B"].State != StateSucceeded {
		t.Fatalf("after the late ack: %+v %+v", sum, st["B"])
	}
}

func TestAcksOfOtherCommandsAndDevicesAreIgnored(t *testing.T) {
	plan := Plan{Name: "ign", Kind: "reboot", Targets: []string{"A", "B"}, MaxFailureRatio: 1}
	g := newRig(t, plan)
	r := g.open("ign", t0)
	g.step(r, t0)
	cmdA := g.sender.cmd("A")
	g.acks.deliver("A", tmsproto.Ack{ID: "someone-else", State: tmsproto.StateFailed})
	g.acks.deliver("B", ackOf(cmdA, tmsproto.StateFailed)) // A's command, from B
	run := ackOf(cmdA, tmsproto.StateRunning)
	run.Progress, run.Stage = 40, "downloading"
	g.acks.deliver("A", run)
	g.acks.deliver("A", ackOf(cmdA, tmsproto.StateAccepted)) // late, must not go back
	g.step(r, t0.Add(time.Second))
	sum, st := g.status("ign")
	if sum.InFlight != 2 || st["A"].State != StateRunning || st["A"].Progress != 40 || st["A"].Stage != "downloading" || st["B"].State != StateSent {
		t.Fatalf("%+v A=%+v B=%+v", sum, st["A"], st["B"])
	}
}

// runAsync runs the engine's Run in the background.
func runAsync(ctx context.Context, e *Engine, name string) <-chan runResult {
	ch := make(chan runResult, 1)
	go func() {
		s, err := e.Run(ctx, name)
		ch <- runResult{s, err}
	}()
	return ch
}

type runResult struct {
	sum Summary
	err error
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestHaltAtRatioThenResume(t *testing.T) {
	// One terminal at a time, so the halt falls at a known terminal.
	plan := Plan{Name: "halt", Kind: "config.apply", Targets: ids("H", 10), Pace: Pace{Start: 1, Factor: 1},
		MaxFailureRatio: 0.3, MinSample: 4}
	g := newRig(t, plan)
	bad := map[string]bool{"H02": true, "H04": true}
	respond := func(dev string, cmd *tmsproto.Command, raw []byte) []tmsproto.Ack {
		if bad[dev] {
			// What a terminal that does not trust the key says: no id, the raw's ref.
			return []tmsproto.Ack{{Ref: tmsproto.Ref(raw), State: tmsproto.StateRejected, Reason: tmsproto.ReasonUnknownKey, Message: "kid tms1"}}
		}
		return succeed(dev, cmd, raw)
	}
	g.sender.respond = respond
	sum, err := g.eng.Run(t.Context(), "halt")
	if !errors.Is(err, ErrHalted) {
		t.Fatalf("Run: %v, want ErrHalted", err)
	}
	// H02 failing made 1 of 3 (below the sample), H03 1 of 4 = 0.25, H04 2 of 5 = 0.4 > 0.3.
	if g.sender.count() != 5 || sum.Succeeded != 3 || sum.Failed != 2 || sum.Pending != 5 || !sum.Halted {
		t.Fatalf("halted after %d sends: %+v", g.sender.count(), sum)
	}
	_, st := g.status("halt")
	if st["H04"].State != StateFailed || st["H04"].Reason != string(tmsproto.ReasonUnknownKey) || st["H05"].State != StatePending {
		t.Fatalf("H04 %+v H05 %+v", st["H04"], st["H05"])
	}

	// Run keeps it halted; Resume with the same ratio halts again before sending anything.
	if _, err := g.eng.Run(t.Context(), "halt"); !errors.Is(err, ErrHalted) || g.sender.count() != 5 {
		t.Fatalf("Run of a halted rollout: %v after %d sends", err, g.sender.count())
	}
	if _, err := g.eng.Resume(t.Context(), "halt", Overrides{}); !errors.Is(err, ErrHalted) || g.sender.count() != 5 {
		t.Fatalf("Resume at the same ratio: %v after %d sends", err, g.sender.count())
	}
	ratio := 0.5
	sum, err = g.eng.Resume(t.Context(), "halt", Overrides{MaxFailureRatio: &ratio})
	if err != nil {
		t.Fatalf("Resume at 0.5: %v", err)
	}
	if g.sender.count() != 10 || sum.Succeeded != 8 || sum.Failed != 2 || sum.Halted || sum.Finished.IsZero() {
		t.Fatalf("after resuming: %d sends, %+v", g.sender.count(), sum)
	}
	// One command per terminal, never a second one.
	perDev := map[string]int{}
	for _, s := range g.sender.all() {
		perDev[s.dev]++
	}
	for _, id := range plan.Targets {
		if perDev[id] != 1 {
			t.Errorf("%s got %d commands", id, perDev[id])
		}
	}
}

func TestHaltStillFollowsTheTerminalsInFlight(t *testing.T) {
	plan := Plan{Name: "inflight", Kind: "reboot", Targets: ids("F", 8), MaxInFlight: 6, MinSample: 1, MaxFailureRatio: 0}
	g := newRig(t, plan)
	var mu sync.Mutex
	held := map[string]*tmsproto.Command{}
	g.sender.respond = func(dev string, cmd *tmsproto.Command, _ []byte) []tmsproto.Ack {
		if dev == "F00" {
			a := ackOf(cmd, tmsproto.StateFailed)
			a.Reason = tmsproto.ReasonExecFailed
			return []tmsproto.Ack{a}
		}
		mu.Lock()
		held[dev] = cmd
		mu.Unlock()
		return []tmsproto.Ack{ackOf(cmd, tmsproto.StateAccepted)}
	}
	res := runAsync(t.Context(), g.eng, "inflight")
	waitFor(t, "the halt", func() bool { s, _, _ := g.eng.Status("inflight"); return s.Halted })
	// The ones in flight finish after the halt and are recorded; nothing new is sent.
	mu.Lock()
	for dev, cmd := range held {
		g.acks.deliver(dev, ackOf(cmd, tmsproto.StateSucceeded))
	}
	mu.Unlock()
	r := <-res
	if !errors.Is(r.err, ErrHalted) {
		t.Fatalf("Run: %v", r.err)
	}
	if g.sender.count() != 6 || r.sum.Failed != 1 || r.sum.Succeeded != 5 || r.sum.Pending != 2 || r.sum.InFlight != 0 {
		t.Fatalf("%d sends, %+v", g.sender.count(), r.sum)
	}
	if sum, _ := g.status("inflight"); sum.Failed != 1 || sum.Succeeded != 5 || sum.Pending != 2 || !sum.Halted {
		t.Fatalf("stored %+v", sum)
	}
}

func TestRestartMidRolloutResendsTheSameBytes(t *testing.T) {
	plan := Plan{Name: "crash", Kind: "config.apply", Body: []byte{0xa1, 0x61, 0x76, 0x01}, Targets: ids("R", 6), MaxFailureRatio: 1}
	g := newRig(t, plan)
	slow := map[string]bool{"R01": true, "R03": true}
	g.sender.respond = func(dev string, cmd *tmsproto.Command, raw []byte) []tmsproto.Ack {
		if slow[dev] {
			return []tmsproto.Ack{ackOf(cmd, tmsproto.StateAccepted)}
		}
		return succeed(dev, cmd, raw)
	}
	// Each publish must find its command committed already (state sent, same bytes).
	check := func(store *FileStore) func(string, []byte) error {
		return func(dev string, raw []byte) error {
			_, st, err := LoadStatus(store, "crash")
			if err != nil {
				return err
			}
			sv, err := store.Load("crash")
			if err != nil {
				return err
			}
			for i, s := range st {
				if s.ID == dev && (s.State == StatePending || !bytes.Equal(sv.Records[i].Raw, raw)) {
					t.Errorf("%s published before its command was committed (state %s)", dev, s.State)
				}
			}
			return nil
		}
	}
	g.sender.before = check(g.store)
	ctx, cancel := context.WithCancel(t.Context())
	res := runAsync(ctx, g.eng, "crash")
	waitFor(t, "4 succeeded, 2 accepted", func() bool {
		s, _, _ := g.eng.Status("crash")
		return s.Succeeded == 4 && s.InFlight == 2
	})
	cancel()
	if r := <-res; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("interrupted Run: %v", r.err)
	}
	first := map[string][]byte{}
	for _, s := range g.sender.all() {
		first[s.dev] = s.raw
	}

	// A new process: the agent answers a repeat from its journal.
	g.restart()
	g.sender.before = check(g.store)
	g.sender.respond = func(dev string, cmd *tmsproto.Command, _ []byte) []tmsproto.Ack {
		a := ackOf(cmd, tmsproto.StateSucceeded)
		a.Duplicate = true
		return []tmsproto.Ack{a}
	}
	sum, err := g.eng.Run(t.Context(), "crash")
	if err != nil {
		t.Fatalf("second Run: %v", err)
	}
	again := g.sender.all()
	if len(again) != 2 {
		t.Fatalf("second run sent %d commands, want the 2 in flight", len(again))
	}
	for _, s := range again {
		if !slow[s.dev] || !bytes.Equal(s.raw, first[s.dev]) {
			t.Errorf("re-sent to %s: same bytes %v", s.dev, bytes.Equal(s.raw, first[s.dev]))
		}
	}
	if sum.Succeeded != 6 || sum.Finished.IsZero() {
		t.Fatalf("summary %+v", sum)
	}
}

func TestSendFailureLeavesTheCommandToResend(t *testing.T) {
	plan := Plan{Name: "lost", Kind: "reboot", Targets: []string{"A", "B"}, MaxFailureRatio: 1}
	g := newRig(t, plan)
	errBroker := errors.New("broker gone")
	var mu sync.Mutex
	tried := map[string][]byte{}
	g.sender.before = func(dev string, raw []byte) error {
		mu.Lock()
		tried[dev] = bytes.Clone(raw)
		mu.Unlock()
		if dev == "B" {
			return errBroker
		}
		return nil
	}
	g.sender.respond = succeed
	if _, err := g.eng.Run(t.Context(), "lost"); !errors.Is(err, errBroker) {
		t.Fatalf("Run: %v", err)
	}
	g.restart()
	g.sender.respond = succeed
	sum, err := g.eng.Run(t.Context(), "lost")
	if err != nil || sum.Succeeded != 2 {
		t.Fatalf("after restart: %v %+v", err, sum)
	}
	// Whatever was in flight when the run broke off goes out again, byte for byte.
	s := g.sender.all()
	if len(s) == 0 {
		t.Fatal("nothing re-sent")
	}
	for _, x := range s {
		if !bytes.Equal(x.raw, tried[x.dev]) {
			t.Errorf("%s: a different command after the restart", x.dev)
		}
	}
	if !slices.ContainsFunc(s, func(x sent) bool { return x.dev == "B" }) {
		t.Error("B's command, never published, was not sent after the restart")
	}
}

func TestStopFromAnotherStoreHandle(t *testing.T) {
	plan := Plan{Name: "stop", Kind: "reboot", Targets: ids("S", 20), Pace: Pace{PerMinute: 1}, MaxFailureRatio: 1}
	g := newRig(t, plan)
	g.sender.respond = succeed
	res := runAsync(t.Context(), g.eng, "stop")
	waitFor(t, "the first send", func() bool { return g.sender.count() == 1 })
	// Another process opening the same file: tmsctl rollout stop.
	other, err := OpenStore(g.path)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.RequestHalt("stop", ""); err != nil {
		t.Fatal(err)
	}
	r := <-res
	if !errors.Is(r.err, ErrHalted) || r.sum.HaltReason != "stopped by operator" || g.sender.count() != 1 {
		t.Fatalf("Run: %v, %+v after %d sends", r.err, r.sum, g.sender.count())
	}
	// A resume clears the request: at 1/min only the next one is due at once.
	ratio := 1.0
	fast := Pace{PerMinute: 60000}
	sum, err := g.eng.Resume(t.Context(), "stop", Overrides{MaxFailureRatio: &ratio, Pace: &fast})
	if err != nil || sum.Succeeded != 20 || sum.Halted {
		t.Fatalf("Resume: %v %+v", err, sum)
	}
}

func TestSecondEngineIsRefusedWhileTheFirstRuns(t *testing.T) {
	plan := Plan{Name: "busy", Kind: "reboot", Targets: ids("B", 3), Pace: Pace{PerMinute: 1}, MaxFailureRatio: 1}
	g := newRig(t, plan)
	ctx, cancel := context.WithCancel(t.Context())
	res := runAsync(ctx, g.eng, "busy")
	waitFor(t, "the first send", func() bool { return g.sender.count() == 1 })
	if _, err := g.eng.Run(t.Context(), "busy"); !errors.Is(err, ErrBusy) {
		t.Errorf("same engine: %v", err)
	}
	st, err := OpenStore(g.path)
	if err != nil {
		t.Fatal(err)
	}
	other := New(st, &fakeSender{t: t, acks: &fakeAcks{}}, g.key, &fakeAcks{}, nil)
	if _, err := other.Run(t.Context(), "busy"); !errors.Is(err, ErrBusy) {
		t.Errorf("other engine: %v", err)
	}
	cancel()
	<-res
	// Released at the end of the run: the other engine may take over at once.
	ctx2, cancel2 := context.WithCancel(t.Context())
	defer cancel2()
	res2 := runAsync(ctx2, other, "busy")
	cancel2()
	if r := <-res2; errors.Is(r.err, ErrBusy) {
		t.Fatalf("after release: %v", r.err)
	}
}

func TestCreateRefusesBadPlans(t *testing.T) {
	g := newRig(t, Plan{Name: "ok", Kind: "reboot", Targets: []string{"A"}})
	for _, p := range []Plan{
		{Name: "ok", Kind: "reboot", Targets: []string{"A"}},
		{Name: "bad name", Kind: "reboot", Targets: []string{"A"}},
		{Name: "x", Kind: "", Targets: []string{"A"}},
		{Name: "x", Kind: "reboot"},
		{Name: "x", Kind: "reboot", Targets: []string{"A", "A"}},
		{Name: "x", Kind: "reboot", Targets: []string{"a/b"}},
		{Name: "x", Kind: "reboot", Targets: []string{"A"}, MaxFailureRatio: 1.5},
		{Name: "x", Kind: "reboot", Targets: []string{"A"}, Body: []byte{0x01}},
		{Name: "x", Kind: "reboot", Targets: []string{"A"}, Pace: Pace{PerMinute: 5, Start: 2, Factor: 2}},
		{Name: "x", Kind: "reboot", Targets: []string{"A"}, Pace: Pace{Start: 2, Factor: 0.5}},
	} {
		err := g.eng.Create(p)
		want := ErrInvalidPlan
		if p.Name == "ok" {
			want = ErrExists
		}
		if !errors.Is(err, want) {
			t.Errorf("%+v: %v, want %v", p, err, want)
		}
	}
	if _, err := g.store.Load("x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a refused plan was stored: %v", err)
	}
	sv, err := g.store.Load("ok")
	if err != nil || sv.Plan.MinSample != DefaultMinSample || sv.Plan.Timeout != DefaultTimeout || sv.Plan.Expires != DefaultTimeout || sv.Plan.MaxInFlight != DefaultMaxInFlight {
		t.Fatalf("defaults: %v %+v", err, sv)
	}
}

func TestSignedCommandCarriesThePlan(t *testing.T) {
	body := []byte{0xa1, 0x61, 0x76, 0x02} // {"v": 2}
	plan := Plan{Name: "sig", Kind: "config.apply", Body: body, Targets: []string{"A"}, Timeout: 2 * time.Minute, Expires: time.Hour, MaxFailureRatio: 1}
	g := newRig(t, plan)
	r := g.open("sig", t0)
	g.step(r, t0)
	s := g.sender.all()[0]
	v, err := tmsproto.NewVerifier(map[string]ed25519.PublicKey{g.key.ID: g.key.Public()})
	if err != nil {
		t.Fatal(err)
	}
	cmd, err := v.Verify(s.raw)
	if err != nil {
		t.Fatalf("the agent's verifier refuses the command: %v", err)
	}
	if cmd.Kind != "config.apply" || !bytes.Equal(cmd.Body, body) || cmd.Issued != t0.Unix() || cmd.Expires < t0.Add(time.Hour).Unix() || cmd.Seq == 0 {
		t.Fatalf("command %+v", cmd)
	}
}
