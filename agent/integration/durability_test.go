package integration

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/outbox"
	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/agent/termconfig"
	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/tmsclient"
)

// lastSeqs opens the (stopped) agent's database and returns the last seq handed out on each
// stream, and how many records are still queued.
func (e *env) lastSeqs(streams []string) (map[string]uint64, int) {
	e.t.Helper()
	db, err := store.Open(e.dataDir())
	if err != nil {
		e.t.Fatal(err)
	}
	defer db.Close()
	c := store.NewCommitter(db)
	defer c.Close()
	o, err := outbox.Open(db, c, outbox.Options{})
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]uint64{}
	for _, s := range streams {
		if out[s], err = o.LastSeq(s); err != nil {
			e.t.Fatal(err)
		}
	}
	return out, o.State().Records
}

func (e *env) dataDir() string { return e.dir + "/data" }

// TestNoRecordLostAcrossKillsAndBrokerRestart: a burst of uplink records while the agent is
// SIGKILLed at random moments and the broker restarts once; afterwards the TMS holds every seq
// of every stream, after de-duplication exactly once, with no gap.
func TestNoRecordLostAcrossKillsAndBrokerRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("kills processes and moves >10k records; skipped with -short")
	}
	const dev = "IT-DUR-1"
	const perStream = 3400 // × 3 burst streams > 10 000 records, plus acks, stats and events
	e := newEnv(t, dev)
	cfg := e.configFile("")
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	const kills = 6
	for i := 0; i < kills; i++ {
		c := e.startChild(cfg, perStream)
		time.Sleep(time.Duration(400+rng.IntN(1600)) * time.Millisecond)
		if i == kills/2 {
			// The broker goes away under a running agent and comes back.
			e.broker.Restart(t)
			time.Sleep(time.Duration(100+rng.IntN(400)) * time.Millisecond)
		}
		c.kill()
		t.Logf("kill %d: burst seqs seen so far %v", i+1, e.highest(burstStreams))
	}
	before := e.onlineCount()
	c := e.startChild(cfg, perStream)
	// Online first: a child stopped before it has set up its signal handling just dies.
	waitFor(t, 20*time.Second, "agent online", func() bool { return e.onlineCount() > before })
	deadline := time.Now().Add(3 * time.Minute)
	for !e.burstComplete(perStream) {
		if time.Now().After(deadline) {
			for _, r := range e.checker.Reports() {
				t.Logf("%s/%s: highest %d, gaps %v", r.Device, r.Stream, r.Highest, r.Gaps)
			}
			t.Fatalf("not every burst record reached the TMS; agent log:\n%s", c.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.stop(t)

	// Every stream the agent wrote, up to the last seq it handed out.
	streams := append([]string{tmsproto.StreamStats, tmsproto.StreamAck}, burstStreams...)
	last, queued := e.lastSeqs(streams)
	before = e.onlineCount()
	c = e.startChild(cfg, perStream) // drains whatever the stop left queued
	waitFor(t, 20*time.Second, "agent online again", func() bool { return e.onlineCount() > before })
	waitFor(t, time.Minute, "every stream complete to its last seq", func() bool {
		for s, n := range last {
			if n > 0 && !e.checker.Complete(dev, s, n) {
				return false
			}
		}
		return true
	})
	c.stop(t)
	dups := 0
	for _, r := range e.checker.Reports() {
		if len(r.Gaps) > 0 {
			t.Errorf("%s/%s: gaps %v", r.Device, r.Stream, r.Gaps)
		}
		dups += int(r.Duplicates)
	}
	t.Logf("last seqs %v, %d left queued at the stop, %d duplicates de-duplicated by seq", last, queued, dups)
}

func (e *env) burstComplete(n uint64) bool {
	for _, s := range burstStreams {
		if !e.checker.Complete(e.device, s, n) {
			return false
		}
	}
	return true
}

func (e *env) highest(streams []string) map[string]uint64 {
	out := map[string]uint64{}
	for _, s := range streams {
		out[s] = e.checker.Report(e.device, s).Highest
	}
	return out
}

// TestConfigApplySurvivesPowerCuts: config.apply commands while the agent is SIGKILLed at
// random moments. After every kill the active configuration is exactly one of the documents
// sent (never a mix), and in the end every command has exactly one final outcome.
func TestConfigApplySurvivesPowerCuts(t *testing.T) {
	if testing.Short() {
		t.Skip("kills processes; skipped with -short")
	}
	const dev = "IT-CFG-1"
	e := newEnv(t, dev)
	cfg := e.configFile("")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))

	bodies := map[uint64][]byte{0: mustEncode(t, termconfig.Default())}
	var sent []tmsclient.Sent
	version := uint64(0)
	// The first connection creates the agent's persistent session at the broker; from then on
	// commands sent while it is down wait there for it.
	first := e.startChild(cfg, 0)
	waitFor(t, 20*time.Second, "agent online", func() bool { return len(e.stream(tmsproto.StreamStats)) > 0 })
	first.kill()
	// The socket closes with the process: the broker publishes the Last Will at once.
	waitFor(t, 10*time.Second, "the Last Will (online: false)", func() bool {
		envs := e.stream(tmsproto.StreamOnline)
		if len(envs) == 0 {
			return false
		}
		var o tmsproto.Online
		return tmsproto.Unmarshal(envs[len(envs)-1].Body, &o) == nil && !o.Online
	})
	const rounds = 8
	for i := 0; i < rounds; i++ {
		c := e.startChild(cfg, 0)
		// A few commands in quick succession, then a power cut somewhere among them.
		for j := 0; j < 3; j++ {
			version++
			bodies[version] = configBody(t, version)
			s, err := e.tms.Send(ctx, dev, e.key, tmsproto.Command{Kind: "config.apply", Body: bodies[version]})
			if err != nil {
				t.Fatal(err)
			}
			sent = append(sent, s)
			time.Sleep(time.Duration(rng.IntN(60)) * time.Millisecond)
		}
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		c.kill()
		e.checkActiveConfig(bodies)
	}
	before := e.onlineCount()
	c := e.startChild(cfg, 0)
	waitFor(t, 20*time.Second, "agent online again", func() bool { return e.onlineCount() > before })
	defer c.stop(t)
	for _, s := range sent {
		e.finalAck(s.Match(), 0)
	}
	time.Sleep(300 * time.Millisecond) // let stray repeats arrive, if any
	for _, s := range sent {
		finals := map[uint64]tmsproto.State{}
		for _, env := range e.stream(tmsproto.StreamAck) {
			var a tmsproto.Ack
			if err := tmsproto.Unmarshal(env.Body, &a); err != nil {
				t.Fatal(err)
			}
			if a.ID == s.Command.ID && a.State.Final() && !a.Duplicate {
				finals[env.Seq] = a.State // keyed by ack seq: a re-sent record counts once
				if a.State != tmsproto.StateSucceeded {
					t.Logf("command %s: %s %s", a.ID, a.Reason, a.Message)
				}
			}
		}
		if len(finals) != 1 {
			t.Errorf("command %s (seq %d): %d final outcomes %v", s.Command.ID, s.Command.Seq, len(finals), finals)
		}
		for _, st := range finals {
			if st != tmsproto.StateSucceeded {
				t.Errorf("command %s (seq %d): %s", s.Command.ID, s.Command.Seq, st)
			}
		}
	}
	waitFor(t, 20*time.Second, "stats with the last version", func() bool {
		v := e.statsConfigVersions()
		return len(v) > 0 && v[len(v)-1] == version
	})
}

func mustEncode(t testing.TB, d *termconfig.Document) []byte {
	t.Helper()
	b, err := termconfig.Encode(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkActiveConfig opens the killed agent's database and checks the active configuration is
// byte for byte one of the documents sent.
func (e *env) checkActiveConfig(bodies map[uint64][]byte) {
	e.t.Helper()
	db, err := store.Open(e.dataDir())
	if err != nil {
		e.t.Fatal(err)
	}
	defer db.Close()
	ts, err := termconfig.Open(db)
	if err != nil {
		e.t.Fatalf("configuration unreadable after a power cut: %v", err)
	}
	active := ts.Active()
	want, ok := bodies[active.Version]
	if !ok {
		e.t.Fatalf("active version %d was never sent", active.Version)
	}
	if got := mustEncode(e.t, active); !bytes.Equal(got, want) {
		e.t.Fatalf("active version %d is not the document sent", active.Version)
	}
}
