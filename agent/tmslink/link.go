// Package tmslink keeps the terminal's MQTT session with the TMS: it connects (reconnecting
// with exponential backoff and full jitter), announces presence on the retained up/online topic
// with a Last Will, hands every down/cmd message to the command inbox before acknowledging it,
// and drains the durable outbox in order with a bounded in-flight window.
//
// The MQTT library's own store is not trusted with anything (see LIBRARY-NOTES): each
// connection gets a fresh paho client with a memory store, "published" only means "handed to
// the library", and a record leaves the outbox only on its PUBACK. After any break the drain
// restarts from the oldest record still queued, so a record can reach the TMS twice (it
// de-duplicates by stream and seq) but never zero times.
package tmslink

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	bolt "go.etcd.io/bbolt"

	"github.com/posagent/posagent/agent/backoff"
	"github.com/posagent/posagent/agent/outbox"
	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/agent/tmsproto"
)

// Inbox takes a raw down/cmd payload and returns once it is durably stored.
type Inbox interface {
	Receive(ctx context.Context, raw []byte) error
}

// Options configure a Link.
type Options struct {
	DeviceID       string
	Broker         string // tcp://, ssl://, tls:// or mqtts:// URL
	Username       string
	Password       string
	TLS            *tls.Config // nil: the URL scheme decides (plain or system roots)
	KeepAlive      time.Duration
	PingTimeout    time.Duration
	ConnectTimeout time.Duration
	Backoff        backoff.Policy
	Inflight       int
	AgentVersion   string

	DB     *store.DB
	Commit *store.Committer
	Outbox *outbox.Outbox
	Inbox  Inbox
	Logger *slog.Logger
	// OnConnect, if set, is called after each successful connection (stats on connect, say).
	OnConnect func()
	// KeepAliveNow, if set, is asked at every connect and overrides KeepAlive when it returns
	// more than zero: the TMS can tune a fleet's keepalive, effective from the next session.
	KeepAliveNow func() time.Duration
	// OnBlob, if set, gets every down/blob/{transferID} message (ota/blob answers), in arrival
	// order, from the goroutine that also stores commands: it must not block. The message is
	// acknowledged when it returns.
	OnBlob func(transferID string, payload []byte)
	// Dial, if set, opens the TCP connection to the broker's host:port instead of the
	// system dialer; TLS (from TLS or the URL scheme) is still done here, over what it
	// returns. The fleet simulator counts every byte and cuts links with it; a terminal
	// leaves it nil.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
}

// ErrNotConnected is returned by PublishBlob when there is no session.
var ErrNotConnected = errors.New("tmslink: not connected")

// blobPublishTimeout bounds the wait for a blob request's PUBACK: a request is cheap to send
// again, a caller stuck on a dead connection is not.
const blobPublishTimeout = 5 * time.Second

// Status is what the link reports in statistics and diagnostics.
type Status struct {
	Connected   bool   `cbor:"connected"`
	Broker      string `cbor:"-"` // the TMS knows where it is; not worth the air
	Connects    uint64 `cbor:"connects"`
	Failures    uint64 `cbor:"failures"` // failed connection attempts
	Published   uint64 `cbor:"published"`
	Acked       uint64 `cbor:"acked"`
	Commands    uint64 `cbor:"commands"`
	LastError   string `cbor:"lastError,omitempty"`
	ConnectedAt int64  `cbor:"connectedAt,omitempty"` // unix ms
}

// Link is the MQTT session. Run it once.
type Link struct {
	opts Options
	log  *slog.Logger

	mu     sync.Mutex
	status Status
	client mqtt.Client // of the session up now; nil when down

	published, acked, commands atomic.Uint64
	pings                      atomic.Uint64
}

var (
	bucketLink = []byte("tmslink")
	keySession = []byte("session")
)

