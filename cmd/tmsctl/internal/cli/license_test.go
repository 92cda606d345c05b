package cli

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/license"
	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/tmsclient"
)

// TestLicenseIssueShowVerify is the round trip: keygen → license issue → license show --pub,
// and the agent's verifier accepts the file for that terminal.
func TestLicenseIssueShowVerify(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	if r := tmsctl(ctx, "", "keygen", "--dir", dir, "--id", "rel-1"); r.code != ExitOK {
		t.Fatalf("keygen: %s", r.stderr.String())
	}
	if r := tmsctl(ctx, "", "keygen", "--dir", dir, "--id", "rel-2"); r.code != ExitOK {
		t.Fatalf("keygen: %s", r.stderr.String())
	}
	out := filepath.Join(dir, "T-1.lic")
	before := time.Now().Unix()
	r := tmsctl(ctx, "", "license", "issue", "--release-key", filepath.Join(dir, "rel-1.key"), "--serial", "T-1",
		"--platform", "linux-arm64", "--id", "LIC-42", "--features", "qr,payments, qr", "--days", "30", "--out", out)
	if r.code != ExitOK {
		t.Fatalf("issue: %d %s", r.code, r.stderr.String())
	}
	if strings.Contains(r.stderr.String()+r.stdout.String(), "PRIVATE") {
		t.Error("issue printed the key")
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := tmsclient.LoadPublicKey(filepath.Join(dir, "rel-1.pub"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := license.NewVerifier(map[string]ed25519.PublicKey{"rel-1": pub})
	if err != nil {
		t.Fatal(err)
	}
	info, err := v.VerifyFor(raw, license.Terminal{Serial: "T-1", Platform: "linux-arm64"}, time.Now(), license.DefaultSkew)
	if err != nil {
		t.Fatalf("agent verifier refuses the issued licence: %v", err)
	}
	if info.ID != "LIC-42" || !slices.Equal(info.Features, []string{"payments", "qr"}) || info.KeyID != "rel-1" ||
		info.NotBefore < before || info.Expires != info.NotBefore+30*86400 {
		t.Errorf("issued %+v", info)
	}

	r = tmsctl(ctx, "", "license", "show", out, "--pub", filepath.Join(dir, "rel-1.pub"))
	if r.code != ExitOK {
		t.Fatalf("show: %d %s", r.code, r.stderr.String())
	}
	var shown map[string]any
	if err := json.Unmarshal([]byte(r.stdout.String()), &shown); err != nil {
		t.Fatalf("show output %q: %v", r.stdout.String(), err)
	}
	if shown["id"] != "LIC-42" || shown["serial"] != "T-1" || shown["kid"] != "rel-1" || shown["verified"] != true || shown["validNow"] != "yes" {
		t.Errorf("show: %v", shown)
	}
	// Another key does not verify it (its id differs, and under the same id the signature fails).
	r = tmsctl(ctx, "", "license", "show", out, "--pub", filepath.Join(dir, "rel-2.pub"))
	if r.code != ExitFailed || !strings.Contains(r.stdout.String(), `"verified": false`) || !strings.Contains(r.stdout.String(), "unknown release key") {
		t.Errorf("show with another key: %d %s", r.code, r.stdout.String())
	}
	r = tmsctl(ctx, "", "license", "show", out, "--pub", filepath.Join(dir, "rel-2.pub"), "--kid", "rel-1")
	if r.code != ExitFailed || !strings.Contains(r.stdout.String(), "signature does not verify") {
		t.Errorf("show with another key under the same id: %d %s", r.code, r.stdout.String())
	}
	// Without --pub it only decodes.
	if r = tmsctl(ctx, "", "license", "show", out); r.code != ExitOK || strings.Contains(r.stdout.String(), "verified") {
		t.Errorf("show without --pub: %d %s", r.code, r.stdout.String())
	}
	// Not a licence.
	junk := filepath.Join(dir, "junk")
	if err := os.WriteFile(junk, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r = tmsctl(ctx, "", "license", "show", junk); r.code != ExitUsage || !strings.Contains(r.stderr.String(), "malformed") {
		t.Errorf("show junk: %d %s", r.code, r.stderr.String())
	}
	// Never overwrite, never for an unknown platform, required flags.
	base := []string{"license", "issue", "--release-key", filepath.Join(dir, "rel-1.key"), "--serial", "T-1", "--id", "X", "--features", "payments"}
	if r = tmsctl(ctx, "", append(base, "--platform", "*", "--out", out)...); r.code != ExitUsage {
		t.Errorf("issue over an existing file: %d", r.code)
	}
	if r = tmsctl(ctx, "", append(base, "--platform", "windows-x86", "--out", out+"2")...); r.code != ExitUsage {
		t.Errorf("issue for an unknown platform: %d", r.code)
	}
	if r = tmsctl(ctx, "", "license", "issue", "--serial", "T-1"); r.code != ExitUsage || !strings.Contains(r.stderr.String(), "required") {
		t.Errorf("issue without flags: %d %s", r.code, r.stderr.String())
	}
	if r = tmsctl(ctx, "", append(base, "--platform", "*", "--days", "0", "--out", out+".forever")...); r.code != ExitOK {
		t.Fatalf("issue --days 0: %s", r.stderr.String())
	}
	if forever, err := os.ReadFile(out + ".forever"); err != nil {
		t.Fatal(err)
	} else if i, err := license.Parse(forever); err != nil || i.Expires != 0 || i.Platform != "*" {
		t.Errorf("--days 0: %+v %v", i, err)
	}
	if r = tmsctl(ctx, "", "license", "frobnicate"); r.code != ExitUsage {
		t.Errorf("unknown subcommand: %d", r.code)
	}
}

// TestLicenseSend sends an issued licence to a fake terminal, which finds the file's exact
// bytes in the license.put body.
func TestLicenseSend(t *testing.T) {
	gotLic := make(chan []byte, 4)
	ctx, url, keyFile, agent := sendFixture(t, func(cmd *tmsproto.Command) []tmsproto.Ack {
		var body struct {
			License []byte `cbor:"license"`
		}
		if err := tmsproto.Unmarshal(cmd.Body, &body); err != nil || cmd.Kind != "license.put" {
			return []tmsproto.Ack{{State: tmsproto.StateRejected, Reason: tmsproto.ReasonInvalidBody}}
		}
		gotLic <- body.License
		res, _ := tmsproto.Marshal(map[string]any{"id": "LIC-1"})
		return []tmsproto.Ack{{State: tmsproto.StateAccepted}, {State: tmsproto.StateSucceeded, Result: res}}
	})
	dir := t.TempDir()
	if r := tmsctl(ctx, "", "keygen", "--dir", dir, "--id", "rel-1"); r.code != ExitOK {
		t.Fatal(r.stderr.String())
	}
	lic := filepath.Join(dir, "l.lic")
	if r := tmsctl(ctx, "", "license", "issue", "--release-key", filepath.Join(dir, "rel-1.key"), "--serial", "T-1",
		"--platform", "*", "--id", "LIC-1", "--features", "payments", "--out", lic); r.code != ExitOK {
		t.Fatal(r.stderr.String())
	}
	r := tmsctl(ctx, "", "license", "send", "--broker", url, "--device", "T-1", "--sign-key", keyFile, "--license", lic)
	if r.code != ExitOK {
		t.Fatalf("send: %d %s", r.code, r.stderr.String())
	}
	<-agent.got
	got := <-gotLic
	want, _ := os.ReadFile(lic)
	if !bytes.Equal(got, want) {
		t.Errorf("the terminal got %d bytes, the file has %d", len(got), len(want))
	}
	if !strings.Contains(r.stdout.String(), `"state":"succeeded"`) {
		t.Errorf("final ack %s", r.stdout.String())
	}
	if r := tmsctl(ctx, "", "license", "send", "--device", "T-1", "--sign-key", keyFile); r.code != ExitUsage {
		t.Errorf("send without --license: %d", r.code)
	}
}
