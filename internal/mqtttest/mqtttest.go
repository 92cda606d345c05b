// Package mqtttest is the MQTT client the broker tests connect with: one paho client per
// identity, every received message queued for the test to take in order, every wait bounded
// so that a broken broker fails a test instead of hanging it. The embedded broker's tests,
// the Mosquitto launcher's and the test-broker switch's all speak through it, so that an
// access rule is checked the same way against every broker.
package mqtttest

import (
	"crypto/tls"
	"errors"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// Wait bounds every network wait of a Client.
const Wait = 10 * time.Second

// Conn says how to connect.
type Conn struct {
	URL, User, Pass string
	ID              string // client ID, sent as given (empty too)
	Persistent      bool   // a persistent session (CleanSession false)
	TLS             *tls.Config
	WillTopic       string // a QoS 1 will "gone" on this topic when set
	// ManualAck leaves every received message unacknowledged, so that it stays queued at the
	// broker.
	ManualAck bool
}

// Client is a connected paho client whose messages (on any subscription made without a
// handler) queue for Next.
type Client struct {
	paho.Client
	msgs chan paho.Message
}

// Dial connects, or says why not; the connection is closed when the test ends.
func Dial(t testing.TB, c Conn) (*Client, error) {
	t.Helper()
	id := c.ID
	cl := &Client{msgs: make(chan paho.Message, 1024)}
	o := paho.NewClientOptions().AddBroker(c.URL).SetClientID(id).
		SetUsername(c.User).SetPassword(c.Pass).
		SetProtocolVersion(4).SetCleanSession(!c.Persistent).SetAutoReconnect(false).
		SetConnectTimeout(Wait).SetAutoAckDisabled(c.ManualAck).
		// In order, so that tests can check the broker's ordering; the handler never blocks.
		SetOrderMatters(true).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
			select {
			case cl.msgs <- m:
			default:
				t.Errorf("test client %s: message buffer full", id)
			}
		})
	if c.TLS != nil {
		o.SetTLSConfig(c.TLS)
	}
	if c.WillTopic != "" {
		o.SetWill(c.WillTopic, "gone", 1, false)
	}
	cl.Client = paho.NewClient(o)
	tok := cl.Connect()
	if !tok.WaitTimeout(Wait) {
		return nil, errors.New("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { cl.Disconnect(0) })
	return cl, nil
}

// MustDial is Dial that fails the test.
func MustDial(t testing.TB, c Conn) *Client {
	t.Helper()
	cl, err := Dial(t, c)
	if err != nil {
		t.Fatalf("connect %s as %s: %v", c.ID, c.User, err)
	}
	return cl
}

// MustSubscribe subscribes at QoS 1 and returns the granted QoS, 0x80 meaning refused.
func (c *Client) MustSubscribe(t testing.TB, filter string) byte {
	t.Helper()
	tok := c.Subscribe(filter, 1, nil)
	if !tok.WaitTimeout(Wait) {
		t.Fatalf("subscribe %s: timed out", filter)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("subscribe %s: %v", filter, err)
	}
	return tok.(*paho.SubscribeToken).Result()[filter]
}

// MustPublish publishes and waits for the broker's acknowledgement (QoS 1 and 2).
func (c *Client) MustPublish(t testing.TB, topic string, qos byte, retained bool, payload string) {
	t.Helper()
	tok := c.Publish(topic, qos, retained, payload)
	if !tok.WaitTimeout(Wait) {
		t.Fatalf("publish %s: timed out", topic)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
}

// Send is MustPublish at QoS 1, not retained: what most tests publish.
func (c *Client) Send(t testing.TB, topic, payload string) {
	t.Helper()
	c.MustPublish(t, topic, 1, false, payload)
}

// Next is the next message received, failing the test after Wait.
func (c *Client) Next(t testing.TB) paho.Message {
	t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case <-time.After(Wait):
		t.Fatal("no message arrived")
		return nil
	}
}

// TryNext is the next message if one arrives within d.
func (c *Client) TryNext(d time.Duration) (paho.Message, bool) {
	select {
	case m := <-c.msgs:
		return m, true
	case <-time.After(d):
		return nil, false
	}
}

// Flush returns once the broker has routed everything c published before: c's own probe on
// probeTopic, published after them on the same connection, has come back. That holds on any
// broker that handles one connection's packets in order, including mochi, which acknowledges a
// QoS 1 PUBLISH before routing it.
func (c *Client) Flush(t testing.TB, probeTopic string) {
	t.Helper()
	back := make(chan struct{}, 1)
	tok := c.Subscribe(probeTopic, 1, func(paho.Client, paho.Message) {
		select {
		case back <- struct{}{}:
		default:
		}
	})
	if !tok.WaitTimeout(Wait) || tok.Error() != nil {
		t.Fatalf("flush: subscribe %s: %v", probeTopic, tok.Error())
	}
	c.Send(t, probeTopic, "probe")
	select {
	case <-back:
	case <-time.After(Wait):
		t.Fatal("flush: probe did not come back")
	}
}
