package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/posagent/posagent/agent/audit"
	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/agent/tmsproto"
)

// BucketName is the bbolt bucket this package owns: the failure count and lock-out of the
// port. Sessions are not kept: a restart signs everyone out.
const BucketName = "diag.auth"

var lockoutKey = []byte("lockout")

// Login and session refusals.
var (
	ErrBadCredentials   = errors.New("auth: bad credentials")
	ErrLockedOut        = errors.New("auth: diagnostics port locked out")
	ErrNoSession        = errors.New("auth: no session")
	ErrSessionExpired   = errors.New("auth: session expired")
	ErrForbidden        = errors.New("auth: action not allowed for the role")
	ErrCSRF             = errors.New("auth: missing or wrong CSRF token")
	ErrAdminPasswordOff = errors.New("auth: the admin password is not accepted on this terminal")
)

// LockedError is a login refused because the port is locked out; errors.Is(err, ErrLockedOut).
type LockedError struct{ Until time.Time }

func (e *LockedError) Error() string {
	return "auth: diagnostics port locked out until " + e.Until.UTC().Format(time.RFC3339)
}

// Is makes errors.Is(err, ErrLockedOut) true.
func (e *LockedError) Is(target error) bool { return target == ErrLockedOut }

// Auditor records audit events (agent/audit's Log).
type Auditor interface {
	Append(ctx context.Context, e audit.Event) (audit.Entry, error)
}

// Options configure a Store.
type Options struct {
	DB     *store.DB
	Commit *store.Committer // optional: writes then share the group commit
	Keys   tmsproto.Sign1Keys
	IDs    []string      // this terminal's serial and device id
	Policy func() Policy // read on every call: a config.apply changes it live; nil: DefaultPolicy
	// Admin checks the local administrator password (operator.Store.CheckAdmin); nil: password
	// logins are refused with ErrAdminPasswordOff.
	Admin  func(ctx context.Context, password string) error
	Audit  Auditor // may be nil
	Now    func() time.Time
	Logger *slog.Logger
}

// Session is a signed-in technician.
type Session struct {
	ID         string // cookie value (32 random bytes, base64url); only its SHA-256 is kept in the Store
	CSRF       string
	Technician string
	Name       string
	Role       Role
	Method     string // MethodToken or MethodPassword
	TokenID    string // jti, for revocation
	Remote     string
	Started    time.Time
	LastSeen   time.Time
	Expires    time.Time // min(Started+MaxSession, token exp)
}

// Login methods.
const (
	MethodToken    = "token"
	MethodPassword = "password"
)

// AdminTechnician is the technician id of a session opened with the admin password.
const AdminTechnician = "admin"

// maxSessions bounds the sessions held: a terminal has a technician or two at a time, and a
// script logging in in a loop must not grow memory.
const maxSessions = 32

// maxPasswordLen bounds a password before it reaches the (slow) password check.
const maxPasswordLen = 256

// Store is the technicians' sessions and the port's lock-out.
type Store struct {
	o   Options
	log *slog.Logger

	wmu sync.Mutex // serialises logins: failures are counted one at a time, durably

	mu       sync.Mutex
	sessions map[[32]byte]*Session // by SHA-256 of the session id; ID fields are empty
	lock     lockState
}

// lockState is the persisted failure count of the port.
type lockState struct {
	Failures int   `cbor:"failures"`
	Until    int64 `cbor:"until"` // unix s; 0: not locked
}

