package manifest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/posagent/posagent/agent/tmsproto"
)

// ErrNoKeyID is returned by Sign for an empty key id.
var ErrNoKeyID = errors.New("manifest: empty key id")

// Sign validates r, encodes it (core deterministic CBOR) and signs it with a release key as a
// COSE_Sign1 naming kid in the protected header. Ed25519 is deterministic, so the same release
// signed twice with one key gives the same bytes (and the same Digest).
func Sign(key ed25519.PrivateKey, kid string, r Release) ([]byte, error) {
	if kid == "" {
		return nil, ErrNoKeyID
	}
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("manifest: release key is %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	payload, err := tmsproto.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("manifest: encode: %w", err)
	}
	raw, err := tmsproto.Sign1(key, kid, payload)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if len(raw) > MaxManifestSize {
		return nil, fail(ReasonOversized, "", "%d bytes exceeds %d: split the release", len(raw), MaxManifestSize)
	}
	return raw, nil
}

// Signed is a verified (or, from Parse, merely decoded) release.
type Signed struct {
	Release Release
	KeyID   string   // the release key it is signed under
	Digest  [32]byte // SHA-256 of the raw signed bytes: names this exact manifest
}

// Verifier checks manifests against the distributor's release keys.
type Verifier struct {
	keys tmsproto.Sign1Keys
}

// NewVerifier trusts the given Ed25519 release keys, by key id. No keys is allowed: every
// manifest is then unknown_key.
func NewVerifier(keys map[string]ed25519.PublicKey) (*Verifier, error) {
	k, err := tmsproto.NewSign1Keys(keys)
	if err != nil {
		return nil, fmt.Errorf("manifest: release %w", err)
	}
	return &Verifier{keys: k}, nil
}

// envelope is the COSE layer of a manifest, decoded but not yet verified.
type envelope struct {
	*tmsproto.Signed1
}

// sign1Reasons are the manifest reasons of the COSE_Sign1 checks.
var sign1Reasons = map[tmsproto.Sign1Step]Reason{tmsproto.Sign1Malformed: ReasonMalformed,
	tmsproto.Sign1Algorithm: ReasonBadAlgorithm, tmsproto.Sign1NoKeyID: ReasonUnknownKey,
	tmsproto.Sign1UnknownKey: ReasonUnknownKey, tmsproto.Sign1Signature: ReasonBadSignature}

func sign1Error(err error) error {
	return &Error{Reason: sign1Reasons[tmsproto.Sign1StepOf(err)], Err: err}
}

func openEnvelope(raw []byte) (*envelope, error) {
	if len(raw) > MaxManifestSize {
		return nil, fail(ReasonOversized, "", "%d bytes exceeds %d", len(raw), MaxManifestSize)
	}
	s, err := tmsproto.OpenSign1(raw)
	if err != nil {
		return nil, sign1Error(err)
	}
	return &envelope{s}, nil
}

// decode reads the payload strictly: unknown fields and duplicate keys are refused by
// tmsproto.Unmarshal, and the payload must be exactly the core deterministic encoding of what
// it decodes to, so one release has one signed form (and one Digest) and no field can be
// smuggled in an alternative encoding. Then the shape rules.
func (e *envelope) decode(raw []byte) (*Signed, error) {
	s := &Signed{KeyID: e.KeyID, Digest: sha256.Sum256(raw)}
	if err := tmsproto.Unmarshal(e.Payload, &s.Release); err != nil {
		return nil, &Error{Reason: ReasonMalformed, Err: fmt.Errorf("payload: %w", err)}
	}
	canon, err := tmsproto.Marshal(s.Release)
	if err != nil || !bytes.Equal(canon, e.Payload) {
		return nil, fail(ReasonMalformed, "", "payload is not the deterministic encoding of a release")
	}
	if err := s.Release.Validate(); err != nil {
		return nil, err
	}
	return s, nil
}

// Verify checks raw in this order, each failure an *Error: size (oversized), COSE_Sign1 form
// (malformed), EdDSA in the protected header (bad_algorithm), a trusted key id
// (unknown_key), the signature (bad_signature), then the strict decoding of the payload
// (malformed) and the shape rules (invalid). Nothing of the payload is decoded before the
// signature is known good. Verify does not judge the terminal or the time: see Check.
func (v *Verifier) Verify(raw []byte) (*Signed, error) {
	e, err := openEnvelope(raw)
	if err != nil {
		return nil, err
	}
	if err := e.Verify(v.keys); err != nil {
		return nil, sign1Error(err)
	}
	return e.decode(raw)
}

// Parse decodes a manifest without checking its signature, for tools that display one. The
// agent always goes through a Verifier.
func Parse(raw []byte) (*Signed, error) {
	e, err := openEnvelope(raw)
	if err != nil {
		return nil, err
	}
	return e.decode(raw)
}