// New checks the options.
func New(opts Options) (*Link, error) {
	if err := tmsproto.ValidDeviceID(opts.DeviceID); err != nil {
		return nil, err
	}
	if opts.Broker == "" {
		return nil, errors.New("tmslink: no broker URL")
	}
	if opts.Inflight <= 0 {
		opts.Inflight = 32
	}
	if opts.KeepAlive <= 0 {
		opts.KeepAlive = 300 * time.Second
	}
	if opts.PingTimeout <= 0 {
		opts.PingTimeout = 20 * time.Second
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 30 * time.Second
	}
	if opts.Username == "" {
		opts.Username = opts.DeviceID
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := opts.DB.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketLink)
		return err
	}); err != nil {
		return nil, fmt.Errorf("tmslink: %w", err)
	}
	l := &Link{opts: opts, log: opts.Logger.With("svc", "tmslink")}
	l.status.Broker = opts.Broker
	return l, nil
}

// Status returns a snapshot.
func (l *Link) Status() Status {
	l.mu.Lock()
	s := l.status
	l.mu.Unlock()
	s.Published, s.Acked, s.Commands = l.published.Load(), l.acked.Load(), l.commands.Load()
	return s
}

// Run keeps the session up until ctx is cancelled, then says goodbye (retained offline) and
// disconnects.
func (l *Link) Run(ctx context.Context) error {
	attempt := 0
	for ctx.Err() == nil {
		start := time.Now()
		err := l.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		// A session that stayed up for a while earns a fresh start of the backoff.
		if time.Since(start) > time.Minute {
			attempt = 0
		}
		delay := l.opts.Backoff.Delay(attempt, nil)
		attempt++
		l.log.Warn("TMS link down", "err", err, "retry_in", delay.Round(time.Millisecond))
		if backoff.Sleep(ctx, delay) != nil {
			return nil
		}
	}
	return nil
}

// nextSession durably increments the connection counter that numbers up/online records.
func (l *Link) nextSession(ctx context.Context) (uint64, error) {
	var n uint64
	err := l.opts.Commit.Do(ctx, func(tx *store.Tx) error {
		b := tx.Bucket(bucketLink)
		n = 1
		if v := b.Get(keySession); len(v) == 8 {
			n = binary.BigEndian.Uint64(v) + 1
		}
		return b.Put(keySession, binary.BigEndian.AppendUint64(nil, n))
	})
	return n, err
}

func (l *Link) onlinePayload(session uint64, online bool) ([]byte, error) {
	body, err := tmsproto.Marshal(tmsproto.Online{Online: online, Agent: l.opts.AgentVersion, Session: session})
	if err != nil {
		return nil, err
	}
	return tmsproto.Marshal(tmsproto.Envelope{V: tmsproto.Version, Stream: tmsproto.StreamOnline, Seq: session,
		TS: time.Now().UnixMilli(), Kind: "online", Body: body})
}

