package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/posagent/posagent/agent/diag/auth"
	"github.com/posagent/posagent/internal/tmsclient"
)

const (
	defaultDiagAddr = "127.0.0.1:8091" // the agent's default [diag] listen
	techTokenFile   = "technician.token"
	techTokenTTL    = 8 * time.Hour // one working day, as a TMS would issue it
)

// issueTechToken writes a technician token for the demo terminal, signed by the demo's TMS
// command key as the TMS would issue it before a visit (tmsctl tech token), so the console
// and `posagent diag` can be tried at once. A new one is made on every start: tokens expire.
func issueTechToken(dir string, key tmsclient.SignKey, now time.Time) (string, error) {
	tok, err := auth.IssueToken(key.Key, key.ID, auth.Claims{
		ID: fmt.Sprintf("demo-%d", now.Unix()), Technician: "demo-tech", Name: "Demo technician",
		Role: auth.RoleService, Terminals: []string{deviceID},
		IssuedAt: now.Unix(), Expires: now.Add(techTokenTTL).Unix(),
	})
	if err != nil {
		return "", fmt.Errorf("technician token: %w", err)
	}
	path := filepath.Join(dir, techTokenFile)
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("technician token: %w", err)
	}
	return path, nil
}
