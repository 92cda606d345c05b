package operator

import (
	"bytes"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/agent/termconfig"
	"github.com/posagent/posagent/internal/audittest"
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

// env is a store on a fresh database with a test clock, policy, audit and debug log.
type env struct {
	t      *testing.T
	dir    string
	db     *store.DB
	commit *store.Committer
	clk    *clock
	audit  *audittest.Recorder
	logBuf *syncBuf
	mu     sync.Mutex
	policy termconfig.CashierProfile
	iter   int
	s      *Store
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncBuf) Write(p []byte) (int, error) { w.mu.Lock(); defer w.mu.Unlock(); return w.b.Write(p) }
func (w *syncBuf) String() string              { w.mu.Lock(); defer w.mu.Unlock(); return w.b.String() }

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), clk: &clock{t: t0}, audit: &audittest.Recorder{}, logBuf: &syncBuf{},
		policy: termconfig.Default().CashierProfile}
	e.open()
	return e
}

func (e *env) setPolicy(edit func(p *termconfig.CashierProfile)) {
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
	log := slog.New(slog.NewJSONHandler(e.logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	iter := e.iter
	if iter == 0 {
		iter = MinIterations
	}
	e.s, err = Open(Options{DB: db, Commit: e.commit, Logger: log, Now: e.clk.now, Audit: e.audit.Fn,
		Iterations: iter, Policy: func() termconfig.CashierProfile {
			e.mu.Lock()
			defer e.mu.Unlock()
			return e.policy
		}})
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
	_ = e.db.Close()
	e.db = nil
}

func (e *env) reopen() {
	e.t.Helper()
	e.close()
	e.open()
}

// signOn signs on and fails the test on any error but ErrMustChange.
func (e *env) signOn(code, pw string) Session {
	e.t.Helper()
	s, err := e.s.SignOn(e.t.Context(), code, pw)
	if err != nil && !errors.Is(err, ErrMustChange) {
		e.t.Fatalf("sign on %s: %v", code, err)
	}
	return s
}

// supervisor returns a session of supervisor 00 with its password changed to sup.
func (e *env) supervisor() Session {
	e.t.Helper()
	if op, _ := e.s.Get(SupervisorCode); !op.MustChange {
		return e.signOn(SupervisorCode, supPW)
	}
	s := e.signOn(SupervisorCode, FactorySupervisorPassword)
	if s.MustChange {
		if err := e.s.SetPassword(e.t.Context(), s, SupervisorCode, FactorySupervisorPassword, supPW); err != nil {
			e.t.Fatal(err)
		}
		s, _ = e.s.Current()
	}
	return s
}

// admin returns a session of the administrator with its password changed to adminPW.
func (e *env) admin() Session {
	e.t.Helper()
	if op, _ := e.s.Get(AdminCode); !op.MustChange {
		return e.signOn(AdminCode, adminPW)
	}
	s := e.signOn(AdminCode, FactoryAdminPassword)
	if s.MustChange {
		if err := e.s.SetPassword(e.t.Context(), s, AdminCode, FactoryAdminPassword, adminPW); err != nil {
			e.t.Fatal(err)
		}
		s, _ = e.s.Current()
	}
	return s
}

// addOperator adds an operator as the supervisor and makes it usable with password pw
// (initial password changed), leaving nobody signed on.
func (e *env) addOperator(code, pw string) {
	e.t.Helper()
	ctx := e.t.Context()
	sup := e.supervisor()
	if err := e.s.Add(ctx, sup, Operator{Code: code, Role: RoleOperator, Name: "Op " + code}, "505050"); err != nil {
		e.t.Fatalf("add %s: %v", code, err)
	}
	s, err := e.s.SignOn(ctx, code, "505050")
	if !errors.Is(err, ErrMustChange) || !s.MustChange {
		e.t.Fatalf("new operator's first sign-on: %v %+v", err, s)
	}
	if err := e.s.SetPassword(ctx, s, code, "505050", pw); err != nil {
		e.t.Fatal(err)
	}
	_ = e.s.SignOff(ctx, s)
}

const (
	supPW   = "246810"
	adminPW = "97531864"
)

func wantErr(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error %v, want %v", err, want)
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
