package payment_test

import (
	"context"
	"crypto/des"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/iso8583"
	"github.com/posagent/posagent/agent/payment"
	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/agent/termconfig"
	"github.com/posagent/posagent/board/sim/pinpademu"
	"github.com/posagent/posagent/drivers/pinpad"
	"github.com/posagent/posagent/drivers/serial"
	"github.com/posagent/posagent/internal/hostsim"
	"github.com/posagent/posagent/keystore"
	"github.com/posagent/posagent/keystore/padkeys"
	"github.com/posagent/posagent/keystore/pinblock"
	"github.com/posagent/posagent/keystore/softkeys"
	"github.com/posagent/posagent/keystore/tr31"
)

// The benchmarks' rig. It is newRig of engine_test.go (the same host simulator over TCP, PIN
// pad emulator over a pty, key store, store and engine), built for a testing.TB because newRig
// takes a *testing.T, with two additions: the software key backend instead of the pad, and
// accounts whose balances do not run out over a long benchmark.

// benchRig is one terminal against one host.
type benchRig struct {
	tb     testing.TB
	host   *hostsim.Server
	pad    *pinpademu.Emulator // nil with the software backend
	padc   *pinpad.Client
	keys   *keystore.Store
	db     *store.DB
	commit *store.Committer
	doc    atomic.Pointer[termconfig.Document]
	eng    *payment.Engine
	kek    []byte

	// With the software backend there is no pad to encrypt a PIN: the rig reads the PIK from
	// the sign-in answer (it knows the KEK, as the terminal's key store does) and makes the
	// PIN block itself.
	capture atomic.Bool
	mu      sync.Mutex
	pik     []byte

	// macTime and hostTime add up the time the engine spent in MACs (key store) and in
	// exchanges (host client), nanoseconds.
	macTime, hostTime atomic.Int64
}

type benchOptions struct {
	soft   bool // software key backend (keystore/softkeys) instead of the PIN pad
	change func(*termconfig.Document)
}

// benchAccounts are hostsim.DefaultAccounts with balances no benchmark exhausts.
func benchAccounts() []hostsim.Account {
	accts := hostsim.DefaultAccounts()
	for i := range accts {
		accts[i].Balance = 1 << 50
	}
	return accts
}

// rootKey is a fixed device root key for softkeys (a fresh copy each call: Open zeroes it).
type rootKey []byte

func (k rootKey) RootKey() ([]byte, error) { return append([]byte(nil), k...), nil }

