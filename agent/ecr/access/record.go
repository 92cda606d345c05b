package access

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"
	"github.com/posagent/posagent/agent/store"
)

// BucketName is the top-level bbolt bucket this package owns: one record per registered cash
// register, keyed by its name.
const BucketName = "ecr.access"

// Limits.
const (
	// MaxNameLen bounds a cash register's name, in characters.
	MaxNameLen = 64
	// TokenLen is the length of an access or refresh token: 16 random bytes in hex.
	TokenLen = 32
	// SupersededTTL is how long a replaced access token is remembered, so that a cash register
	// still using it hears "Session expires and need to be updated" rather than "Authorization
	// failed".
	SupersededTTL = 24 * time.Hour
	// maxOld bounds the replaced tokens remembered per name: a cash register revoking in a loop
	// must not grow its record without end. Forgotten ones answer ErrUnknownToken, which is a
	// 401 as well.
	maxOld = 16
)

// expiryLayout is the API's expirationDate format ("Mar 7, 2023 15:02:56").
const expiryLayout = "Jan 2, 2006 15:04:05"

// FormatExpiry formats t as the API's expirationDate, in the terminal's local time.
func FormatExpiry(t time.Time) string { return t.Local().Format(expiryLayout) }

// Tokens is what an approved registration or a revoke hands to the cash register.
type Tokens struct {
	Access  string
	Refresh string
	Expires time.Time // of the access token; whole seconds
}

// hash is the SHA-256 of a token. Tokens carry 128 random bits, so a plain hash (no salt, no
// stretching) cannot be reversed by search.
type hash = [sha256.Size]byte

func hashToken(tok string) hash { return sha256.Sum256([]byte(tok)) }

// newToken returns TokenLen lowercase hex characters from crypto/rand.
func newToken() string {
	var b [TokenLen / 2]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// wellFormed reports whether tok could be a token this package issued, so that garbage is
// refused before it is hashed.
func wellFormed(tok string) bool {
	if len(tok) != TokenLen {
		return false
	}
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// ValidName reports whether name is acceptable as a cash register's name: 1..MaxNameLen
// printable characters of valid UTF-8, without leading or trailing spaces (the name is shown on
// the PIN pad, where "Kassa1" and "Kassa1 " could not be told apart).
func ValidName(name string) bool {
	if name == "" || !utf8.ValidString(name) || utf8.RuneCountInString(name) > MaxNameLen {
		return false
	}
	if strings.TrimSpace(name) != name {
		return false
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// record is one registered cash register as stored. Times are unix seconds.
type record struct {
	Name       string     `cbor:"name"`
	Registered int64      `cbor:"registered"` // last approved registration
	Expires    int64      `cbor:"expires"`    // of the current access token
	Access     []byte     `cbor:"access"`     // SHA-256 of the current access token
	Refresh    []byte     `cbor:"refresh"`    // SHA-256 of the current refresh token
	Old        []oldToken `cbor:"old,omitempty"`
}

// oldToken is a replaced access token, remembered for SupersededTTL.
type oldToken struct {
	Hash []byte `cbor:"hash"`
	At   int64  `cbor:"at"` // when it was replaced
}

// recordVersion is the first byte of the payload inside the store.Check frame.
const recordVersion = 1

var (
	encMode = func() cbor.EncMode {
		m, err := cbor.CoreDetEncOptions().EncMode()
		if err != nil {
			panic(err)
		}
		return m
	}()
	decMode = func() cbor.DecMode {
		m, err := cbor.DecOptions{DupMapKey: cbor.DupMapKeyEnforcedAPF, MaxArrayElements: 4 * maxOld,
			MaxMapPairs: 16, MaxNestedLevels: 4, IndefLength: cbor.IndefLengthForbidden,
			ExtraReturnErrors: cbor.ExtraDecErrorUnknownField}.DecMode()
		if err != nil {
			panic(err)
		}
		return m
	}()
)

// errCorrupt is wrapped by every decoding error: a record that cannot be trusted.
var errCorrupt = errors.New("access: corrupt record")

func encodeRecord(r *record) ([]byte, error) {
	b, err := encMode.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("access: encode %q: %w", r.Name, err)
	}
	return store.Check(append([]byte{recordVersion}, b...)), nil
}

// decodeRecord checks and decodes the record stored under key.
func decodeRecord(key, raw []byte) (*record, error) {
	payload, err := store.Checked(raw)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %v", errCorrupt, key, err)
	}
	if len(payload) < 2 || payload[0] != recordVersion {
		return nil, fmt.Errorf("%w %q: unknown version", errCorrupt, key)
	}
	var r record
	if err := decMode.Unmarshal(payload[1:], &r); err != nil {
		return nil, fmt.Errorf("%w %q: %v", errCorrupt, key, err)
	}
	switch {
	case !bytes.Equal([]byte(r.Name), key) || !ValidName(r.Name):
		return nil, fmt.Errorf("%w %q: name %q", errCorrupt, key, r.Name)
	case len(r.Access) != sha256.Size || len(r.Refresh) != sha256.Size:
		return nil, fmt.Errorf("%w %q: token hash length", errCorrupt, key)
	case len(r.Old) > maxOld:
		return nil, fmt.Errorf("%w %q: %d old tokens", errCorrupt, key, len(r.Old))
	}
	for _, o := range r.Old {
		if len(o.Hash) != sha256.Size {
			return nil, fmt.Errorf("%w %q: old token hash length", errCorrupt, key)
		}
	}
	return &r, nil
}

// supersede returns the remembered replaced tokens of r plus its current access token,
// replaced at now: those older than SupersededTTL dropped, at most maxOld kept (the newest).
func supersede(r *record, now time.Time) []oldToken {
	if r == nil {
		return nil
	}
	cut := now.Add(-SupersededTTL).Unix()
	out := make([]oldToken, 0, len(r.Old)+1)
	for _, o := range r.Old {
		if o.At > cut {
			out = append(out, o)
		}
	}
	out = append(out, oldToken{Hash: r.Access, At: now.Unix()})
	if len(out) > maxOld {
		out = out[len(out)-maxOld:]
	}
	return out
}
