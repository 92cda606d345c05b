package operator

import (
	"context"
	"fmt"
	"time"

	"github.com/posagent/posagent/agent/termconfig"
)

// check verifies code and password, counting failures durably: the failure (and the lock-out
// it may start) is committed before the answer. The caller holds wmu. On success the failures
// are cleared and a hash of an older iteration count is replaced. what names the check in the
// audit events ("signOn", "approval", "admin", "verify", "passwordChange").
func (s *Store) check(ctx context.Context, code, password, what string) (*record, error) {
	now := s.now()
	rec := s.get(code)
	if rec == nil || !validCode(code) {
		s.dummy.matches(password) // same cost as a real check: no timing hint
		logged := code
		if !validCode(code) {
			logged = "?" // never echo what was typed: it may be a password in the wrong field
		}
		s.emit(ctx, "operator.authFailed", map[string]any{"code": logged, "check": what, "reason": "credentials"})
		return nil, ErrBadCredentials
	}
	dirty := false
	if rec.LockedUntil != 0 && now.Unix() >= rec.LockedUntil {
		rec.LockedUntil, rec.Failures, dirty = 0, 0, true // the lock-out has run out
	}
	if rec.LockedUntil != 0 {
		s.emit(ctx, "operator.authFailed", map[string]any{"code": code, "check": what, "reason": "lockedOut",
			"lockedUntil": rec.LockedUntil})
		return nil, fmt.Errorf("%w until %s", ErrLockedOut, time.Unix(rec.LockedUntil, 0).UTC().Format(time.RFC3339))
	}
	if !rec.Hash.matches(password) {
		rec.Failures++
		limit := int(s.Profile().MaxPasswordAttempts)
		locked := rec.Failures >= limit
		if locked {
			rec.LockedUntil = now.Add(s.lockout).Unix()
		}
		if err := s.put(ctx, []*record{rec}, nil, false); err != nil {
			return nil, err
		}
		s.emit(ctx, "operator.authFailed", map[string]any{"code": code, "check": what, "reason": "credentials",
			"failures": rec.Failures})
		if locked {
			s.log.Warn("operator locked out", "code", code, "failures", rec.Failures, "for", s.lockout)
			s.emit(ctx, "operator.lockedOut", map[string]any{"code": code, "failures": rec.Failures,
				"lockedUntil": rec.LockedUntil})
			return nil, fmt.Errorf("%w until %s", ErrLockedOut, time.Unix(rec.LockedUntil, 0).UTC().Format(time.RFC3339))
		}
		return nil, ErrBadCredentials
	}
	if rec.Failures != 0 {
		rec.Failures, dirty = 0, true
	}
	if rec.Hash.Iter < s.iter {
		h, err := newSecret(password, s.iter)
		if err != nil {
			return nil, err
		}
		rec.Hash, dirty = h, true
		s.log.Info("operator password re-hashed", "code", code, "iterations", s.iter)
	}
	if dirty {
		if err := s.put(ctx, []*record{rec}, nil, false); err != nil {
			return nil, err
		}
	}
	if rec.Disabled {
		s.emit(ctx, "operator.authFailed", map[string]any{"code": code, "check": what, "reason": "disabled"})
		return nil, fmt.Errorf("%w: account disabled", ErrForbidden)
	}
	return rec, nil
}

// SignOn signs a person on at the terminal with code and password; a previous session ends.
// Errors: ErrBadCredentials (wrong code or password, with no hint which), ErrLockedOut,
// ErrForbidden (account disabled). An account whose password must be changed gets a session
// together with ErrMustChange: that session may only change its own password (SetPassword).
func (s *Store) SignOn(ctx context.Context, code, password string) (Session, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	rec, err := s.check(ctx, code, password, "signOn")
	if err != nil {
		return Session{}, err
	}
	now := s.now()
	sess := Session{Code: rec.Code, Role: rec.Role, Since: now.Unix(), MustChange: rec.MustChange, ID: randomID()}
	s.mu.Lock()
	prev := s.sess
	s.sess, s.lastSeen = &sess, now
	s.mu.Unlock()
	if prev != nil {
		s.emit(ctx, "operator.signOff", map[string]any{"code": prev.Code, "reason": "replaced"})
	}
	s.log.Info("operator signed on", "code", rec.Code, "role", rec.Role)
	s.emit(ctx, "operator.signOn", map[string]any{"code": rec.Code, "role": string(rec.Role),
		"mustChange": rec.MustChange})
	if rec.MustChange {
		return sess, ErrMustChange
	}
	return sess, nil
}

// SignOff ends the session if it is the current one; signing off a session already ended is
// not an error.
func (s *Store) SignOff(ctx context.Context, sess Session) error {
	s.mu.Lock()
	cur := s.sess
	match := cur != nil && cur.ID == sess.ID
	if match {
		s.sess = nil
	}
	s.mu.Unlock()
	if match {
		s.log.Info("operator signed off", "code", cur.Code)
		s.emit(ctx, "operator.signOff", map[string]any{"code": cur.Code, "reason": "signOff"})
	}
	return nil
}

