package termconfig

import (
	"os"
	"slices"
	"strings"
	"testing"
)

func TestSecurityViolations(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(p *DiagPolicy)
		want   []string
	}{
		{"all zero is the default", func(p *DiagPolicy) { *p = DiagPolicy{} }, nil},
		{"idle too short", func(p *DiagPolicy) { p.IdleTimeoutSec = 59 }, []string{"security.diag.idleTimeoutSec"}},
		{"idle too long", func(p *DiagPolicy) { p.IdleTimeoutSec = 86401; p.MaxSessionSec = 604800 },
			[]string{"security.diag.idleTimeoutSec"}},
		{"idle above max session", func(p *DiagPolicy) { p.IdleTimeoutSec = 3600; p.MaxSessionSec = 1800 },
			[]string{"security.diag.idleTimeoutSec"}},
		{"idle above the default max session", func(p *DiagPolicy) { p.IdleTimeoutSec = 28801; p.MaxSessionSec = 0 },
			[]string{"security.diag.idleTimeoutSec"}},
		{"max session", func(p *DiagPolicy) { p.MaxSessionSec = 299; p.IdleTimeoutSec = 60 },
			[]string{"security.diag.maxSessionSec"}},
		{"max failures", func(p *DiagPolicy) { p.MaxFailures = 21 }, []string{"security.diag.maxFailures"}},
		{"lockout", func(p *DiagPolicy) { p.LockoutSec = 29 }, []string{"security.diag.lockoutSec"}},
		{"token ttl", func(p *DiagPolicy) { p.TokenMaxTTLSec = 30*86400 + 1 }, []string{"security.diag.tokenMaxTtlSec"}},
		{"unknown role", func(p *DiagPolicy) { p.Permissions = map[string][]string{"admin": {"selftest"}} },
			[]string{"security.diag.permissions"}},
		{"actions", func(p *DiagPolicy) {
			p.Permissions = map[string][]string{"service": {"selftest", "reboot", "selftest"}, "read-only": {"*", "settle"}}
		}, []string{"security.diag.permissions.read-only[0]", "security.diag.permissions.service[1]",
			"security.diag.permissions.service[2]"}},
		{"empty list is allowed", func(p *DiagPolicy) { p.Permissions = map[string][]string{"read-only": {}} }, nil},
		{"revoked ids", func(p *DiagPolicy) { p.RevokedTokens = []string{"ok-1", "", "ok-1", "has space"} },
			[]string{"security.diag.revokedTokens[1]", "security.diag.revokedTokens[2]", "security.diag.revokedTokens[3]"}},
		{"too many revoked", func(p *DiagPolicy) {
			p.RevokedTokens = make([]string, maxRevokedTokens+1)
		}, []string{"security.diag.revokedTokens"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := example(t)
			tt.mutate(&d.Security.Diag)
			if tt.want == nil {
				if err := d.Validate(); err != nil {
					t.Fatal(err)
				}
				return
			}
			got := violationPaths(t, d.Validate())
			want := slices.Sorted(slices.Values(tt.want))
			if !slices.Equal(got, want) {
				t.Fatalf("violations at\n  %q\nwant\n  %q\n(%v)", got, want, d.Validate())
			}
		})
	}
}

func TestDiagPolicyEffective(t *testing.T) {
	e := DiagPolicy{}.Effective()
	if e.IdleTimeoutSec != 900 || e.MaxSessionSec != 28800 || e.MaxFailures != 5 || e.LockoutSec != 900 ||
		e.TokenMaxTTLSec != 7*86400 || e.NoAdminPassword {
		t.Fatalf("defaults %+v", e)
	}
	if !slices.Equal(e.Permissions[DiagRoleService], []string{"*"}) || len(e.Permissions[DiagRoleReadOnly]) != 0 {
		t.Fatalf("default permissions %q", e.Permissions)
	}
	set := DiagPolicy{IdleTimeoutSec: 61, MaxSessionSec: 301, MaxFailures: 2, LockoutSec: 31, TokenMaxTTLSec: 301,
		Permissions: map[string][]string{"read-only": {"selftest"}}, RevokedTokens: []string{"a"}}
	got := set.Effective()
	if got.IdleTimeoutSec != 61 || got.MaxSessionSec != 301 || got.MaxFailures != 2 || got.LockoutSec != 31 ||
		got.TokenMaxTTLSec != 301 || len(got.Permissions) != 1 {
		t.Fatalf("set values changed: %+v", got)
	}
	// A copy: editing the result leaves the document alone.
	got.Permissions["read-only"][0] = "settle"
	got.RevokedTokens[0] = "b"
	if set.Permissions["read-only"][0] != "selftest" || set.RevokedTokens[0] != "a" {
		t.Fatal("Effective shares lists with the document")
	}
}

func TestSecurityRoundTripsAndClones(t *testing.T) {
	d := example(t)
	if len(d.Security.Diag.Permissions) == 0 || len(d.Security.Diag.RevokedTokens) == 0 {
		t.Fatal("the example has no security section to check")
	}
	back, err := Decode(mustEncode(t, d))
	if err != nil {
		t.Fatal(err)
	}
	sameDoc(t, back, d)
	c := d.Clone()
	c.Security.Diag.Permissions["read-only"][0] = "settle"
	c.Security.Diag.Permissions["service"] = nil
	if d.Security.Diag.Permissions["read-only"][0] != "selftest" || d.Security.Diag.Permissions["service"] == nil {
		t.Fatal("Clone shares the permission table")
	}
	// A document without the section encodes without it: documents from before it are unchanged.
	d.Security = SecurityPolicy{}
	if strings.Contains(string(mustEncode(t, d)), "security") {
		t.Fatal("an empty security section is encoded")
	}
	if strings.Contains(string(mustEncode(t, Default())), "security") {
		t.Fatal("the factory document has a security section")
	}
}

func TestDocsListEveryDiagAction(t *testing.T) {
	raw, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(raw), "## `security`")
	if !ok {
		t.Fatal("no security section")
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	for _, a := range DiagActions() {
		if !strings.Contains(sec, "`"+a+"`") {
			t.Errorf("action %s is not listed in the security section", a)
		}
	}
	if !ValidTokenID("tok-2031-0042") || ValidTokenID("") || ValidTokenID(strings.Repeat("a", 65)) {
		t.Fatal("ValidTokenID")
	}
}
