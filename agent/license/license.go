package license

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/posagent/posagent/agent/tmsproto"
)

// Format constants.
const (
	// Version is the payload version this package reads and writes.
	Version = 1
	// MaxSize bounds a whole licence (the COSE_Sign1), checked before anything is decoded.
	MaxSize = 8 << 10
	// MaxIDLen bounds the licence id.
	MaxIDLen = 128
	// MaxFeatures bounds the number of features of one licence.
	MaxFeatures = 64
	// AnyPlatform in the platform field makes a licence valid on every platform.
	AnyPlatform = "*"
	// DefaultSkew is the clock-skew allowance applied to notBefore and expires.
	DefaultSkew = 5 * time.Minute
)

// Platforms are the platforms licences are issued for (besides AnyPlatform). linux-amd64 is
// the simulator and developer builds.
var Platforms = []string{"linux-arm64", "linux-armv7", "android-arm64", "linux-amd64"}

// The sentinel errors. Every error of Parse, Verify, Bind, Valid and Store.Install is an
// *Error whose Kind is one of the first seven; Store.Check wraps ErrUnlicensed.
var (
	ErrMalformed     = errors.New("malformed licence")
	ErrSignature     = errors.New("licence signature does not verify")
	ErrUnknownKey    = errors.New("licence signed with an unknown release key")
	ErrOtherTerminal = errors.New("licence issued for another terminal")
	ErrOtherPlatform = errors.New("licence issued for another platform")
	ErrExpired       = errors.New("licence expired")
	ErrNotYetValid   = errors.New("licence not yet valid")

	// ErrUnlicensed is wrapped by every refusal of Store.Check, together with the cause:
	// ErrNoLicense, ErrFeatureNotCovered, or one of the errors above.
	ErrUnlicensed        = errors.New("unlicensed")
	ErrNoLicense         = errors.New("no licence installed")
	ErrFeatureNotCovered = errors.New("feature not covered by the licence")
)

var reasons = map[error]string{
	ErrMalformed:         "malformed",
	ErrSignature:         "bad_signature",
	ErrUnknownKey:        "unknown_key",
	ErrOtherTerminal:     "other_terminal",
	ErrOtherPlatform:     "other_platform",
	ErrExpired:           "expired",
	ErrNotYetValid:       "not_yet_valid",
	ErrNoLicense:         "missing",
	ErrFeatureNotCovered: "feature_not_covered",
}

// Error is a licence refused, and why.
type Error struct {
	Kind   error  // one of the sentinel errors
	Detail string // human-readable detail
	Err    error  // underlying cause, if any
}

