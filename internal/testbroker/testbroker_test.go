package testbroker_test

import (
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/posagent/posagent/agent/tmsproto"
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

type client struct {
	paho.Client
	msgs chan paho.Message
}

func dial(t *testing.T, url, user, pass string, persistent bool) (*client, error) {
	t.Helper()
	cl := &client{msgs: make(chan paho.Message, 1024)}
	o := paho.NewClientOptions().AddBroker(url).SetClientID(user).SetUsername(user).SetPassword(pass).
		SetProtocolVersion(4).SetCleanSession(!persistent).SetAutoReconnect(false).
		SetConnectTimeout(wait).SetOrderMatters(true).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
			select {
			case cl.msgs <- m:
			default:
				t.Errorf("%s: message buffer full", user)
			}
		})
	cl.Client = paho.NewClient(o)
	tok := cl.Connect()
	if !tok.WaitTimeout(wait) {
		return nil, errors.New("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { cl.Disconnect(0) })
	return cl, nil
}

func mustDial(t *testing.T, url, user, pass string, persistent bool) *client {
	t.Helper()
	c, err := dial(t, url, user, pass, persistent)
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	return c
}

func (c *client) subscribe(t *testing.T, filter string) byte {
	t.Helper()
	tok := c.Subscribe(filter, 1, nil)
	if !tok.WaitTimeout(wait) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", filter, tok.Error())
	}
	return tok.(*paho.SubscribeToken).Result()[filter]
}

func (c *client) publish(t *testing.T, topic, payload string) {
	t.Helper()
	tok := c.Publish(topic, 1, false, payload)
	if !tok.WaitTimeout(wait) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

func (c *client) next(t *testing.T) paho.Message {
	t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case <-time.After(wait):
		t.Fatal("no message arrived")
		return nil
	}
}

// flush returns once the broker has routed everything c published before (c's own probe,
// published after them on the same connection, has come back).
func (c *client) flush(t *testing.T) {
	t.Helper()
	back := make(chan struct{}, 1)
	tok := c.Subscribe("tms/v1/probe/flush", 1, func(paho.Client, paho.Message) {
		select {
		case back <- struct{}{}:
		default:
		}
	})
	if !tok.WaitTimeout(wait) || tok.Error() != nil {
		t.Fatalf("flush subscribe: %v", tok.Error())
	}
	c.publish(t, "tms/v1/probe/flush", "probe")
	select {
	case <-back:
	case <-time.After(wait):
		t.Fatal("flush probe did not come back")
	}
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
			dev1.subscribe(t, tmsproto.CmdTopic("dev1"))
			tms.subscribe(t, "tms/v1/+/up/#")

			// Reading: dev2 subscribes to dev1's tree. Brokers differ in whether they refuse
			// such a subscription or only filter what it delivers; either way nothing of
			// dev1's may reach dev2.
			spy := mustDial(t, b.URL(), "dev2", b.DevicePassword("dev2"), false)
			spy.subscribe(t, "tms/v1/dev1/#")
			spy.subscribe(t, "tms/v1/#")
			tms.publish(t, tmsproto.CmdTopic("dev1"), "command")
			if m := dev1.next(t); string(m.Payload()) != "command" {
				t.Fatalf("dev1 got %q, want the TMS's command", m.Payload())
			}
			dev1.publish(t, tmsproto.UpTopic("dev1", tmsproto.StreamAck), "ack")
			if m := tms.next(t); string(m.Payload()) != "ack" {
				t.Fatalf("tms got %q, want dev1's ack", m.Payload())
			}
			// The spy's own round trip comes after both on its connection.
			spy.subscribe(t, tmsproto.UpTopic("dev2", "probe"))
			spy.publish(t, tmsproto.UpTopic("dev2", "probe"), "probe")
			if m := spy.next(t); string(m.Payload()) != "probe" {
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
			tms.publish(t, tmsproto.CmdTopic("dev1"), "marker")
			if m := dev1.next(t); string(m.Payload()) != "marker" {
				t.Fatalf("dev1 got %q first, want the TMS's marker", m.Payload())
			}
			dev1.publish(t, tmsproto.UpTopic("dev1", tmsproto.StreamAck), "ack 2")
			for {
				m := tms.next(t)
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
			dev.subscribe(t, tmsproto.CmdTopic("dev1"))
			dev.Disconnect(0)

			tms := mustDial(t, url, b.TMSUser(), b.TMSPassword(), false)
			const n = 20
			for i := range n {
				tms.publish(t, tmsproto.CmdTopic("dev1"), fmt.Sprint(i))
			}
			tms.flush(t)
			b.Restart(t)
			if b.URL() != url {
				t.Fatalf("URL changed across Restart: %s → %s", url, b.URL())
			}
			dev = mustDial(t, url, "dev1", b.DevicePassword("dev1"), true)
			for i := range n {
				if got := string(dev.next(t).Payload()); got != fmt.Sprint(i) {
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