// Current returns the session at the terminal, if any. A session idle for longer than
// cashierProfile.sessionTimeoutSec (0: never) has ended.
func (s *Store) Current() (Session, bool) {
	s.mu.Lock()
	cur, expired := s.currentLocked()
	s.mu.Unlock()
	if expired != nil {
		s.log.Info("operator session expired", "code", expired.Code)
		s.emit(context.Background(), "operator.signOff", map[string]any{"code": expired.Code, "reason": "timeout"})
	}
	if cur == nil {
		return Session{}, false
	}
	return *cur, true
}

// currentLocked returns the live session, ending it when it has timed out (returned as
// expired). The caller holds mu.
func (s *Store) currentLocked() (cur, expired *Session) {
	if s.sess == nil {
		return nil, nil
	}
	if t := s.policy().SessionTimeoutSec; t > 0 && s.now().Sub(s.lastSeen) > time.Duration(t)*time.Second {
		expired, s.sess = s.sess, nil
		return nil, expired
	}
	return s.sess, nil
}

// Touch records activity of the session, restarting its inactivity timeout; a session that
// is not current (or has expired) is left alone.
func (s *Store) Touch(sess Session) {
	s.mu.Lock()
	cur, expired := s.currentLocked()
	if cur != nil && cur.ID == sess.ID {
		s.lastSeen = s.now()
	}
	s.mu.Unlock()
	if expired != nil {
		s.emit(context.Background(), "operator.signOff", map[string]any{"code": expired.Code, "reason": "timeout"})
	}
}

// session checks that by is the current session and returns the current copy (whose
// MustChange is authoritative). mustChangeOK allows a session that must change its password.
func (s *Store) session(ctx context.Context, by Session, mustChangeOK bool) (Session, error) {
	s.mu.Lock()
	cur, expired := s.currentLocked()
	var out Session
	ok := cur != nil && by.ID != "" && cur.ID == by.ID
	if ok {
		out = *cur
		s.lastSeen = s.now()
	}
	s.mu.Unlock()
	if expired != nil {
		s.emit(ctx, "operator.signOff", map[string]any{"code": expired.Code, "reason": "timeout"})
	}
	if !ok {
		return Session{}, ErrNoSession
	}
	if out.MustChange && !mustChangeOK {
		return Session{}, ErrMustChange
	}
	return out, nil
}

// Verify checks an account's password without signing it on, counting failures like
// SignOn: for unlocking a locked terminal (seed 004 §6.1.4.4) and other confirmations.
// An account that must change its password gets ErrMustChange.
func (s *Store) Verify(ctx context.Context, code, password string) (Operator, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	rec, err := s.check(ctx, code, password, "verify")
	if err != nil {
		return Operator{}, err
	}
	if rec.MustChange {
		return Operator{}, ErrMustChange
	}
	s.emit(ctx, "operator.verified", map[string]any{"code": rec.Code, "role": string(rec.Role)})
	return rec.public(), nil
}

// Authorise is a supervisor's authorisation of op (a refund, a void, …): the supervisor's
// code and password, checked and counted like SignOn. Another role's correct password gets
// ErrForbidden; a supervisor still on the factory password gets ErrMustChange. The approval
// is reported to the audit log and returned for the transaction record.
func (s *Store) Authorise(ctx context.Context, op termconfig.Operation, code, password string) (Approval, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	rec, err := s.check(ctx, code, password, "approval")
	if err != nil {
		return Approval{}, err
	}
	if rec.Role != RoleSupervisor {
		s.emit(ctx, "operator.authFailed", map[string]any{"code": code, "check": "approval", "reason": "role"})
		return Approval{}, fmt.Errorf("%w: only a supervisor authorises %s", ErrForbidden, op)
	}
	if rec.MustChange {
		return Approval{}, ErrMustChange
	}
	a := Approval{ID: randomID(), Op: op, Supervisor: rec.Code, At: s.now().Unix()}
	if cur, ok := s.Current(); ok {
		a.Operator = cur.Code
		s.Touch(cur)
	}
	s.log.Info("supervisor approval", "op", op, "supervisor", a.Supervisor, "operator", a.Operator)
	s.emit(ctx, "operator.approved", map[string]any{"id": a.ID, "op": string(op), "supervisor": a.Supervisor,
		"operator": a.Operator})
	return a, nil
}

// CheckAdmin checks the administrator's password (test-mode switches and other
// administration), counted like SignOn. The factory password is refused with ErrMustChange.
func (s *Store) CheckAdmin(ctx context.Context, password string) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	rec, err := s.check(ctx, AdminCode, password, "admin")
	if err != nil {
		return err
	}
	if rec.Role != RoleAdmin {
		return ErrBadCredentials
	}
	if rec.MustChange {
		return ErrMustChange
	}
	s.emit(ctx, "operator.adminChecked", map[string]any{"code": rec.Code})
	return nil
}