func (e *Error) Error() string {
	s := "license: " + e.Kind.Error()
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap makes errors.Is match the Kind and the cause.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

// Reason is the machine-readable form of Kind ("expired", "bad_signature", …).
func (e *Error) Reason() string { return reasons[e.Kind] }

// ReasonOf returns the machine-readable reason carried by err, or "internal".
func ReasonOf(err error) string {
	var le *Error
	if errors.As(err, &le) {
		return le.Reason()
	}
	for kind, r := range reasons {
		if errors.Is(err, kind) {
			return r
		}
	}
	return "internal"
}

func fail(kind error, cause error, format string, args ...any) *Error {
	return &Error{Kind: kind, Detail: fmt.Sprintf(format, args...), Err: cause}
}

// License is the signed payload.
type License struct {
	V         uint     `cbor:"v" json:"v"`
	ID        string   `cbor:"id" json:"id"`
	Serial    string   `cbor:"serial" json:"serial"`
	Platform  string   `cbor:"platform" json:"platform"`
	Features  []string `cbor:"features" json:"features"`
	Issued    int64    `cbor:"issued" json:"issued"`       // unix seconds
	NotBefore int64    `cbor:"notBefore" json:"notBefore"` // unix seconds
	Expires   int64    `cbor:"expires" json:"expires"`     // unix seconds; 0 = never
}

// Info is a decoded licence and the release key id it is signed under.
type Info struct {
	License
	KeyID string `json:"kid"`
}

// Terminal is what a licence is bound to.
type Terminal struct {
	Serial   string
	Platform string
}

var (
	idRe       = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/-]*$`)
	featureRe  = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	platformRe = regexp.MustCompile(`^[a-z0-9]{1,32}-[a-z0-9]{1,32}$`)
)

// Validate checks the payload's fields on their own (not the signature, terminal or time).
func (l *License) Validate() error {
	switch {
	case l.V != Version:
		return fail(ErrMalformed, nil, "version %d, want %d", l.V, Version)
	case len(l.ID) == 0 || len(l.ID) > MaxIDLen || !idRe.MatchString(l.ID):
		return fail(ErrMalformed, nil, "id %q: must be 1..%d of [A-Za-z0-9._:/-]", l.ID, MaxIDLen)
	case tmsproto.ValidDeviceID(l.Serial) != nil:
		return fail(ErrMalformed, nil, "serial %q: must match [A-Za-z0-9_-]{1,64}", l.Serial)
	case l.Platform != AnyPlatform && !platformRe.MatchString(l.Platform):
		return fail(ErrMalformed, nil, "platform %q: want os-arch (e.g. linux-arm64) or *", l.Platform)
	case len(l.Features) == 0 || len(l.Features) > MaxFeatures:
		return fail(ErrMalformed, nil, "%d features, want 1..%d", len(l.Features), MaxFeatures)
	case l.Issued <= 0:
		return fail(ErrMalformed, nil, "issued must be positive")
	case l.NotBefore < 0 || l.Expires < 0:
		return fail(ErrMalformed, nil, "notBefore and expires must not be negative")
	case l.Expires != 0 && l.Expires <= l.NotBefore:
		return fail(ErrMalformed, nil, "expires %d not after notBefore %d", l.Expires, l.NotBefore)
	}
	seen := make(map[string]bool, len(l.Features))
	for _, f := range l.Features {
		if !featureRe.MatchString(f) {
			return fail(ErrMalformed, nil, "feature %q: must match [a-z0-9][a-z0-9._-]{0,63}", f)
		}
		if seen[f] {
			return fail(ErrMalformed, nil, "feature %q listed twice", f)
		}
		seen[f] = true
	}
	return nil
}

// Covers reports whether the licence includes feature.
func (l *License) Covers(feature string) bool { return slices.Contains(l.Features, feature) }

// Bind checks that the licence is for terminal t.
func (l *License) Bind(t Terminal) error {
	if l.Serial != t.Serial {
		return fail(ErrOtherTerminal, nil, "issued for serial %q, this terminal is %q", l.Serial, t.Serial)
	}
	if l.Platform != AnyPlatform && l.Platform != t.Platform {
		return fail(ErrOtherPlatform, nil, "issued for %q, this terminal is %q", l.Platform, t.Platform)
	}
	return nil
}

// Valid checks the validity window at now, allowing skew either way.
func (l *License) Valid(now time.Time, skew time.Duration) error {
	s := int64(skew / time.Second)
	t := now.Unix()
	if l.NotBefore != 0 && t+s < l.NotBefore {
		return fail(ErrNotYetValid, nil, "valid from %s", time.Unix(l.NotBefore, 0).UTC().Format(time.RFC3339))
	}
	if l.Expires != 0 && t-s >= l.Expires {
		return fail(ErrExpired, nil, "expired at %s", time.Unix(l.Expires, 0).UTC().Format(time.RFC3339))
	}
	return nil
}

// Sign encodes l (after validating it) and signs it with a release key, naming kid in the
// protected header.
func Sign(key ed25519.PrivateKey, kid string, l License) ([]byte, error) {
	if kid == "" {
		return nil, errors.New("license: empty key id")
	}
	if err := l.Validate(); err != nil {
		return nil, err
	}
	payload, err := tmsproto.Marshal(l)
	if err != nil {
		return nil, fmt.Errorf("license: encode: %w", err)
	}
	raw, err := tmsproto.Sign1(key, kid, payload)
	if err != nil {
		return nil, fmt.Errorf("license: %w", err)
	}
	if len(raw) > MaxSize {
		return nil, fmt.Errorf("license: %d bytes exceeds %d", len(raw), MaxSize)
	}
	return raw, nil
}

// parsed is a licence decoded but not yet verified.
type parsed struct {
	*tmsproto.Signed1
	lic License
}

// sign1Kinds are the licence errors of the COSE_Sign1 checks (a wrong algorithm is simply
// not a licence).
var sign1Kinds = map[tmsproto.Sign1Step]error{tmsproto.Sign1Malformed: ErrMalformed, tmsproto.Sign1Algorithm: ErrMalformed,
	tmsproto.Sign1NoKeyID: ErrUnknownKey, tmsproto.Sign1UnknownKey: ErrUnknownKey, tmsproto.Sign1Signature: ErrSignature}

func sign1Error(err error) error {
	return fail(sign1Kinds[tmsproto.Sign1StepOf(err)], err, "release key")
}

func parse(raw []byte) (*parsed, error) {
	if len(raw) > MaxSize {
		return nil, fail(ErrMalformed, nil, "%d bytes exceeds %d", len(raw), MaxSize)
	}
	s, err := tmsproto.OpenSign1(raw)
	if err != nil {
		return nil, sign1Error(err)
	}
	p := &parsed{Signed1: s}
	if err := tmsproto.Unmarshal(p.Payload, &p.lic); err != nil {
		return nil, fail(ErrMalformed, err, "payload")
	}
	if err := p.lic.Validate(); err != nil {
		return nil, err
	}
	// The payload must be exactly the core deterministic encoding of its fields: this refuses
	// missing fields and alternative encodings of the same values.
	canon, err := tmsproto.Marshal(p.lic)
	if err != nil || !bytes.Equal(canon, p.Payload) {
		return nil, fail(ErrMalformed, nil, "payload is not the deterministic encoding of every field (missing field?)")
	}
	return p, nil
}

// Parse decodes a licence without checking its signature: for tools that display one. The
// agent always goes through a Verifier.
func Parse(raw []byte) (Info, error) {
	p, err := parse(raw)
	if err != nil {
		return Info{}, err
	}
	return Info{License: p.lic, KeyID: p.KeyID}, nil
}

// Verifier checks licences against the distributor's release keys.
type Verifier struct {
	keys tmsproto.Sign1Keys
}

// NewVerifier trusts the given Ed25519 release keys, by key id. No keys is allowed: every
// licence is then refused with ErrUnknownKey.
func NewVerifier(keys map[string]ed25519.PublicKey) (*Verifier, error) {
	k, err := tmsproto.NewSign1Keys(keys)
	if err != nil {
		return nil, fmt.Errorf("license: release %w", err)
	}
	return &Verifier{keys: k}, nil
}

// Verify decodes raw and checks its signature with a trusted release key. It does not judge
// the terminal or the time: see Bind and Valid (or VerifyFor).
func (v *Verifier) Verify(raw []byte) (Info, error) {
	p, err := parse(raw)
	if err != nil {
		return Info{}, err
	}
	if err := p.Verify(v.keys); err != nil {
		return Info{}, sign1Error(err)
	}
	return Info{License: p.lic, KeyID: p.KeyID}, nil
}

// VerifyFor is Verify, then Bind to t, then Valid at now with skew: everything an install
// checks.
func (v *Verifier) VerifyFor(raw []byte, t Terminal, now time.Time, skew time.Duration) (Info, error) {
	info, err := v.Verify(raw)
	if err != nil {
		return Info{}, err
	}
	if err := info.Bind(t); err != nil {
		return Info{}, err
	}
	if err := info.Valid(now, skew); err != nil {
		return Info{}, err
	}
	return info, nil
}
