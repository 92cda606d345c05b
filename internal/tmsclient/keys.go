package tmsclient

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// SignKey is a command signing key and the key id the agent knows it by.
type SignKey struct {
	ID  string
	Key ed25519.PrivateKey
}

// Public returns the public half of the key.
func (k SignKey) Public() ed25519.PublicKey {
	pub, _ := k.Key.Public().(ed25519.PublicKey)
	return pub
}

// Key file suffixes written by GenerateKey.
const (
	PrivateKeySuffix = ".key"
	PublicKeySuffix  = ".pub"
)

// The key id names the key files, so it is held to a file-name-safe alphabet (no path
// separators, no leading dot).
var keyIDRe = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$`)

// ValidKeyID reports whether id can be used as a key id and key file name.
func ValidKeyID(id string) error {
	if !keyIDRe.MatchString(id) {
		return inputErr("key id", "%q must match [A-Za-z0-9_-][A-Za-z0-9._-]{0,63}", id)
	}
	return nil
}

// KeyFileError reports a key file that cannot be used.
type KeyFileError struct {
	Path string
	Err  error
}

func (e *KeyFileError) Error() string { return "tmsclient: key file " + e.Path + ": " + e.Err.Error() }
func (e *KeyFileError) Unwrap() error { return e.Err }

// GenerateKey creates a new Ed25519 key pair in dir as <id>.key (PKCS#8 PEM, mode 0600) and
// <id>.pub (PKIX PEM). It refuses to overwrite either file: replacing a command key by
// accident would lock the fleet out.
func GenerateKey(dir, id string) (SignKey, error) {
	if err := ValidKeyID(id); err != nil {
		return SignKey{}, err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return SignKey{}, fmt.Errorf("tmsclient: generate key: %w", err)
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return SignKey{}, fmt.Errorf("tmsclient: encode private key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return SignKey{}, fmt.Errorf("tmsclient: encode public key: %w", err)
	}
	keyPath := filepath.Join(dir, id+PrivateKeySuffix)
	pubPath := filepath.Join(dir, id+PublicKeySuffix)
	for _, p := range []string{keyPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return SignKey{}, &KeyFileError{Path: p, Err: os.ErrExist}
		}
	}
	if err := writeNewFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}), 0o600); err != nil {
		return SignKey{}, err
	}
	if err := writeNewFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		// A private key without its public half is not half-useful: it is a key nobody can
		// configure. Remove it so a retry starts clean.
		_ = os.Remove(keyPath)
		return SignKey{}, err
	}
	if err := syncDir(dir); err != nil {
		return SignKey{}, err
	}
	return SignKey{ID: id, Key: priv}, nil
}

// writeNewFile creates path exclusively (O_EXCL closes the race between the existence check
// and the write) and syncs it.
func writeNewFile(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return &KeyFileError{Path: path, Err: err}
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return &KeyFileError{Path: path, Err: err}
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("tmsclient: sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("tmsclient: sync %s: %w", dir, err)
	}
	return nil
}

// LoadSignKey reads a private key file written by GenerateKey. The key id is the file's base
// name without the .key suffix.
func LoadSignKey(path string) (SignKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return SignKey{}, &KeyFileError{Path: path, Err: err}
	}
	key, err := ParseSignKey(data)
	if err != nil {
		return SignKey{}, &KeyFileError{Path: path, Err: err}
	}
	return SignKey{ID: strings.TrimSuffix(filepath.Base(path), PrivateKeySuffix), Key: key}, nil
}

// ParseSignKey decodes a PEM "PRIVATE KEY" block holding a PKCS#8 Ed25519 key.
func ParseSignKey(pemData []byte) (ed25519.PrivateKey, error) {
	der, err := pemBlock(pemData, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("PKCS#8: %w", err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key is %T, want Ed25519", k)
	}
	return priv, nil
}

// LoadPublicKey reads a public key file written by GenerateKey.
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &KeyFileError{Path: path, Err: err}
	}
	pub, err := ParsePublicKey(data)
	if err != nil {
		return nil, &KeyFileError{Path: path, Err: err}
	}
	return pub, nil
}

// ParsePublicKey decodes a PEM "PUBLIC KEY" block holding a PKIX Ed25519 key.
func ParsePublicKey(pemData []byte) (ed25519.PublicKey, error) {
	der, err := pemBlock(pemData, "PUBLIC KEY")
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("PKIX: %w", err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("key is %T, want Ed25519", k)
	}
	return pub, nil
}

func pemBlock(data []byte, typ string) ([]byte, error) {
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, errors.New("no PEM block")
	}
	if b.Type != typ {
		return nil, fmt.Errorf("PEM block %q, want %q", b.Type, typ)
	}
	return b.Bytes, nil
}

// PublicKeyBase64 renders pub as the agent configuration takes it: the raw 32 bytes in
// standard base64.
func PublicKeyBase64(pub ed25519.PublicKey) string {
	return base64.StdEncoding.EncodeToString(pub)
}
