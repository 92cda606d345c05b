package access

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/internal/audittest"
)

var t0 = time.Date(2026, 3, 7, 15, 2, 56, 0, time.Local)

// clock is a settable clock for Options.Now.
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

// mustNotContain fails if any audit field renders to a string containing one of secrets.
func mustNotContain(t *testing.T, audit *audittest.Recorder, secrets ...string) {
	t.Helper()
	events := audit.All()
	if len(events) == 0 {
		t.Fatal("no audit events recorded")
	}
	for _, e := range events {
		for k, v := range e.Fields {
			s := fmt.Sprint(v)
			for _, sec := range secrets {
				if sec != "" && strings.Contains(s, sec) {
					t.Fatalf("audit %s field %s holds a token", e.Action, k)
				}
			}
		}
	}
}

// env is a Store on a fresh database with a test clock and audit log.
type env struct {
	t      testing.TB
	dir    string
	db     *store.DB
	commit *store.Committer
	clk    *clock
	audit  *audittest.Recorder
	opts   Options
	s      *Store
}

func newEnv(t testing.TB, edit func(*Options)) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), clk: &clock{t: t0}, audit: &audittest.Recorder{}}
	e.opts = Options{Now: e.clk.now, Audit: e.audit.Fn, RequestTTL: time.Minute,
		Logger: slog.New(slog.DiscardHandler)}
	if edit != nil {
		edit(&e.opts)
	}
	e.open()
	t.Cleanup(e.close)
	return e
}

func (e *env) open() {
	e.t.Helper()
	db, err := store.Open(e.dir)
	if err != nil {
		e.t.Fatal(err)
	}
	e.db, e.commit = db, store.NewCommitter(db)
	if e.s, err = Open(e.db, e.commit, e.opts); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) close() {
	if e.db == nil {
		return
	}
	_ = e.s.Close()
	e.commit.Close()
	_ = e.db.Close()
	e.db = nil
}

func (e *env) reopen() {
	e.t.Helper()
	e.close()
	e.open()
}

func (e *env) dbPath() string { return filepath.Join(e.dir, "posagent.db") }

type regResult struct {
	tok Tokens
	err error
}

// startRegister runs Register in a goroutine; the result arrives on the returned channel.
func (e *env) startRegister(ctx context.Context, name, remote string) <-chan regResult {
	ch := make(chan regResult, 1)
	go func() {
		tok, err := e.s.Register(ctx, name, remote)
		ch <- regResult{tok, err}
	}()
	return ch
}

// waitPending waits for the Requests signal announcing a request for name.
func (e *env) waitPending(name string) Request {
	e.t.Helper()
	// Generous: only a guard against a hang, not a measurement.
	guard := time.After(20 * time.Second)
	for {
		if r, ok := e.s.Pending(); ok && r.Name == name {
			return r
		}
		select {
		case <-e.s.Requests():
		case <-guard:
			e.t.Fatalf("no pending request for %q", name)
		}
	}
}

func (e *env) result(ch <-chan regResult) regResult {
	e.t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(20 * time.Second):
		e.t.Fatal("Register did not return")
		return regResult{}
	}
}

// registered runs a registration of name approved by "pinpad" and returns its tokens.
func (e *env) registered(name string) Tokens {
	e.t.Helper()
	ch := e.startRegister(context.Background(), name, "192.0.2.10:5000")
	req := e.waitPending(name)
	if err := e.s.Approve(context.Background(), req.ID, "pinpad"); err != nil {
		e.t.Fatal(err)
	}
	r := e.result(ch)
	if r.err != nil {
		e.t.Fatal(r.err)
	}
	return r.tok
}

func (e *env) mustCheck(tok, name string) {
	e.t.Helper()
	got, err := e.s.Check(tok)
	if err != nil || got != name {
		e.t.Fatalf("Check = %q, %v; want %q, nil", got, err, name)
	}
}

func (e *env) checkErr(tok string, want error) {
	e.t.Helper()
	if _, err := e.s.Check(tok); err != want {
		e.t.Fatalf("Check = %v; want %v", err, want)
	}
}
