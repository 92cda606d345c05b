package tmsclient

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/posagent/posagent/agent/tmsproto"
)

// Options configure a connection to the broker.
type Options struct {
	// Broker is the broker URL: tcp://, mqtt://, ws://, or with TLS ssl://, tls://, mqtts://,
	// tcps://, wss://.
	Broker   string
	Username string
	Password string
	// ClientID defaults to "tms-" and random hex. Use a stable one with CleanSession false to
	// have the broker queue uplink while this client is away.
	ClientID string
	TLS      *tls.Config // required to be nil for a plain-text broker URL
	// CleanSession asks the broker to forget the session at disconnect. Without a ClientID the
	// session is always clean: nobody could ever resume it, and brokers keep such sessions
	// (and queue messages for them) until they expire.
	CleanSession bool
	Logger       *slog.Logger
	// Seq numbers commands sent without a seq; default: a MemorySeq for this client.
	Seq SeqSource
}

var (
	tlsSchemes   = []string{"ssl", "tls", "mqtts", "mqtt+ssl", "tcps", "wss"}
	plainSchemes = []string{"tcp", "mqtt", "ws", "unix"}
)

// Client is a TMS connection to the broker. It reconnects on its own and restores its
// subscriptions after every reconnect. Safe for concurrent use.
type Client struct {
	pc     mqtt.Client
	log    *slog.Logger
	seq    SeqSource
	broker string

	conn connState

	closeOnce sync.Once
	closed    chan struct{}

	// watches is read on paho's receive path, so its lock is never held across a network wait.
	watchMu sync.RWMutex
	watches map[*Subscription]struct{}

	// subMu serialises changes to the broker-side subscriptions, which are round trips.
	subMu sync.Mutex
	// want counts the watches using each topic filter; active is what is subscribed at the
	// broker: the filters of want that no other filter of want covers. Overlapping
	// subscriptions would make some brokers (Mosquitto) deliver a message once per matching
	// filter, which a watcher could not tell from a re-sent record. active maps each filter to
	// the connection generation it was subscribed on.
	want   map[string]int
	active map[string]uint64
	// connects counts onConnect calls: the generation of the current connection.
	connects atomic.Uint64
}

// Connect connects to the broker and returns once the broker has accepted the session. The
// first attempt is not retried: a wrong URL or password should fail now, not loop.
func Connect(ctx context.Context, opts Options) (*Client, error) {
	u, err := url.Parse(opts.Broker)
	if err != nil {
		return nil, &InputError{Field: "broker URL", Err: err}
	}
	switch {
	case slices.Contains(tlsSchemes, u.Scheme):
	case slices.Contains(plainSchemes, u.Scheme):
		if opts.TLS != nil {
			return nil, inputErr("broker URL", "%s:// is plain text but TLS options are set; use ssl://, mqtts:// or wss://", u.Scheme)
		}
	default:
		return nil, inputErr("broker URL", "%q: unknown scheme %q", opts.Broker, u.Scheme)
	}
	if u.Host == "" && u.Scheme != "unix" {
		return nil, inputErr("broker URL", "%q has no host", opts.Broker)
	}
	c := &Client{
		log:     opts.Logger,
		seq:     opts.Seq,
		broker:  opts.Broker,
		conn:    newConnState(),
		closed:  make(chan struct{}),
		watches: make(map[*Subscription]struct{}),
		want:    make(map[string]int),
		active:  make(map[string]uint64),
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.seq == nil {
		c.seq = NewMemorySeq()
	}
	id := opts.ClientID
	if id == "" {
		id = "tms-" + randomHex(8)
	}
	c.log = c.log.With("broker", opts.Broker, "client", id)

	po := mqtt.NewClientOptions().
		AddBroker(opts.Broker).
		SetClientID(id).
		SetUsername(opts.Username).
		SetPassword(opts.Password).
		SetCleanSession(opts.CleanSession || opts.ClientID == "").
		// Ordered dispatch on purpose: with OrderMatters(false) paho runs every message in its
		// own goroutine and per-device order is lost. The handler only enqueues, so the
		// receive path is never blocked.
		SetOrderMatters(true).
		SetAutoReconnect(true).
		SetConnectRetry(false).
		// Subscriptions are restored by onConnect from our own registry, which also covers
		// the clean-session case paho's ResumeSubs does not.
		SetResumeSubs(false).
		SetKeepAlive(30 * time.Second).
		SetConnectTimeout(15 * time.Second).
		SetMaxReconnectInterval(30 * time.Second).
		SetDefaultPublishHandler(c.onMessage).
		SetOnConnectHandler(c.onConnect).
		SetConnectionLostHandler(c.onLost).
		SetReconnectingHandler(func(mqtt.Client, *mqtt.ClientOptions) { c.log.Debug("reconnecting") })
	if opts.TLS != nil {
		po.SetTLSConfig(opts.TLS)
	}
	c.pc = mqtt.NewClient(po)
	if err := c.waitToken(ctx, c.pc.Connect()); err != nil {
		c.pc.Disconnect(0)
		return nil, fmt.Errorf("tmsclient: connect %s: %w", opts.Broker, err)
	}
	return c, nil
}

// Close stops every watch and disconnects. It must not be called from a watch handler.
func (c *Client) Close() {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.pc.Disconnect(250)
		c.watchMu.RLock()
		subs := make([]*Subscription, 0, len(c.watches))
		for s := range c.watches {
			subs = append(subs, s)
		}
		c.watchMu.RUnlock()
		for _, s := range subs {
			s.Stop()
		}
	})
}