// session runs one connection from connect to loss (or ctx end).
func (l *Link) session(ctx context.Context) error {
	session, err := l.nextSession(ctx)
	if err != nil {
		return err
	}
	will, err := l.onlinePayload(session, false)
	if err != nil {
		return err
	}
	lost := make(chan error, 1)
	cmdTopic := tmsproto.CmdTopic(l.opts.DeviceID)
	// paho hands messages over in order (OrderMatters) and must not be held up, so the
	// handler only queues them; one writer commits each to the inbox, in arrival order, and
	// only then sends its PUBACK. The queue is bounded in practice by the broker's in-flight
	// window towards this client.
	incoming := make(chan mqtt.Message, 256)
	sessionDone := make(chan struct{})
	defer close(sessionDone)
	onMessage := func(_ mqtt.Client, m mqtt.Message) {
		select {
		case incoming <- m:
		case <-sessionDone:
		}
	}
	go func() {
		for {
			var m mqtt.Message
			select {
			case m = <-incoming:
			case <-sessionDone:
				return
			}
			if m.Topic() != cmdTopic {
				if l.opts.OnBlob != nil {
					if dev, tid, up, ok := tmsproto.ParseBlobTopic(m.Topic()); ok && !up && dev == l.opts.DeviceID {
						l.opts.OnBlob(tid, m.Payload())
					}
				}
				m.Ack()
				continue
			}
			if err := l.opts.Inbox.Receive(ctx, m.Payload()); err != nil {
				// Without its PUBACK the broker sends it again after a reconnect, in order;
				// going on with later messages would reorder them.
				l.log.Error("command not stored; reconnecting so the broker sends it again", "err", err)
				select {
				case lost <- fmt.Errorf("inbox: %w", err):
				default:
				}
				return
			}
			l.commands.Add(1)
			m.Ack()
		}
	}()
	co := mqtt.NewClientOptions().
		AddBroker(normalizeURL(l.opts.Broker)).
		SetClientID(l.opts.DeviceID).
		SetUsername(l.opts.Username).
		SetPassword(l.opts.Password).
		SetCleanSession(false).
		SetKeepAlive(l.keepAlive()).
		SetPingTimeout(l.opts.PingTimeout).
		SetConnectTimeout(l.opts.ConnectTimeout).
		SetWriteTimeout(l.opts.ConnectTimeout).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetOrderMatters(true).
		SetAutoAckDisabled(true).
		SetMaxResumePubInFlight(l.opts.Inflight).
		SetBinaryWill(tmsproto.UpTopic(l.opts.DeviceID, tmsproto.StreamOnline), will, 1, true).
		SetDefaultPublishHandler(onMessage).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			select {
			case lost <- err:
			default:
			}
		})
	if l.opts.TLS != nil {
		co.SetTLSConfig(l.opts.TLS)
	}
	if l.opts.Dial != nil {
		co.SetCustomOpenConnectionFn(l.openConnection(ctx))
	} else {
		co.SetDialer(dialer(l.opts.ConnectTimeout))
	}
	client := mqtt.NewClient(co)
	tok := client.Connect()
	if !tok.WaitTimeout(l.opts.ConnectTimeout + time.Second) {
		client.Disconnect(0)
		return l.fail(errors.New("connect timed out"))
	}
	if err := tok.Error(); err != nil {
		return l.fail(fmt.Errorf("connect: %w", err))
	}
	defer client.Disconnect(250)

	// The broker remembers the subscription (clean session off) and may deliver queued
	// commands before this returns; the default handler above catches those.
	if err := wait(ctx, client.Subscribe(cmdTopic, 1, onMessage), l.opts.ConnectTimeout); err != nil {
		return l.fail(fmt.Errorf("subscribe: %w", err))
	}
	if l.opts.OnBlob != nil {
		if err := wait(ctx, client.Subscribe(tmsproto.BlobDownTopic(l.opts.DeviceID, "+"), 1, onMessage), l.opts.ConnectTimeout); err != nil {
			return l.fail(fmt.Errorf("subscribe blob: %w", err))
		}
	}
	hello, err := l.onlinePayload(session, true)
	if err != nil {
		return err
	}
	if err := wait(ctx, client.Publish(tmsproto.UpTopic(l.opts.DeviceID, tmsproto.StreamOnline), 1, true, hello), l.opts.ConnectTimeout); err != nil {
		return l.fail(fmt.Errorf("publish online: %w", err))
	}
	l.mu.Lock()
	l.status.Connected, l.status.Connects, l.status.ConnectedAt, l.status.LastError = true, l.status.Connects+1, time.Now().UnixMilli(), ""
	l.client = client
	l.mu.Unlock()
	l.log.Info("TMS link up", "broker", l.opts.Broker, "session", session)
	defer func() {
		l.mu.Lock()
		l.status.Connected = false
		l.client = nil
		l.mu.Unlock()
	}()
	if l.opts.OnConnect != nil {
		l.opts.OnConnect()
	}

	err = l.drain(ctx, client, lost)
	if ctx.Err() != nil {
		// Graceful goodbye: the retained presence says offline at once instead of after the
		// broker's keepalive expiry. Best effort, bounded.
		if bye, err := l.onlinePayload(session, false); err == nil {
			client.Publish(tmsproto.UpTopic(l.opts.DeviceID, tmsproto.StreamOnline), 1, true, bye).WaitTimeout(time.Second)
		}
		l.log.Info("TMS link closed")
		return nil
	}
	return l.fail(err)
}

