package softkeys

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// RootKeySize is the length of the device root key.
const RootKeySize = 32

// RootKey supplies the 32-byte device root key. Each call returns a fresh slice that the
// caller owns (Open zeroes it once it has derived its sealing key).
type RootKey interface {
	RootKey() ([]byte, error)
}

// FileRootKey keeps the root key in a 0600 file at path, created with crypto/rand on first use:
// the simulated board's source. A real board returns a key from its TEE or keystore instead.
func FileRootKey(path string) RootKey { return fileRootKey(path) }

type fileRootKey string

func (p fileRootKey) RootKey() ([]byte, error) {
	path := string(p)
	k, err := readRootKey(path)
	if !errors.Is(err, os.ErrNotExist) {
		return k, err
	}
	if err := createRootKey(path); err != nil {
		return nil, err
	}
	return readRootKey(path)
}

func readRootKey(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("softkeys: root key: %w", err)
	}
	defer f.Close()
	k := make([]byte, RootKeySize+1)
	n, err := io.ReadFull(f, k)
	if n != RootKeySize || (err != io.ErrUnexpectedEOF) {
		clear(k)
		return nil, fmt.Errorf("softkeys: root key file %s is not %d bytes", path, RootKeySize)
	}
	return k[:RootKeySize], nil
}

// createRootKey writes a new key to a temporary file, syncs it and links it into place: the
// link fails if another process got there first (then its key is the one), and a power cut
// never leaves a short key file behind.
func createRootKey(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("softkeys: root key: %w", err)
	}
	f, err := os.CreateTemp(dir, ".rootkey-*") // created 0600
	if err != nil {
		return fmt.Errorf("softkeys: root key: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	var k [RootKeySize]byte
	defer clear(k[:])
	rand.Read(k[:])
	_, err = f.Write(k[:])
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Link(tmp, path)
		if errors.Is(err, os.ErrExist) {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("softkeys: root key: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}
