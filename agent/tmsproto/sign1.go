package tmsproto

import (
	"crypto/ed25519"
	"errors"
	"fmt"

	"github.com/veraison/go-cose"
)

// The three signed documents of the project — commands (command key), licences and release
// manifests (release keys) — share one form: a COSE_Sign1 with EdDSA and the key id in the
// protected header, and an attached payload. Sign1, Sign1Keys and OpenSign1 are that form;
// each document maps a Sign1Error's step to its own vocabulary of refusals.

// Sign1Step names the check of a COSE_Sign1 that failed.
type Sign1Step int

// The checks, in the order they are made.
const (
	Sign1Malformed  Sign1Step = iota + 1 // not a COSE_Sign1, or no attached payload
	Sign1Algorithm                       // the protected algorithm is not EdDSA
	Sign1NoKeyID                         // no key id in the protected header
	Sign1UnknownKey                      // a key id not trusted
	Sign1Signature                       // the signature does not verify
)

// Sign1Error is a refused COSE_Sign1 and the check that refused it.
type Sign1Error struct {
	Step Sign1Step
	Err  error
}

func (e *Sign1Error) Error() string { return e.Err.Error() }
func (e *Sign1Error) Unwrap() error { return e.Err }

// Sign1StepOf is the failed check carried by err, 0 when it carries none.
func Sign1StepOf(err error) Sign1Step {
	var e *Sign1Error
	if errors.As(err, &e) {
		return e.Step
	}
	return 0
}

// Sign1Keys are trusted Ed25519 public keys by key id.
type Sign1Keys map[string]cose.Verifier

// NewSign1Keys checks and prepares keys. No keys is allowed: everything is then signed by an
// unknown key.
func NewSign1Keys(keys map[string]ed25519.PublicKey) (Sign1Keys, error) {
	out := make(Sign1Keys, len(keys))
	for kid, pub := range keys {
		if kid == "" {
			return nil, errors.New("key with an empty id")
		}
		if len(pub) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("key %q: %d bytes, want %d", kid, len(pub), ed25519.PublicKeySize)
		}
		cv, err := cose.NewVerifier(cose.AlgorithmEdDSA, pub)
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", kid, err)
		}
		out[kid] = cv
	}
	return out, nil
}

// Signed1 is an opened COSE_Sign1 whose signature is not checked yet.
type Signed1 struct {
	msg     cose.Sign1Message
	KeyID   string
	Payload []byte
}

// OpenSign1 decodes raw as a COSE_Sign1 with EdDSA, a key id and an attached payload,
// without checking the signature (tools display documents this way; the agent then calls
// Verify before it trusts a byte of the payload). The caller bounds raw's size first.
func OpenSign1(raw []byte) (*Signed1, error) {
	s := &Signed1{}
	if len(raw) == 0 {
		return nil, &Sign1Error{Sign1Malformed, errors.New("empty")}
	}
	if err := s.msg.UnmarshalCBOR(raw); err != nil {
		return nil, &Sign1Error{Sign1Malformed, fmt.Errorf("not a COSE_Sign1: %w", err)}
	}
	alg, err := s.msg.Headers.Protected.Algorithm()
	if err != nil || alg != cose.AlgorithmEdDSA {
		return nil, &Sign1Error{Sign1Algorithm, errors.New("protected algorithm must be EdDSA")}
	}
	kid, ok := s.msg.Headers.Protected[cose.HeaderLabelKeyID].([]byte)
	if !ok || len(kid) == 0 {
		return nil, &Sign1Error{Sign1NoKeyID, errors.New("no key id in the protected header")}
	}
	if s.msg.Payload == nil {
		return nil, &Sign1Error{Sign1Malformed, errors.New("no payload (detached payloads are not used)")}
	}
	s.KeyID, s.Payload = string(kid), s.msg.Payload
	return s, nil
}

// Verify checks the signature with the trusted key the message names.
func (s *Signed1) Verify(keys Sign1Keys) error {
	cv, ok := keys[s.KeyID]
	if !ok {
		return &Sign1Error{Sign1UnknownKey, fmt.Errorf("key id %q is not trusted", clipKID(s.KeyID))}
	}
	if err := s.msg.Verify(nil, cv); err != nil {
		return &Sign1Error{Sign1Signature, fmt.Errorf("key %q: %w", clipKID(s.KeyID), err)}
	}
	return nil
}

// clipKID keeps an attacker's key id from filling an ack or a log line.
func clipKID(kid string) string {
	if len(kid) > 64 {
		return kid[:64] + "…"
	}
	return kid
}
