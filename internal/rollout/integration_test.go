package rollout_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/backoff"
	"github.com/posagent/posagent/agent/termconfig"
	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/fleet"
	"github.com/posagent/posagent/internal/rollout"
	"github.com/posagent/posagent/internal/testbroker"
	"github.com/posagent/posagent/internal/tmsclient"
)

// world is a broker, real agent terminals (internal/fleet: the agent's command dispatcher,
// outbox, TMS link and configuration store on their own databases) and the TMS side.
type world struct {
	t      *testing.T
	key    tmsclient.SignKey
	tms    *tmsclient.Client
	good   *fleet.Fleet // trust key
	bad    *fleet.Fleet // trust another key only
	dbPath string

	mu   sync.Mutex
	acks []ackSeen // every ack on the wire, for checks of the agent's answers
}

type ackSeen struct {
	dev string
	ack tmsproto.Ack
}

func newWorld(t *testing.T) *world {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	w := &world{t: t, dbPath: filepath.Join(t.TempDir(), "rollout.db")}
	goodIDs := fleet.DeviceIDs("RG-", 0, 2, 0)
	badIDs := fleet.DeviceIDs("RB-", 0, 1, 0)
	br := testbroker.Start(t, testbroker.Options{Devices: slices.Concat(goodIDs, badIDs)})
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	w.key = tmsclient.SignKey{ID: "rollout-test", Key: priv}
	start := func(prefix string, n int, keys map[string]ed25519.PublicKey) *fleet.Fleet {
		f, err := fleet.Start(t.Context(), fleet.Options{
			N: n, Prefix: prefix, Dir: t.TempDir(), Broker: br.URL(), Password: br.DevicePassword,
			CommandKeys: keys, StatsInterval: 24 * time.Hour,
			Backoff: backoff.Policy{Base: 200 * time.Millisecond, Cap: time.Second},
			Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = f.Close() })
		return f
	}
	w.good = start("RG-", 2, map[string]ed25519.PublicKey{w.key.ID: pub})
	w.bad = start("RB-", 1, map[string]ed25519.PublicKey{"another-tms": otherPub})
	if w.tms, err = tmsclient.Connect(ctx, tmsclient.Options{Broker: br.URL(), Username: br.TMSUser(), Password: br.TMSPassword()}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.tms.Close)
	sub, err := w.tms.Watch(t.Context(), "+", []string{tmsproto.StreamAck}, func(u tmsclient.Uplink) {
		if u.Err != nil {
			return
		}
		if a, err := tmsclient.DecodeAck(u.Envelope.Body); err == nil {
			w.mu.Lock()
			w.acks = append(w.acks, ackSeen{u.DeviceID, a})
			w.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sub.Stop)
	w.until("every terminal connected", func() bool {
		return w.good.Snapshot().Connected == 2 && w.bad.Snapshot().Connected == 1
	})
	return w
}

func (w *world) until(what string, cond func() bool) {
	w.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			w.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// engine is a new engine on the world's database, as a new tmsctl process would make.
func (w *world) engine(acks rollout.AckSource) *rollout.Engine {
	w.t.Helper()
	st, err := rollout.OpenStore(w.dbPath)
	if err != nil {
		w.t.Fatal(err)
	}
	if acks == nil {
		acks = rollout.NewTMSAckSource(w.tms, nil)
	}
	return rollout.New(st, rollout.NewTMSSender(w.tms), w.key, acks, nil)
}

func (w *world) sawAck(match func(ackSeen) bool) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.ContainsFunc(w.acks, match)
}

func configBody(t *testing.T, version uint64) []byte {
	t.Helper()
	doc := termconfig.Default()
	doc.Version = version
	body, err := tmsproto.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// A real config.apply rollout: the terminal that does not trust the key rejects its command,
// which crosses the ratio and halts the rollout before the last terminal; a resume with a
// higher ratio reaches the end.
func TestRolloutAgainstRealTerminals(t *testing.T) {
	w := newWorld(t)
	g0, g1, b0 := w.good.Terminals()[0], w.good.Terminals()[1], w.bad.Terminals()[0]
	eng := w.engine(nil)
	plan := rollout.Plan{Name: "cfg-v7", Kind: "config.apply", Body: configBody(t, 7),
		Targets: []string{g0.ID(), b0.ID(), g1.ID()}, Pace: rollout.Pace{Start: 1, Factor: 1},
		MaxFailureRatio: 0.4, MinSample: 2, Timeout: time.Minute}
	if err := eng.Create(plan); err != nil {
		t.Fatal(err)
	}
	sum, err := eng.Run(t.Context(), "cfg-v7")
	if !errors.Is(err, rollout.ErrHalted) {
		t.Fatalf("Run: %v (%+v)", err, sum)
	}
	if sum.Succeeded != 1 || sum.Failed != 1 || sum.Pending != 1 || !sum.Halted {
		t.Fatalf("halted with %+v", sum)
	}
	if g0.ConfigVersion() != 7 || g1.ConfigVersion() == 7 {
		t.Fatalf("config versions after the halt: %s %d, %s %d", g0.ID(), g0.ConfigVersion(), g1.ID(), g1.ConfigVersion())
	}
	_, states, err := eng.Status("cfg-v7")
	if err != nil {
		t.Fatal(err)
	}
	if s := states[1]; s.ID != b0.ID() || s.State != rollout.StateFailed || s.Reason != string(tmsproto.ReasonUnknownKey) {
		t.Fatalf("the untrusting terminal: %+v", s)
	}

	ratio := 0.6
	sum, err = eng.Resume(t.Context(), "cfg-v7", rollout.Overrides{MaxFailureRatio: &ratio})
	if err != nil {
		t.Fatalf("Resume: %v (%+v)", err, sum)
	}
	if sum.Succeeded != 2 || sum.Failed != 1 || sum.Pending != 0 || sum.Halted || sum.Finished.IsZero() {
		t.Fatalf("after the resume: %+v", sum)
	}
	if g1.ConfigVersion() != 7 {
		t.Fatalf("%s at version %d after the resume", g1.ID(), g1.ConfigVersion())
	}
}

// dropAcks is an ack source that hears nothing: the TMS side missed every ack (it was away).
type dropAcks struct{}

func (dropAcks) WatchAcks(context.Context, func(string, tmsproto.Ack)) (func(), error) {
	return func() {}, nil
}

// A rollout interrupted after the terminal ran its command, without the TMS having heard: the
// next engine sends the same bytes, the agent answers from its journal (duplicate) instead of
// running it again, and the rollout finishes.
func TestInterruptedRolloutResendsAndTheAgentAnswersFromItsJournal(t *testing.T) {
	w := newWorld(t)
	g0 := w.good.Terminals()[0]
	deaf := w.engine(dropAcks{})
	if err := deaf.Create(rollout.Plan{Name: "deaf", Kind: "config.apply", Body: configBody(t, 9),
		Targets: []string{g0.ID()}, MaxFailureRatio: 1, Timeout: time.Minute}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := deaf.Run(ctx, "deaf")
		done <- err
	}()
	var cmdID string
	w.until("the terminal's final ack", func() bool {
		if _, st, err := deaf.Status("deaf"); err == nil && st[0].Command != "" {
			cmdID = st[0].Command
		}
		return cmdID != "" && w.sawAck(func(a ackSeen) bool { return a.ack.ID == cmdID && a.ack.State == tmsproto.StateSucceeded })
	})
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted Run: %v", err)
	}
	if _, st, _ := deaf.Status("deaf"); st[0].State != rollout.StateSent {
		t.Fatalf("state before the resume: %+v", st[0])
	}

	sum, err := w.engine(nil).Run(t.Context(), "deaf")
	if err != nil || sum.Succeeded != 1 {
		t.Fatalf("second Run: %v %+v", err, sum)
	}
	if !w.sawAck(func(a ackSeen) bool {
		return a.dev == g0.ID() && a.ack.ID == cmdID && a.ack.Duplicate && a.ack.State == tmsproto.StateSucceeded
	}) {
		t.Fatal("the agent did not answer the re-sent command from its journal")
	}
	if g0.ConfigVersion() != 9 {
		t.Fatalf("version %d", g0.ConfigVersion())
	}
}
