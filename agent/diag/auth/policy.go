package auth

import (
	"slices"
	"time"

	"github.com/posagent/posagent/agent/termconfig"
)

// Policy is the diagnostics security policy in effect, from the terminal configuration's
// security.diag section. A zero field takes its default (withDefaults), so a zero Policy is
// the default policy.
type Policy struct {
	IdleTimeout, MaxSession, Lockout, TokenMaxTTL time.Duration
	MaxFailures                                   int
	AdminPassword                                 bool              // the local admin password may sign in
	Permissions                                   map[Role][]string // role → actions; "*" = all
	Revoked                                       map[string]bool   // token ids (jti)
}

// PolicyFrom converts the configuration's section, defaults applied.
func PolicyFrom(d termconfig.DiagPolicy) Policy {
	d = d.Effective()
	p := Policy{
		IdleTimeout:   time.Duration(d.IdleTimeoutSec) * time.Second,
		MaxSession:    time.Duration(d.MaxSessionSec) * time.Second,
		Lockout:       time.Duration(d.LockoutSec) * time.Second,
		TokenMaxTTL:   time.Duration(d.TokenMaxTTLSec) * time.Second,
		MaxFailures:   int(d.MaxFailures),
		AdminPassword: !d.NoAdminPassword,
		Permissions:   make(map[Role][]string, len(d.Permissions)),
		Revoked:       make(map[string]bool, len(d.RevokedTokens)),
	}
	for r, acts := range d.Permissions {
		p.Permissions[Role(r)] = acts
	}
	for _, id := range d.RevokedTokens {
		p.Revoked[id] = true
	}
	return p
}

// DefaultPolicy is the policy of a configuration without a security section.
func DefaultPolicy() Policy { return PolicyFrom(termconfig.DiagPolicy{}) }

// withDefaults fills zero durations and counts (a Policy built by hand in a test or by a
// caller that forgot a field must not mean "no idle timeout" or "lock at once"). A nil
// permission table is the default one; AdminPassword and Revoked have no default to take.
func (p Policy) withDefaults() Policy {
	d := DefaultPolicy()
	if p.IdleTimeout <= 0 {
		p.IdleTimeout = d.IdleTimeout
	}
	if p.MaxSession <= 0 {
		p.MaxSession = d.MaxSession
	}
	if p.Lockout <= 0 {
		p.Lockout = d.Lockout
	}
	if p.TokenMaxTTL <= 0 {
		p.TokenMaxTTL = d.TokenMaxTTL
	}
	if p.MaxFailures <= 0 {
		p.MaxFailures = d.MaxFailures
	}
	if p.Permissions == nil {
		p.Permissions = d.Permissions
	}
	return p
}

// Allows reports whether role r may run action. Unknown roles may run nothing.
func (p Policy) Allows(r Role, action string) bool {
	if !r.Known() || action == "" {
		return false
	}
	acts := p.withDefaults().Permissions[r]
	return hasAll(acts) || slices.Contains(acts, action)
}

// Actions lists the actions of all that role r may run, in the order of all (the console's).
func (p Policy) Actions(r Role, all []string) []string {
	out := []string{}
	for _, a := range all {
		if p.Allows(r, a) {
			out = append(out, a)
		}
	}
	return out
}
