package payment

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/posagent/posagent/agent/iso8583"
	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/agent/termconfig"
	"github.com/posagent/posagent/keystore"
)

// Keys is what the engine needs of the key store: MACs with the working MAK, and the
// working keys of a sign-in answer loaded as a set.
type Keys interface {
	MAC(ctx context.Context, alg keystore.MACAlgorithm, data []byte) ([]byte, error)
	Load(ctx context.Context, l keystore.Load) ([]keystore.Entry, error)
}

// Host carries one frame to the acquirer host and brings its answer (iso8583.Client).
type Host interface {
	Exchange(ctx context.Context, frame []byte) ([]byte, error)
}

// Options configure an Engine.
type Options struct {
	DB     *store.DB
	Commit *store.Committer
	Keys   Keys
	Sealer Sealer
	// Config is the terminal configuration in effect (host, identity, limits, parameters).
	Config func() *termconfig.Document
	// Host gives the client for the configured host; nil builds an iso8583.Client from
	// the configuration.
	Host func(doc *termconfig.Document) (Host, error)
	// License says whether payments may run (licence check); nil: always.
	License func() error
	// Event queues an up/event record; POSLog an up/log/pos record. Either may be nil.
	Event  func(ctx context.Context, kind string, body map[string]any)
	POSLog func(ctx context.Context, e LogEntry)
	Logger *slog.Logger
	Now    func() time.Time
}

// LogEntry is one host exchange for the POS log: masked, no track data, PIN block or key.
type LogEntry struct {
	Time     int64  `cbor:"t"`
	Dir      string `cbor:"dir"` // "req" or "ans"
	MTI      string `cbor:"mti"`
	Proc     string `cbor:"proc,omitempty"`
	STAN     int    `cbor:"stan,omitempty"`
	Amount   int64  `cbor:"amount,omitempty"`
	PAN      string `cbor:"pan,omitempty"` // masked
	RespCode string `cbor:"resp,omitempty"`
	Err      string `cbor:"err,omitempty"`
}

// Errors of the engine.
var (
	ErrNotSignedIn   = errors.New("payment: terminal not signed in")
	ErrLocked        = errors.New("payment: terminal locked")
	ErrBatchFull     = errors.New("payment: storage full, settle first")
	ErrNotAllowed    = errors.New("payment: operation not allowed on this terminal")
	ErrNoHost        = errors.New("payment: no acquirer host configured")
	ErrDeclined      = errors.New("payment: declined")
	ErrHostDown      = errors.New("payment: host unreachable") // nothing was sent
	ErrInDoubt       = errors.New("payment: outcome in doubt; the transaction is reversed")
	ErrBadRequest    = errors.New("payment: bad request")
	ErrSettlePending = errors.New("payment: settlement in progress")
	ErrUnlicensed    = errors.New("payment: no valid licence for payments")
)

// DefaultBatchSize is the batch capacity when the configuration sets none.
const DefaultBatchSize = termconfig.MinBatchSize

// Engine runs the operations, one at a time.
type Engine struct {
	o   Options
	log *slog.Logger

	opMu sync.Mutex // one operation, reversal or settlement at a time

	mu sync.Mutex
	m  meta // mirror of the committed meta
}

