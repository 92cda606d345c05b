package cli

import (
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/diag/auth"
	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/tmsclient"
)

func TestTechToken(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	if r := tmsctl(ctx, "", "keygen", "--dir", dir, "--id", "cmd-1"); r.code != ExitOK {
		t.Fatalf("keygen: %s", r.stderr.String())
	}
	pub, err := tmsclient.LoadPublicKey(filepath.Join(dir, "cmd-1.pub"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := tmsproto.NewSign1Keys(map[string]ed25519.PublicKey{"cmd-1": pub})
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "cmd-1.key")

	before := time.Now().Unix()
	r := tmsctl(ctx, "", "tech", "token", "--key", keyFile, "--technician", "tech42", "--name", "Aigerim S.",
		"--role", "service", "--terminal", "SN100200", "--terminal", "WPOS*", "--ttl", "2h", "--id", "job-7781")
	if r.code != ExitOK {
		t.Fatalf("tech token: %d %s", r.code, r.stderr.String())
	}
	text := strings.TrimSpace(r.stdout.String())
	if strings.Contains(r.stdout.String()+r.stderr.String(), "PRIVATE") {
		t.Fatal("the key was printed")
	}
	if !strings.Contains(r.stderr.String(), "job-7781") {
		t.Errorf("stderr does not name the token id: %s", r.stderr.String())
	}
	// The terminal's own check accepts it, for both terminals named.
	for _, id := range []string{"SN100200", "WPOS-0042"} {
		c, err := auth.ParseToken(text, keys, time.Now(), auth.DefaultPolicy(), id)
		if err != nil {
			t.Fatalf("terminal %s refuses the token: %v", id, err)
		}
		if c.ID != "job-7781" || c.Technician != "tech42" || c.Name != "Aigerim S." || c.Role != auth.RoleService ||
			!slices.Equal(c.Terminals, []string{"SN100200", "WPOS*"}) || c.IssuedAt < before ||
			c.Expires != c.IssuedAt+2*3600 {
			t.Fatalf("claims %+v", c)
		}
	}
	if _, err := auth.ParseToken(text, keys, time.Now(), auth.DefaultPolicy(), "SN999"); !errors.Is(err, auth.ErrTokenWrongTerminal) {
		t.Fatalf("another terminal: %v", err)
	}

	// Defaults: read-only, 8 h, a random id; -o writes an owner-only file and never overwrites.
	out := filepath.Join(dir, "tech.token")
	r = tmsctl(ctx, "", "tech", "token", "--key", keyFile, "--technician", "viewer", "--terminal", "*", "-o", out)
	if r.code != ExitOK {
		t.Fatalf("tech token -o: %d %s", r.code, r.stderr.String())
	}
	if r.stdout.String() != "" {
		t.Fatalf("token printed although -o was given: %q", r.stdout.String())
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(out); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v (%v), want 0600", st.Mode().Perm(), err)
	}
	c, err := auth.ParseToken(string(raw), keys, time.Now(), auth.DefaultPolicy(), "anything")
	if err != nil {
		t.Fatal(err)
	}
	if c.Role != auth.RoleReadOnly || c.Expires-c.IssuedAt != 8*3600 || !strings.HasPrefix(c.ID, "tt-") {
		t.Fatalf("default claims %+v", c)
	}
	r = tmsctl(ctx, "", "tech", "token", "--key", keyFile, "--technician", "viewer", "--terminal", "*", "-o", out)
	if r.code == ExitOK {
		t.Fatal("an existing token file was overwritten")
	}
	again, _ := os.ReadFile(out)
	if string(again) != string(raw) {
		t.Fatal("the existing token file changed")
	}

	// --kid names another key id: the terminal trusting cmd-1 refuses it.
	r = tmsctl(ctx, "", "tech", "token", "--key", keyFile, "--kid", "cmd-9", "--technician", "x", "--terminal", "*")
	if r.code != ExitOK {
		t.Fatalf("--kid: %s", r.stderr.String())
	}
	if _, err := auth.ParseToken(r.stdout.String(), keys, time.Now(), auth.DefaultPolicy(), "SN1"); !errors.Is(err, auth.ErrTokenSignature) {
		t.Fatalf("token under an untrusted key id: %v", err)
	}
}

func TestTechTokenUsage(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	if r := tmsctl(ctx, "", "keygen", "--dir", dir, "--id", "cmd-1"); r.code != ExitOK {
		t.Fatalf("keygen: %s", r.stderr.String())
	}
	key := filepath.Join(dir, "cmd-1.key")
	for name, args := range map[string][]string{
		"no key":         {"--technician", "t", "--terminal", "*"},
		"no technician":  {"--key", key, "--terminal", "*"},
		"no terminal":    {"--key", key, "--technician", "t"},
		"bad role":       {"--key", key, "--technician", "t", "--terminal", "*", "--role", "admin"},
		"ttl too long":   {"--key", key, "--technician", "t", "--terminal", "*", "--ttl", "721h"},
		"ttl negative":   {"--key", key, "--technician", "t", "--terminal", "*", "--ttl", "-1h"},
		"ttl fraction":   {"--key", key, "--technician", "t", "--terminal", "*", "--ttl", "1500ms"},
		"bad id":         {"--key", key, "--technician", "t", "--terminal", "*", "--id", "a b"},
		"bad technician": {"--key", key, "--technician", "t h", "--terminal", "*"},
		"bad terminal":   {"--key", key, "--technician", "t", "--terminal", "S*N"},
		"missing key":    {"--key", filepath.Join(dir, "none.key"), "--technician", "t", "--terminal", "*"},
		"public as key":  {"--key", filepath.Join(dir, "cmd-1.pub"), "--technician", "t", "--terminal", "*"},
		"stray argument": {"--key", key, "--technician", "t", "--terminal", "*", "extra"},
	} {
		r := tmsctl(ctx, "", append([]string{"tech", "token"}, args...)...)
		if r.code != ExitUsage {
			t.Errorf("%s: exit %d, want %d (%s)", name, r.code, ExitUsage, r.stderr.String())
		}
		if r.stdout.String() != "" {
			t.Errorf("%s: printed %q", name, r.stdout.String())
		}
	}
	if r := tmsctl(ctx, "", "tech"); r.code != ExitUsage || !strings.Contains(r.stderr.String(), "token") {
		t.Errorf("tech without subcommand: %d %s", r.code, r.stderr.String())
	}
	if r := tmsctl(ctx, "", "help"); !strings.Contains(r.stdout.String(), "tech ") {
		t.Errorf("the command list does not show tech: %s", r.stdout.String())
	}
	// A lifetime over the terminals' default maximum is issued, with a warning.
	r := tmsctl(ctx, "", "tech", "token", "--key", key, "--technician", "t", "--terminal", "*", "--ttl", "240h")
	if r.code != ExitOK || !strings.Contains(r.stderr.String(), "tokenMaxTtlSec") {
		t.Errorf("ttl 10 days: %d %s", r.code, r.stderr.String())
	}
}