func newBenchRig(tb testing.TB, o benchOptions) *benchRig {
	tb.Helper()
	ctx := context.Background()
	dir := tb.TempDir()
	r := &benchRig{tb: tb}
	var err error
	if r.db, err = store.Open(dir); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { r.db.Close() })
	r.commit = store.NewCommitter(r.db)
	tb.Cleanup(r.commit.Close)

	var backend keystore.Backend
	if o.soft {
		root := make([]byte, softkeys.RootKeySize)
		_, _ = rand.Read(root)
		sb, err := softkeys.Open(softkeys.Options{DB: r.db, Commit: r.commit, Root: rootKey(root), Logger: quiet()})
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := sb.InjectTransport(ctx, keystore.TDES, pinpademu.DefaultTransportKey, false); err != nil {
			tb.Fatal(err)
		}
		backend = sb
	} else {
		pad, err := pinpademu.New(pinpademu.Options{Dir: dir, DefaultPIN: "123456", Logger: quiet()})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { pad.Close() })
		port, err := serial.Open(serial.Config{Path: pad.Path(), Baud: 115200})
		if err != nil {
			tb.Fatal(err)
		}
		r.pad, r.padc = pad, pinpad.New(port, pinpad.Options{Logger: quiet()})
		tb.Cleanup(func() { r.padc.Close() })
		backend = padkeys.New(func() *pinpad.Client { return r.padc }, nil)
	}
	if r.keys, err = keystore.Open(keystore.Options{DB: r.db, Commit: r.commit, Backend: backend, Logger: quiet()}); err != nil {
		tb.Fatal(err)
	}
	// The KEK goes in by TR-31 under the transport key, on either backend.
	r.kek = make([]byte, 16)
	_, _ = rand.Read(r.kek)
	block, err := tr31.Wrap(pinpademu.DefaultTransportKey, tr31.Header{Version: 'B', Usage: "K0", Algorithm: 'T', ModeOfUse: 'B', KeyVersion: "00", Exportability: 'N'}, r.kek)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := r.keys.Load(ctx, keystore.Load{Items: []keystore.Item{{Role: "kek0", Block: block}}, KEK: 0, Source: "tr31"}); err != nil {
		tb.Fatal(err)
	}

	r.host, err = hostsim.New(hostsim.Config{Listen: "127.0.0.1:0",
		Terminals: []hostsim.Terminal{{TID: tid, MID: mid, KEK: hex.EncodeToString(r.kek), KeyLayout: "double+tdk"}},
		Accounts:  benchAccounts()})
	if err != nil {
		tb.Fatal(err)
	}
	if err := r.host.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { r.host.Close() })

	doc := termconfig.Default()
	doc.AuthHost = termconfig.AuthHost{Addresses: []string{r.host.Addr()}, TerminalID: tid, MerchantID: mid,
		TPDU: "6000030000", ConnectTimeoutSec: 2}
	doc.HostParameters.ResponseTimeoutSec = 5
	if o.change != nil {
		o.change(doc)
	}
	r.doc.Store(doc)
	seal := make([]byte, 32)
	_, _ = rand.Read(seal)
	sealer, err := payment.NewSealer(seal)
	if err != nil {
		tb.Fatal(err)
	}
	// Keys and Host are the key store and the client the engine builds itself when Host is
	// nil (a fresh iso8583.Client per exchange, from the configuration), wrapped to add up the
	// time spent in MACs and in exchanges; with the software backend the wrapper also reads
	// the PIK of the sign-in answer.
	opts := payment.Options{DB: r.db, Commit: r.commit, Keys: timedKeys{r.keys, &r.macTime}, Sealer: sealer,
		Config: func() *termconfig.Document { return r.doc.Load() }, Logger: quiet(),
		Host: func(doc *termconfig.Document) (payment.Host, error) {
			h := timedHost{c: newClient(doc), d: &r.hostTime}
			if r.capture.Load() {
				h.capture = r
			}
			return h, nil
		}}
	if r.eng, err = payment.Open(ctx, opts); err != nil {
		tb.Fatal(err)
	}
	r.capture.Store(o.soft)
	if err := r.eng.SignIn(ctx, "01"); err != nil {
		tb.Fatal(err)
	}
	r.capture.Store(false)
	return r
}

// timedKeys is the key store, its MAC time added up.
type timedKeys struct {
	k *keystore.Store
	d *atomic.Int64
}

func (t timedKeys) MAC(ctx context.Context, alg keystore.MACAlgorithm, data []byte) ([]byte, error) {
	start := time.Now()
	defer func() { t.d.Add(int64(time.Since(start))) }()
	return t.k.MAC(ctx, alg, data)
}

func (t timedKeys) Load(ctx context.Context, l keystore.Load) ([]keystore.Entry, error) {
	return t.k.Load(ctx, l)
}

// timedHost is a host client, its exchange time added up. With capture set it reads the PIK
// out of a sign-in answer: field 62 decrypted under the KEK.
type timedHost struct {
	c       *iso8583.Client
	d       *atomic.Int64
	capture *benchRig
}

func (h timedHost) Exchange(ctx context.Context, frame []byte) ([]byte, error) {
	start := time.Now()
	ans, err := h.c.Exchange(ctx, frame)
	h.d.Add(int64(time.Since(start)))
	if err != nil || h.capture == nil {
		return ans, err
	}
	if _, m, _, err := iso8583.Unpack(ans); err == nil && m.MTI == "0810" && len(m.F62) > 0 {
		items, err := keystore.SignInKeys(m.F62)
		if err != nil {
			return nil, err
		}
		for _, it := range items {
			if it.Role == keystore.RolePIK {
				pik, err := ecb(h.capture.kek, it.Encrypted, true)
				if err != nil {
					return nil, err
				}
				h.capture.mu.Lock()
				h.capture.pik = pik
				h.capture.mu.Unlock()
			}
		}
	}
	return ans, nil
}

// newClient is the client the engine builds from the configuration when Options.Host is nil.
func newClient(doc *termconfig.Document) *iso8583.Client {
	return iso8583.NewClient(iso8583.ClientOptions{Addrs: doc.AuthHost.Addresses,
		ConnectTimeout: time.Duration(doc.AuthHost.ConnectTimeoutSec) * time.Second,
		Timeout:        time.Duration(doc.HostParameters.ResponseTimeoutSec) * time.Second, Logger: quiet()})
}

