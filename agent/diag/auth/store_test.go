package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/audit"
)

var ctx = context.Background()

func TestLoginTokenOpensSession(t *testing.T) {
	e := newEnv(t)
	sess := e.login()
	if sess.Technician != "tech42" || sess.Name != "Aigerim S." || sess.Role != RoleService || sess.Method != MethodToken ||
		sess.TokenID != "tok-1" || sess.Remote != "192.0.2.7:5000" || !sess.Started.Equal(t0) {
		t.Fatalf("session %+v", sess)
	}
	// The token expires 7 h after t0, before the 8 h session maximum.
	if want := time.Unix(claims().Expires, 0); !sess.Expires.Equal(want) {
		t.Fatalf("expires %s, want the token's expiry %s", sess.Expires, want)
	}
	if len(sess.ID) != 43 || len(sess.CSRF) != 43 || sess.ID == sess.CSRF {
		t.Fatalf("id %q / csrf %q: want two different 32-byte base64url values", sess.ID, sess.CSRF)
	}
	// A token living longer than MaxSession: the session ends at MaxSession.
	long := e.login(func(c *Claims) { c.ID = "tok-2"; c.Expires = t0.Add(48 * time.Hour).Unix() })
	if !long.Expires.Equal(t0.Add(8 * time.Hour)) {
		t.Fatalf("long token: session expires %s, want Started+8h", long.Expires)
	}
	if long.ID == sess.ID || long.CSRF == sess.CSRF {
		t.Fatal("two sessions share an id or CSRF token")
	}

	e.clk.add(time.Minute)
	got, err := e.s.Session(sess.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != sess.ID || got.CSRF != sess.CSRF || got.Technician != "tech42" || !got.LastSeen.Equal(t0.Add(time.Minute)) {
		t.Fatalf("Session() = %+v", got)
	}
	if _, err := e.s.Session("nope"); !errors.Is(err, ErrNoSession) {
		t.Fatalf("unknown id: %v", err)
	}
	if _, err := e.s.Session(""); !errors.Is(err, ErrNoSession) {
		t.Fatalf("empty id: %v", err)
	}

	// Only a hash of the session id is kept.
	e.s.mu.Lock()
	for k, v := range e.s.sessions {
		if v.ID != "" || strings.Contains(string(k[:]), sess.ID) {
			t.Errorf("session id kept in clear: %+v", v)
		}
	}
	e.s.mu.Unlock()

	logins := e.rec.find("diag.login")
	if len(logins) != 2 {
		t.Fatalf("%d login events, want 2", len(logins))
	}
	ev := logins[0]
	if ev.Source != audit.SourceDiag || ev.Actor != "tech42" || ev.Outcome != "" || ev.Fields["method"] != "token" ||
		ev.Fields["jti"] != "tok-1" || ev.Fields["remote"] != "192.0.2.7:5000" || ev.Fields["role"] != "service" {
		t.Fatalf("login event %+v", ev)
	}
}

func TestCheckCSRF(t *testing.T) {
	e := newEnv(t)
	sess := e.login()
	other := e.login(func(c *Claims) { c.ID = "tok-2" })
	if err := e.s.CheckCSRF(sess, sess.CSRF); err != nil {
		t.Fatal(err)
	}
	for name, presented := range map[string]string{"empty": "", "other session's": other.CSRF,
		"session id": sess.ID, "prefix": sess.CSRF[:20], "longer": sess.CSRF + "A"} {
		if err := e.s.CheckCSRF(sess, presented); !errors.Is(err, ErrCSRF) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// The store's copy decides, not the caller's.
	forged := *sess
	forged.CSRF = "x"
	if err := e.s.CheckCSRF(&forged, "x"); !errors.Is(err, ErrCSRF) {
		t.Fatalf("caller-edited CSRF accepted: %v", err)
	}
	e.s.Logout(ctx, sess.ID)
	if err := e.s.CheckCSRF(sess, sess.CSRF); !errors.Is(err, ErrCSRF) {
		t.Fatalf("after logout: %v", err)
	}
	if err := e.s.CheckCSRF(nil, "x"); !errors.Is(err, ErrCSRF) {
		t.Fatalf("nil session: %v", err)
	}
}

func TestSessionExpiry(t *testing.T) {
	type step struct {
		name   string
		login  func(e *env) *Session
		act    func(e *env, s *Session)
		reason string
	}
	token := func(e *env) *Session { return e.login() }
	for _, tc := range []step{
		{"idle", token, func(e *env, _ *Session) { e.clk.add(15 * time.Minute) }, "idle"},
		{"idle configured", token, func(e *env, _ *Session) {
			e.setPolicy(func(p *Policy) { p.IdleTimeout = time.Minute })
			e.clk.add(time.Minute)
		}, "idle"},
		{"max session although active", func(e *env) *Session {
			return e.login(func(c *Claims) { c.Expires = t0.Add(72 * time.Hour).Unix() })
		}, func(e *env, s *Session) {
			for range 8 * 6 { // every 10 minutes for 8 hours
				if _, err := e.s.Session(s.ID); err != nil {
					return
				}
				e.clk.add(10 * time.Minute)
			}
		}, "maxSession"},
		{"max session shortened by policy", token, func(e *env, _ *Session) {
			e.clk.add(10 * time.Minute)
			e.setPolicy(func(p *Policy) { p.MaxSession = 5 * time.Minute })
		}, "maxSession"},
		{"token expiry", func(e *env) *Session {
			return e.login(func(c *Claims) { c.Expires = t0.Add(5 * time.Minute).Unix() })
		}, func(e *env, s *Session) {
			e.clk.add(4 * time.Minute)
			if _, err := e.s.Session(s.ID); err != nil {
				e.t.Fatalf("before the token's expiry: %v", err)
			}
			e.clk.add(time.Minute)
		}, "maxSession"},
		{"revoked since", token, func(e *env, _ *Session) {
			e.setPolicy(func(p *Policy) { p.Revoked = map[string]bool{"tok-1": true} })
		}, "revoked"},
		{"admin password turned off", func(e *env) *Session {
			s, err := e.s.LoginPassword(ctx, adminPassword, "local")
			if err != nil {
				e.t.Fatal(err)
			}
			return s
		}, func(e *env, _ *Session) { e.setPolicy(func(p *Policy) { p.AdminPassword = false }) }, "adminPasswordOff"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			s := tc.login(e)
			tc.act(e, s)
			if _, err := e.s.Session(s.ID); !errors.Is(err, ErrSessionExpired) {
				t.Fatalf("got %v, want ErrSessionExpired", err)
			}
			if _, err := e.s.Session(s.ID); !errors.Is(err, ErrNoSession) {
				t.Fatalf("second look: %v, want ErrNoSession (the session is gone)", err)
			}
			if err := e.s.Authorize(ctx, s, "selftest"); !errors.Is(err, ErrNoSession) {
				t.Fatalf("authorize on an ended session: %v", err)
			}
			ev := e.rec.find("diag.sessionExpired")
			if len(ev) != 1 || ev[0].Fields["reason"] != tc.reason || ev[0].Actor != s.Technician ||
				ev[0].Source != audit.SourceDiag {
				t.Fatalf("expiry events %+v, want one with reason %s", ev, tc.reason)
			}
		})
	}
}

func TestSessionActivityKeepsItAlive(t *testing.T) {
	e := newEnv(t)
	s := e.login()
	for range 10 {
		e.clk.add(14 * time.Minute)
		if _, err := e.s.Session(s.ID); err != nil {
			t.Fatalf("active session ended: %v", err)
		}
	}
	// Authorize is not activity: it checks, it does not extend.
	e.clk.add(14 * time.Minute)
	if err := e.s.Authorize(ctx, s, "selftest"); err != nil {
		t.Fatal(err)
	}
	e.clk.add(time.Minute)
	if _, err := e.s.Session(s.ID); !errors.Is(err, ErrSessionExpired) {
		t.Fatalf("Authorize extended the session: %v", err)
	}
}

func TestLogout(t *testing.T) {
	e := newEnv(t)
	s := e.login()
	e.s.Logout(ctx, s.ID)
	if _, err := e.s.Session(s.ID); !errors.Is(err, ErrNoSession) {
		t.Fatalf("after logout: %v", err)
	}
	e.s.Logout(ctx, s.ID) // again: nothing
	e.s.Logout(ctx, "unknown")
	ev := e.rec.find("diag.logout")
	if len(ev) != 1 || ev[0].Actor != "tech42" || ev[0].Fields["method"] != "token" {
		t.Fatalf("logout events %+v", ev)
	}
}

func TestAuthorize(t *testing.T) {
	e := newEnv(t)
	svc := e.login()
	ro := e.login(func(c *Claims) { c.ID = "tok-ro"; c.Technician = "viewer"; c.Role = RoleReadOnly })
	if err := e.s.Authorize(ctx, svc, "selftest"); err != nil {
		t.Fatalf("service selftest: %v", err)
	}
	if len(e.rec.find("diag.forbidden")) != 0 {
		t.Fatal("an allowed action was audited as forbidden")
	}
	err := e.s.Authorize(ctx, ro, "settle")
	if !errors.Is(err, ErrForbidden) {
		t.Fatalf("read-only settle: %v", err)
	}
	ev := e.rec.find("diag.forbidden")
	if len(ev) != 1 || ev[0].Outcome != audit.OutcomeDenied || ev[0].Actor != "viewer" || ev[0].Fields["action"] != "settle" {
		t.Fatalf("forbidden events %+v", ev)
	}
	// A caller's copy claiming another role changes nothing: the store's record decides.
	lie := *ro
	lie.Role = RoleService
	if err := e.s.Authorize(ctx, &lie, "settle"); !errors.Is(err, ErrForbidden) {
		t.Fatalf("edited role: %v", err)
	}
	// The policy is read on every call.
	e.setPolicy(func(p *Policy) {
		p.Permissions = map[Role][]string{RoleReadOnly: {"settle"}, RoleService: {"selftest"}}
	})
	if err := e.s.Authorize(ctx, ro, "settle"); err != nil {
		t.Fatalf("read-only settle after the policy allowed it: %v", err)
	}
	if err := e.s.Authorize(ctx, svc, "settle"); !errors.Is(err, ErrForbidden) {
		t.Fatalf("service settle after the policy removed it: %v", err)
	}
	if err := e.s.Authorize(ctx, nil, "selftest"); !errors.Is(err, ErrNoSession) {
		t.Fatalf("nil session: %v", err)
	}
}

func TestLockOut(t *testing.T) {
	e := newEnv(t)
	e.setPolicy(func(p *Policy) { p.MaxFailures = 3; p.Lockout = 10 * time.Minute })
	forger := newSigner(t, "tms-1")
	bad := []string{
		forger.token(t, claims()), // forged
		e.key.token(t, claims(func(c *Claims) { c.Expires = t0.Unix() })), // expired
	}
	for i, tok := range bad {
		if _, err := e.s.LoginToken(ctx, tok, "192.0.2.9:1"); errors.Is(err, ErrLockedOut) || err == nil {
			t.Fatalf("failure %d: %v", i+1, err)
		}
	}
	if _, ok := e.s.Locked(); ok {
		t.Fatal("locked before MaxFailures")
	}
	// The third failure (a wrong password) locks the port.
	_, err := e.s.LoginPassword(ctx, "guess", "192.0.2.9:1")
	var le *LockedError
	if !errors.As(err, &le) || !errors.Is(err, ErrLockedOut) || !le.Until.Equal(t0.Add(10*time.Minute)) {
		t.Fatalf("third failure: %v, want LockedError until t0+10m", err)
	}
	until, ok := e.s.Locked()
	if !ok || !until.Equal(t0.Add(10*time.Minute)) {
		t.Fatalf("Locked() = %s, %v", until, ok)
	}
	// A good token and the right password are refused while locked, and do not reset it.
	if _, err := e.s.LoginToken(ctx, e.key.token(t, claims()), "192.0.2.9:1"); !errors.Is(err, ErrLockedOut) {
		t.Fatalf("good token while locked: %v", err)
	}
	if _, err := e.s.LoginPassword(ctx, adminPassword, "local"); !errors.Is(err, ErrLockedOut) {
		t.Fatalf("right password while locked: %v", err)
	}
	if ev := e.rec.find("diag.lockout"); len(ev) != 1 || ev[0].Source != audit.SourceDiag {
		t.Fatalf("lockout events %+v", ev)
	}
	denied := 0
	for _, ev := range e.rec.find("diag.login") {
		if ev.Outcome != audit.OutcomeDenied {
			t.Fatalf("a login while locked was not denied: %+v", ev)
		}
		denied++
	}
	if denied != 5 {
		t.Fatalf("%d denied logins audited, want 5", denied)
	}
	reasons := []string{}
	for _, ev := range e.rec.find("diag.login") {
		reasons = append(reasons, fmt.Sprint(ev.Fields["reason"]))
	}
	if got := strings.Join(reasons, ","); got != "signature,expired,credentials,lockedOut,lockedOut" {
		t.Fatalf("audit reasons %s", got)
	}

	// A reboot does not lift the lock-out.
	e.reopen()
	if _, err := e.s.LoginToken(ctx, e.key.token(t, claims()), "x"); !errors.Is(err, ErrLockedOut) {
		t.Fatalf("after reopening: %v", err)
	}
	// Once it has run out, a good login works and the count starts again from zero.
	e.clk.add(10 * time.Minute)
	if _, ok := e.s.Locked(); ok {
		t.Fatal("still locked after Lockout")
	}
	e.login()
	for i := range 2 {
		if _, err := e.s.LoginPassword(ctx, "guess", "x"); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("failure %d after the lock-out: %v", i+1, err)
		}
	}
	e.login() // a success resets the count…
	for i := range 2 {
		if _, err := e.s.LoginPassword(ctx, "guess", "x"); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("failure %d after a success: %v (the count was not reset)", i+1, err)
		}
	}
	// …and the reset is durable too.
	e.reopen()
	e.s.mu.Lock()
	failures := e.s.lock.Failures
	e.s.mu.Unlock()
	if failures != 2 {
		t.Fatalf("%d failures after reopening, want 2", failures)
	}
}

