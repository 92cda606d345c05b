package auth

import (
	"slices"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/termconfig"
)

func TestPolicyFromDefaults(t *testing.T) {
	p := PolicyFrom(termconfig.DiagPolicy{})
	if p.IdleTimeout != 15*time.Minute || p.MaxSession != 8*time.Hour || p.MaxFailures != 5 ||
		p.Lockout != 15*time.Minute || p.TokenMaxTTL != 7*24*time.Hour || !p.AdminPassword {
		t.Fatalf("defaults %+v", p)
	}
	for _, a := range termconfig.DiagActions() {
		if !p.Allows(RoleService, a) {
			t.Errorf("service may not %s by default", a)
		}
		if p.Allows(RoleReadOnly, a) {
			t.Errorf("read-only may %s by default", a)
		}
	}
	// The zero Policy is the default one, so a forgotten field never means "no limit".
	var zero Policy
	if !zero.Allows(RoleService, "selftest") || zero.Allows(RoleReadOnly, "selftest") {
		t.Fatal("zero Policy does not act as the default")
	}
	if got := zero.withDefaults(); got.IdleTimeout != p.IdleTimeout || got.MaxFailures != p.MaxFailures {
		t.Fatalf("zero Policy with defaults %+v", got)
	}
}

func TestPolicyFromConfigured(t *testing.T) {
	p := PolicyFrom(termconfig.DiagPolicy{IdleTimeoutSec: 120, MaxSessionSec: 3600, MaxFailures: 2, LockoutSec: 60,
		TokenMaxTTLSec: 86400, NoAdminPassword: true,
		Permissions:   map[string][]string{"read-only": {"selftest", "echo.tms"}},
		RevokedTokens: []string{"t-9"}})
	if p.IdleTimeout != 2*time.Minute || p.MaxSession != time.Hour || p.MaxFailures != 2 ||
		p.Lockout != time.Minute || p.TokenMaxTTL != 24*time.Hour || p.AdminPassword || !p.Revoked["t-9"] {
		t.Fatalf("policy %+v", p)
	}
	// A table given is the whole table: service, not named, may run nothing.
	if p.Allows(RoleService, "selftest") {
		t.Fatal("service allowed although the table does not name it")
	}
	if !p.Allows(RoleReadOnly, "selftest") || !p.Allows(RoleReadOnly, "echo.tms") || p.Allows(RoleReadOnly, "settle") {
		t.Fatal("read-only permissions not as configured")
	}
	if p.Allows("god", "selftest") || p.Allows(RoleReadOnly, "") {
		t.Fatal("unknown role or empty action allowed")
	}
	all := termconfig.DiagActions()
	if got := p.Actions(RoleReadOnly, all); !slices.Equal(got, []string{"selftest", "echo.tms"}) {
		t.Fatalf("Actions(read-only) = %q", got)
	}
	if got := DefaultPolicy().Actions(RoleReadOnly, all); got == nil || len(got) != 0 {
		t.Fatalf("default Actions(read-only) = %#v, want an empty list", got)
	}
}
