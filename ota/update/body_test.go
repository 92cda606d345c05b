package update

import (
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/ota/manifest"
)

// fuzzKey is fixed so that seeds signed with it stay valid.
var fuzzKey = ed25519.NewKeyFromSeed([]byte("posagent-update-fuzz-seed-32byte"))

func verifier(t testing.TB) *manifest.Verifier {
	v, err := manifest.NewVerifier(map[string]ed25519.PublicKey{"rel-1": fuzzKey.Public().(ed25519.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func release(t testing.TB, kinds ...manifest.Kind) []byte {
	now := time.Now()
	r := manifest.Release{V: 1, Name: "r1", Serial: 3, Issued: now.Unix(), Expires: now.Add(time.Hour).Unix()}
	for i, k := range kinds {
		c := manifest.Component{Name: string(k) + string(rune('a'+i)), Kind: k, Version: "1.0", Size: 10, SHA256: make([]byte, 32)}
		switch k {
		case manifest.KindAPK:
			c.Package, c.VersionCode = "com.x", 1
		case manifest.KindFile:
			c.Location, c.Path = "images", "a.png"
		case manifest.KindAgent:
			c.Arch = "linux/arm64"
		}
		r.Components = append(r.Components, c)
	}
	raw, err := manifest.Sign(fuzzKey, "rel-1", r)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func body(t testing.TB, v any) []byte {
	b, err := tmsproto.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeBodies(t *testing.T) {
	v := verifier(t)
	files := release(t, manifest.KindFile)
	cases := []struct {
		name   string
		decode func() error
		reason manifest.Reason
	}{
		{"install", func() error { _, err := DecodeInstall(body(t, InstallBody{Manifest: files}), v); return err }, ""},
		{"no manifest", func() error { _, err := DecodeInstall(body(t, map[string]any{"now": true}), v); return err }, manifest.ReasonInvalid},
		{"unknown field", func() error {
			_, err := DecodeInstall(body(t, map[string]any{"manifest": files, "force": true}), v)
			return err
		}, manifest.ReasonInvalid},
		{"apk in ota.install", func() error {
			_, err := DecodeInstall(body(t, InstallBody{Manifest: release(t, manifest.KindAPK)}), v)
			return err
		}, manifest.ReasonInvalid},
		{"mixed", func() error {
			_, err := DecodeInstall(body(t, InstallBody{Manifest: files, Sources: map[string]SourceSpec{"elsewhere": {}}}), v)
			return err
		}, manifest.ReasonMixedRelease},
		{"plain http off loopback", func() error {
			_, err := DecodeInstall(body(t, InstallBody{Manifest: files, Sources: map[string]SourceSpec{"filea": {URL: "http://cdn.example/x"}}}), v)
			return err
		}, manifest.ReasonInvalid},
		{"http on loopback", func() error {
			_, err := DecodeInstall(body(t, InstallBody{Manifest: files, Sources: map[string]SourceSpec{"filea": {URL: "http://127.0.0.1:8080/x"}}}), v)
			return err
		}, ""},
		{"url and transfer", func() error {
			_, err := DecodeInstall(body(t, InstallBody{Manifest: files, Sources: map[string]SourceSpec{"filea": {URL: "https://a/x", Transfer: "t1"}}}), v)
			return err
		}, manifest.ReasonInvalid},
		{"maxTries", func() error {
			_, err := DecodeInstall(body(t, InstallBody{Manifest: files, MaxTries: 11}), v)
			return err
		}, manifest.ReasonInvalid},
		{"deadline", func() error {
			_, err := DecodeInstall(body(t, InstallBody{Manifest: files, HealthDeadlineSec: 5}), v)
			return err
		}, manifest.ReasonInvalid},
		{"apps", func() error {
			_, err := DecodeApps(body(t, AppsBody{Manifest: release(t, manifest.KindAPK)}), v)
			return err
		}, ""},
		{"file in apps", func() error { _, err := DecodeApps(body(t, AppsBody{Manifest: files}), v); return err }, manifest.ReasonInvalid},
		{"file.put", func() error {
			_, err := DecodeFile(body(t, FileBody{Location: "images", Name: "a.png", Size: 3, SHA256: make([]byte, 32)}))
			return err
		}, ""},
		{"file.put too large", func() error {
			_, err := DecodeFile(body(t, FileBody{Location: "images", Name: "a.png", Size: MaxFileSize + 1, SHA256: make([]byte, 32)}))
			return err
		}, manifest.ReasonTooLarge},
		{"file.put short hash", func() error {
			_, err := DecodeFile(body(t, FileBody{Location: "images", Name: "a.png", Size: 3, SHA256: make([]byte, 8)}))
			return err
		}, manifest.ReasonInvalid},
		{"cancel", func() error { _, err := DecodeCancel(body(t, CancelBody{Command: "c1"})); return err }, ""},
		{"cancel nothing", func() error { _, err := DecodeCancel(body(t, CancelBody{})); return err }, manifest.ReasonInvalid},
	}
	for _, c := range cases {
		err := c.decode()
		if c.reason == "" && err != nil || c.reason != "" && manifest.ReasonOf(err) != c.reason {
			t.Errorf("%s: %v, want reason %q", c.name, err, c.reason)
		}
	}
	var me *manifest.Error
	if _, err := DecodeInstall(body(t, InstallBody{Manifest: []byte("not cose")}), v); !errors.As(err, &me) {
		t.Errorf("garbage manifest: %v", err)
	}
}

// FuzzDecodeBodies feeds arbitrary bytes to every update command's body decoder: no panic,
// and every refusal says why.
func FuzzDecodeBodies(f *testing.F) {
	f.Add(body(f, InstallBody{Manifest: release(f, manifest.KindFile)}))
	f.Add(body(f, AppsBody{Manifest: release(f, manifest.KindAPK)}))
	f.Add(body(f, FileBody{Location: "images", Name: "a.png", Size: 3, SHA256: make([]byte, 32), SourceSpec: SourceSpec{URL: "https://h/x"}}))
	f.Add(body(f, CancelBody{Command: "c1"}))
	f.Add([]byte{0xa0})
	v := verifier(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		for _, decode := range []func() error{
			func() error { _, err := DecodeInstall(raw, v); return err },
			func() error { _, err := DecodeApps(raw, v); return err },
			func() error { _, err := DecodeFile(raw); return err },
			func() error { _, err := DecodeCancel(raw); return err },
		} {
			if err := decode(); err != nil && manifest.ReasonOf(err) == "" {
				t.Fatalf("refusal without a reason: %v", err)
			}
		}
	})
}
