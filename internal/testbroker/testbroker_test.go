package testbroker_test

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/mqtttest"
	"github.com/posagent/posagent/internal/testbroker"
)

const wait = 10 * time.Second

// kinds are the broker kinds to test here: mochi always, mosquitto when installed or
// demanded by the environment (then Start fails the test if it is missing).
func kinds(t *testing.T) []string {
	out := []string{testbroker.KindMochi}
	if os.Getenv(testbroker.EnvKind) == testbroker.KindMosquitto || mosquittoInstalled() {
		out = append(out, testbroker.KindMosquitto)
	} else {
		t.Log("mosquitto not installed: testing mochi only")
	}
	return out
}

func mosquittoInstalled() bool {
	for _, p := range []string{"/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto"} {
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	return false
}

// dial connects as user with that user as client ID, the way a terminal does.
func dial(t *testing.T, url, user, pass string, persistent bool) (*mqtttest.Client, error) {
	t.Helper()
	return mqtttest.Dial(t, mqtttest.Conn{URL: url, User: user, Pass: pass, ID: user, Persistent: persistent})
}

func mustDial(t *testing.T, url, user, pass string, persistent bool) *mqtttest.Client {
	t.Helper()
	return mqtttest.MustDial(t, mqtttest.Conn{URL: url, User: user, Pass: pass, ID: user, Persistent: persistent})
}

func TestAccessRules(t *testing.T) {
	for _, kind := range kinds(t) {
		t.Run(kind, func(t *testing.T) {
			b := testbroker.Start(t, testbroker.Options{Kind: kind, Devices: []string{"dev1", "dev2"}})
			if b.Kind() != kind {
				t.Fatalf("Kind() = %s", b.Kind())
			}
			if _, err := dial(t, b.URL(), "dev1", b.DevicePassword("dev2"), false); err == nil {
				t.Error("dev1 admitted with dev2's password")
			}
			if _, err := dial(t, b.URL(), "dev3", "x", false); err == nil {
				t.Error("unknown user admitted")
			}
			dev1 := mustDial(t, b.URL(), "dev1", b.DevicePassword("dev1"), false)
			tms := mustDial(t, b.URL(), b.TMSUser(), b.TMSPassword(), false)
			dev1.MustSubscribe(t, tmsproto.CmdTopic("dev1"))
			tms.MustSubscribe(t, "tms/v1/+/up/#")

			// Reading: dev2 subscribes to dev1's tree. Brokers differ in whether they refuse
			// such a subscription or only filter what it delivers; either way nothing of
			// dev1's may reach dev2.
			spy := mustDial(t, b.URL(), "dev2", b.DevicePassword("dev2"), false)
			spy.MustSubscribe(t, "tms/v1/dev1/#")
			spy.MustSubscribe(t, "tms/v1/#")
			tms.Send(t, tmsproto.CmdTopic("dev1"), "command")
			if m := dev1.Next(t); string(m.Payload()) != "command" {
				t.Fatalf("dev1 got %q, want the TMS's command", m.Payload())
			}
			dev1.Send(t, tmsproto.UpTopic("dev1", tmsproto.StreamAck), "ack")
			if m := tms.Next(t); string(m.Payload()) != "ack" {
				t.Fatalf("tms got %q, want dev1's ack", m.Payload())
			}
			// The spy's own round trip comes after both on its connection.
			spy.MustSubscribe(t, tmsproto.UpTopic("dev2", "probe"))
			spy.Send(t, tmsproto.UpTopic("dev2", "probe"), "probe")
			if m := spy.Next(t); string(m.Payload()) != "probe" {
				t.Fatalf("dev2 received %s %q from dev1's tree", m.Topic(), m.Payload())
			}
			spy.Disconnect(0)

			// Writing: dev2 forges a command for dev1 and an event in dev1's name, then
			// publishes QoS 1 on its own topic. Brokers either drop a forgery (and then
			// acknowledge the QoS 1 message) or cut the connection; both happen only after
			// the forgeries have been handled.
			forger := mustDial(t, b.URL(), "dev2", b.DevicePassword("dev2"), false)
			forger.Publish(tmsproto.CmdTopic("dev1"), 0, false, "forged")
			forger.Publish(tmsproto.UpTopic("dev1", tmsproto.StreamEvent), 0, false, "forged")
			if tok := forger.Publish(tmsproto.UpTopic("dev2", tmsproto.StreamEvent), 1, false, "dev2 event"); !tok.WaitTimeout(wait) {
				t.Fatal("the broker neither acknowledged nor disconnected the forger")
			}
			tms.Send(t, tmsproto.CmdTopic("dev1"), "marker")
			if m := dev1.Next(t); string(m.Payload()) != "marker" {
				t.Fatalf("dev1 got %q first, want the TMS's marker", m.Payload())
			}
			dev1.Send(t, tmsproto.UpTopic("dev1", tmsproto.StreamAck), "ack 2")
			for {
				m := tms.Next(t)
				if string(m.Payload()) == "forged" {
					t.Fatalf("tms received a forgery on %s", m.Topic())
				}
				if string(m.Payload()) == "ack 2" {
					break
				}
			}
		})
	}
}

func TestQueuedMessagesSurviveRestart(t *testing.T) {
	for _, kind := range kinds(t) {
		t.Run(kind, func(t *testing.T) {
			b := testbroker.Start(t, testbroker.Options{Kind: kind, Devices: []string{"dev1"}})
			url := b.URL()
			dev := mustDial(t, url, "dev1", b.DevicePassword("dev1"), true)
			dev.MustSubscribe(t, tmsproto.CmdTopic("dev1"))
			dev.Disconnect(0)

			tms := mustDial(t, url, b.TMSUser(), b.TMSPassword(), false)
			const n = 20
			for i := range n {
				tms.Send(t, tmsproto.CmdTopic("dev1"), fmt.Sprint(i))
			}
			tms.Flush(t, "tms/v1/probe/flush")
			b.Restart(t)
			if b.URL() != url {
				t.Fatalf("URL changed across Restart: %s → %s", url, b.URL())
			}
			dev = mustDial(t, url, "dev1", b.DevicePassword("dev1"), true)
			for i := range n {
				if got := string(dev.Next(t).Payload()); got != fmt.Sprint(i) {
					t.Fatalf("message %d after restart: got %q", i, got)
				}
			}
		})
	}
}

func TestStopThenRestart(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{Kind: testbroker.KindMochi, Devices: []string{"dev1"}})
	b.Stop()
	b.Stop() // idempotent
	if _, err := dial(t, b.URL(), "dev1", b.DevicePassword("dev1"), false); err == nil {
		t.Fatal("connected to a stopped broker")
	}
	b.Restart(t)
	mustDial(t, b.URL(), "dev1", b.DevicePassword("dev1"), false)
}

func TestKindFromEnvironment(t *testing.T) {
	t.Setenv(testbroker.EnvKind, testbroker.KindMochi)
	if k := testbroker.Start(t, testbroker.Options{}).Kind(); k != testbroker.KindMochi {
		t.Fatalf("env asked for mochi, got %s", k)
	}
}