// Open loads the lock-out state.
func Open(o Options) (*Store, error) {
	if o.DB == nil {
		return nil, errors.New("auth: no database")
	}
	if o.Policy == nil {
		o.Policy = DefaultPolicy
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s := &Store{o: o, log: o.Logger, sessions: map[[32]byte]*Session{}}
	err := o.DB.View(func(tx *store.Tx) error {
		b := tx.Bucket([]byte(BucketName))
		if b == nil {
			return nil
		}
		raw := b.Get(lockoutKey)
		if raw == nil {
			return nil
		}
		payload, err := store.Checked(raw)
		if err != nil {
			return fmt.Errorf("auth: lock-out record: %w", err)
		}
		if err := tmsproto.Unmarshal(payload, &s.lock); err != nil {
			return fmt.Errorf("auth: lock-out record: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Store) policy() Policy { return s.o.Policy().withDefaults() }

// Locked reports whether the port is locked out now, and until when.
func (s *Store) Locked() (until time.Time, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lock.Until != 0 && s.o.Now().Unix() < s.lock.Until {
		return time.Unix(s.lock.Until, 0), true
	}
	return time.Time{}, false
}

// saveLock commits the lock-out state before the login is answered, so a reboot cannot reset
// a count an attacker has built up.
func (s *Store) saveLock(ctx context.Context, st lockState) error {
	payload, err := tmsproto.Marshal(st)
	if err != nil {
		return fmt.Errorf("auth: encode lock-out: %w", err)
	}
	rec := store.Check(payload)
	fn := func(tx *store.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte(BucketName))
		if err != nil {
			return err
		}
		return b.Put(lockoutKey, rec)
	}
	if s.o.Commit != nil {
		err = s.o.Commit.Do(ctx, fn)
	} else {
		err = s.o.DB.Update(fn)
	}
	if err != nil {
		return fmt.Errorf("auth: save lock-out: %w", err)
	}
	s.mu.Lock()
	s.lock = st
	s.mu.Unlock()
	return nil
}

// attempt describes a login for the audit.
type attempt struct {
	method, technician, jti, remote string
}

func (a attempt) fields(extra map[string]any) map[string]any {
	f := map[string]any{"method": a.method, "remote": a.remote}
	if a.technician != "" {
		f["technician"] = a.technician
	}
	if a.jti != "" {
		f["jti"] = a.jti // not "tokenId": the audit log blanks fields named like secrets
	}
	for k, v := range extra {
		f[k] = v
	}
	return f
}

func (a attempt) actor() string {
	if a.technician == "" {
		return "unknown"
	}
	return a.technician
}

// checkLock refuses a login while the port is locked, and forgets a lock-out that has run
// out. The caller holds wmu.
func (s *Store) checkLock(ctx context.Context, a attempt) error {
	s.mu.Lock()
	st := s.lock
	s.mu.Unlock()
	now := s.o.Now().Unix()
	if st.Until == 0 {
		return nil
	}
	if now >= st.Until {
		// Run out: the next failure starts a new count. Saved lazily with the next change.
		s.mu.Lock()
		s.lock = lockState{}
		s.mu.Unlock()
		return nil
	}
	until := time.Unix(st.Until, 0)
	s.audit(ctx, audit.Event{Source: audit.SourceDiag, Actor: a.actor(), Action: "diag.login",
		Outcome: audit.OutcomeDenied, Fields: a.fields(map[string]any{"reason": "lockedOut", "until": st.Until})})
	return &LockedError{Until: until}
}

// fail counts a failed login and starts the lock-out at the policy's limit. cause is what the
// caller hears unless the port is now locked. The caller holds wmu.
func (s *Store) fail(ctx context.Context, a attempt, reason string, cause error) error {
	p := s.policy()
	s.mu.Lock()
	st := s.lock
	s.mu.Unlock()
	st.Failures++
	locked := st.Failures >= p.MaxFailures
	now := s.o.Now()
	if locked {
		st.Until = now.Add(p.Lockout).Unix()
	}
	if err := s.saveLock(ctx, st); err != nil {
		// Not counted durably: refuse the login anyway, and say why in the log only.
		s.log.Error("diag login failure not recorded", "err", err)
		return cause
	}
	s.log.Warn("diag login refused", "method", a.method, "technician", a.technician, "remote", a.remote,
		"reason", reason, "failures", st.Failures)
	s.audit(ctx, audit.Event{Source: audit.SourceDiag, Actor: a.actor(), Action: "diag.login",
		Outcome: audit.OutcomeDenied, Fields: a.fields(map[string]any{"reason": reason, "failures": st.Failures})})
	if locked {
		s.log.Warn("diag port locked out", "failures", st.Failures, "for", p.Lockout)
		s.audit(ctx, audit.Event{Source: audit.SourceDiag, Actor: a.actor(), Action: "diag.lockout",
			Outcome: audit.OutcomeDenied, Fields: map[string]any{"failures": st.Failures, "until": st.Until,
				"remote": a.remote}})
		return &LockedError{Until: time.Unix(st.Until, 0)}
	}
	return cause
}

// succeed clears the failure count and opens a session. The caller holds wmu.
func (s *Store) succeed(ctx context.Context, a attempt, sess *Session) (*Session, error) {
	s.mu.Lock()
	st := s.lock
	s.mu.Unlock()
	if st.Failures != 0 || st.Until != 0 {
		if err := s.saveLock(ctx, lockState{}); err != nil {
			return nil, err
		}
	}
	id, err := randomToken()
	if err != nil {
		return nil, err
	}
	csrf, err := randomToken()
	if err != nil {
		return nil, err
	}
	sess.ID, sess.CSRF = id, csrf
	stored := *sess
	stored.ID = ""
	s.mu.Lock()
	s.evictLocked()
	s.sessions[hashID(id)] = &stored
	s.mu.Unlock()
	s.log.Info("diag login", "method", a.method, "technician", a.technician, "role", string(sess.Role),
		"remote", a.remote)
	s.audit(ctx, audit.Event{Source: audit.SourceDiag, Actor: a.actor(), Action: "diag.login",
		Fields: a.fields(map[string]any{"role": string(sess.Role), "expires": sess.Expires.Unix()})})
	return sess, nil
}

// evictLocked makes room for one more session by dropping the least recently seen. s.mu held.
func (s *Store) evictLocked() {
	for len(s.sessions) >= maxSessions {
		var oldest [32]byte
		var seen time.Time
		first := true
		for k, v := range s.sessions {
			if first || v.LastSeen.Before(seen) {
				oldest, seen, first = k, v.LastSeen, false
			}
		}
		delete(s.sessions, oldest)
	}
}

// LoginToken signs a technician in with a token. Every refusal but the lock-out itself counts
// as a failure; at the policy's MaxFailures the port locks for every login, this one included.
func (s *Store) LoginToken(ctx context.Context, token, remote string) (*Session, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	a := attempt{method: MethodToken, remote: remote}
	if err := s.checkLock(ctx, a); err != nil {
		return nil, err
	}
	p := s.policy()
	now := s.o.Now()
	c, err := ParseToken(token, s.o.Keys, now, p, s.o.IDs...)
	a.technician, a.jti = c.Technician, c.ID
	if err != nil {
		return nil, s.fail(ctx, a, tokenReason(err), err)
	}
	exp := now.Add(p.MaxSession)
	if te := time.Unix(c.Expires, 0); te.Before(exp) {
		exp = te
	}
	return s.succeed(ctx, a, &Session{Technician: c.Technician, Name: c.Name, Role: c.Role, Method: MethodToken,
		TokenID: c.ID, Remote: remote, Started: now, LastSeen: now, Expires: exp})
}

// tokenReason is the audit reason of a token refusal.
func tokenReason(err error) string {
	for _, r := range []struct {
		err    error
		reason string
	}{{ErrTokenMalformed, "malformed"}, {ErrTokenSignature, "signature"}, {ErrTokenExpired, "expired"},
		{ErrTokenNotYet, "notYetValid"}, {ErrTokenTooLong, "lifetimeTooLong"}, {ErrTokenWrongTerminal, "wrongTerminal"},
		{ErrTokenRevoked, "revoked"}, {ErrTokenRole, "role"}} {
		if errors.Is(err, r.err) {
			return r.reason
		}
	}
	return "invalid"
}

// LoginPassword signs the local administrator in (technician "admin", RoleService) when the
// policy accepts the admin password. A wrong password counts as a failure like a bad token.
func (s *Store) LoginPassword(ctx context.Context, password, remote string) (*Session, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	a := attempt{method: MethodPassword, technician: AdminTechnician, remote: remote}
	if err := s.checkLock(ctx, a); err != nil {
		return nil, err
	}
	p := s.policy()
	if !p.AdminPassword || s.o.Admin == nil {
		// Not a guess that was checked, so not counted.
		s.audit(ctx, audit.Event{Source: audit.SourceDiag, Actor: a.actor(), Action: "diag.login",
			Outcome: audit.OutcomeDenied, Fields: a.fields(map[string]any{"reason": "adminPasswordOff"})})
		return nil, ErrAdminPasswordOff
	}
	if password == "" || len(password) > maxPasswordLen {
		return nil, s.fail(ctx, a, "credentials", ErrBadCredentials)
	}
	if err := s.o.Admin(ctx, password); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// Whatever the operator table said (wrong, locked, factory password), the technician
		// hears only "bad credentials".
		return nil, s.fail(ctx, a, "credentials", ErrBadCredentials)
	}
	now := s.o.Now()
	return s.succeed(ctx, a, &Session{Technician: AdminTechnician, Name: "Administrator", Role: RoleService,
		Method: MethodPassword, Remote: remote, Started: now, LastSeen: now, Expires: now.Add(p.MaxSession)})
}

// Session returns the session whose cookie value is id, and marks it seen. A session past its
// idle timeout, its maximum length or its token's expiry, or whose token was revoked since (or
// whose method the policy no longer accepts), ends with ErrSessionExpired.
func (s *Store) Session(id string) (*Session, error) { return s.current(id, true) }

// Peek is Session for a request nobody made: the console's timed refreshes. It applies the
// same checks (and ends an expired session the same way) but leaves LastSeen alone, so a page
// left open and polling still reaches the idle timeout.
func (s *Store) Peek(id string) (*Session, error) { return s.current(id, false) }

// current is Session, touching LastSeen or not; an expiry found here is audited.
func (s *Store) current(id string, touch bool) (*Session, error) {
	sess, reason, err := s.lookup(id, touch)
	if reason != "" {
		s.audit(context.Background(), audit.Event{Source: audit.SourceDiag, Actor: sess.Technician,
			Action: "diag.sessionExpired", Fields: map[string]any{"reason": reason, "method": sess.Method,
				"remote": sess.Remote, "role": string(sess.Role)}})
		s.log.Info("diag session expired", "technician", sess.Technician, "reason", reason)
	}
	if err != nil {
		return nil, err
	}
	return sess, nil
}

// lookup finds and checks a session; an expired one is removed and returned with its reason.
func (s *Store) lookup(id string, touch bool) (*Session, string, error) {
	if id == "" || len(id) > 128 {
		return nil, "", ErrNoSession
	}
	p := s.policy()
	now := s.o.Now()
	k := hashID(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.sessions[k]
	if !ok {
		return nil, "", ErrNoSession
	}
	reason := ""
	switch {
	case now.Sub(st.LastSeen) >= p.IdleTimeout:
		reason = "idle"
	case !now.Before(st.Expires) || !now.Before(st.Started.Add(p.MaxSession)):
		reason = "maxSession"
	case st.TokenID != "" && p.Revoked[st.TokenID]:
		reason = "revoked"
	case st.Method == MethodPassword && !p.AdminPassword:
		reason = "adminPasswordOff"
	}
	out := *st
	out.ID = id
	if reason != "" {
		delete(s.sessions, k)
		return &out, reason, ErrSessionExpired
	}
	if touch {
		st.LastSeen = now
		out.LastSeen = now
	}
	return &out, "", nil
}

// Logout ends the session (nothing happens for an unknown one).
func (s *Store) Logout(ctx context.Context, id string) {
	if id == "" || len(id) > 128 {
		return
	}
	k := hashID(id)
	s.mu.Lock()
	st, ok := s.sessions[k]
	delete(s.sessions, k)
	s.mu.Unlock()
	if !ok {
		return
	}
	s.log.Info("diag logout", "technician", st.Technician)
	s.audit(ctx, audit.Event{Source: audit.SourceDiag, Actor: st.Technician, Action: "diag.logout",
		Fields: map[string]any{"method": st.Method, "remote": st.Remote}})
}

// Authorize says whether the session may run action under the current policy. A refusal is
// ErrForbidden and is audited as denied; the session must still be one the Store holds (its
// role is taken from the Store, not from the caller's copy).
func (s *Store) Authorize(ctx context.Context, sess *Session, action string) error {
	if sess == nil {
		return ErrNoSession
	}
	cur, err := s.current(sess.ID, false)
	if err != nil {
		return err
	}
	if s.policy().Allows(cur.Role, action) {
		return nil
	}
	s.audit(ctx, audit.Event{Source: audit.SourceDiag, Actor: cur.Technician, Action: "diag.forbidden",
		Outcome: audit.OutcomeDenied, Fields: map[string]any{"action": clip(action), "role": string(cur.Role),
			"remote": cur.Remote}})
	return fmt.Errorf("%w: %s may not run %s", ErrForbidden, cur.Role, clip(action))
}

// CheckCSRF compares presented with the session's CSRF token in constant time.
func (s *Store) CheckCSRF(sess *Session, presented string) error {
	if sess == nil || presented == "" {
		return ErrCSRF
	}
	s.mu.Lock()
	st, ok := s.sessions[hashID(sess.ID)]
	want := ""
	if ok {
		want = st.CSRF
	}
	s.mu.Unlock()
	if !ok || subtle.ConstantTimeCompare([]byte(want), []byte(presented)) != 1 {
		return ErrCSRF
	}
	return nil
}

func (s *Store) audit(ctx context.Context, e audit.Event) {
	if s.o.Audit == nil {
		return
	}
	if e.Actor == "" {
		e.Actor = "unknown"
	}
	if _, err := s.o.Audit.Append(context.WithoutCancel(ctx), e); err != nil {
		s.log.Error("diag audit append failed", "action", e.Action, "err", err)
	}
}

func hashID(id string) [32]byte { return sha256.Sum256([]byte(id)) }

func randomToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("auth: random: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}
