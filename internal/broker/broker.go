// Package broker runs an embedded MQTT broker (mochi-mqtt) for the demo and for tests that do
// not have Mosquitto.
//
// It enforces the same access rules a production broker is configured with (the Mosquitto ACL
// `pattern readwrite tms/v1/%u/#`): a terminal sees only its own subtree, TMS users see every
// terminal, nobody sees anything else. Persistent sessions, queued QoS 1 messages and retained
// messages can be kept in a bbolt file so that they survive a restart, because the agent's
// store-and-forward behaviour is only meaningfully tested against a broker that keeps its
// promises across restarts.
package broker

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// DefaultAddr is where the broker listens when Options.Addr is empty: loopback only, because
// the embedded broker is for the demo and tests, not for exposure on a network.
const DefaultAddr = "127.0.0.1:1883"

// DefaultMaxQueued bounds the QoS 1/2 messages held per client when Options.MaxQueued is 0.
// It matches Mosquitto's default max_queued_messages.
const DefaultMaxQueued = 1000

// MaxQueuedLimit is the largest per-client queue mochi can represent.
const MaxQueuedLimit = math.MaxUint16

// dbFile is the name of the session database inside Options.DataDir.
const dbFile = "broker.db"

// Options configure the broker.
type Options struct {
	// Addr is the TCP listen address; "127.0.0.1:0" picks a free port (see Broker.Addr).
	Addr string
	// TLS, when set, makes the listener TLS-only. Set ClientAuth and ClientCAs for mutual TLS.
	TLS *tls.Config
	// Users maps usernames to passwords.
	Users map[string]string
	// TMSUsers are usernames with access to the whole tms/v1/ tree. Every other user is a
	// terminal: its username is its deviceId and must also be its MQTT client id.
	TMSUsers []string
	// CertAuth accepts a CA-verified client certificate as proof of identity in place of a
	// password; the username must then equal the certificate's CommonName. Without CertAuth a
	// presented certificate must still name the user, and the password is checked as well.
	CertAuth bool
	// DataDir keeps sessions, queued messages and retained messages across restarts in a bbolt
	// file. "" keeps everything in memory.
	DataDir string
	// MaxQueued bounds the QoS 1/2 messages held for one client (in flight and queued while it
	// is offline); further messages to it are dropped until it drains. 0 means
	// DefaultMaxQueued; at most MaxQueuedLimit.
	MaxQueued int
	// Logger receives the broker's logs; nil means slog.Default(). Packets are logged as
	// summaries without payloads or passwords.
	Logger *slog.Logger

	// testHooks are added ahead of the broker's own hooks, so that tests can stop mochi at a
	// chosen point (see export_test.go).
	testHooks []mqtt.Hook
}

// OptionsError reports an unusable option.
type OptionsError struct {
	Field  string
	Reason string
}

func (e *OptionsError) Error() string {
	return fmt.Sprintf("broker: option %s: %s", e.Field, e.Reason)
}

// Broker is a running embedded broker.
type Broker struct {
	srv       *mqtt.Server
	addr      string
	closeOnce sync.Once
	closeErr  error
	closed    chan struct{}
}

