package cli

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/posagent/posagent/keystore/kcv"
	"github.com/posagent/posagent/keystore/tr31"
)

// runKeys dispatches "tmsctl keys wrap|load|status".
func runKeys(ctx context.Context, env Env, args []string) int {
	const help = `Usage: tmsctl keys <wrap|load|status> [flags]

  wrap    wrap a key in a TR-31 block into a key file (test and lab use; a key system does
          this in an HSM)
  load    send a key file to a terminal (command keys.load), check the KCVs it reports
  status  print a terminal's key-loading state from its stats

The key file is what a key management system hands the TMS operator (docs/keys.md).
"tmsctl keys <subcommand> -h" describes the flags.
`
	return dispatch(ctx, env, "keys", help, args, map[string]runFunc{
		"wrap":   withoutCtx(runKeysWrap),
		"load":   runKeysLoad,
		"status": runKeysStatus,
	})
}

// keyFile is the key file (docs/keys.md): the body of keys.load, plus the terminal it is for.
type keyFile struct {
	// Device is the terminal the keys are for; not sent (the command is addressed to it).
	Device string         `json:"device,omitempty" cbor:"-"`
	Keys   []keyFileEntry `json:"keys" cbor:"keys"`
	// KEK is the master key index the working keys come under; absent: the active one.
	KEK *int `json:"kek,omitempty" cbor:"kek,omitempty"`
}

type keyFileEntry struct {
	Role  string `json:"role" cbor:"role"`
	Block string `json:"block" cbor:"block"`
	KCV   string `json:"kcv,omitempty" cbor:"kcv,omitempty"`
}

// Limits of a key file, those of keys.load: every master key index and the three working keys.
const (
	kekSlots       = 10
	maxKeysPerFile = kekSlots + 3
	maxKeyFileSize = 64 << 10
)

var (
	kekRoleRE = regexp.MustCompile(`^kek([0-9])$`)
	kcvRE     = regexp.MustCompile(`^[0-9A-Fa-f]{6}$`)
)

// roleHeader is what a role's TR-31 header may say, as the PIN pad and the software backend
// accept it (docs/pinpad-protocol.md LOAD KEY BLOCK, keystore/softkeys), and what wrap writes.
type roleHeader struct {
	usages string // accepted usages, comma-separated; the first is written
	modes  string // accepted modes of use; the first is written
	aes    bool   // the key itself may be AES
}

func roleOf(role string) (roleHeader, bool) {
	switch {
	case kekRoleRE.MatchString(role):
		return roleHeader{usages: "K0,K1", modes: "BDN", aes: true}, true
	case role == "pik":
		return roleHeader{usages: "P0", modes: "EBN"}, true
	case role == "mak":
		return roleHeader{usages: "M3,M0,M1", modes: "CGN"}, true
	case role == "tdk":
		return roleHeader{usages: "D0", modes: "BDEN"}, true
	}
	return roleHeader{}, false
}

func isKEKRole(role string) bool { return kekRoleRE.MatchString(role) }

const roleList = "kek0..kek9, pik, mak or tdk"

// check says whether a block's header fits the role.
func (rh roleHeader) check(h tr31.Header) error {
	if !strings.Contains(","+rh.usages+",", ","+h.Usage+",") {
		return fmt.Errorf("key usage %s, want %s", h.Usage, strings.ReplaceAll(rh.usages, ",", " or "))
	}
	if h.Algorithm != 'T' && (h.Algorithm != 'A' || !rh.aes) {
		return fmt.Errorf("algorithm %c is not allowed here", h.Algorithm)
	}
	if !strings.ContainsRune(rh.modes, rune(h.ModeOfUse)) {
		return fmt.Errorf("mode of use %c, want one of %s", h.ModeOfUse, rh.modes)
	}
	if h.Version != 'B' && h.Version != 'D' {
		return fmt.Errorf("version %c: only B and D are loaded", h.Version)
	}
	return nil
}

// validate checks a key file as the terminal will, without any key: roles, blocks, KCV
// formats, the master key index.
func (f *keyFile) validate() error {
	if len(f.Keys) == 0 || len(f.Keys) > maxKeysPerFile {
		return fmt.Errorf("%d keys (1..%d)", len(f.Keys), maxKeysPerFile)
	}
	seen := map[string]bool{}
	for i, k := range f.Keys {
		rh, ok := roleOf(k.Role)
		if !ok {
			return fmt.Errorf("keys[%d]: role %q is not %s", i, k.Role, roleList)
		}
		if seen[k.Role] {
			return fmt.Errorf("keys[%d]: %s appears twice", i, k.Role)
		}
		seen[k.Role] = true
		h, err := tr31.Parse(k.Block)
		if err != nil {
			return fmt.Errorf("keys[%d] (%s): %w", i, k.Role, err)
		}
		if err := rh.check(h); err != nil {
			return fmt.Errorf("keys[%d] (%s): the block does not fit the role: %v", i, k.Role, err)
		}
		if k.KCV != "" && !kcvRE.MatchString(k.KCV) {
			return fmt.Errorf("keys[%d] (%s): kcv %q is not 6 hex digits", i, k.Role, k.KCV)
		}
	}
	if f.KEK != nil && (*f.KEK < 0 || *f.KEK >= kekSlots) {
		return fmt.Errorf("kek: %d is outside 0..%d", *f.KEK, kekSlots-1)
	}
	return nil
}

