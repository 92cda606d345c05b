package termconfig

import (
	"regexp"
	"slices"
	"strings"
)

// SecurityPolicy holds the security settings of seed 000: today those of the technician
// diagnostics port.
type SecurityPolicy struct {
	Diag DiagPolicy `cbor:"diag,omitempty" json:"diag,omitzero"`
}

// DiagPolicy governs technician sessions on the diagnostics port (package agent/diag/auth).
// Every number left at 0 takes its default (the Default* constants), because a document
// written before this section existed must keep a usable, safe port: "absent means zero" for
// the document, and zero means the default here.
type DiagPolicy struct {
	IdleTimeoutSec  uint32 `cbor:"idleTimeoutSec,omitempty" json:"idleTimeoutSec,omitempty"`
	MaxSessionSec   uint32 `cbor:"maxSessionSec,omitempty" json:"maxSessionSec,omitempty"`
	MaxFailures     uint8  `cbor:"maxFailures,omitempty" json:"maxFailures,omitempty"`
	LockoutSec      uint32 `cbor:"lockoutSec,omitempty" json:"lockoutSec,omitempty"`
	TokenMaxTTLSec  uint32 `cbor:"tokenMaxTtlSec,omitempty" json:"tokenMaxTtlSec,omitempty"`
	NoAdminPassword bool   `cbor:"noAdminPassword,omitempty" json:"noAdminPassword,omitempty"`
	// Permissions maps a role to the actions it may run ("*": all). Absent: the default table
	// (service → all, read-only → none); present: the whole table, a role not named in it may
	// run nothing.
	Permissions map[string][]string `cbor:"permissions,omitempty" json:"permissions,omitempty"`
	// RevokedTokens are technician token ids (jti) refused from now on, even before they expire.
	RevokedTokens []string `cbor:"revokedTokens,omitempty" json:"revokedTokens,omitempty"`
}

// Defaults of the diagnostics policy, taken when a field is 0.
const (
	DefaultDiagIdleTimeoutSec = 900       // 15 min
	DefaultDiagMaxSessionSec  = 28800     // 8 h
	DefaultDiagMaxFailures    = 5         //
	DefaultDiagLockoutSec     = 900       // 15 min
	DefaultDiagTokenMaxTTLSec = 7 * 86400 // 7 days
)

// Technician roles on the diagnostics port (agent/diag/auth defines the same names as its
// Role type; this package cannot import it).
const (
	DiagRoleReadOnly = "read-only"
	DiagRoleService  = "service"
)

// DiagAllActions in a permission list allows every action.
const DiagAllActions = "*"

// diagActions are the action names of agent/diag (diag.Actions). This package must not import
// agent/diag, so the list is copied; a test in agent/diag/auth keeps the two equal.
var diagActions = []string{"selftest", "test.print", "test.card", "test.pinpad", "test.led", "test.buzzer",
	"test.drawer", "echo.tms", "echo.host", "ecr.approve", "ecr.reject", "terminal.lock", "terminal.unlock",
	"settle", "params.set", "bundle", "audit.verify"}

// DiagActions lists the diagnostics actions a permission list may name.
func DiagActions() []string { return slices.Clone(diagActions) }

// DiagRoles lists the technician roles.
func DiagRoles() []string { return []string{DiagRoleReadOnly, DiagRoleService} }

// Effective returns p with every zero number replaced by its default and, when no permission
// table is given, the default one. The result is a copy: p is not changed.
func (p DiagPolicy) Effective() DiagPolicy {
	def := func(v, d uint32) uint32 {
		if v == 0 {
			return d
		}
		return v
	}
	p.IdleTimeoutSec = def(p.IdleTimeoutSec, DefaultDiagIdleTimeoutSec)
	p.MaxSessionSec = def(p.MaxSessionSec, DefaultDiagMaxSessionSec)
	p.LockoutSec = def(p.LockoutSec, DefaultDiagLockoutSec)
	p.TokenMaxTTLSec = def(p.TokenMaxTTLSec, DefaultDiagTokenMaxTTLSec)
	if p.MaxFailures == 0 {
		p.MaxFailures = DefaultDiagMaxFailures
	}
	if p.Permissions == nil {
		p.Permissions = map[string][]string{DiagRoleService: {DiagAllActions}, DiagRoleReadOnly: {}}
	} else {
		perms := make(map[string][]string, len(p.Permissions))
		for r, a := range p.Permissions {
			perms[r] = slices.Clone(a)
		}
		p.Permissions = perms
	}
	p.RevokedTokens = slices.Clone(p.RevokedTokens)
	return p
}

