package operator

import (
	"context"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// manager is the role that manages accounts of role r: the supervisor manages operators, the
// administrator manages supervisors; nobody manages the administrator.
func manager(r Role) Role {
	switch r {
	case RoleOperator:
		return RoleSupervisor
	case RoleSupervisor:
		return RoleAdmin
	}
	return ""
}

func validName(n string) bool {
	if len(n) > MaxNameLen || !utf8.ValidString(n) {
		return false
	}
	for _, r := range n {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// Add creates an account: an operator (by a supervisor) or a supervisor (by the
// administrator), with an initial password its owner must change at the first sign-on. Codes
// are 2 or 3 digits; "99" is the administrator's and "00" a supervisor's only. Operators are
// limited to max(cashierProfile.maxOperators, MinOperators), supervisors to MaxSupervisors.
func (s *Store) Add(ctx context.Context, by Session, op Operator, password string) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	me, err := s.session(ctx, by, false)
	if err != nil {
		return err
	}
	if op.Role != RoleOperator && op.Role != RoleSupervisor {
		return fmt.Errorf("%w: role %q", ErrInvalid, op.Role)
	}
	if me.Role != manager(op.Role) {
		return fmt.Errorf("%w: a %s cannot add a %s", ErrForbidden, me.Role, op.Role)
	}
	if !validCode(op.Code) {
		return fmt.Errorf("%w: a code is 2 or 3 digits", ErrInvalid)
	}
	if !validName(op.Name) {
		return fmt.Errorf("%w: a name is up to %d printable bytes", ErrInvalid, MaxNameLen)
	}
	if (op.Code == AdminCode && op.Role != RoleAdmin) || (op.Code == SupervisorCode && op.Role != RoleSupervisor) {
		return fmt.Errorf("%w: code %s is reserved", ErrInvalid, op.Code)
	}
	p := s.Profile()
	s.mu.Lock()
	var clash string
	count := 0
	for _, r := range s.table {
		if wireCode(r.Code) == wireCode(op.Code) {
			clash = r.Code
		}
		if r.Role == op.Role {
			count++
		}
	}
	s.mu.Unlock()
	if clash != "" {
		return fmt.Errorf("%w: %s", ErrExists, clash)
	}
	limit := int(p.MaxOperators)
	if op.Role == RoleSupervisor {
		limit = MaxSupervisors
	}
	if count >= limit {
		return fmt.Errorf("%w: %d %ss", ErrCapacity, limit, op.Role)
	}
	if err := checkPassword(password, int(p.PasswordMinLength)); err != nil {
		return err
	}
	h, err := newSecret(password, s.iter)
	if err != nil {
		return err
	}
	now := s.now().Unix()
	rec := &record{Code: op.Code, Role: op.Role, Name: op.Name, Disabled: op.Disabled, MustChange: true,
		Created: now, Changed: now, Hash: h}
	if err := s.put(ctx, []*record{rec}, nil, false); err != nil {
		return err
	}
	s.log.Info("operator added", "code", rec.Code, "role", rec.Role, "by", me.Code)
	s.emit(ctx, "operator.added", map[string]any{"code": rec.Code, "role": string(rec.Role), "by": me.Code})
	return nil
}

// target loads the account code for a change by me: it must exist, be managed by me's role,
// and not be signed on when signedOnOK is false.
func (s *Store) target(me Session, code string, signedOnOK bool) (*record, error) {
	rec := s.get(code)
	if rec == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, code)
	}
	if me.Role != manager(rec.Role) {
		return nil, fmt.Errorf("%w: a %s cannot change a %s", ErrForbidden, me.Role, rec.Role)
	}
	if !signedOnOK {
		if cur, ok := s.Current(); ok && cur.Code == code {
			return nil, errSignedOn
		}
	}
	return rec, nil
}

// supervisors counts the supervisor accounts.
func (s *Store) supervisors() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.table {
		if r.Role == RoleSupervisor {
			n++
		}
	}
	return n
}

// Remove deletes an account: an operator (by a supervisor) or a supervisor other than the
// last one (by the administrator). The account signed on cannot be removed.
func (s *Store) Remove(ctx context.Context, by Session, code string) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	me, err := s.session(ctx, by, false)
	if err != nil {
		return err
	}
	rec, err := s.target(me, code, false)
	if err != nil {
		return err
	}
	if rec.Role == RoleSupervisor && s.supervisors() <= 1 {
		return fmt.Errorf("%w: the last supervisor", ErrForbidden)
	}
	if err := s.put(ctx, nil, []string{code}, false); err != nil {
		return err
	}
	s.log.Info("operator removed", "code", code, "role", rec.Role, "by", me.Code)
	s.emit(ctx, "operator.removed", map[string]any{"code": code, "role": string(rec.Role), "by": me.Code})
	return nil
}

// SetDisabled disables or enables an account (same rights as Remove). A disabled account
// cannot sign on, authorise or verify; the account signed on cannot be disabled.
func (s *Store) SetDisabled(ctx context.Context, by Session, code string, disabled bool) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	me, err := s.session(ctx, by, false)
	if err != nil {
		return err
	}
	rec, err := s.target(me, code, !disabled)
	if err != nil {
		return err
	}
	if rec.Disabled == disabled {
		return nil
	}
	rec.Disabled, rec.Changed = disabled, s.now().Unix()
	if err := s.put(ctx, []*record{rec}, nil, false); err != nil {
		return err
	}
	action := "operator.enabled"
	if disabled {
		action = "operator.disabled"
	}
	s.log.Info(action, "code", code, "by", me.Code)
	s.emit(ctx, action, map[string]any{"code": code, "by": me.Code})
	return nil
}

// SetPassword changes a password. Anyone changes their own with the old one (a session that
// must change its password may do only this); the new one must differ from the old. A
// supervisor resets an operator's and the administrator a supervisor's without the old one:
// the reset clears failures and lock-out, and the owner must change it at the next sign-on.
// The administrator's password is changed only by the administrator.
func (s *Store) SetPassword(ctx context.Context, by Session, code, oldOrEmpty, newPassword string) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	me, err := s.session(ctx, by, code == by.Code)
	if err != nil {
		return err
	}
	minLen := int(s.Profile().PasswordMinLength)
	own := code == me.Code
	var rec *record
	if own {
		if err := checkPassword(newPassword, minLen); err != nil {
			return err
		}
		if rec, err = s.check(ctx, code, oldOrEmpty, "passwordChange"); err != nil {
			return err
		}
		if newPassword == oldOrEmpty {
			return fmt.Errorf("%w: the new password must differ from the old", ErrWeakPassword)
		}
	} else {
		if rec, err = s.target(me, code, true); err != nil {
			return err
		}
		if err := checkPassword(newPassword, minLen); err != nil {
			return err
		}
	}
	h, err := newSecret(newPassword, s.iter)
	if err != nil {
		return err
	}
	rec.Hash, rec.Changed = h, s.now().Unix()
	rec.MustChange = !own
	if !own {
		rec.Failures, rec.LockedUntil = 0, 0
	}
	if err := s.put(ctx, []*record{rec}, nil, false); err != nil {
		return err
	}
	if own {
		s.mu.Lock()
		if s.sess != nil && s.sess.ID == me.ID {
			s.sess.MustChange = false
		}
		s.mu.Unlock()
		s.log.Info("operator password changed", "code", code)
		s.emit(ctx, "operator.passwordChanged", map[string]any{"code": code})
		return nil
	}
	s.log.Info("operator password reset", "code", code, "by", me.Code)
	s.emit(ctx, "operator.passwordReset", map[string]any{"code": code, "by": me.Code})
	return nil
}