// PublishBlob sends a blob request (ota/blob) on up/blob/{transferID} with QoS 1, straight
// to the session and not through the outbox: a request lost with the connection is simply
// asked again. It returns on the PUBACK, or ErrNotConnected when there is no session.
func (l *Link) PublishBlob(ctx context.Context, transferID string, payload []byte) error {
	l.mu.Lock()
	client := l.client
	l.mu.Unlock()
	if client == nil || !client.IsConnectionOpen() {
		return ErrNotConnected
	}
	tok := client.Publish(tmsproto.BlobUpTopic(l.opts.DeviceID, transferID), 1, false, payload)
	if err := wait(ctx, tok, blobPublishTimeout); err != nil {
		return fmt.Errorf("tmslink: blob request: %w", err)
	}
	return nil
}

// StreamPing is the uplink stream of Ping (topic up/ping).
const StreamPing = "ping"

// pingTimeout bounds Ping when ctx has no earlier deadline.
const pingTimeout = 10 * time.Second

// Ping measures a round trip to the broker now: a small QoS 1 publish on up/ping, straight to
// the session like a blob request (not through the outbox: a ping is only meaningful now),
// timed until its PUBACK. It returns ErrNotConnected when there is no session. The record is
// an envelope of kind "ping" whose seq numbers the pings of this process; a TMS may ignore
// it.
func (l *Link) Ping(ctx context.Context) (time.Duration, error) {
	l.mu.Lock()
	client := l.client
	l.mu.Unlock()
	if client == nil || !client.IsConnectionOpen() {
		return 0, ErrNotConnected
	}
	start := time.Now()
	body, err := tmsproto.Marshal(map[string]any{"sent": start.UnixMilli()})
	if err != nil {
		return 0, err
	}
	payload, err := tmsproto.Marshal(tmsproto.Envelope{V: tmsproto.Version, Stream: StreamPing, Seq: l.pings.Add(1),
		TS: start.UnixMilli(), Kind: "ping", Body: body})
	if err != nil {
		return 0, err
	}
	tok := client.Publish(tmsproto.UpTopic(l.opts.DeviceID, StreamPing), 1, false, payload)
	if err := wait(ctx, tok, pingTimeout); err != nil {
		return 0, fmt.Errorf("tmslink: ping: %w", err)
	}
	return time.Since(start), nil
}

func (l *Link) keepAlive() time.Duration {
	if l.opts.KeepAliveNow != nil {
		if d := l.opts.KeepAliveNow(); d > 0 {
			return d
		}
	}
	return l.opts.KeepAlive
}

func (l *Link) fail(err error) error {
	l.mu.Lock()
	l.status.Failures++
	l.status.LastError = err.Error()
	l.mu.Unlock()
	return err
}

// deleteLinger is how long delivered records may wait to be deleted together.
const deleteLinger = 20 * time.Millisecond