// maxRevokedTokens bounds the revocation list: a token lives at most tokenMaxTtlSec, so the TMS
// can drop an id once the token has expired; 256 ids of 64 bytes fit well inside a document.
const maxRevokedTokens = 256

// tokenIDRe is the form of a technician token id (agent/diag/auth refuses other ids, so every
// token can be revoked by name).
var tokenIDRe = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)

// ValidTokenID reports whether id is a well-formed technician token id.
func ValidTokenID(id string) bool { return tokenIDRe.MatchString(id) }

func (c *checker) security(s SecurityPolicy) {
	const path = "security.diag."
	p := s.Diag
	opt := func(name string, v, lo, hi uint64, def int) {
		if v != 0 && (v < lo || v > hi) {
			c.add(path+name, "must be 0 (default %d) or %d..%d, got %d", def, lo, hi, v)
		}
	}
	opt("idleTimeoutSec", uint64(p.IdleTimeoutSec), 60, 86400, DefaultDiagIdleTimeoutSec)
	opt("maxSessionSec", uint64(p.MaxSessionSec), 300, 7*86400, DefaultDiagMaxSessionSec)
	opt("maxFailures", uint64(p.MaxFailures), 1, 20, DefaultDiagMaxFailures)
	opt("lockoutSec", uint64(p.LockoutSec), 30, 86400, DefaultDiagLockoutSec)
	opt("tokenMaxTtlSec", uint64(p.TokenMaxTTLSec), 300, 30*86400, DefaultDiagTokenMaxTTLSec)
	eff := p.Effective()
	if eff.IdleTimeoutSec > eff.MaxSessionSec {
		c.add(path+"idleTimeoutSec", "must not exceed maxSessionSec (%d), got %d", eff.MaxSessionSec, eff.IdleTimeoutSec)
	}

	roles := make([]string, 0, len(p.Permissions))
	for r := range p.Permissions {
		roles = append(roles, r)
	}
	slices.Sort(roles) // violations in a stable order
	for _, r := range roles {
		rp := path + "permissions." + r
		if !slices.Contains(DiagRoles(), r) {
			c.add(path+"permissions", "unknown role %q (%s)", clip(r), strings.Join(DiagRoles(), ", "))
			continue
		}
		acts := p.Permissions[r]
		if !c.list(rp, len(acts), len(diagActions)+1) {
			continue
		}
		seen := map[string]bool{}
		for i, a := range acts {
			switch {
			case a != DiagAllActions && !slices.Contains(diagActions, a):
				c.add(at(rp, i), "unknown action %q", clip(a))
			case seen[a]:
				c.add(at(rp, i), "duplicate %q", a)
			case a == DiagAllActions && len(acts) > 1:
				c.add(at(rp, i), "%q allows every action and must be alone", DiagAllActions)
			}
			seen[a] = true
		}
	}

	if c.list(path+"revokedTokens", len(p.RevokedTokens), maxRevokedTokens) {
		seen := map[string]bool{}
		for i, id := range p.RevokedTokens {
			switch {
			case !ValidTokenID(id):
				c.add(at(path+"revokedTokens", i), "must be 1..64 of [A-Za-z0-9._:-], got %q", clip(id))
			case seen[id]:
				c.add(at(path+"revokedTokens", i), "duplicate %q", id)
			}
			seen[id] = true
		}
	}
}

// clip keeps a hostile value from filling a violation message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
