package cli

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/tmsclient"
	"github.com/posagent/posagent/ota/manifest"
)

// releaseFixture makes two release keys with keygen and a spec with three component files
// next to it; it returns the directory and the spec path.
func releaseFixture(t *testing.T, spec string) (dir, specFile string) {
	t.Helper()
	ctx := testCtx(t)
	dir = t.TempDir()
	for _, id := range []string{"rel-1", "rel-2"} {
		if r := tmsctl(ctx, "", "keygen", "--dir", dir, "--id", id); r.code != ExitOK {
			t.Fatalf("keygen: %s", r.stderr.String())
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "dist"), 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"dist/posagent-linux-arm64": bytes.Repeat([]byte("agent!"), 50_000), // 300 000 bytes, several copy buffers
		"kiosk.apk":                 []byte("PK\x03\x04 not really an apk"),
		"logo.png":                  []byte("\x89PNG logo"),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	specFile = filepath.Join(dir, "release.json")
	if err := os.WriteFile(specFile, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, specFile
}

const goodSpec = `{"name": "2026.11.1", "serial": 12, "validity": "90d",
 "components": [
  {"name": "posagent-arm64", "kind": "agent", "version": "1.5.0", "arch": "linux/arm64", "file": "dist/posagent-linux-arm64"},
  {"name": "kiosk", "kind": "apk", "version": "3.2.0", "models": ["WPOS-3"], "arch": "android/arm64",
   "package": "kz.example.kiosk", "versionCode": 320, "file": "kiosk.apk"},
  {"name": "logo", "kind": "file", "version": "1", "location": "receipts", "path": "logo.png", "file": "logo.png"}]}`

// TestReleaseSignShowVerify is the round trip: keygen → release sign → release show --trust,
// and the agent's verifier accepts the file with the sizes and digests of the files.
func TestReleaseSignShowVerify(t *testing.T) {
	ctx := testCtx(t)
	dir, spec := releaseFixture(t, goodSpec)
	out := filepath.Join(dir, "2026.11.1.manifest")
	before := time.Now().Unix()
	r := tmsctl(ctx, "", "release", "sign", "--key", filepath.Join(dir, "rel-1.key"), "--spec", spec, "--out", out)
	if r.code != ExitOK {
		t.Fatalf("sign: %d %s", r.code, r.stderr.String())
	}
	if strings.Contains(r.stderr.String()+r.stdout.String(), "PRIVATE") {
		t.Error("sign printed the key")
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := tmsclient.LoadPublicKey(filepath.Join(dir, "rel-1.pub"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := manifest.NewVerifier(map[string]ed25519.PublicKey{"rel-1": pub})
	if err != nil {
		t.Fatal(err)
	}
	s, err := v.Verify(raw)
	if err != nil {
		t.Fatalf("agent verifier refuses the manifest: %v", err)
	}
	rel := s.Release
	if s.KeyID != "rel-1" || rel.Name != "2026.11.1" || rel.Serial != 12 || rel.Issued < before || rel.Expires != rel.Issued+90*86400 || len(rel.Components) != 3 {
		t.Fatalf("signed %+v", s)
	}
	for _, c := range rel.Components {
		file := map[string]string{"posagent-arm64": "dist/posagent-linux-arm64", "kiosk": "kiosk.apk", "logo": "logo.png"}[c.Name]
		data, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		want := sha256.Sum256(data)
		if c.Size != int64(len(data)) || !bytes.Equal(c.SHA256, want[:]) {
			t.Errorf("%s: size %d sha256 %x, file has %d %x", c.Name, c.Size, c.SHA256, len(data), want)
		}
	}
	if k := rel.Components[1]; k.Package != "kz.example.kiosk" || k.VersionCode != 320 || k.Models[0] != "WPOS-3" || k.Arch != "android/arm64" {
		t.Errorf("apk component %+v", k)
	}
	if l := rel.Components[2]; l.Location != "receipts" || l.Path != "logo.png" || l.Kind != manifest.KindFile {
		t.Errorf("file component %+v", l)
	}

	r = tmsctl(ctx, "", "release", "show", out, "--trust", filepath.Join(dir, "rel-1.pub"))
	if r.code != ExitOK {
		t.Fatalf("show: %d %s", r.code, r.stderr.String())
	}
	var shown struct {
		Name       string `json:"name"`
		Serial     uint64 `json:"serial"`
		KeyID      string `json:"kid"`
		Digest     string `json:"digest"`
		Verified   *bool  `json:"verified"`
		Valid      string `json:"validNow"`
		Components []struct {
			Name   string `json:"name"`
			Size   int64  `json:"size"`
			SHA256 string `json:"sha256"`
		} `json:"components"`
	}
	if err := json.Unmarshal([]byte(r.stdout.String()), &shown); err != nil {
		t.Fatalf("show output %q: %v", r.stdout.String(), err)
	}
	if shown.Name != "2026.11.1" || shown.Serial != 12 || shown.KeyID != "rel-1" || shown.Verified == nil || !*shown.Verified ||
		shown.Valid != "yes" || shown.Digest != hex.EncodeToString(s.Digest[:]) || len(shown.Components) != 3 {
		t.Errorf("show: %s", r.stdout.String())
	}
	for i, c := range shown.Components {
		if c.Name != rel.Components[i].Name || c.Size != rel.Components[i].Size || c.SHA256 != hex.EncodeToString(rel.Components[i].SHA256) {
			t.Errorf("shown component %+v, signed %+v", c, rel.Components[i])
		}
	}

	// Another key: unknown under its own id, a bad signature under this id.
	r = tmsctl(ctx, "", "release", "show", out, "--trust", filepath.Join(dir, "rel-2.pub"))
	if r.code != ExitFailed || !strings.Contains(r.stdout.String(), `"verified": false`) || !strings.Contains(r.stdout.String(), "unknown_key") {
		t.Errorf("show with another key: %d %s", r.code, r.stdout.String())
	}
	r = tmsctl(ctx, "", "release", "show", out, "--trust", filepath.Join(dir, "rel-2.pub"), "--kid", "rel-1")
	if r.code != ExitFailed || !strings.Contains(r.stdout.String(), "bad_signature") {
		t.Errorf("show with another key under the same id: %d %s", r.code, r.stdout.String())
	}
	// Without --trust it only decodes.
	if r = tmsctl(ctx, "", "release", "show", out); r.code != ExitOK || strings.Contains(r.stdout.String(), "verified") ||
		!strings.Contains(r.stdout.String(), `"kz.example.kiosk"`) {
		t.Errorf("show without --trust: %d %s", r.code, r.stdout.String())
	}
	// --kid names the key the terminal trusts, whatever the file is called.
	out2 := filepath.Join(dir, "kid.manifest")
	if r = tmsctl(ctx, "", "release", "sign", "--key", filepath.Join(dir, "rel-1.key"), "--kid", "dist-2026", "--spec", spec, "--out", out2); r.code != ExitOK {
		t.Fatalf("sign --kid: %s", r.stderr.String())
	}
	if r = tmsctl(ctx, "", "release", "show", out2, "--trust", filepath.Join(dir, "rel-1.pub"), "--kid", "dist-2026"); r.code != ExitOK ||
		!strings.Contains(r.stdout.String(), `"kid": "dist-2026"`) {
		t.Errorf("show --kid: %d %s", r.code, r.stdout.String())
	}
	// Never over an existing file.
	if r = tmsctl(ctx, "", "release", "sign", "--key", filepath.Join(dir, "rel-1.key"), "--spec", spec, "--out", out); r.code != ExitUsage {
		t.Errorf("sign over an existing file: %d", r.code)
	}
	if again, _ := os.ReadFile(out); !bytes.Equal(again, raw) {
		t.Error("existing manifest changed")
	}
}

// TestReleaseShowExpiredAndJunk: a manifest past its expiry still shows, and says so; what
// is not a manifest is refused.
func TestReleaseShowExpiredAndJunk(t *testing.T) {
	ctx := testCtx(t)
	dir, _ := releaseFixture(t, goodSpec)
	key, err := tmsclient.LoadSignKey(filepath.Join(dir, "rel-1.key"))
	if err != nil {
		t.Fatal(err)
	}
	issued := time.Now().Add(-100 * 24 * time.Hour).Unix()
	raw, err := manifest.Sign(key.Key, key.ID, manifest.Release{V: 1, Name: "old", Serial: 1, Issued: issued, Expires: issued + 30*86400,
		Components: []manifest.Component{{Name: "c", Kind: manifest.KindCertificate, Version: "1", Location: "ca", Size: 1, SHA256: make([]byte, 32)}}})
	if err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(dir, "old.manifest")
	if err := os.WriteFile(old, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	r := tmsctl(ctx, "", "release", "show", old, "--trust", filepath.Join(dir, "rel-1.pub"))
	if r.code != ExitOK || !strings.Contains(r.stdout.String(), `"validNow": "expired`) || !strings.Contains(r.stdout.String(), `"verified": true`) {
		t.Errorf("show expired: %d %s", r.code, r.stdout.String())
	}
	junk := filepath.Join(dir, "junk")
	if err := os.WriteFile(junk, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r = tmsctl(ctx, "", "release", "show", junk); r.code != ExitUsage || !strings.Contains(r.stderr.String(), "malformed") {
		t.Errorf("show junk: %d %s", r.code, r.stderr.String())
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, manifest.MaxManifestSize+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if r = tmsctl(ctx, "", "release", "show", big); r.code != ExitUsage || !strings.Contains(r.stderr.String(), "larger than") {
		t.Errorf("show big: %d %s", r.code, r.stderr.String())
	}
	if r = tmsctl(ctx, "", "release", "show"); r.code != ExitUsage {
		t.Errorf("show without a file: %d", r.code)
	}
}

// TestReleaseSignRefuses: specs the tool must not sign, each refused before anything is
// written.
func TestReleaseSignRefuses(t *testing.T) {
	tests := []struct {
		name, spec, want string
	}{
		{"unknown field", strings.Replace(goodSpec, `"models"`, `"model"`, 1), "unknown field"},
		{"no file", strings.Replace(goodSpec, `"file": "logo.png"`, `"file": ""`, 1), "no file"},
		{"missing file", strings.Replace(goodSpec, `"file": "logo.png"`, `"file": "nope.png"`, 1), "nope.png"},
		{"directory as file", strings.Replace(goodSpec, `"file": "logo.png"`, `"file": "dist"`, 1), "not a regular file"},
		{"validity too long", strings.Replace(goodSpec, `"90d"`, `"400d"`, 1), "validity"},
		{"validity hours too long", strings.Replace(goodSpec, `"90d"`, `"9000h"`, 1), "validity"},
		{"validity zero", strings.Replace(goodSpec, `"90d"`, `"0d"`, 1), "validity"},
		{"validity missing", strings.Replace(goodSpec, `"validity": "90d",`, ``, 1), "validity"},
		{"validity words", strings.Replace(goodSpec, `"90d"`, `"a year"`, 1), "validity"},
		{"serial 0", strings.Replace(goodSpec, `"serial": 12`, `"serial": 0`, 1), "serial"},
		{"agent without arch", strings.Replace(goodSpec, `"arch": "linux/arm64", `, ``, 1), "arch is required"},
		{"path traversal", strings.Replace(goodSpec, `"path": "logo.png"`, `"path": "../../etc/passwd"`, 1), "path"},
		{"not JSON", `name: x`, "release.json"},
		{"two documents", goodSpec + goodSpec, "data after"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			dir, spec := releaseFixture(t, tc.spec)
			out := filepath.Join(dir, "m")
			r := tmsctl(ctx, "", "release", "sign", "--key", filepath.Join(dir, "rel-1.key"), "--spec", spec, "--out", out)
			if r.code != ExitUsage || !strings.Contains(r.stderr.String(), tc.want) {
				t.Errorf("sign: %d %s, want %q", r.code, r.stderr.String(), tc.want)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("wrote %s: %v", out, err)
			}
		})
	}
	ctx := testCtx(t)
	if r := tmsctl(ctx, "", "release", "sign", "--spec", "x.json"); r.code != ExitUsage || !strings.Contains(r.stderr.String(), "required") {
		t.Errorf("sign without flags: %d %s", r.code, r.stderr.String())
	}
	if r := tmsctl(ctx, "", "release", "frobnicate"); r.code != ExitUsage {
		t.Errorf("unknown subcommand: %d", r.code)
	}
	if r := tmsctl(ctx, "", "release", "-h"); r.code != ExitOK || !strings.Contains(r.stdout.String(), "sign") {
		t.Errorf("help: %d %s", r.code, r.stdout.String())
	}
}

func TestReleaseInstallSendsAndFollows(t *testing.T) {
	type body struct {
		Manifest []byte                       `cbor:"manifest"`
		Now      bool                         `cbor:"now"`
		MaxTries int                          `cbor:"maxTries"`
		Sources  map[string]map[string]string `cbor:"sources"`
	}
	got := make(chan body, 4)
	ctx, url, keyFile, agent := sendFixture(t, func(cmd *tmsproto.Command) []tmsproto.Ack {
		var b body
		if err := tmsproto.Unmarshal(cmd.Body, &b); err != nil || cmd.Kind != "ota.install" {
			return []tmsproto.Ack{{State: tmsproto.StateRejected, Reason: tmsproto.ReasonInvalidBody}}
		}
		got <- b
		return []tmsproto.Ack{{State: tmsproto.StateAccepted}, {State: tmsproto.StateRunning, Stage: "downloading", Progress: 30},
			{State: tmsproto.StateRunning, Stage: "health-check", Progress: 95}, {State: tmsproto.StateSucceeded, Progress: 100}}
	})
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	raw, err := manifest.Sign(priv, "rel-1", manifest.Release{V: 1, Name: "r1", Serial: 1, Issued: now.Unix(), Expires: now.Add(time.Hour).Unix(),
		Components: []manifest.Component{{Name: "agent", Kind: manifest.KindAgent, Version: "2.0.0", Arch: "linux/arm64", Size: 10, SHA256: make([]byte, 32)}}})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "r1.cose")
	if err := os.WriteFile(file, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	r := tmsctl(ctx, "", "release", "install", "--broker", url, "--device", "T-1", "--sign-key", keyFile, "--manifest", file,
		"--now", "--max-tries", "2", "--source", "agent=https://cdn.example/agent")
	if r.code != ExitOK {
		t.Fatalf("install: %d %s", r.code, r.stderr.String())
	}
	<-agent.got
	b := <-got
	if !bytes.Equal(b.Manifest, raw) || !b.Now || b.MaxTries != 2 || b.Sources["agent"]["url"] != "https://cdn.example/agent" {
		t.Errorf("body %+v", b)
	}
	if !strings.Contains(r.stderr.String(), "downloading") || !strings.Contains(r.stderr.String(), "health-check") {
		t.Errorf("progress %q", r.stderr.String())
	}
	if !strings.Contains(r.stdout.String(), `"state":"succeeded"`) {
		t.Errorf("final ack %s", r.stdout.String())
	}
	if r := tmsctl(ctx, "", "release", "install", "--broker", url, "--device", "T-1", "--sign-key", keyFile, "--manifest", file, "--source", "agent"); r.code != ExitUsage {
		t.Errorf("bad --source: %d", r.code)
	}
}