// drain publishes outbox records in order, at most Inflight unacknowledged at a time, deletes
// each on PUBACK, and returns when the connection is lost or ctx ends.
func (l *Link) drain(ctx context.Context, client mqtt.Client, lost <-chan error) error {
	acked := make(chan uint64, l.opts.Inflight)
	failed := make(chan error, 1)
	// paho never completes the tokens of a connection lost with clean session off, so the
	// goroutines waiting on them also give up when this session ends.
	stop := make(chan struct{})
	defer close(stop)
	var next uint64 // key of the last record handed to paho
	inflight := 0

	// Deletions run apart from publishing so the fsync of one batch overlaps the next
	// round trip; they are batched so a burst costs few commits.
	toDelete := make(chan []uint64, 64)
	var delWG sync.WaitGroup
	delWG.Add(1)
	go func() {
		defer delWG.Done()
		for keys := range toDelete {
			// A delete that a crash loses only means a record is sent again, so deletes may
			// wait a moment to share one commit (one fsync) instead of taking turns with the
			// appends for the disk.
			linger := time.NewTimer(deleteLinger)
		collect:
			for len(keys) < 1024 {
				select {
				case more, ok := <-toDelete:
					if !ok {
						break collect
					}
					keys = append(keys, more...)
				case <-linger.C:
					break collect
				}
			}
			linger.Stop()
			if err := l.opts.Outbox.Delete(context.WithoutCancel(ctx), keys...); err != nil {
				// The records stay and are sent again later: a duplicate, never a loss.
				l.log.Error("outbox delete failed", "err", err)
			}
		}
	}()
	defer func() {
		close(toDelete)
		delWG.Wait()
	}()

	var done []uint64
	flush := func() {
		if len(done) > 0 {
			toDelete <- done
			done = nil
		}
	}
	for {
		if inflight < l.opts.Inflight {
			recs, err := l.opts.Outbox.Read(next, l.opts.Inflight-inflight)
			if err != nil {
				return fmt.Errorf("outbox read: %w", err)
			}
			for _, r := range recs {
				tok := client.Publish(tmsproto.UpTopic(l.opts.DeviceID, r.Stream), 1, false, r.Payload)
				next = r.Key
				inflight++
				l.published.Add(1)
				go func(key uint64, tok mqtt.Token) {
					select {
					case <-tok.Done():
					case <-stop:
						return
					}
					if err := tok.Error(); err != nil {
						select {
						case failed <- err:
						default:
						}
						return
					}
					acked <- key
				}(r.Key, tok)
			}
		}
		// Wait for something to do; prefer collecting every PUBACK already in.
		select {
		case key := <-acked:
			inflight--
			l.acked.Add(1)
			done = append(done, key)
			for more := true; more; {
				select {
				case key := <-acked:
					inflight--
					l.acked.Add(1)
					done = append(done, key)
				default:
					more = false
				}
			}
			flush()
		case <-l.opts.Outbox.Notify():
		case err := <-lost:
			return fmt.Errorf("connection lost: %w", err)
		case err := <-failed:
			return fmt.Errorf("publish: %w", err)
		case <-ctx.Done():
			// Collect PUBACKs that are on their way so they need not be sent again.
			deadline := time.After(500 * time.Millisecond)
			for inflight > 0 {
				select {
				case key := <-acked:
					inflight--
					done = append(done, key)
				case <-deadline:
					inflight = 0
				}
			}
			flush()
			return ctx.Err()
		}
	}
}

func wait(ctx context.Context, tok mqtt.Token, timeout time.Duration) error {
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(timeout):
		return errors.New("timed out")
	}
}

// dialer is the link's TCP dialer. TCP keepalive is off: MQTT's own keepalive already
// notices a dead path, and Go's default (a probe after 15 s idle, then every 15 s) costs two
// segments, 104 bytes on the air, each time: about 18 MB a month on an idle terminal, six
// times the whole idle budget. The fleet simulator measured it (docs/fleet.md).
func dialer(timeout time.Duration) *net.Dialer {
	return &net.Dialer{Timeout: timeout, KeepAlive: -1}
}

// openConnection dials with Options.Dial and adds TLS when the URL asks for it, the way
// paho's own opener would.
func (l *Link) openConnection(ctx context.Context) mqtt.OpenConnectionFunc {
	return func(uri *url.URL, o mqtt.ClientOptions) (net.Conn, error) {
		dctx, cancel := context.WithTimeout(ctx, o.ConnectTimeout)
		defer cancel()
		conn, err := l.opts.Dial(dctx, uri.Host)
		if err != nil {
			return nil, err
		}
		switch uri.Scheme {
		case "tcp":
			return conn, nil
		case "ssl":
			conf := o.TLSConfig
			if conf == nil {
				conf = &tls.Config{MinVersion: tls.VersionTLS12}
			}
			if conf.ServerName == "" {
				conf = conf.Clone()
				conf.ServerName = uri.Hostname()
			}
			tc := tls.Client(conn, conf)
			if err := tc.HandshakeContext(dctx); err != nil {
				conn.Close()
				return nil, err
			}
			return tc, nil
		default:
			conn.Close()
			return nil, fmt.Errorf("tmslink: scheme %q cannot use a custom dialer", uri.Scheme)
		}
	}
}

// normalizeURL maps the schemes people write for MQTT over TLS onto the ones paho knows.
func normalizeURL(u string) string {
	for _, s := range []string{"mqtts://", "tls://"} {
		if rest, ok := strings.CutPrefix(u, s); ok {
			return "ssl://" + rest
		}
	}
	if rest, ok := strings.CutPrefix(u, "mqtt://"); ok {
		return "tcp://" + rest
	}
	return u
}