func TestLoginPassword(t *testing.T) {
	e := newEnv(t)
	var seen []string
	var mu sync.Mutex
	admin := e.s.o.Admin
	e.s.o.Admin = func(ctx context.Context, pw string) error {
		mu.Lock()
		seen = append(seen, pw)
		mu.Unlock()
		return admin(ctx, pw)
	}
	s, err := e.s.LoginPassword(ctx, adminPassword, "local")
	if err != nil {
		t.Fatal(err)
	}
	if s.Technician != AdminTechnician || s.Role != RoleService || s.Method != MethodPassword || s.TokenID != "" ||
		!s.Expires.Equal(t0.Add(8*time.Hour)) {
		t.Fatalf("session %+v", s)
	}
	if _, err := e.s.LoginPassword(ctx, "wrong", "local"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("wrong password: %v", err)
	}
	// Empty and absurdly long passwords are failures without reaching the (slow) check.
	for _, pw := range []string{"", strings.Repeat("p", maxPasswordLen+1)} {
		if _, err := e.s.LoginPassword(ctx, pw, "local"); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("password of %d bytes: %v", len(pw), err)
		}
	}
	mu.Lock()
	if len(seen) != 2 {
		t.Fatalf("the admin check saw %d passwords, want 2", len(seen))
	}
	mu.Unlock()
	for _, ev := range e.rec.all() {
		for k, v := range ev.Fields {
			if s, ok := v.(string); ok && (s == adminPassword || s == "wrong") {
				t.Fatalf("audit field %s carries the password", k)
			}
		}
	}

	// Turned off by the policy: refused, not counted.
	e.setPolicy(func(p *Policy) { p.AdminPassword = false; p.MaxFailures = 1 })
	for range 3 {
		if _, err := e.s.LoginPassword(ctx, adminPassword, "local"); !errors.Is(err, ErrAdminPasswordOff) {
			t.Fatalf("admin password off: %v", err)
		}
	}
	if _, ok := e.s.Locked(); ok {
		t.Fatal("refusals of a turned-off password locked the port")
	}
	last := e.rec.find("diag.login")
	if ev := last[len(last)-1]; ev.Outcome != audit.OutcomeDenied || ev.Fields["reason"] != "adminPasswordOff" {
		t.Fatalf("audit %+v", ev)
	}
}