// entry is the file's entry for role, or nil.
func (f *keyFile) entry(role string) *keyFileEntry {
	for i := range f.Keys {
		if f.Keys[i].Role == role {
			return &f.Keys[i]
		}
	}
	return nil
}

// readKeyFile reads and validates a key file: strict JSON, no unknown fields.
func readKeyFile(path string) (*keyFile, error) {
	raw, err := readLimited(path, maxKeyFileSize)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var f keyFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%s: not a key file: %v", path, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%s: not a key file: data after the JSON object", path)
	}
	if err := f.validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &f, nil
}

func readLimited(path string, limit int64) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	raw, err := io.ReadAll(io.LimitReader(fh, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(raw)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	return raw, nil
}

// marshal renders the key file as indented JSON with a final newline.
func (f *keyFile) marshal() ([]byte, error) {
	out, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// writeFileAtomic writes data to path through a temporary file in the same directory, so a
// reader sees the old file or the new one. With exclusive it never replaces an existing file.
func writeFileAtomic(path string, data []byte, perm os.FileMode, exclusive bool) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	defer os.Remove(name) // after a rename or a link it is gone or a second name
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(perm)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if exclusive {
		return os.Link(name, path)
	}
	return os.Rename(name, path)
}

// secretKey is a key as given to tmsctl: hex, or "aes:" then hex for an AES key (the format
// of the agent's keystore.transport_key_file).
type secretKey struct {
	aes bool
	key []byte
}

func (k secretKey) wipe() { clear(k.key) }

func (k secretKey) algName() string {
	if k.aes {
		return "AES"
	}
	return "TDES"
}

// errNotHex never quotes the input: it is a key.
var errNotHex = errors.New("is not hex (the value is not shown: it is a key)")

// parseSecretKey reads text as hex, or "aes:" then hex; what is wrong with it is said without
// quoting it.
func parseSecretKey(text string) (secretKey, error) {
	text = strings.TrimSpace(text)
	var k secretKey
	if rest, ok := strings.CutPrefix(text, "aes:"); ok {
		k.aes, text = true, rest
	}
	if text == "" {
		return secretKey{}, errors.New("is empty")
	}
	b, err := hex.DecodeString(text)
	if err != nil {
		return secretKey{}, errNotHex
	}
	k.key = b
	return k, nil
}

// checkLength says whether the key's length fits its algorithm as the terminal takes it:
// TDES double or triple length (the PIN pad refuses single DES), AES 128/192/256.
func (k secretKey) checkLength() error {
	switch n := len(k.key); {
	case k.aes && (n == 16 || n == 24 || n == 32), !k.aes && (n == 16 || n == 24):
		return nil
	case k.aes:
		return fmt.Errorf("is %d bytes; an AES key is 16, 24 or 32", n)
	default:
		return fmt.Errorf("is %d bytes; a TDES key is 16 or 24 (an AES key is written aes:HEX)", n)
	}
}

// text is the key in the format parseSecretKey reads.
func (k secretKey) text() string {
	s := strings.ToUpper(hex.EncodeToString(k.key))
	if k.aes {
		return "aes:" + s
	}
	return s
}

// checkValue is the key's KCV as the terminal reports it: 3 bytes of E(K, 0…0) for TDES, of
// the CMAC of zeros for AES, in upper-case hex.
func (k secretKey) checkValue() (string, error) {
	var (
		cv  []byte
		err error
	)
	if k.aes {
		cv, err = kcv.AES(k.key, 3)
	} else {
		cv, err = kcv.TDES(k.key, 3)
	}
	if err != nil {
		return "", err
	}
	return strings.ToUpper(hex.EncodeToString(cv)), nil
}

// readSecretKeyFile reads a key file of one line: hex, or aes:hex.
func readSecretKeyFile(path string) (secretKey, error) {
	raw, err := readLimited(path, 4096)
	if err != nil {
		return secretKey{}, err
	}
	defer clear(raw)
	k, err := parseSecretKey(string(raw))
	if err != nil {
		return secretKey{}, fmt.Errorf("%s %v", path, err)
	}
	return k, nil
}

// kekIndexOf is the master key index of a KEK role, or -1.
func kekIndexOf(role string) int {
	m := kekRoleRE.FindStringSubmatch(role)
	if m == nil {
		return -1
	}
	i, _ := strconv.Atoi(m[1])
	return i
}
