package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/audit"
	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/agent/tmsproto"
)

var t0 = time.Unix(1_780_000_000, 0)

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// recorder is an Auditor keeping every event.
type recorder struct {
	mu     sync.Mutex
	events []audit.Event
}

func (r *recorder) Append(_ context.Context, e audit.Event) (audit.Entry, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	return audit.Entry{Seq: uint64(len(r.events)), Source: e.Source, Actor: e.Actor, Action: e.Action,
		Outcome: e.Outcome, Fields: e.Fields}, nil
}

// find returns the events of one action, in order.
func (r *recorder) find(action string) []audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []audit.Event
	for _, e := range r.events {
		if e.Action == action {
			out = append(out, e)
		}
	}
	return out
}

func (r *recorder) all() []audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]audit.Event(nil), r.events...)
}

// signer is a TMS command key.
type signer struct {
	kid  string
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
}

func newSigner(t testing.TB, kid string) signer {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signer{kid: kid, priv: priv, pub: pub}
}

func keysOf(t testing.TB, ss ...signer) tmsproto.Sign1Keys {
	t.Helper()
	m := map[string]ed25519.PublicKey{}
	for _, s := range ss {
		m[s.kid] = s.pub
	}
	k, err := tmsproto.NewSign1Keys(m)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

const (
	testSerial = "SN100200"
	testDevice = "dev-7f3a"
)

// claims are valid claims for this terminal at t0, edited by the caller.
func claims(edit ...func(c *Claims)) Claims {
	c := Claims{ID: "tok-1", Technician: "tech42", Name: "Aigerim S.", Role: RoleService,
		Terminals: []string{testSerial}, IssuedAt: t0.Add(-time.Hour).Unix(), Expires: t0.Add(7 * time.Hour).Unix()}
	for _, e := range edit {
		e(&c)
	}
	return c
}

func (s signer) token(t testing.TB, c Claims) string {
	t.Helper()
	tok, err := s.IssueToken(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (s signer) IssueToken(c Claims) (string, error) { return IssueToken(s.priv, s.kid, c) }

// env is a Store on a fresh database with a test clock, a settable policy and an audit
// recorder. The admin password is "4711-admin".
type env struct {
	t      *testing.T
	dir    string
	db     *store.DB
	commit *store.Committer
	clk    *clock
	rec    *recorder
	key    signer
	mu     sync.Mutex
	policy Policy
	s      *Store
}

const adminPassword = "4711-admin"

var errWrongAdmin = errors.New("operator: bad credentials")

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), clk: &clock{t: t0}, rec: &recorder{}, key: newSigner(t, "tms-1"),
		policy: DefaultPolicy()}
	e.open()
	return e
}

func (e *env) setPolicy(edit func(p *Policy)) {
	e.mu.Lock()
	edit(&e.policy)
	e.mu.Unlock()
}

func (e *env) open() {
	e.t.Helper()
	db, err := store.Open(e.dir)
	if err != nil {
		e.t.Fatal(err)
	}
	e.db, e.commit = db, store.NewCommitter(db)
	e.s, err = Open(Options{DB: db, Commit: e.commit, Keys: keysOf(e.t, e.key), IDs: []string{testSerial, testDevice},
		Policy: func() Policy { e.mu.Lock(); defer e.mu.Unlock(); return e.policy },
		Admin: func(_ context.Context, pw string) error {
			if pw != adminPassword {
				return errWrongAdmin
			}
			return nil
		},
		Audit: e.rec, Now: e.clk.now, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(e.close)
}

func (e *env) close() {
	if e.db == nil {
		return
	}
	e.commit.Close()
	if err := e.db.Close(); err != nil {
		e.t.Error(err)
	}
	e.db = nil
}

func (e *env) reopen() {
	e.t.Helper()
	e.close()
	e.open()
}

func (e *env) login(edit ...func(c *Claims)) *Session {
	e.t.Helper()
	sess, err := e.s.LoginToken(context.Background(), e.key.token(e.t, claims(edit...)), "192.0.2.7:5000")
	if err != nil {
		e.t.Fatal(err)
	}
	return sess
}

type bboltTx = store.Tx

func openDB(dir string) (*store.DB, error) { return store.Open(dir) }
