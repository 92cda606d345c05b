package broker_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/broker"
	"github.com/posagent/posagent/internal/mqtttest"
	"github.com/posagent/posagent/internal/syncio"
)

// wait bounds every network wait so that a broken broker fails the test instead of hanging it.
const wait = 10 * time.Second

var users = map[string]string{"tms": "tms-secret", "dev1": "pw-1", "dev2": "pw-2"}

// testLogger collects the broker's log and prints it if the test fails. It buffers rather
// than calling t.Log because broker goroutines may still log after the test has returned.
func testLogger(t testing.TB) *slog.Logger {
	w := &syncio.Buffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("broker log:\n%s", w.String())
		}
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func startBroker(t testing.TB, opts broker.Options) *broker.Broker {
	t.Helper()
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.Users == nil {
		opts.Users = users
		opts.TMSUsers = []string{"tms"}
	}
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	b, err := broker.Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("start broker: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close broker: %v", err)
		}
	})
	return b
}

func url(b *broker.Broker) string { return "tcp://" + b.Addr() }

func TestDevicesAreIsolated(t *testing.T) {
	b := startBroker(t, broker.Options{})
	dev1 := mqtttest.MustDial(t, mqtttest.Conn{URL: url(b), User: "dev1", Pass: "pw-1", ID: "dev1"})
	dev2 := mqtttest.MustDial(t, mqtttest.Conn{URL: url(b), User: "dev2", Pass: "pw-2", ID: "dev2"})
	tms := mqtttest.MustDial(t, mqtttest.Conn{URL: url(b), User: "tms", Pass: "tms-secret", ID: "tms-console"})

	for _, f := range []string{"tms/v1/dev1/#", "tms/v1/dev1/down/cmd", "tms/v1/#", "tms/v1/+/down/cmd", "#", "tms/#", "$SYS/#", "tms/v1", "tms/v1/dev2x/#"} {
		if got := dev2.MustSubscribe(t, f); got != 0x80 {
			t.Errorf("dev2 subscribing %q: granted %#x, want refusal", f, got)
		}
	}
	for _, f := range []string{"tms/v1/dev2/down/#", "tms/v1/dev2/+/cmd", "tms/v1/dev2"} {
		if got := dev2.MustSubscribe(t, f); got != 1 {
			t.Errorf("dev2 subscribing its own %q: granted %#x, want 1", f, got)
		}
	}
	if got := dev1.MustSubscribe(t, tmsproto.CmdTopic("dev1")); got != 1 {
		t.Fatalf("dev1 subscribing its command topic: granted %#x", got)
	}
	if got := tms.MustSubscribe(t, "tms/v1/+/up/#"); got != 1 {
		t.Fatalf("tms subscribing all uplinks: granted %#x", got)
	}
	if got := tms.MustSubscribe(t, "$SYS/#"); got != 0x80 {
		t.Errorf("tms subscribing $SYS: granted %#x, want refusal", got)
	}

	// dev2 forges a command for dev1 and an uplink in dev1's name. Its own QoS 1 publish is
	// acknowledged only after the broker has processed the forgeries (one connection is
	// handled in order), so the marker the TMS sends afterwards must be the first thing dev1
	// sees and dev1's name must not appear in the TMS's uplink stream.
	dev2.MustPublish(t, tmsproto.CmdTopic("dev1"), 0, false, "forged command")
	dev2.MustPublish(t, tmsproto.UpTopic("dev1", tmsproto.StreamEvent), 0, false, "forged event")
	dev2.MustPublish(t, tmsproto.UpTopic("dev2", tmsproto.StreamEvent), 1, false, "own event")
	if m := tms.Next(t); m.Topic() != tmsproto.UpTopic("dev2", tmsproto.StreamEvent) || string(m.Payload()) != "own event" {
		t.Fatalf("tms got %s %q, want dev2's own event", m.Topic(), m.Payload())
	}
	tms.MustPublish(t, tmsproto.CmdTopic("dev1"), 1, false, "marker")
	if m := dev1.Next(t); string(m.Payload()) != "marker" {
		t.Fatalf("dev1 got %s %q first, want the TMS marker", m.Topic(), m.Payload())
	}
	dev1.MustPublish(t, tmsproto.UpTopic("dev1", tmsproto.StreamAck), 1, false, "ack")
	if m := tms.Next(t); m.Topic() != tmsproto.UpTopic("dev1", tmsproto.StreamAck) {
		t.Fatalf("tms got %s, want dev1's ack", m.Topic())
	}
}