// IsConnected reports whether the connection to the broker is up right now.
func (c *Client) IsConnected() bool { return c.pc.IsConnectionOpen() }

func (c *Client) onConnect(mqtt.Client) {
	gen := c.connects.Add(1)
	c.log.Info("connected")
	c.conn.event(false)
	c.subMu.Lock()
	defer c.subMu.Unlock()
	// Only what was subscribed on an earlier connection: re-subscribing on the same one would
	// make the broker send its retained records again. A clean session needs them all back;
	// a persistent one keeps them, and subscribing again is harmless.
	filters := make(map[string]byte)
	for f, g := range c.active {
		if g < gen {
			filters[f] = 1
		}
	}
	if len(filters) == 0 {
		c.log.Debug("no subscription to restore", "generation", gen, "active", len(c.active))
		return
	}
	// One attempt: if the connection is lost again meanwhile, the next onConnect redoes it.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.subscribeOnce(ctx, filters); err != nil {
		c.log.Warn("restoring subscriptions failed", "err", err)
		return
	}
	for f := range filters {
		c.active[f] = gen
	}
	c.log.Debug("subscriptions restored", "filters", len(filters), "generation", gen)
}

// generation is that of the connection now up; the first connection is 1 even before its
// onConnect has run.
func (c *Client) generation() uint64 { return max(c.connects.Load(), 1) }

func (c *Client) onLost(_ mqtt.Client, err error) {
	c.log.Warn("connection lost", "err", err)
	c.conn.event(true)
}

func (c *Client) onMessage(_ mqtt.Client, m mqtt.Message) {
	topic := m.Topic()
	c.watchMu.RLock()
	defer c.watchMu.RUnlock()
	var u *Uplink
	for s := range c.watches {
		if !s.matches(topic) {
			continue
		}
		if u == nil {
			d := decodeUplink(topic, m.Payload(), m.Retained())
			u = &d
		}
		s.deliver(*u)
	}
}

// connState turns paho's connect and loss callbacks into channels to wait on.
type connState struct {
	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every connect or loss
	lost    chan struct{} // closed and replaced on every loss
}

func newConnState() connState {
	return connState{changed: make(chan struct{}), lost: make(chan struct{})}
}

func (s *connState) signals() (changed, lost <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed, s.lost
}

func (s *connState) event(loss bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.changed)
	s.changed = make(chan struct{})
	if loss {
		close(s.lost)
		s.lost = make(chan struct{})
	}
}

// waitUp returns once the connection is open.
func (c *Client) waitUp(ctx context.Context) error {
	for {
		changed, _ := c.conn.signals()
		if c.pc.IsConnectionOpen() {
			return nil
		}
		// paho runs its callbacks in separate goroutines, so their order is only a hint:
		// check the real state again now and then.
		t := time.NewTimer(time.Second)
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-c.closed:
			t.Stop()
			return ErrClosed
		}
		t.Stop()
	}
}

func (c *Client) waitToken(ctx context.Context, tok mqtt.Token) error {
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-c.closed:
		return ErrClosed
	}
}

// publish sends payload with QoS 1 and returns on PUBACK. If the connection is lost first,
// it publishes again after the reconnect: paho's own store may lose an in-flight message
// around a reconnect (LIBRARY-NOTES), and a command is idempotent by its id on the agent.
func (c *Client) publish(ctx context.Context, topic string, payload []byte) error {
	for {
		if err := c.waitUp(ctx); err != nil {
			return err
		}
		_, lost := c.conn.signals()
		tok := c.pc.Publish(topic, 1, false, payload)
		select {
		case <-tok.Done():
			err := tok.Error()
			if err == nil {
				return nil
			}
			if c.pc.IsConnectionOpen() {
				return fmt.Errorf("publish: %w", err)
			}
			c.log.Debug("publish failed while disconnected; retrying after reconnect", "topic", topic, "err", err)
		case <-lost:
			c.log.Debug("connection lost before PUBACK; publishing again after reconnect", "topic", topic)
		case <-ctx.Done():
			return ctx.Err()
		case <-c.closed:
			return ErrClosed
		}
	}
}

// SendOption changes how one Send numbers or stamps its command.
type SendOption func(*sendOptions)

type sendOptions struct {
	seq SeqSource
	now func() time.Time
}

