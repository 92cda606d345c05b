package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/posagent/posagent/agent/diag/auth"
	"github.com/posagent/posagent/agent/termconfig"
	"github.com/posagent/posagent/internal/tmsclient"
)

// maxTechTTL is the longest lifetime any terminal accepts (security.diag.tokenMaxTtlSec at
// most 30 days); a longer token would be refused everywhere.
const maxTechTTL = 30 * 24 * time.Hour

// runTech dispatches "tmsctl tech token".
func runTech(ctx context.Context, env Env, args []string) int {
	const help = `Usage: tmsctl tech <token> [flags]

  token   issue a technician token for the diagnostics port, signed with a command key

"tmsctl tech <subcommand> -h" describes the flags.
`
	return dispatch(ctx, env, "tech", help, args, map[string]runFunc{
		"token": withoutCtx(runTechToken),
	})
}

// terminalFlags collects repeated --terminal values.
type terminalFlags []string

func (t *terminalFlags) String() string { return strings.Join(*t, ",") }
func (t *terminalFlags) Set(v string) error {
	*t = append(*t, v)
	return nil
}

func runTechToken(env Env, args []string) int {
	fs := newFlagSet(env, "tech token", "--key FILE --technician T --role ROLE --terminal SERIAL... [--ttl D] [-o FILE]", `
Issues a technician token for the diagnostics port of the terminals named by --terminal (a
serial or device id; an id ending in * matches by prefix; * alone matches any terminal). The
token is signed with a command key (a private key file written by "tmsctl keygen"; its id is the
file name without .key unless --kid is given): the terminals that trust that key for commands
accept the token offline, until it expires or its id is listed in the configuration's
security.diag.revokedTokens. It is printed on stdout (or written to -o, mode 0600, never
overwriting a file); its id and expiry go to stderr. The token is a credential: hand it to the
technician over a channel you trust. Terminals refuse tokens living longer than their
security.diag.tokenMaxTtlSec (default 7 days).`)
	keyFile := fs.String("key", "", "command private key `file` written by keygen (required)")
	kid := fs.String("kid", "", "command key `id` (default: the key file name without .key)")
	technician := fs.String("technician", "", "technician `id` (required; letters, digits, . _ @ + -)")
	name := fs.String("name", "", "technician's `name`, shown in the console")
	role := fs.String("role", string(auth.RoleReadOnly), "`role`: read-only or service")
	var terms terminalFlags
	fs.Var(&terms, "terminal", "terminal `serial` or device id, PREFIX*, or * (repeatable; at least one)")
	ttl := fs.Duration("ttl", 8*time.Hour, "`lifetime` of the token")
	id := fs.String("id", "", "token `id` for revocation and audit (default: random)")
	out := fs.String("o", "", "write the token to `file` instead of stdout")
	pos, status, ok := parseFlags(fs, args)
	if !ok {
		return status
	}
	switch {
	case len(pos) > 0:
		return usageErr(fs, "unexpected argument %q", pos[0])
	case *keyFile == "" || *technician == "" || len(terms) == 0:
		return usageErr(fs, "--key, --technician and at least one --terminal are required")
	case !auth.Role(*role).Known():
		return usageErr(fs, "--role %q: want %s or %s", *role, auth.RoleReadOnly, auth.RoleService)
	case *ttl <= 0 || *ttl%time.Second != 0:
		return usageErr(fs, "--ttl must be a positive number of whole seconds")
	case *ttl > maxTechTTL:
		return usageErr(fs, "--ttl %s: no terminal accepts a token living longer than %s", *ttl, maxTechTTL)
	case *id != "" && !termconfig.ValidTokenID(*id):
		return usageErr(fs, "--id %q: 1..64 of letters, digits, . _ : -", *id)
	}
	if *id == "" {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return failf(env, ExitFailed, "random: %v", err)
		}
		*id = "tt-" + hex.EncodeToString(b[:])
	}
	key, err := tmsclient.LoadSignKey(*keyFile)
	if err != nil {
		return failf(env, ExitUsage, "%v", err)
	}
	if *kid != "" {
		key.ID = *kid
	}
	now := time.Now()
	c := auth.Claims{ID: *id, Technician: *technician, Name: *name, Role: auth.Role(*role), Terminals: terms,
		IssuedAt: now.Unix(), Expires: now.Add(*ttl).Unix()}
	text, err := auth.IssueToken(key.Key, key.ID, c)
	if err != nil {
		return failf(env, ExitUsage, "%v", err)
	}
	if *out != "" {
		if err := writeNew(*out, []byte(text+"\n"), 0o600); err != nil {
			return failf(env, ExitUsage, "%v", err)
		}
		fmt.Fprintf(env.Stderr, "wrote %s\n", *out)
	} else {
		fmt.Fprintln(env.Stdout, text)
	}
	fmt.Fprintf(env.Stderr, "token %s for %s (%s) on %s, expires %s, command key %s\n", c.ID, c.Technician, c.Role,
		strings.Join(terms, ","), time.Unix(c.Expires, 0).UTC().Format(time.RFC3339), key.ID)
	if *ttl > time.Duration(termconfig.DefaultDiagTokenMaxTTLSec)*time.Second {
		fmt.Fprintf(env.Stderr, "note: lifetime %s exceeds the terminals' default maximum of 7 days; "+
			"only terminals whose security.diag.tokenMaxTtlSec allows it accept this token\n", *ttl)
	}
	return ExitOK
}