func TestConnectionsRefused(t *testing.T) {
	b := startBroker(t, broker.Options{})
	cases := map[string]mqtttest.Conn{
		"wrong password":        {User: "dev1", Pass: "pw-2", ID: "dev1"},
		"unknown user":          {User: "dev3", Pass: "pw-1", ID: "dev3"},
		"no username":           {ID: "dev1"},
		"client id not user":    {User: "dev1", Pass: "pw-1", ID: "dev2"},
		"empty client id":       {User: "dev1", Pass: "pw-1", ID: ""},
		"will on other device":  {User: "dev1", Pass: "pw-1", ID: "dev1", WillTopic: "tms/v1/dev2/up/online"},
		"will outside the tree": {User: "tms", Pass: "tms-secret", ID: "tms", WillTopic: "other/online"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			c.URL = url(b)
			if _, err := mqtttest.Dial(t, c); err == nil {
				t.Fatal("connection admitted")
			}
		})
	}
	// A TMS user may use any client id; its Will may use any device's topic.
	mqtttest.MustDial(t, mqtttest.Conn{URL: url(b), User: "tms", Pass: "tms-secret", ID: "console-7", WillTopic: "tms/v1/dev1/down/x"})
	mqtttest.MustDial(t, mqtttest.Conn{URL: url(b), User: "dev1", Pass: "pw-1", ID: "dev1", WillTopic: tmsproto.UpTopic("dev1", tmsproto.StreamOnline)})
}

func TestBadOptions(t *testing.T) {
	cases := map[string]broker.Options{
		"device name with slash":  {Users: map[string]string{"a/b": "x"}},
		"empty password":          {Users: map[string]string{"dev1": ""}},
		"tms user with wildcard":  {Users: map[string]string{"t#": "x"}, TMSUsers: []string{"t#"}},
		"tms user no password":    {TMSUsers: []string{"tms"}},
		"queue bound too large":   {MaxQueued: broker.MaxQueuedLimit + 1},
		"negative queue bound":    {MaxQueued: -1},
		"device id too long (65)": {Users: map[string]string{strings.Repeat("a", 65): "x"}},
	}
	for name, o := range cases {
		t.Run(name, func(t *testing.T) {
			o.Addr = "127.0.0.1:0"
			b, err := broker.Start(context.Background(), o)
			if err == nil {
				_ = b.Close()
				t.Fatal("started")
			}
			var oe *broker.OptionsError
			if !errors.As(err, &oe) {
				t.Fatalf("error %v is not an *OptionsError", err)
			}
		})
	}
}

