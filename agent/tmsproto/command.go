package tmsproto

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/veraison/go-cose"
)

// MaxCommandIDLen bounds a command id.
const MaxCommandIDLen = 128

// RejectError says why a command was refused before anything was executed.
type RejectError struct {
	Reason Reason
	Err    error
}

func (e *RejectError) Error() string {
	if e.Err == nil {
		return string(e.Reason)
	}
	return string(e.Reason) + ": " + e.Err.Error()
}
func (e *RejectError) Unwrap() error { return e.Err }

func reject(r Reason, format string, args ...any) *RejectError {
	return &RejectError{Reason: r, Err: fmt.Errorf(format, args...)}
}

// ReasonOf returns the Reason carried by err (a *RejectError or *DecodeError), or
// ReasonInternal.
func ReasonOf(err error) Reason {
	var re *RejectError
	if errors.As(err, &re) {
		return re.Reason
	}
	var de *DecodeError
	if errors.As(err, &de) {
		return de.Reason
	}
	return ReasonInternal
}

// Ref is a short stable reference to a raw message, so an ack can point at a command whose id
// could not be read.
func Ref(raw []byte) string {
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:8])
}

// SignCommand encodes cmd and wraps it in a COSE_Sign1 signed with key, naming kid in the
// protected header.
func SignCommand(key ed25519.PrivateKey, kid string, cmd Command) ([]byte, error) {
	payload, err := Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("encode command: %w", err)
	}
	return Sign1(key, kid, payload)
}

// Sign1 wraps payload in a COSE_Sign1 signed with the Ed25519 key, algorithm and kid in the
// protected header: the one signed form of commands, licences and release manifests.
func Sign1(key ed25519.PrivateKey, kid string, payload []byte) ([]byte, error) {
	signer, err := cose.NewSigner(cose.AlgorithmEdDSA, key)
	if err != nil {
		return nil, fmt.Errorf("signer: %w", err)
	}
	msg := cose.NewSign1Message()
	msg.Headers.Protected.SetAlgorithm(cose.AlgorithmEdDSA)
	msg.Headers.Protected[cose.HeaderLabelKeyID] = []byte(kid)
	msg.Payload = payload
	if err := msg.Sign(rand.Reader, nil, signer); err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return msg.MarshalCBOR()
}

// Verifier checks signed commands against the keys trusted at provisioning.
type Verifier struct {
	keys Sign1Keys
}

// NewVerifier trusts the given Ed25519 public keys, by key id.
func NewVerifier(keys map[string]ed25519.PublicKey) (*Verifier, error) {
	k, err := NewSign1Keys(keys)
	if err != nil {
		return nil, err
	}
	return &Verifier{keys: k}, nil
}

// commandReasons are the reject reasons of the COSE_Sign1 checks.
var commandReasons = map[Sign1Step]Reason{Sign1Malformed: ReasonMalformed, Sign1Algorithm: ReasonBadAlgorithm,
	Sign1NoKeyID: ReasonUnknownKey, Sign1UnknownKey: ReasonUnknownKey, Sign1Signature: ReasonBadSignature}

// Verify authenticates raw (a COSE_Sign1) and decodes the command inside. It checks only what
// the message itself proves: size, form, key, signature and command shape. Expiry, replay and
// the kind are the dispatcher's business, since they depend on the clock and on history.
// Every error is a *RejectError.
func (v *Verifier) Verify(raw []byte) (*Command, error) {
	if len(raw) > MaxCommandSize {
		return nil, reject(ReasonOversized, "%d bytes exceeds %d", len(raw), MaxCommandSize)
	}
	msg, err := OpenSign1(raw)
	if err == nil {
		err = msg.Verify(v.keys)
	}
	if err != nil {
		return nil, &RejectError{Reason: commandReasons[Sign1StepOf(err)], Err: err}
	}
	var cmd Command
	if err := Unmarshal(msg.Payload, &cmd); err != nil {
		return nil, &RejectError{Reason: ReasonMalformed, Err: err}
	}
	switch {
	case cmd.ID == "" || len(cmd.ID) > MaxCommandIDLen:
		return nil, reject(ReasonInvalidID, "id must be 1..%d bytes", MaxCommandIDLen)
	case cmd.Kind == "":
		return nil, reject(ReasonMalformed, "no kind")
	case cmd.Seq == 0:
		return nil, reject(ReasonMalformed, "seq must be positive")
	}
	if len(cmd.Body) == 0 {
		cmd.Body = emptyMap
	}
	return &cmd, nil
}

var emptyMap = []byte{0xa0}

// DecodeEnvelope decodes an uplink payload.
func DecodeEnvelope(data []byte) (*Envelope, error) {
	var env Envelope
	if err := Unmarshal(data, &env); err != nil {
		return nil, err
	}
	if env.V != Version {
		return nil, &DecodeError{Reason: ReasonMalformed, Err: fmt.Errorf("envelope version %d, want %d", env.V, Version)}
	}
	if env.Stream == "" || env.Kind == "" {
		return nil, &DecodeError{Reason: ReasonMalformed, Err: errors.New("envelope without stream or kind")}
	}
	return &env, nil
}

// ParseCommandUnverified decodes the command inside a COSE_Sign1 without checking the
// signature. Only for tools that display traffic; the agent always uses Verifier.Verify.
func ParseCommandUnverified(raw []byte) (*Command, error) {
	var msg cose.Sign1Message
	if err := msg.UnmarshalCBOR(raw); err != nil {
		return nil, err
	}
	var cmd Command
	if err := Unmarshal(msg.Payload, &cmd); err != nil {
		return nil, err
	}
	return &cmd, nil
}
