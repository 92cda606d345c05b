package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/posagent/posagent/internal/tmsclient"
)

const releaseKeyID = "demo-release"

// secrets are the demo's passwords and keys, made on the first run and kept in the demo folder
// (0600): what a real deployment keeps in its TMS, its KMS and the distributor's release system.
type secrets struct {
	devicePW, tmsPW string
	cmdKey          tmsclient.SignKey // TMS command key, trusted by the agent's configuration
	releaseKey      tmsclient.SignKey // distributor's release key: signs the licence
	kek             []byte            // terminal master key: what the KMS generated for the terminal
}

func loadSecrets(dir string) (*secrets, error) {
	var s secrets
	var err error
	if s.devicePW, err = secret(filepath.Join(dir, "device.password")); err != nil {
		return nil, err
	}
	if s.tmsPW, err = secret(filepath.Join(dir, "tms.password")); err != nil {
		return nil, err
	}
	keys := filepath.Join(dir, "keys")
	if err := os.MkdirAll(keys, 0o700); err != nil {
		return nil, err
	}
	if s.cmdKey, err = signKey(keys, keyID); err != nil {
		return nil, fmt.Errorf("demo command key: %w", err)
	}
	if s.releaseKey, err = signKey(keys, releaseKeyID); err != nil {
		return nil, fmt.Errorf("demo release key: %w", err)
	}
	if s.kek, err = kekFile(filepath.Join(keys, "demo-kek.hex")); err != nil {
		return nil, fmt.Errorf("demo master key: %w", err)
	}
	return &s, nil
}

func (s *secrets) wipe() { clear(s.kek) }

// secret reads a demo password, making a random one on the first run.
func secret(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	buf := make([]byte, 16)
	if _, err := rand.Read(buf); err != nil {
		return "", err
	}
	s := hex.EncodeToString(buf)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	return s, os.WriteFile(path, []byte(s+"\n"), 0o600)
}

// signKey loads the Ed25519 key dir/id.key, generating the pair on the first run.
func signKey(dir, id string) (tmsclient.SignKey, error) {
	path := filepath.Join(dir, id+tmsclient.PrivateKeySuffix)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return tmsclient.GenerateKey(dir, id)
	} else if err != nil {
		return tmsclient.SignKey{}, err
	}
	return tmsclient.LoadSignKey(path)
}

// kekFile reads the demo terminal master key (a double-length TDES key, hex on one line: the
// format tmsctl's --kbpk-file reads, so working keys can be wrapped under it by hand),
// generating it on the first run.
func kekFile(path string) ([]byte, error) {
	if b, err := os.ReadFile(path); err == nil {
		k, err := hex.DecodeString(strings.TrimSpace(string(b)))
		clear(b)
		if err != nil || len(k) != 16 {
			return nil, fmt.Errorf("%s: not 16 bytes of hex", path)
		}
		return k, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	k := make([]byte, 16)
	if _, err := rand.Read(k); err != nil {
		return nil, err
	}
	text := []byte(strings.ToUpper(hex.EncodeToString(k)) + "\n")
	defer clear(text)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	_, err = f.Write(text)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return nil, err
	}
	return k, nil
}
