// Package testbroker starts a real MQTT broker for integration tests: Debian's Mosquitto when
// it is installed (what CI runs), else the embedded mochi broker of package broker.
//
// Either way the broker enforces the production access rules (a terminal sees only
// tms/v1/{its id}/, the TMS user sees all of tms/v1/), requires passwords, and keeps
// persistent sessions and queued QoS 1 messages across Restart, so a test can cut the broker
// away from the agent and check that nothing is lost.
//
// Selection: Options.Kind, else env POSAGENT_TEST_BROKER (mosquitto | mochi), else mosquitto
// if installed, else mochi. A test that asks for mosquitto fails when it is missing rather
// than silently testing something else.
package testbroker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/broker"
	"github.com/posagent/posagent/internal/mosquitto"
	"github.com/posagent/posagent/internal/syncio"
)

// EnvKind names the environment variable that selects the broker kind.
const EnvKind = "POSAGENT_TEST_BROKER"

// Broker kinds.
const (
	KindMosquitto = "mosquitto"
	KindMochi     = "mochi"
)

// tmsUser is the username of the TMS side.
const tmsUser = "tms"

// startTimeout bounds how long a broker may take to accept connections or to stop.
const startTimeout = 15 * time.Second

// logTail is how much of the broker's log is kept and shown when a test fails.
const logTail = 256 << 10

// Options configure a test broker.
type Options struct {
	// Devices are the deviceIds that get credentials (and thereby their own topic tree).
	Devices []string
	// Kind forces a broker kind; "" applies the environment and the default.
	Kind string
}

// Broker is a running test broker.
type Broker struct {
	tb      testing.TB
	kind    string
	dir     string // configuration and persistence
	tmsPass string
	devices map[string]string
	log     *syncio.Tail

	mu      sync.Mutex
	port    int
	running bool
	mosq    *mosquitto.Server // kind mosquitto; kept across Stop for the port and files
	mochi   *broker.Broker    // kind mochi
}

// Start starts a broker and stops it when the test ends. It fails the test when the broker
// cannot start.
func Start(tb testing.TB, opts Options) *Broker {
	tb.Helper()
	kind, err := selectKind(opts.Kind)
	if err != nil {
		tb.Fatalf("testbroker: %v", err)
	}
	b := &Broker{
		tb:      tb,
		kind:    kind,
		dir:     tb.TempDir(),
		tmsPass: randomSecret(tb),
		devices: make(map[string]string, len(opts.Devices)),
		log:     &syncio.Tail{Max: logTail},
	}
	for _, id := range opts.Devices {
		if err := tmsproto.ValidDeviceID(id); err != nil {
			tb.Fatalf("testbroker: %v", err)
		}
		if id == tmsUser {
			tb.Fatalf("testbroker: device id %q is the TMS username", id)
		}
		b.devices[id] = randomSecret(tb)
	}
	// Cleanups run last-in first-out: stop first, then show the log including the shutdown.
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("testbroker: %s log (last %d KiB):\n%s", b.kind, logTail>>10, b.log.String())
		}
	})
	tb.Cleanup(b.Stop)
	if err := b.start(); err != nil {
		tb.Fatalf("testbroker: start %s: %v", kind, err)
	}
	return b
}

// selectKind applies the selection rules of the package documentation.
func selectKind(forced string) (string, error) {
	kind := forced
	if kind == "" {
		kind = os.Getenv(EnvKind)
	}
	switch kind {
	case "":
		if _, err := mosquitto.LookPath(); err == nil {
			return KindMosquitto, nil
		}
		return KindMochi, nil
	case KindMochi:
		return kind, nil
	case KindMosquitto:
		if _, err := mosquitto.LookPath(); err != nil {
			return "", fmt.Errorf("broker kind mosquitto requested but not installed (apt-get install mosquitto): %w", err)
		}
		return kind, nil
	}
	return "", fmt.Errorf("unknown broker kind %q (want %s or %s)", kind, KindMosquitto, KindMochi)
}

// Kind is "mosquitto" or "mochi".
func (b *Broker) Kind() string { return b.kind }

// Addr is the broker's host:port.
func (b *Broker) Addr() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port))
}

// URL is the broker's address for paho: tcp://127.0.0.1:PORT. It stays the same across
// Restart.
func (b *Broker) URL() string { return "tcp://" + b.Addr() }

// TMSUser is the username with access to every terminal's topics.
func (b *Broker) TMSUser() string { return tmsUser }

// TMSPassword is TMSUser's password.
func (b *Broker) TMSPassword() string { return b.tmsPass }

// DevicePassword is the password of a device given in Options.Devices; its username and MQTT
// client id are the device id.
func (b *Broker) DevicePassword(id string) string {
	p, ok := b.devices[id]
	if !ok {
		b.tb.Fatalf("testbroker: device %q was not in Options.Devices", id)
	}
	return p
}

// Restart stops the broker gracefully (so that it saves its state) and starts it again on the
// same port with the same persistence. Persistent sessions, their subscriptions and queued
// QoS 1 messages survive. After Stop, Restart just starts it again.
func (b *Broker) Restart(tb testing.TB) {
	tb.Helper()
	b.Stop()
	if err := b.start(); err != nil {
		tb.Fatalf("testbroker: restart %s: %v", b.kind, err)
	}
}

// Stop stops the broker gracefully; connected clients see the connection drop. It is safe to
// call more than once and is called when the test ends.
func (b *Broker) Stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.running {
		return
	}
	b.running = false
	var err error
	switch b.kind {
	case KindMosquitto:
		err = b.mosq.Stop()
	case KindMochi:
		err = b.mochi.Close()
		b.mochi = nil
	}
	if err != nil {
		b.tb.Errorf("testbroker: stop %s: %v", b.kind, err)
	}
}

func (b *Broker) start() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.running {
		return errors.New("already running")
	}
	var err error
	switch b.kind {
	case KindMosquitto:
		err = b.startMosquitto()
	case KindMochi:
		err = b.startMochi()
	}
	if err != nil {
		return err
	}
	b.running = true
	return nil
}

func (b *Broker) startMochi() error {
	addr := "127.0.0.1:0"
	if b.port != 0 {
		addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port))
	}
	users := map[string]string{tmsUser: b.tmsPass}
	for id, p := range b.devices {
		users[id] = p
	}
	mb, err := broker.Start(context.Background(), broker.Options{
		Addr:     addr,
		Users:    users,
		TMSUsers: []string{tmsUser},
		DataDir:  b.dir,
		// As close to Mosquitto's "unlimited" as mochi goes: tests measure the agent, not
		// broker limits.
		MaxQueued: broker.MaxQueuedLimit,
		Logger:    slog.New(slog.NewTextHandler(b.log, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	if err != nil {
		return err
	}
	_, portStr, err := net.SplitHostPort(mb.Addr())
	if err != nil {
		_ = mb.Close()
		return err
	}
	b.port, _ = strconv.Atoi(portStr)
	b.mochi = mb
	return nil
}

// randomSecret returns a fresh password, so that no test relies on a well-known one.
func randomSecret(tb testing.TB) string {
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		tb.Fatalf("testbroker: %v", err)
	}
	return hex.EncodeToString(raw[:])
}