// Start starts a broker. It runs until Close is called or ctx is cancelled.
func Start(ctx context.Context, opts Options) (*Broker, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("broker: start: %w", err)
	}
	auth, err := newAccessControl(opts)
	if err != nil {
		return nil, err
	}
	maxQueued := opts.MaxQueued
	switch {
	case maxQueued == 0:
		maxQueued = DefaultMaxQueued
	case maxQueued < 0 || maxQueued > MaxQueuedLimit:
		return nil, &OptionsError{Field: "MaxQueued", Reason: fmt.Sprintf("%d is outside 0..%d", maxQueued, MaxQueuedLimit)}
	}
	addr := opts.Addr
	if addr == "" {
		addr = DefaultAddr
	}
	base := opts.Logger
	if base == nil {
		base = slog.Default()
	}
	log := slog.New(redactingHandler{next: base.Handler()}).With("component", "broker")

	caps := mqtt.NewDefaultServerCapabilities()
	// mochi keeps offline messages in the client's in-flight store and refuses new ones once
	// it holds MaximumInflight, which is the per-client bound we want.
	caps.MaximumInflight = uint16(maxQueued)
	// mochi drops (and forgets) a QoS 1/2 message it cannot put on a connected client's write
	// queue at once; make that queue hold a full in-flight store on top of its default, so a
	// slow subscriber is bounded by MaxQueued alone.
	caps.MaximumClientWritesPending += int32(maxQueued)
	// mochi would otherwise silently drop queued and retained messages after a day; a
	// terminal may be offline (and its presence retained) far longer, and Mosquitto keeps them.
	caps.MaximumMessageExpiryInterval = 0

	srv := mqtt.New(&mqtt.Options{
		Capabilities: caps,
		Logger:       log,
		// $SYS topics are closed to every user by the ACL; refreshing them often is waste.
		SysTopicResendInterval: 3600,
	})
	for _, h := range opts.testHooks {
		if err := srv.AddHook(h, nil); err != nil {
			return nil, fmt.Errorf("broker: test hook: %w", err)
		}
	}
	handover := newHandover(srv)
	// Before the access hook: mochi asks the hooks in turn until one allows, so the gate,
	// which never allows, must come first to be asked at all.
	if err := srv.AddHook(&deliveryGate{h: handover}, nil); err != nil {
		return nil, fmt.Errorf("broker: delivery gate hook: %w", err)
	}
	if err := srv.AddHook(auth, nil); err != nil {
		return nil, fmt.Errorf("broker: access hook: %w", err)
	}
	if err := srv.AddHook(&resendOrder{srv: srv}, nil); err != nil {
		return nil, fmt.Errorf("broker: order hook: %w", err)
	}
	if opts.DataDir != "" {
		if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("broker: data dir: %w", err)
		}
		store := newSessionStore(filepath.Join(opts.DataDir, dbFile), srv)
		if err := srv.AddHook(store, nil); err != nil {
			_ = srv.Close()
			return nil, fmt.Errorf("broker: session store: %w", err)
		}
		handover.persist = store.saveInflight
	}
	// After the store: a message is written to disk before its routing waits for a handover.
	if err := srv.AddHook(handover, nil); err != nil {
		_ = srv.Close()
		return nil, fmt.Errorf("broker: handover hook: %w", err)
	}
	tcp := listeners.NewTCP(listeners.Config{Type: listeners.TypeTCP, ID: "tcp", Address: addr, TLSConfig: opts.TLS})
	if err := srv.AddListener(&trackedListener{Listener: tcp, ended: handover.connectionEnded}); err != nil {
		_ = srv.Close()
		return nil, fmt.Errorf("broker: listen on %s: %w", addr, err)
	}
	if err := srv.Serve(); err != nil {
		_ = srv.Close()
		return nil, fmt.Errorf("broker: serve: %w", err)
	}
	b := &Broker{srv: srv, addr: tcp.Address(), closed: make(chan struct{})}
	log.Info("broker listening", "addr", b.addr, "tls", opts.TLS != nil, "persistent", opts.DataDir != "", "max_queued", maxQueued)
	go func() {
		select {
		case <-ctx.Done():
			_ = b.Close()
		case <-b.closed:
		}
	}()
	return b, nil
}

// Addr is the host:port the broker actually listens on.
func (b *Broker) Addr() string { return b.addr }

// Close disconnects every client, stops listening and flushes and closes the session store.
// It is safe to call more than once.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		close(b.closed)
		if err := b.srv.Close(); err != nil {
			b.closeErr = fmt.Errorf("broker: close: %w", err)
		}
	})
	return b.closeErr
}
