package cli

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/posagent/posagent/internal/tmsclient"
)

func runKeygen(_ context.Context, env Env, args []string) int {
	fs := newFlagSet(env, "keygen", "--dir DIR --id ID", `
Creates an Ed25519 command signing key pair: DIR/ID.key (private, PKCS#8 PEM, mode 0600) and
DIR/ID.pub (public, PKIX PEM). Existing files are never overwritten. Prints the snippet that
makes the agent trust the key; ID is the key id commands are signed under.`)
	dir := fs.String("dir", ".", "`directory` for the key files")
	id := fs.String("id", "", "key `id` (letters, digits, . _ -)")
	pos, status, ok := parseFlags(fs, args)
	if !ok {
		return status
	}
	if len(pos) > 0 {
		return usageErr(fs, "unexpected argument %q", pos[0])
	}
	if *id == "" {
		return usageErr(fs, "--id is required")
	}
	key, err := tmsclient.GenerateKey(*dir, *id)
	if err != nil {
		return failf(env, ExitUsage, "%v", err)
	}
	fmt.Fprintf(env.Stderr, "wrote %s and %s\n",
		filepath.Join(*dir, *id+tmsclient.PrivateKeySuffix), filepath.Join(*dir, *id+tmsclient.PublicKeySuffix))
	fmt.Fprint(env.Stdout, ConfigSnippet(key.ID, tmsclient.PublicKeyBase64(key.Public())))
	return ExitOK
}

// ConfigSnippet is the agent configuration (TOML) that trusts a command key.
func ConfigSnippet(id, publicKeyB64 string) string {
	return fmt.Sprintf("[[tms.command_keys]]\nid = %q\npublic_key = %q\n", id, publicKeyB64)
}
