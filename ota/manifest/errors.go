package manifest

import (
	"errors"
	"fmt"
)

// Reason is the machine-readable cause of an OTA rejection, as reported in acks.
type Reason string

// The reasons. hash_mismatch and truncated are raised by the transfer and the orchestration;
// they are defined here so every OTA rejection has one vocabulary.
const (
	ReasonMalformed    Reason = "malformed"     // not a COSE_Sign1, or the payload is not a strict canonical Release
	ReasonOversized    Reason = "oversized"     // the signed form exceeds MaxManifestSize
	ReasonBadSignature Reason = "bad_signature" // the signature does not verify
	ReasonUnknownKey   Reason = "unknown_key"   // no key id, or a key id not trusted (or withdrawn)
	ReasonBadAlgorithm Reason = "bad_algorithm" // the protected algorithm is not EdDSA
	ReasonInvalid      Reason = "invalid"       // the release breaks a shape rule (Validate)
	ReasonExpired      Reason = "expired"       // now is after Expires
	ReasonNotYetValid  Reason = "not_yet_valid" // Issued is more than the clock skew in the future
	ReasonRollback     Reason = "rollback"      // Serial is below the key's high-water mark
	ReasonDowngrade    Reason = "downgrade"     // a component is older than the installed one
	ReasonWrongModel   Reason = "wrong_model"   // nothing for this board model, or a named component is for another
	ReasonWrongArch    Reason = "wrong_arch"    // no agent build for this architecture, or a named one is for another
	ReasonTooLarge     Reason = "too_large"     // a component exceeds the size bound, or a source gives more than Size
	ReasonMixedRelease Reason = "mixed_release" // a named component is not in the release
	ReasonHashMismatch Reason = "hash_mismatch" // the fetched bytes do not have the signed SHA-256
	ReasonTruncated    Reason = "truncated"     // the source ended before Size
)

// Error is a release or component refused, and why.
type Error struct {
	Reason    Reason
	Component string // the component concerned, "" for the release as a whole
	Err       error  // detail; never holds secrets
}

// Error reads "reason: component: detail", leaving out the parts that are empty.
func (e *Error) Error() string {
	s := string(e.Reason)
	if e.Component != "" {
		s += ": " + e.Component
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the detail.
func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, &Error{Reason: R}) test the reason; a target that names a
// component matches only that component.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok {
		return false
	}
	return t.Reason == e.Reason && (t.Component == "" || t.Component == e.Component)
}

// ReasonOf returns the Reason carried by err, or "" when it carries none.
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

func fail(r Reason, component string, format string, args ...any) *Error {
	return &Error{Reason: r, Component: component, Err: fmt.Errorf(format, args...)}
}