func TestLoginPasswordWithoutAdminCheck(t *testing.T) {
	e := newEnv(t)
	e.s.o.Admin = nil
	if _, err := e.s.LoginPassword(ctx, adminPassword, "local"); !errors.Is(err, ErrAdminPasswordOff) {
		t.Fatalf("no admin check: %v", err)
	}
}

func TestConcurrentFailuresAreAllCounted(t *testing.T) {
	e := newEnv(t)
	e.setPolicy(func(p *Policy) { p.MaxFailures = 12 })
	forged := newSigner(t, "tms-1").token(t, claims())
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 10 {
		wg.Go(func() {
			_, err := e.s.LoginToken(ctx, forged, "x")
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, ErrTokenSignature) {
			t.Fatalf("concurrent failure: %v", err)
		}
	}
	e.reopen()
	e.s.mu.Lock()
	n := e.s.lock.Failures
	e.s.mu.Unlock()
	if n != 10 {
		t.Fatalf("%d failures stored, want 10", n)
	}
	// Two more reach the limit of 12.
	e.s.LoginToken(ctx, forged, "x")
	if _, err := e.s.LoginToken(ctx, forged, "x"); !errors.Is(err, ErrLockedOut) {
		t.Fatalf("12th failure: %v", err)
	}
}

func TestSessionsAreBounded(t *testing.T) {
	e := newEnv(t)
	first := e.login()
	e.clk.add(time.Second)
	keep := e.login()
	for range maxSessions {
		e.clk.add(time.Second)
		if _, err := e.s.Session(keep.ID); err != nil { // keep is in use, first is not
			t.Fatal(err)
		}
		e.login()
	}
	e.s.mu.Lock()
	n := len(e.s.sessions)
	e.s.mu.Unlock()
	if n != maxSessions {
		t.Fatalf("%d sessions held, want at most %d", n, maxSessions)
	}
	if _, err := e.s.Session(first.ID); !errors.Is(err, ErrNoSession) {
		t.Fatalf("the least recently used session survived: %v", err)
	}
	if _, err := e.s.Session(keep.ID); err != nil {
		t.Fatalf("a session in use was evicted: %v", err)
	}
}

func TestOpenRefusesACorruptLockRecord(t *testing.T) {
	e := newEnv(t)
	e.setPolicy(func(p *Policy) { p.MaxFailures = 1 })
	e.s.LoginPassword(ctx, "guess", "x")
	if err := e.db.Update(func(tx *bboltTx) error {
		return tx.Bucket([]byte(BucketName)).Put(lockoutKey, []byte{1, 2, 3})
	}); err != nil {
		t.Fatal(err)
	}
	e.close()
	db, err := openDB(e.dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := Open(Options{DB: db}); err == nil {
		t.Fatal("a corrupt lock-out record was accepted (it would lift the lock-out)")
	}
}

func TestPeekDoesNotKeepItAlive(t *testing.T) {
	e := newEnv(t)
	s := e.login()
	e.clk.add(10 * time.Minute)
	got, err := e.s.Peek(s.ID)
	if err != nil {
		t.Fatalf("peek at a live session: %v", err)
	}
	if got.Technician != s.Technician || got.ID != s.ID || !got.LastSeen.Equal(t0) {
		t.Fatalf("peek gave %+v, want the session last seen at login", got)
	}
	// Peeking every minute does not move LastSeen: the idle timeout counts from the login.
	for range 4 {
		e.clk.add(time.Minute)
		if _, err := e.s.Peek(s.ID); err != nil {
			t.Fatalf("peek before the idle timeout: %v", err)
		}
	}
	e.clk.add(time.Minute) // 15 minutes since the login
	if _, err := e.s.Peek(s.ID); !errors.Is(err, ErrSessionExpired) {
		t.Fatalf("peek past the idle timeout: %v, want ErrSessionExpired", err)
	}
	if _, err := e.s.Session(s.ID); !errors.Is(err, ErrNoSession) {
		t.Fatalf("after an expiry found by Peek: %v, want ErrNoSession", err)
	}
	if ev := e.rec.find("diag.sessionExpired"); len(ev) != 1 || ev[0].Fields["reason"] != "idle" {
		t.Fatalf("expiry events %+v, want one idle", ev)
	}

	// A real request in between does move it.
	s2 := e.login()
	e.clk.add(10 * time.Minute)
	if _, err := e.s.Session(s2.ID); err != nil {
		t.Fatal(err)
	}
	e.clk.add(10 * time.Minute)
	if _, err := e.s.Peek(s2.ID); err != nil {
		t.Fatalf("peek 10 minutes after a request: %v", err)
	}
	if _, err := e.s.Peek("unknown"); !errors.Is(err, ErrNoSession) {
		t.Fatalf("peek at an unknown session: %v", err)
	}
}