// timings are the MAC and exchange time added up so far.
func (r *benchRig) timings() (mac, host time.Duration) {
	return time.Duration(r.macTime.Load()), time.Duration(r.hostTime.Load())
}

// ecb is TDES-ECB (K1K2K1 for a 16-byte key, DES for 8) over whole blocks.
func ecb(key, data []byte, decrypt bool) ([]byte, error) {
	var k []byte
	switch len(key) {
	case 8:
		k = append(append(append(k, key...), key...), key...)
	case 16:
		k = append(append(k, key...), key[:8]...)
	case 24:
		k = key
	default:
		return nil, fmt.Errorf("key of %d bytes", len(key))
	}
	c, err := des.NewTripleDESCipher(k)
	if err != nil {
		return nil, err
	}
	if len(data)%8 != 0 {
		return nil, fmt.Errorf("%d bytes: not whole blocks", len(data))
	}
	out := make([]byte, len(data))
	for i := 0; i < len(data); i += 8 {
		if decrypt {
			c.Decrypt(out[i:i+8], data[i:i+8])
		} else {
			c.Encrypt(out[i:i+8], data[i:i+8])
		}
	}
	return out, nil
}

// pin is the cardholder's 123456 encrypted under the working PIK: typed on the pad, or with the
// software backend made from the PIK the sign-in brought.
func (r *benchRig) pin(pan string) []byte {
	r.tb.Helper()
	if r.padc != nil {
		slot, err := r.keys.PINKeySlot()
		if err != nil {
			r.tb.Fatal(err)
		}
		blk, err := r.padc.GetPIN(context.Background(), pinpad.PINRequest{PAN: pan, Slot: slot, Timeout: 10 * time.Second})
		if err != nil {
			r.tb.Fatal(err)
		}
		return blk[:]
	}
	r.mu.Lock()
	pik := r.pik
	r.mu.Unlock()
	if pik == nil {
		r.tb.Fatal("no PIK captured at sign-in")
	}
	clearBlk, err := pinblock.Format0("123456", pan)
	if err != nil {
		r.tb.Fatal(err)
	}
	blk, err := ecb(pik, clearBlk[:], false)
	if err != nil {
		r.tb.Fatal(err)
	}
	return blk
}

// purchase is one purchase with a card read before and a PIN block made before.
func (r *benchRig) purchase(pan, exp string, amount int64, pinBlock []byte) *payment.Txn {
	t, err := r.eng.Do(context.Background(), payment.Request{Op: payment.OpPurchase, Amount: amount,
		Card: card(pan, exp), PINBlock: pinBlock, Operator: "01"})
	if err != nil {
		r.tb.Fatalf("purchase: %v", err)
	}
	if t.State != payment.StateApproved {
		r.tb.Fatalf("purchase %s %s", t.State, t.RespCode)
	}
	return t
}

// settle closes the batch and fails unless it went through.
func (r *benchRig) settle() payment.SettlementTotals {
	st, err := r.eng.Settle(context.Background(), "01")
	if err != nil {
		r.tb.Fatalf("settlement: %v", err)
	}
	return st
}

// purchaseFrame is a 0200 purchase as the engine packs it (same fields, PIN block, MAC by the
// key store), with its own trace and batch numbers.
func (r *benchRig) purchaseFrame(stan, batch int, pan, exp string, amount int64, pinBlock []byte) []byte {
	r.tb.Helper()
	ctx := context.Background()
	c := card(pan, exp)
	m := &iso8583.Msg{MTI: "0200", PAN: pan, ProcCode: "000000", Amount: amount, HasAmount: true, STAN: stan,
		Expiry: exp, EntryMode: c.Entry + "1", CondCode: "00", Track2: c.Track2, TID: tid, MID: mid, Currency: "156",
		PINBlock: pinBlock, SecCtrl: "2600000000000000", PINCapture: "06",
		F60: iso8583.F60{Type: "22", Batch: fmt.Sprintf("%06d", batch), NetCode: "000"}, F63: fmt.Sprintf("%03s", "01")}
	hdr, err := iso8583.NewHeader("6000030000", false)
	if err != nil {
		r.tb.Fatal(err)
	}
	f, err := iso8583.Pack(hdr, m, func(mab []byte) ([]byte, error) {
		return r.keys.MAC(ctx, keystore.MACUnionPayECB, mab)
	})
	if err != nil {
		r.tb.Fatal(err)
	}
	return f
}

// client is the host client the engine builds from the configuration.
func (r *benchRig) client() *iso8583.Client { return newClient(r.doc.Load()) }
