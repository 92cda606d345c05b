package tmslink

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/posagent/posagent/agent/backoff"
	"github.com/posagent/posagent/agent/outbox"
	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/testbroker"
)

// recordingInbox keeps the commands in the order the link committed them.
type recordingInbox struct {
	mu  sync.Mutex
	got []string
}

func (r *recordingInbox) Receive(_ context.Context, raw []byte) error {
	r.mu.Lock()
	r.got = append(r.got, string(raw))
	r.mu.Unlock()
	return nil
}

func (r *recordingInbox) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLinkDrainsPresenceOrderAndOutage(t *testing.T) {
	const dev = "LINK-1"
	br := testbroker.Start(t, testbroker.Options{Devices: []string{dev}})

	// The TMS side: a plain paho client recording uplink in arrival order.
	var mu sync.Mutex
	var seqs []uint64
	var online []bool
	tms := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(br.URL()).SetClientID("tms-link-test").
		SetUsername(br.TMSUser()).SetPassword(br.TMSPassword()).SetCleanSession(false).SetOrderMatters(true).
		SetAutoReconnect(true).SetOnConnectHandler(func(c mqtt.Client) {
		c.Subscribe("tms/v1/"+dev+"/up/#", 1, func(_ mqtt.Client, m mqtt.Message) {
			env, err := tmsproto.DecodeEnvelope(m.Payload())
			if err != nil {
				t.Errorf("uplink: %v", err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if env.Stream == tmsproto.StreamOnline {
				var o tmsproto.Online
				if err := tmsproto.Unmarshal(env.Body, &o); err == nil {
					online = append(online, o.Online)
				}
				return
			}
			seqs = append(seqs, env.Seq)
		})
	}))
	if tok := tms.Connect(); tok.Wait() && tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer tms.Disconnect(100)

	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	commit := store.NewCommitter(db)
	defer commit.Close()
	out, err := outbox.Open(db, commit, outbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	inbox := &recordingInbox{}
	link, err := New(Options{DeviceID: dev, Broker: br.URL(), Password: br.DevicePassword(dev), Inflight: 4,
		KeepAlive: 5 * time.Second, Backoff: backoff.Policy{Base: 50 * time.Millisecond, Cap: 200 * time.Millisecond},
		DB: db, Commit: commit, Outbox: out, Inbox: inbox, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; i < 20; i++ { // queued before the link ever connects
		if _, err := out.Append(ctx, tmsproto.StreamEvent, "e", map[string]int{"i": i}); err != nil {
			t.Fatal(err)
		}
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- link.Run(runCtx) }()

	waitUntil(t, "first drain", func() bool { return out.State().Records == 0 })
	// Commands arrive at the inbox in the order the TMS published them.
	for i := 0; i < 10; i++ {
		tms.Publish(tmsproto.CmdTopic(dev), 1, false, fmt.Sprintf("cmd-%02d", i)).Wait()
	}
	waitUntil(t, "commands", func() bool { return len(inbox.list()) == 10 })
	for i, got := range inbox.list() {
		if got != fmt.Sprintf("cmd-%02d", i) {
			t.Fatalf("inbox order %v", inbox.list())
		}
	}

	// An outage: records queued meanwhile go out after the broker is back, in order.
	br.Stop()
	for i := 0; i < 20; i++ {
		if _, err := out.Append(ctx, tmsproto.StreamEvent, "e", map[string]int{"i": i}); err != nil {
			t.Fatal(err)
		}
	}
	br.Restart(t)
	waitUntil(t, "drain after the outage", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return out.State().Records == 0 && len(seqs) >= 40
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "goodbye", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(online) > 0 && !online[len(online)-1]
	})

	mu.Lock()
	defer mu.Unlock()
	seen := map[uint64]bool{}
	for _, s := range seqs {
		seen[s] = true
	}
	for s := uint64(1); s <= 40; s++ {
		if !seen[s] {
			t.Fatalf("seq %d never arrived: %v", s, seqs)
		}
	}
	// A command whose PUBACK had not reached the broker when it stopped comes again after the
	// restart (at least once; the dispatcher answers repeats from its journal), so Commands may
	// exceed 10.
	st := link.Status()
	if st.Connects < 2 || st.Commands < 10 || st.Acked < 40 {
		t.Fatalf("status %+v", st)
	}
}
