// Package paytest is for tests only: it builds the world a terminal's payments run in, once
// for the tests and benchmarks of agent/payment and agent/checkout. That is the acquirer host
// simulator over TCP on loopback, the PIN pad emulator over a pty with the driver's client
// (or the software key backend instead), the key store with a KEK loaded as the TMS loads it
// (TR-31 under the transport key), the store and its committer, and the payment engine on a
// terminal configuration that points at the host.
//
// Scenario helpers (a tap on the host, the card reader, the printer, timing wrappers) stay
// with the tests that need them; the options let them in.
package paytest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/payment"
	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/agent/termconfig"
	"github.com/posagent/posagent/board/sim/pinpademu"
	"github.com/posagent/posagent/drivers/pinpad"
	"github.com/posagent/posagent/drivers/serial"
	"github.com/posagent/posagent/internal/hostsim"
	"github.com/posagent/posagent/keystore"
	"github.com/posagent/posagent/keystore/padkeys"
	"github.com/posagent/posagent/keystore/softkeys"
	"github.com/posagent/posagent/keystore/tr31"
)

// The terminal the host knows, and the cards of hostsim.DefaultAccounts.
const (
	TID = "TID00001"
	MID = "MID000000000001"
	// PIN is the PIN of every test card, and what the pad emulator types unless scripted.
	PIN       = "123456"
	DebitPAN  = "6228480000000012344"
	CreditPAN = "6250947000000014"
	VisaPAN   = "4761739001010010"
)

// Card is the card data of a magnetic stripe read of a test card.
func Card(pan, exp string) *payment.Card {
	return &payment.Card{PAN: pan, Expiry: exp, Track2: pan + "=" + exp + "2201000000000", Entry: "02"}
}

// Quiet is a logger that drops everything.
func Quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// Backend is where the rig's key store keeps its keys.
type Backend int

const (
	// PINPad keeps the keys in the PIN pad emulator's secure element (keystore/padkeys).
	PINPad Backend = iota
	// Software keeps them in the agent (keystore/softkeys); the rig has no PIN pad.
	Software
)

// Option changes how New builds the rig.
type Option func(*options)

type options struct {
	backend Backend
	host    []func(*hostsim.Config)
	config  []func(*termconfig.Document)
	listen  func(net.Listener) net.Listener
	engine  []func(*Rig, *payment.Options)
}

// WithBackend chooses the key backend (default PINPad).
func WithBackend(b Backend) Option { return func(o *options) { o.backend = b } }

// WithHost changes the host simulator's configuration before it is made. Options apply in
// order; nil is none.
func WithHost(change func(*hostsim.Config)) Option {
	return func(o *options) {
		if change != nil {
			o.host = append(o.host, change)
		}
	}
}

// WithConfig changes the terminal configuration before it is stored. Options apply in order;
// nil is none.
func WithConfig(change func(*termconfig.Document)) Option {
	return func(o *options) {
		if change != nil {
			o.config = append(o.config, change)
		}
	}
}

// WithHostListener has the host serve on what wrap makes of a fresh loopback listener (a tap
// on its connections, say) instead of its own listener; the host's Listen and TLS settings are
// then not used.
func WithHostListener(wrap func(net.Listener) net.Listener) Option {
	return func(o *options) { o.listen = wrap }
}

// WithEngine changes the engine's options before every Open (the rig's fields are set by
// then). Options apply in order.
func WithEngine(change func(*Rig, *payment.Options)) Option {
	return func(o *options) { o.engine = append(o.engine, change) }
}

// Rig is one terminal against one host. Everything is closed when the test ends.
type Rig struct {
	TB  testing.TB
	Dir string // the temporary directory of the store and the pad emulator

	Host      *hostsim.Server
	Pad       *pinpademu.Emulator // nil with the software backend
	PadClient *pinpad.Client      // nil with the software backend
	Keys      *keystore.Store
	KEK       []byte // the master key loaded as kek0, as the host knows it
	DB        *store.DB
	Commit    *store.Committer
	Sealer    payment.Sealer
	// Doc is the terminal configuration the engine reads (Config); a test may swap it.
	Doc    atomic.Pointer[termconfig.Document]
	Engine *payment.Engine

	engine []func(*Rig, *payment.Options)
}

