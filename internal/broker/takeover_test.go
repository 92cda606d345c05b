package broker_test

import (
	"bytes"
	"net"
	"sync"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/broker"
	"github.com/posagent/posagent/internal/mqtttest"
)

// pauseTakeover holds mochi once in the middle of taking over the session of client id: it
// has copied the old connection's queue to the new one and is clearing the old one, but has
// not yet registered the new connection under the id. Messages routed now reach the old
// session object.
type pauseTakeover struct {
	mqtt.HookBase
	id       string
	once     sync.Once
	paused   chan struct{}
	release  chan struct{}
	letGoOne sync.Once
}

func newPauseTakeover(id string) *pauseTakeover {
	return &pauseTakeover{id: id, paused: make(chan struct{}), release: make(chan struct{})}
}

func (p *pauseTakeover) ID() string { return "test-pause-takeover" }

func (p *pauseTakeover) Provides(b byte) bool { return b == mqtt.OnQosDropped }

func (p *pauseTakeover) OnQosDropped(cl *mqtt.Client, _ packets.Packet) {
	if cl.ID != p.id || !cl.IsTakenOver() {
		return
	}
	p.once.Do(func() {
		close(p.paused)
		<-p.release
	})
}

// letGo lets mochi go on; it is safe to call more than once.
func (p *pauseTakeover) letGo() { p.letGoOne.Do(func() { close(p.release) }) }

func (p *pauseTakeover) waitPaused(t *testing.T) {
	t.Helper()
	select {
	case <-p.paused:
	case <-time.After(wait):
		t.Fatal("the session takeover never reached the paused point")
	}
}

// TestNoMessageLostInSessionTakeover: a persistent subscriber reconnects while a publisher
// keeps publishing. A message the broker acknowledged while it was handing the subscriber's
// session over to the new connection must still reach the subscriber, in order, and stay
// queued for it across a broker restart.
func TestNoMessageLostInSessionTakeover(t *testing.T) {
	for _, restart := range []bool{false, true} {
		t.Run(map[bool]string{false: "reconnect", true: "then broker restart"}[restart], func(t *testing.T) {
			dir := t.TempDir()
			pause := newPauseTakeover("tms")
			b := startBroker(t, broker.WithTestHooks(broker.Options{DataDir: dir}, pause))
			t.Cleanup(pause.letGo) // cleanups run last-in first-out: before the broker closes
			subConn := mqtttest.Conn{URL: url(b), User: "tms", Pass: "tms-secret", ID: "tms", Persistent: true, ManualAck: restart}
			topic := tmsproto.UpTopic("dev1", tmsproto.StreamEvent)

			sub := mqtttest.MustDial(t, subConn)
			sub.MustSubscribe(t, tmsproto.UpTopic("dev1", "#"))
			sub.Disconnect(0)
			dev := mqtttest.MustDial(t, mqtttest.Conn{URL: url(b), User: "dev1", Pass: "pw-1", ID: "dev1", Persistent: true})
			dev.MustPublish(t, topic, 1, false, "queued")
			dev.Flush(t, "tms/v1/dev1/probe/flush")

			// The subscriber comes back; its CONNACK only comes once mochi is let go.
			back := make(chan *mqtttest.Client, 1)
			go func() {
				c, err := mqtttest.Dial(t, subConn)
				if err != nil {
					t.Errorf("reconnect: %v", err)
				}
				back <- c
			}()
			pause.waitPaused(t)
			dev.MustPublish(t, topic, 1, false, "during takeover") // acknowledged by the broker
			pause.letGo()
			select {
			case sub = <-back:
			case <-time.After(wait):
				t.Fatal("reconnect did not finish")
			}
			if sub == nil {
				t.FailNow()
			}
			dev.MustPublish(t, topic, 1, false, "after")

			want := []string{"queued", "during takeover", "after"}
			expect := func(sub *mqtttest.Client) {
				t.Helper()
				for _, w := range want {
					if got := string(sub.Next(t).Payload()); got != w {
						t.Fatalf("got %q, want %q: every acknowledged message, in order %q", got, w, want)
					}
				}
			}
			expect(sub)
			if !restart {
				return
			}
			// None was acknowledged by the subscriber: all three stay queued across a
			// graceful restart.
			sub.Disconnect(0)
			dev.Disconnect(0)
			addr := b.Addr()
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			startBroker(t, broker.Options{Addr: addr, DataDir: dir}) // same address: subConn still fits
			subConn.ManualAck = false
			expect(mqtttest.MustDial(t, subConn))
		})
	}
}

// TestNoMessageLostWhenTakeoverFails: the reconnecting subscriber's connection dies in the
// middle of the takeover, after the broker acknowledged a message to a publisher. The message
// waits in the session for the next connection, across a broker restart too.
func TestNoMessageLostWhenTakeoverFails(t *testing.T) {
	for _, restart := range []bool{false, true} {
		t.Run(map[bool]string{false: "reconnect", true: "broker restart, reconnect"}[restart], func(t *testing.T) {
			dir := t.TempDir()
			pause := newPauseTakeover("tms")
			b := startBroker(t, broker.WithTestHooks(broker.Options{DataDir: dir}, pause))
			t.Cleanup(pause.letGo)
			subConn := mqtttest.Conn{URL: url(b), User: "tms", Pass: "tms-secret", ID: "tms", Persistent: true}
			topic := tmsproto.UpTopic("dev1", tmsproto.StreamEvent)

			sub := mqtttest.MustDial(t, subConn)
			sub.MustSubscribe(t, tmsproto.UpTopic("dev1", "#"))
			sub.Disconnect(0)
			dev := mqtttest.MustDial(t, mqtttest.Conn{URL: url(b), User: "dev1", Pass: "pw-1", ID: "dev1", Persistent: true})
			dev.MustPublish(t, topic, 1, false, "queued")
			dev.Flush(t, "tms/v1/dev1/probe/flush")

			// A bare CONNECT, and the connection is gone before the broker answers it.
			raw, err := net.DialTimeout("tcp", b.Addr(), wait)
			if err != nil {
				t.Fatal(err)
			}
			connect := packets.Packet{
				FixedHeader:     packets.FixedHeader{Type: packets.Connect},
				ProtocolVersion: 4,
				Connect: packets.ConnectParams{
					ProtocolName: []byte("MQTT"), ClientIdentifier: "tms", Keepalive: 30,
					UsernameFlag: true, Username: []byte("tms"), PasswordFlag: true, Password: []byte("tms-secret"),
				},
			}
			var buf bytes.Buffer
			if err := connect.ConnectEncode(&buf); err != nil {
				t.Fatal(err)
			}
			if _, err := raw.Write(buf.Bytes()); err != nil {
				t.Fatal(err)
			}
			pause.waitPaused(t)
			dev.MustPublish(t, topic, 1, false, "during takeover")
			_ = raw.Close()
			pause.letGo()
			dev.MustPublish(t, topic, 1, false, "after")
			dev.Flush(t, "tms/v1/dev1/probe/flush")

			if restart {
				dev.Disconnect(0)
				addr := b.Addr()
				if err := b.Close(); err != nil {
					t.Fatal(err)
				}
				startBroker(t, broker.Options{Addr: addr, DataDir: dir}) // same address: subConn still fits
			}
			sub = mqtttest.MustDial(t, subConn)
			for _, w := range []string{"queued", "during takeover", "after"} {
				if got := string(sub.Next(t).Payload()); got != w {
					t.Fatalf("got %q, want %q", got, w)
				}
			}
		})
	}
}
