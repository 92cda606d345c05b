package tmsclient

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/posagent/posagent/agent/tmsproto"
)

func TestGenerateAndLoadKeys(t *testing.T) {
	dir := t.TempDir()
	k, err := GenerateKey(dir, "ops-2026")
	if err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(dir, "ops-2026.key")
	st, err := os.Stat(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("private key mode %v, want 0600", st.Mode().Perm())
	}
	loaded, err := LoadSignKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.ID != "ops-2026" || !loaded.Key.Equal(k.Key) {
		t.Errorf("loaded key %q does not match the generated one", loaded.ID)
	}
	pub, err := LoadPublicKey(filepath.Join(dir, "ops-2026.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(k.Public()) {
		t.Error("public key file does not match the private key")
	}
	b64 := PublicKeyBase64(pub)
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) != ed25519.PublicKeySize {
		t.Errorf("PublicKeyBase64 = %q: %d bytes, %v", b64, len(raw), err)
	}

	// What the loaded key signs, the agent's verifier accepts with the public key file.
	v, err := tmsproto.NewVerifier(map[string]ed25519.PublicKey{loaded.ID: pub})
	if err != nil {
		t.Fatal(err)
	}
	raw, err = tmsproto.SignCommand(loaded.Key, loaded.ID, tmsproto.Command{ID: "1", Seq: 1, Kind: "reboot", Body: []byte{0xa0}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(raw); err != nil {
		t.Errorf("verify: %v", err)
	}

	// Never overwrite a key.
	if _, err := GenerateKey(dir, "ops-2026"); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second GenerateKey: %v, want ErrExist", err)
	}
	if got, _ := LoadSignKey(keyPath); !got.Key.Equal(k.Key) {
		t.Error("the existing key was replaced")
	}
}

func TestKeyErrors(t *testing.T) {
	dir := t.TempDir()
	var ie *InputError
	for _, id := range []string{"", ".hidden", "a/b", "x y"} {
		if _, err := GenerateKey(dir, id); !errors.As(err, &ie) {
			t.Errorf("GenerateKey(%q): %v, want an InputError", id, err)
		}
	}
	if _, err := GenerateKey(filepath.Join(dir, "missing"), "k"); err == nil {
		t.Error("GenerateKey into a missing directory succeeded")
	}
	if _, err := GenerateKey(dir, "k"); err != nil {
		t.Fatal(err)
	}
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var kfe *KeyFileError
	for name, path := range map[string]string{
		"missing":    filepath.Join(dir, "none.key"),
		"not PEM":    write("junk.key", "junk"),
		"public key": filepath.Join(dir, "k.pub"),
		"bad DER":    write("bad.key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
	} {
		if _, err := LoadSignKey(path); !errors.As(err, &kfe) {
			t.Errorf("LoadSignKey %s: %v, want a KeyFileError", name, err)
		}
	}
	if _, err := LoadPublicKey(filepath.Join(dir, "k.key")); !errors.As(err, &kfe) {
		t.Errorf("LoadPublicKey of a private key: %v", err)
	}
}