// Open loads the engine's state. Any transaction found pending — its request may have gone
// out before the power cut — is put in doubt: it is reversed before anything else is sent.
func Open(ctx context.Context, o Options) (*Engine, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	e := &Engine{o: o, log: o.Logger.With("svc", "payment")}
	var inDoubt []string
	err := e.update(ctx, func(tx *bolt.Tx) error {
		inDoubt = inDoubt[:0]
		m, err := readMeta(tx)
		if err != nil {
			return err
		}
		// After a power loss the operator must sign in again (seed 004 §6.3.1.2).
		if m.State == Normal {
			m.State = SignedOut
		}
		if err := writeMeta(tx, m); err != nil {
			return err
		}
		e.m = m
		var pending []*Txn
		if err := eachIn(tx, func(t *Txn) error { pending = append(pending, t); return nil }, StatePending); err != nil {
			return err
		}
		for _, t := range pending { // written after the walk: a bucket is not changed under its cursor
			t.State, t.DoubtReason = StateReversing, "interrupted"
			inDoubt = append(inDoubt, t.ID)
			if err := writeTxn(tx, t); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(inDoubt) > 0 {
		e.log.Warn("transactions in doubt after a restart will be reversed", "count", len(inDoubt), "ids", inDoubt)
	}
	return e, nil
}

// Status is the engine's state for stats and the diagnostics port.
type Status struct {
	State     TermState `cbor:"state" json:"state"`
	Test      bool      `cbor:"test,omitempty" json:"test,omitempty"`
	Batch     int       `cbor:"batch" json:"batch"`
	STAN      int       `cbor:"stan" json:"stan"`
	Txns      int       `cbor:"txns" json:"txns"`           // in the batch
	Reversals int       `cbor:"reversals" json:"reversals"` // owed
	Held      int       `cbor:"held" json:"held"`           // reversals given up: manual handling
	Settling  bool      `cbor:"settling,omitempty" json:"settling,omitempty"`
	Stored    int       `cbor:"stored,omitempty" json:"stored,omitempty"` // offline transactions not uploaded yet
	// Params are the host's downloaded parameters (tag → value).
	Params map[string]string `cbor:"params,omitempty" json:"params,omitempty"`
}

// Status reads the engine's state.
func (e *Engine) Status() Status {
	e.mu.Lock()
	m := e.m
	e.mu.Unlock()
	s := Status{State: m.State, Test: m.Test, Batch: m.Batch, STAN: m.STAN, Settling: m.Settle != nil, Params: m.Params, Txns: m.Count}
	_ = e.view(func(tx *bolt.Tx) error {
		s.Reversals = countIn(tx, StatePending) + countIn(tx, StateReversing)
		s.Held = countIn(tx, StateHeld)
		s.Stored = countIn(tx, StateStored)
		return nil
	})
	return s
}

// Txn reads one transaction of the batch.
func (e *Engine) Txn(id string) (*Txn, error) {
	var t *Txn
	err := e.view(func(tx *bolt.Tx) error {
		var err error
		t, err = readTxn(tx, id)
		return err
	})
	return t, err
}

// Batch lists the current batch's transactions, oldest first.
func (e *Engine) Batch() ([]Txn, error) {
	e.mu.Lock()
	batch := e.m.Batch
	e.mu.Unlock()
	var out []Txn
	err := e.view(func(tx *bolt.Tx) error {
		return eachTxn(tx, func(t *Txn) error {
			if t.Batch == batch {
				out = append(out, *t)
			}
			return nil
		})
	})
	return out, err
}

// now is the terminal clock: local time corrected by the host time of the last sign-in.
func (e *Engine) now() time.Time {
	e.mu.Lock()
	off := e.m.ClockOffset
	e.mu.Unlock()
	return e.o.Now().Add(time.Duration(off) * time.Second)
}

func (e *Engine) event(ctx context.Context, kind string, body map[string]any) {
	if e.o.Event != nil {
		e.o.Event(ctx, kind, body)
	}
}

// commitMeta changes the meta in one transaction (with more writes in extra, if any).
func (e *Engine) commitMeta(ctx context.Context, change func(*meta) error, extra func(*bolt.Tx, *meta) error) error {
	var next meta
	err := e.update(ctx, func(tx *bolt.Tx) error {
		m, err := readMeta(tx)
		if err != nil {
			return err
		}
		if change != nil {
			if err := change(&m); err != nil {
				return err
			}
		}
		if extra != nil {
			if err := extra(tx, &m); err != nil {
				return err
			}
		}
		next = m
		return writeMeta(tx, m)
	})
	if err != nil {
		return err
	}
	e.mu.Lock()
	e.m = next
	e.mu.Unlock()
	return nil
}

// host builds the client for the configured host and the header of its frames.
func (e *Engine) host(doc *termconfig.Document) (Host, iso8583.Header, error) {
	h := doc.AuthHost
	if !h.Configured() {
		return nil, iso8583.Header{}, ErrNoHost
	}
	tpdu := h.TPDU
	if tpdu == "" {
		tpdu = "6000000000"
	}
	e.mu.Lock()
	test := e.m.Test
	e.mu.Unlock()
	hdr, err := iso8583.NewHeader(tpdu, test)
	if err != nil {
		return nil, iso8583.Header{}, fmt.Errorf("payment: tpdu: %w", err)
	}
	if e.o.Host != nil {
		c, err := e.o.Host(doc)
		return c, hdr, err
	}
	timeout := time.Duration(doc.HostParameters.ResponseTimeoutSec) * time.Second
	connect := time.Duration(h.ConnectTimeoutSec) * time.Second
	var tlsConf *tls.Config
	if h.TLS {
		tlsConf = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: h.ServerName}
		if h.CACertificate != "" {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM([]byte(h.CACertificate)) {
				return nil, iso8583.Header{}, fmt.Errorf("payment: authHost.caCertificate holds no PEM certificate")
			}
			tlsConf.RootCAs = pool
		}
	}
	return iso8583.NewClient(iso8583.ClientOptions{Addrs: h.Addresses, ConnectTimeout: connect, Timeout: timeout,
		TLS: tlsConf, Logger: e.o.Logger}), hdr, nil
}

// mac is the MAC function of requests and answers: the UnionPay "ECB" MAC with the MAK.
func (e *Engine) mac(ctx context.Context) iso8583.MACFunc {
	return func(mab []byte) ([]byte, error) {
		return e.o.Keys.MAC(ctx, keystore.MACUnionPayECB, mab)
	}
}

// exchange sends one request and returns the answer, logging both to the POS log. The
// request is MACed when mac is set; a MACed answer is verified.
func (e *Engine) exchange(ctx context.Context, doc *termconfig.Document, req *iso8583.Msg, withMAC bool) (*iso8583.Msg, error) {
	c, hdr, err := e.host(doc)
	if err != nil {
		return nil, err
	}
	var mf iso8583.MACFunc
	if withMAC {
		mf = e.mac(ctx)
	}
	frame, err := iso8583.Pack(hdr, req, mf)
	if err != nil {
		return nil, fmt.Errorf("payment: pack %s: %w", req.MTI, err)
	}
	e.posLog(ctx, "req", req, nil)
	raw, err := c.Exchange(ctx, frame)
	if err != nil {
		e.posLog(ctx, "ans", &iso8583.Msg{MTI: answerMTI(req.MTI)}, err)
		return nil, err
	}
	_, ans, mab, err := iso8583.Unpack(raw)
	if err != nil {
		e.posLog(ctx, "ans", &iso8583.Msg{MTI: answerMTI(req.MTI)}, err)
		return nil, fmt.Errorf("%w: %w", errBadAnswer, err)
	}
	e.posLog(ctx, "ans", ans, nil)
	if err := matches(req, ans); err != nil {
		return nil, err
	}
	if mab != nil {
		if err := iso8583.VerifyMAC(ans, mab, e.mac(ctx)); err != nil {
			return nil, fmt.Errorf("%w: %w", errBadAnswer, err)
		}
	} else if withMAC && ans.RespCode == "00" {
		return nil, fmt.Errorf("%w: approval without a MAC", errBadAnswer)
	}
	return ans, nil
}

// errBadAnswer: an answer came but cannot be trusted (malformed, another transaction's, bad
// MAC): for a financial request this is doubt, like no answer at all.
var errBadAnswer = errors.New("payment: answer not usable")

func answerMTI(mti string) string {
	if len(mti) != 4 {
		return mti
	}
	return mti[:2] + string(mti[2]+1) + mti[3:]
}

// matches checks that ans answers req: its MTI, trace number, terminal and amount.
func matches(req, ans *iso8583.Msg) error {
	switch {
	case ans.MTI != answerMTI(req.MTI):
		return fmt.Errorf("%w: %s answered with %s", errBadAnswer, req.MTI, ans.MTI)
	case req.STAN != 0 && ans.STAN != req.STAN:
		return fmt.Errorf("%w: trace %06d answered with %06d", errBadAnswer, req.STAN, ans.STAN)
	case req.TID != "" && ans.TID != "" && ans.TID != req.TID:
		return fmt.Errorf("%w: answer for terminal %q", errBadAnswer, ans.TID)
	case req.HasAmount && ans.HasAmount && ans.Amount != req.Amount && req.ProcCode != "310000":
		return fmt.Errorf("%w: amount %d answered with %d", errBadAnswer, req.Amount, ans.Amount)
	}
	return nil
}

func (e *Engine) posLog(ctx context.Context, dir string, m *iso8583.Msg, err error) {
	if e.o.POSLog == nil {
		return
	}
	le := LogEntry{Time: e.o.Now().Unix(), Dir: dir, MTI: m.MTI, Proc: m.ProcCode, STAN: m.STAN,
		Amount: m.Amount, PAN: MaskPAN(m.PAN), RespCode: m.RespCode}
	if err != nil {
		le.Err = err.Error()
	}
	e.o.POSLog(ctx, le)
}

// MaskPAN keeps the first 6 and last 4 digits.
func MaskPAN(pan string) string {
	if len(pan) < 11 {
		return strings.Repeat("*", len(pan))
	}
	return pan[:6] + strings.Repeat("*", len(pan)-10) + pan[len(pan)-4:]
}

// identity is the terminal and merchant ids of the configured host.
func identity(doc *termconfig.Document) (tid, mid string) {
	return doc.AuthHost.TerminalID, doc.AuthHost.MerchantID
}

// currency is field 49: the configuration's default currency.
func currency(doc *termconfig.Document) string {
	for _, c := range doc.Currencies {
		if c.Default {
			return c.Numeric
		}
	}
	return "156"
}

func (e *Engine) batchSize(doc *termconfig.Document) int {
	if n := int(doc.HostParameters.MaxBatchSize); n > 0 {
		return n
	}
	return DefaultBatchSize
}