// WithSeq takes the seq from src instead of the client's source (Options.Seq).
func WithSeq(src SeqSource) SendOption {
	return func(o *sendOptions) { o.seq = src }
}

// Sent is a command as it went on the wire.
type Sent struct {
	DeviceID string
	Command  tmsproto.Command // with ID, Seq, Issued and Body filled in
	Raw      []byte           // the signed COSE_Sign1
}

// Ref is the reference the agent puts in an ack when it cannot read the command id.
func (s Sent) Ref() string { return tmsproto.Ref(s.Raw) }

// Match selects the acks of this command, by id or by ref.
func (s Sent) Match() AckMatch { return AckMatch{ID: s.Command.ID, Ref: s.Ref()} }

// emptyBody is an empty CBOR map: a command always carries a map body.
var emptyBody = []byte{0xa0}

// Sign fills in what cmd leaves open and signs it, without sending: an empty ID becomes 16
// random bytes in hex, Seq 0 comes from the seq source, Issued 0 becomes now, an empty Body
// becomes {}. Expires is the caller's (tests send expired commands on purpose).
func (c *Client) Sign(deviceID string, key SignKey, cmd tmsproto.Command, opts ...SendOption) (Sent, error) {
	o := sendOptions{seq: c.seq, now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	if err := tmsproto.ValidDeviceID(deviceID); err != nil {
		return Sent{}, &InputError{Field: "device id", Err: err}
	}
	if key.ID == "" || len(key.Key) != ed25519.PrivateKeySize {
		return Sent{}, inputErr("sign key", "need a key id and an Ed25519 private key")
	}
	if cmd.Kind == "" {
		return Sent{}, inputErr("command kind", "empty")
	}
	if len(cmd.ID) > tmsproto.MaxCommandIDLen {
		return Sent{}, inputErr("command id", "%d bytes, at most %d", len(cmd.ID), tmsproto.MaxCommandIDLen)
	}
	if cmd.ID == "" {
		cmd.ID = randomHex(16)
	}
	if len(cmd.Body) == 0 {
		cmd.Body = emptyBody
	} else if err := checkMapBody(cmd.Body); err != nil {
		return Sent{}, err
	}
	if cmd.Issued == 0 {
		cmd.Issued = o.now().Unix()
	}
	if cmd.Seq == 0 {
		seq, err := o.seq.Next(deviceID)
		if err != nil {
			return Sent{}, fmt.Errorf("tmsclient: command seq: %w", err)
		}
		cmd.Seq = seq
	}
	raw, err := tmsproto.SignCommand(key.Key, key.ID, cmd)
	if err != nil {
		return Sent{}, fmt.Errorf("tmsclient: %w", err)
	}
	if len(raw) > tmsproto.MaxCommandSize {
		return Sent{}, inputErr("command", "signed size %d exceeds %d", len(raw), tmsproto.MaxCommandSize)
	}
	return Sent{DeviceID: deviceID, Command: cmd, Raw: raw}, nil
}

func checkMapBody(body []byte) error {
	// Major type 5 is a map; decoding alone would also accept null into a map.
	if body[0]>>5 != 5 {
		return inputErr("command body", "not a CBOR map")
	}
	var m map[string]any
	if err := tmsproto.Unmarshal(body, &m); err != nil {
		return &InputError{Field: "command body", Err: err}
	}
	return nil
}

// Send signs cmd (see Sign), publishes it with QoS 1 on the device's down/cmd topic and
// returns once the broker has acknowledged it. The returned Sent is filled in even on error,
// so the caller knows which id and seq were used.
func (c *Client) Send(ctx context.Context, deviceID string, key SignKey, cmd tmsproto.Command, opts ...SendOption) (Sent, error) {
	sent, err := c.Sign(deviceID, key, cmd, opts...)
	if err != nil {
		return sent, err
	}
	if err := c.publish(ctx, tmsproto.CmdTopic(deviceID), sent.Raw); err != nil {
		return sent, fmt.Errorf("tmsclient: send %s %s to %s: %w", sent.Command.Kind, sent.Command.ID, deviceID, err)
	}
	c.log.Debug("command sent", "device", deviceID, "kind", sent.Command.Kind, "id", sent.Command.ID, "seq", sent.Command.Seq)
	return sent, nil
}

// SendRaw publishes payload as is on the device's down/cmd topic, for tests that send forged
// or malformed commands.
func (c *Client) SendRaw(ctx context.Context, deviceID string, payload []byte) error {
	if err := tmsproto.ValidDeviceID(deviceID); err != nil {
		return &InputError{Field: "device id", Err: err}
	}
	if err := c.publish(ctx, tmsproto.CmdTopic(deviceID), payload); err != nil {
		return fmt.Errorf("tmsclient: send raw to %s: %w", deviceID, err)
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand, Go ≥ 1.24)
	return hex.EncodeToString(b)
}
