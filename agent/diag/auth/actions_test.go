package auth_test

import (
	"slices"
	"testing"

	"github.com/posagent/posagent/agent/diag"
	"github.com/posagent/posagent/agent/diag/auth"
	"github.com/posagent/posagent/agent/termconfig"
)

// termconfig cannot import agent/diag, so it validates permissions against its own copy of the
// action names; the two lists must stay the same.
func TestTermconfigKnowsEveryDiagAction(t *testing.T) {
	if got := termconfig.DiagActions(); !slices.Equal(got, diag.Actions) {
		t.Fatalf("termconfig.DiagActions() = %q\ndiag.Actions           = %q", got, diag.Actions)
	}
	if got := termconfig.DiagRoles(); !slices.Equal(got, []string{string(auth.RoleReadOnly), string(auth.RoleService)}) {
		t.Fatalf("termconfig.DiagRoles() = %q", got)
	}
	// Every action is allowed to service and to no one else by default.
	p := auth.DefaultPolicy()
	if got := p.Actions(auth.RoleService, diag.Actions); !slices.Equal(got, diag.Actions) {
		t.Fatalf("service may run %q by default", got)
	}
}