func TestContextEndsBroker(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	b, err := broker.Start(ctx, broker.Options{Addr: "127.0.0.1:0", Users: users, TMSUsers: []string{"tms"}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	addr := b.Addr()
	cancel()
	// Once the broker has let go of the address, a new one can bind it: that proves the
	// cancellation closed it. Close must stay safe afterwards.
	deadline := time.Now().Add(wait)
	for {
		b2, err := broker.Start(context.Background(), broker.Options{Addr: addr, Users: users, TMSUsers: []string{"tms"}, Logger: testLogger(t)})
		if err == nil {
			_ = b2.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("address still held after cancel: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("close after cancel: %v", err)
	}
}

func TestPersistenceAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	b := startBroker(t, broker.Options{DataDir: dir})
	addr := b.Addr()

	dev := mqtttest.MustDial(t, mqtttest.Conn{URL: url(b), User: "dev1", Pass: "pw-1", ID: "dev1", Persistent: true})
	if got := dev.MustSubscribe(t, tmsproto.CmdTopic("dev1")); got != 1 {
		t.Fatalf("subscribe: granted %#x", got)
	}
	dev.MustPublish(t, tmsproto.UpTopic("dev1", tmsproto.StreamOnline), 1, true, "online")
	dev.Disconnect(0)

	tms := mqtttest.MustDial(t, mqtttest.Conn{URL: url(b), User: "tms", Pass: "tms-secret", ID: "tms"})
	for i := range 3 {
		tms.MustPublish(t, tmsproto.CmdTopic("dev1"), 1, false, "cmd-"+string(rune('a'+i)))
	}
	tms.Disconnect(0)
	if err := b.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	b2 := startBroker(t, broker.Options{Addr: addr, DataDir: dir})
	dev = mqtttest.MustDial(t, mqtttest.Conn{URL: url(b2), User: "dev1", Pass: "pw-1", ID: "dev1", Persistent: true})
	got := map[string]bool{}
	for range 3 {
		got[string(dev.Next(t).Payload())] = true
	}
	for _, want := range []string{"cmd-a", "cmd-b", "cmd-c"} {
		if !got[want] {
			t.Errorf("queued %s lost across the restart (got %v)", want, got)
		}
	}
	// The session's subscription survived too: a new command reaches dev1 without a new
	// SUBSCRIBE.
	tms = mqtttest.MustDial(t, mqtttest.Conn{URL: url(b2), User: "tms", Pass: "tms-secret", ID: "tms"})
	tms.MustPublish(t, tmsproto.CmdTopic("dev1"), 1, false, "after")
	if m := dev.Next(t); string(m.Payload()) != "after" {
		t.Fatalf("got %q, want the post-restart command", m.Payload())
	}
	if got := tms.MustSubscribe(t, tmsproto.UpTopic("+", tmsproto.StreamOnline)); got != 1 {
		t.Fatalf("subscribe presence: granted %#x", got)
	}
	if m := tms.Next(t); string(m.Payload()) != "online" || !m.Retained() {
		t.Fatalf("retained presence: got %q retained=%v", m.Payload(), m.Retained())
	}
}

func TestMemoryOnlyForgetsOnRestart(t *testing.T) {
	b := startBroker(t, broker.Options{})
	addr := b.Addr()
	dev := mqtttest.MustDial(t, mqtttest.Conn{URL: url(b), User: "dev1", Pass: "pw-1", ID: "dev1", Persistent: true})
	dev.MustSubscribe(t, tmsproto.CmdTopic("dev1"))
	dev.Disconnect(0)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b2 := startBroker(t, broker.Options{Addr: addr})
	dev = mqtttest.MustDial(t, mqtttest.Conn{URL: url(b2), User: "dev1", Pass: "pw-1", ID: "dev1", Persistent: true})
	tms := mqtttest.MustDial(t, mqtttest.Conn{URL: url(b2), User: "tms", Pass: "tms-secret", ID: "tms"})
	tms.MustPublish(t, tmsproto.CmdTopic("dev1"), 1, false, "lost")
	tms.Flush(t, "tms/v1/probe/flush")
	// Had the command been routed to dev1, it would be ahead of dev1's own probe on dev1's
	// connection.
	dev.MustSubscribe(t, tmsproto.UpTopic("dev1", tmsproto.StreamAck))
	dev.MustPublish(t, tmsproto.UpTopic("dev1", tmsproto.StreamAck), 1, false, "probe")
	if m := dev.Next(t); string(m.Payload()) != "probe" {
		t.Fatalf("memory-only broker kept a session: got %q", m.Payload())
	}
}

func TestOfflineQueueIsBounded(t *testing.T) {
	const bound = 5
	b := startBroker(t, broker.Options{MaxQueued: bound})
	dev := mqtttest.MustDial(t, mqtttest.Conn{URL: url(b), User: "dev1", Pass: "pw-1", ID: "dev1", Persistent: true})
	dev.MustSubscribe(t, tmsproto.CmdTopic("dev1"))
	dev.Disconnect(0)
	tms := mqtttest.MustDial(t, mqtttest.Conn{URL: url(b), User: "tms", Pass: "tms-secret", ID: "tms"})
	for i := range 2 * bound {
		tms.MustPublish(t, tmsproto.CmdTopic("dev1"), 1, false, string(rune('a'+i)))
	}
	tms.Flush(t, "tms/v1/probe/flush")
	dev = mqtttest.MustDial(t, mqtttest.Conn{URL: url(b), User: "dev1", Pass: "pw-1", ID: "dev1", Persistent: true})
	got := ""
	for range bound {
		got += string(dev.Next(t).Payload())
	}
	if got != "abcde" {
		t.Fatalf("queued messages: got %q, want the first %d", got, bound)
	}
	// The rest were dropped when they were published. Prove it by sending fresh messages
	// until one arrives (the broker refuses them too until it has processed dev1's PUBACKs,
	// which paho sends after handing the messages over): nothing else may come first.
	for attempt := 0; ; attempt++ {
		if attempt == 100 {
			t.Fatal("no fresh message got through")
		}
		tms.MustPublish(t, tmsproto.CmdTopic("dev1"), 1, false, "fresh")
		if m, ok := dev.TryNext(100 * time.Millisecond); ok {
			if string(m.Payload()) != "fresh" {
				t.Fatalf("after the queue got %q, want only fresh messages (queue not bounded)", m.Payload())
			}
			return
		}
	}
}

func TestQueuedMessagesKeepTheirOrder(t *testing.T) {
	for _, restart := range []bool{false, true} {
		t.Run(map[bool]string{false: "reconnect", true: "broker restart"}[restart], func(t *testing.T) {
			dir := t.TempDir()
			b := startBroker(t, broker.Options{DataDir: dir})
			dev := mqtttest.MustDial(t, mqtttest.Conn{URL: url(b), User: "dev1", Pass: "pw-1", ID: "dev1", Persistent: true})
			dev.MustSubscribe(t, tmsproto.CmdTopic("dev1"))
			dev.Disconnect(0)
			tms := mqtttest.MustDial(t, mqtttest.Conn{URL: url(b), User: "tms", Pass: "tms-secret", ID: "tms"})
			const n = 200 // far more than fit in one second's tie in mochi's own ordering
			for i := range n {
				tms.MustPublish(t, tmsproto.CmdTopic("dev1"), 1, false, fmt.Sprint(i))
			}
			tms.Flush(t, "tms/v1/probe/flush")
			if restart {
				tms.Disconnect(0)
				addr := b.Addr()
				if err := b.Close(); err != nil {
					t.Fatal(err)
				}
				b = startBroker(t, broker.Options{Addr: addr, DataDir: dir})
			}
			dev = mqtttest.MustDial(t, mqtttest.Conn{URL: url(b), User: "dev1", Pass: "pw-1", ID: "dev1", Persistent: true})
			for i := range n {
				if got := string(dev.Next(t).Payload()); got != fmt.Sprint(i) {
					t.Fatalf("message %d: got %s", i, got)
				}
			}
		})
	}
}

// BenchmarkQoS1Delivery measures one TMS→terminal QoS 1 message, end to end through the
// broker, with sessions in memory and on disk (one fsync per queue change).
func BenchmarkQoS1Delivery(b *testing.B) {
	for _, onDisk := range []bool{false, true} {
		b.Run(map[bool]string{false: "memory", true: "disk"}[onDisk], func(b *testing.B) {
			opts := broker.Options{}
			if onDisk {
				opts.DataDir = b.TempDir()
			}
			br := startBroker(b, opts)
			dev := mqtttest.MustDial(b, mqtttest.Conn{URL: url(br), User: "dev1", Pass: "pw-1", ID: "dev1", Persistent: true})
			dev.MustSubscribe(b, tmsproto.CmdTopic("dev1"))
			tms := mqtttest.MustDial(b, mqtttest.Conn{URL: url(br), User: "tms", Pass: "tms-secret", ID: "tms"})
			payload := string(make([]byte, 256))
			for b.Loop() {
				tms.MustPublish(b, tmsproto.CmdTopic("dev1"), 1, false, payload)
				dev.Next(b)
			}
		})
	}
}
