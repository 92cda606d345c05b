package payment_test

import (
	"context"
	"crypto/des"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/iso8583"
	"github.com/posagent/posagent/agent/payment"
	"github.com/posagent/posagent/agent/termconfig"
	"github.com/posagent/posagent/internal/hostsim"
	"github.com/posagent/posagent/internal/paytest"
	"github.com/posagent/posagent/keystore"
	"github.com/posagent/posagent/keystore/pinblock"
)

// The benchmarks' rig: the paytest rig (the host simulator over TCP, the PIN pad emulator over
// a pty or the software key backend, the key store, the store and the engine), with accounts
// whose balances do not run out over a long benchmark, the time spent in MACs and exchanges
// added up, and with the software backend the PIK of the sign-in answer captured.

// benchRig is one terminal against one host, signed in.
type benchRig struct {
	*paytest.Rig

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

func newBenchRig(tb testing.TB, o benchOptions) *benchRig {
	tb.Helper()
	r := &benchRig{}
	backend := paytest.PINPad
	if o.soft {
		backend = paytest.Software
	}
	r.Rig = paytest.New(tb, paytest.WithBackend(backend), paytest.WithConfig(o.change),
		paytest.WithHost(func(c *hostsim.Config) { c.Accounts = benchAccounts() }),
		// Keys and Host are the key store and the client the engine builds itself when Host
		// is nil (a fresh iso8583.Client per exchange, from the configuration), wrapped to add
		// up the time spent in MACs and in exchanges; with the software backend the wrapper
		// also reads the PIK of the sign-in answer.
		paytest.WithEngine(func(pr *paytest.Rig, opts *payment.Options) {
			opts.Keys = timedKeys{pr.Keys, &r.macTime}
			opts.Host = func(doc *termconfig.Document) (payment.Host, error) {
				h := timedHost{c: newClient(doc), d: &r.hostTime}
				if r.capture.Load() {
					h.capture = r
				}
				return h, nil
			}
		}))
	r.capture.Store(o.soft)
	r.SignIn()
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
				pik, err := ecb(h.capture.KEK, it.Encrypted, true)
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
		Timeout:        time.Duration(doc.HostParameters.ResponseTimeoutSec) * time.Second, Logger: paytest.Quiet()})
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
	r.TB.Helper()
	if r.PadClient != nil {
		return r.PIN(pan)
	}
	r.mu.Lock()
	pik := r.pik
	r.mu.Unlock()
	if pik == nil {
		r.TB.Fatal("no PIK captured at sign-in")
	}
	clearBlk, err := pinblock.Format0(paytest.PIN, pan)
	if err != nil {
		r.TB.Fatal(err)
	}
	blk, err := ecb(pik, clearBlk[:], false)
	if err != nil {
		r.TB.Fatal(err)
	}
	return blk
}

// purchase is one purchase with a card read before and a PIN block made before.
func (r *benchRig) purchase(pan, exp string, amount int64, pinBlock []byte) *payment.Txn {
	t, err := r.Engine.Do(context.Background(), payment.Request{Op: payment.OpPurchase, Amount: amount,
		Card: card(pan, exp), PINBlock: pinBlock, Operator: "01"})
	if err != nil {
		r.TB.Fatalf("purchase: %v", err)
	}
	if t.State != payment.StateApproved {
		r.TB.Fatalf("purchase %s %s", t.State, t.RespCode)
	}
	return t
}

// settle closes the batch and fails unless it went through.
func (r *benchRig) settle() payment.SettlementTotals {
	st, err := r.Engine.Settle(context.Background(), "01")
	if err != nil {
		r.TB.Fatalf("settlement: %v", err)
	}
	return st
}

// purchaseFrame is a 0200 purchase as the engine packs it (same fields, PIN block, MAC by the
// key store), with its own trace and batch numbers.
func (r *benchRig) purchaseFrame(stan, batch int, pan, exp string, amount int64, pinBlock []byte) []byte {
	r.TB.Helper()
	ctx := context.Background()
	c := card(pan, exp)
	m := &iso8583.Msg{MTI: "0200", PAN: pan, ProcCode: "000000", Amount: amount, HasAmount: true, STAN: stan,
		Expiry: exp, EntryMode: c.Entry + "1", CondCode: "00", Track2: c.Track2, TID: paytest.TID, MID: paytest.MID, Currency: "156",
		PINBlock: pinBlock, SecCtrl: "2600000000000000", PINCapture: "06",
		F60: iso8583.F60{Type: "22", Batch: fmt.Sprintf("%06d", batch), NetCode: "000"}, F63: fmt.Sprintf("%03s", "01")}
	hdr, err := iso8583.NewHeader("6000030000", false)
	if err != nil {
		r.TB.Fatal(err)
	}
	f, err := iso8583.Pack(hdr, m, func(mab []byte) ([]byte, error) {
		return r.Keys.MAC(ctx, keystore.MACUnionPayECB, mab)
	})
	if err != nil {
		r.TB.Fatal(err)
	}
	return f
}

// client is the host client the engine builds from the configuration.
func (r *benchRig) client() *iso8583.Client { return newClient(r.Config()) }