// New builds the rig and opens the engine, not signed in. The terminal configuration is
// termconfig.Default pointed at the host (TPDU 6000030000, connect timeout 2 s, response
// timeout 5 s) before the WithConfig changes.
func New(tb testing.TB, opts ...Option) *Rig {
	tb.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	ctx := context.Background()
	r := &Rig{TB: tb, Dir: tb.TempDir(), engine: o.engine}
	var err error
	if r.DB, err = store.Open(r.Dir); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = r.DB.Close() })
	r.Commit = store.NewCommitter(r.DB)
	tb.Cleanup(r.Commit.Close)

	var backend keystore.Backend
	switch o.backend {
	case Software:
		root := make([]byte, softkeys.RootKeySize)
		_, _ = rand.Read(root)
		sb, err := softkeys.Open(softkeys.Options{DB: r.DB, Commit: r.Commit, Root: rootKey(root), Logger: Quiet()})
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := sb.InjectTransport(ctx, keystore.TDES, pinpademu.DefaultTransportKey, false); err != nil {
			tb.Fatal(err)
		}
		backend = sb
	default:
		pad, err := pinpademu.New(pinpademu.Options{Dir: r.Dir, DefaultPIN: PIN, Logger: Quiet()})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { _ = pad.Close() })
		port, err := serial.Open(serial.Config{Path: pad.Path(), Baud: 115200})
		if err != nil {
			tb.Fatal(err)
		}
		r.Pad, r.PadClient = pad, pinpad.New(port, pinpad.Options{Logger: Quiet()})
		tb.Cleanup(func() { _ = r.PadClient.Close() })
		backend = padkeys.New(func() *pinpad.Client { return r.PadClient }, nil)
	}
	if r.Keys, err = keystore.Open(keystore.Options{DB: r.DB, Commit: r.Commit, Backend: backend, Logger: Quiet()}); err != nil {
		tb.Fatal(err)
	}
	// The KEK goes in by TR-31 under the transport key, on either backend.
	r.KEK = make([]byte, 16)
	_, _ = rand.Read(r.KEK)
	block, err := tr31.Wrap(pinpademu.DefaultTransportKey, tr31.Header{Version: 'B', Usage: "K0", Algorithm: 'T',
		ModeOfUse: 'B', KeyVersion: "00", Exportability: 'N'}, r.KEK)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := r.Keys.Load(ctx, keystore.Load{Items: []keystore.Item{{Role: "kek0", Block: block}}, KEK: 0, Source: "tr31"}); err != nil {
		tb.Fatal(err)
	}

	addr := r.startHost(o)
	doc := termconfig.Default()
	doc.AuthHost = termconfig.AuthHost{Addresses: []string{addr}, TerminalID: TID, MerchantID: MID,
		TPDU: "6000030000", ConnectTimeoutSec: 2}
	doc.HostParameters.ResponseTimeoutSec = 5
	for _, change := range o.config {
		change(doc)
	}
	r.Doc.Store(doc)
	root := make([]byte, 32)
	_, _ = rand.Read(root)
	if r.Sealer, err = payment.NewSealer(root); err != nil {
		tb.Fatal(err)
	}
	r.Open()
	return r
}

// startHost starts the host simulator with the rig's KEK for the terminal and returns its
// address.
func (r *Rig) startHost(o options) string {
	tb := r.TB
	tb.Helper()
	cfg := hostsim.Config{Listen: "127.0.0.1:0",
		Terminals: []hostsim.Terminal{{TID: TID, MID: MID, KEK: hex.EncodeToString(r.KEK), KeyLayout: "double+tdk"}},
		Accounts:  hostsim.DefaultAccounts()}
	for _, change := range o.host {
		change(&cfg)
	}
	var err error
	if r.Host, err = hostsim.New(cfg); err != nil {
		tb.Fatal(err)
	}
	if o.listen == nil {
		if err := r.Host.Start(); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { _ = r.Host.Close() })
		return r.Host.Addr()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	wrapped := o.listen(ln)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = r.Host.Serve(wrapped)
	}()
	tb.Cleanup(func() {
		_ = r.Host.Close()
		_ = ln.Close()
		<-served
	})
	return ln.Addr().String()
}

// rootKey is a fixed device root key for softkeys (a fresh copy each call: Open zeroes it).
type rootKey []byte

func (k rootKey) RootKey() ([]byte, error) { return append([]byte(nil), k...), nil }

// Config is the terminal configuration in effect.
func (r *Rig) Config() *termconfig.Document { return r.Doc.Load() }

// Open (re)opens the engine on the rig's store, as a restart does.
func (r *Rig) Open() {
	r.TB.Helper()
	opts := payment.Options{DB: r.DB, Commit: r.Commit, Keys: r.Keys, Sealer: r.Sealer, Config: r.Config, Logger: Quiet()}
	for _, change := range r.engine {
		change(r, &opts)
	}
	eng, err := payment.Open(context.Background(), opts)
	if err != nil {
		r.TB.Fatal(err)
	}
	r.Engine = eng
}

// SignIn signs operator 01 in.
func (r *Rig) SignIn() {
	r.TB.Helper()
	if err := r.Engine.SignIn(context.Background(), "01"); err != nil {
		r.TB.Fatal(err)
	}
}

// PIN has the cardholder type the PIN on the pad (PIN, unless the emulator is scripted): the
// block comes encrypted under the working PIK. The rig must have the pad.
func (r *Rig) PIN(pan string) []byte {
	r.TB.Helper()
	if r.PadClient == nil {
		r.TB.Fatal("paytest: PIN needs the PIN pad backend")
	}
	slot, err := r.Keys.PINKeySlot()
	if err != nil {
		r.TB.Fatal(err)
	}
	blk, err := r.PadClient.GetPIN(context.Background(), pinpad.PINRequest{PAN: pan, Slot: slot, Timeout: 10 * time.Second})
	if err != nil {
		r.TB.Fatal(err)
	}
	return blk[:]
}
