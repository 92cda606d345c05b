package cli

import (
	"crypto/ed25519"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/posagent/posagent/internal/tmsclient"
)

// readBounded reads a signed document (licence, release manifest) of at most max bytes; a
// larger file is not one, whatever it is.
func readBounded(path string, max int, what string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, int64(max)+1))
	if err != nil {
		return nil, err
	}
	if len(raw) > max {
		return nil, fmt.Errorf("%s: larger than %d bytes: not a %s", path, max, what)
	}
	return raw, nil
}

// trustedKey loads a public key file written by keygen as the one trusted key; its id is the
// file name without .pub unless kid is given.
func trustedKey(pubFile, kid string) (map[string]ed25519.PublicKey, error) {
	pub, err := tmsclient.LoadPublicKey(pubFile)
	if err != nil {
		return nil, err
	}
	if kid == "" {
		kid = strings.TrimSuffix(filepath.Base(pubFile), tmsclient.PublicKeySuffix)
	}
	return map[string]ed25519.PublicKey{kid: pub}, nil
}
