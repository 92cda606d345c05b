package audit

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"

	"github.com/posagent/posagent/agent/tmsproto"
)

// hashTag separates audit hashes from every other SHA-256 the agent computes, so a hash taken
// from another context can never stand in for an entry's.
const hashTag = "posagent-audit-v1\x00"

// HashSize is the length of an entry hash (SHA-256).
const HashSize = sha256.Size

// Limits on an entry. Append enforces them on what it records; the decoders refuse more.
const (
	MaxFields      = 32    // fields per entry
	MaxStringLen   = 256   // bytes in a field value, source, actor, action or outcome
	MaxFieldKeyLen = 64    // bytes in a field name
	MaxBodySize    = 16384 // bytes of an encoded entry
	// MaxRecordSize bounds an uplinked Record: the body, its hash and the CBOR framing.
	MaxRecordSize = MaxBodySize + HashSize + 16
)

// Errors of the decoders. A *DecodeError wraps one of them.
var (
	ErrMalformed = errors.New("audit: malformed record")
	ErrTooLarge  = errors.New("audit: record too large")
	ErrBadHash   = errors.New("audit: hash does not match the body")
)

// DecodeError says why a record or stored entry could not be read.
type DecodeError struct {
	Err    error // ErrMalformed, ErrTooLarge or ErrBadHash
	Detail string
}

func (e *DecodeError) Error() string {
	if e.Detail == "" {
		return e.Err.Error()
	}
	return e.Err.Error() + ": " + e.Detail
}
func (e *DecodeError) Unwrap() error { return e.Err }

// ErrBroken is matched (errors.Is) by every *ChainError.
var ErrBroken = errors.New("audit: chain broken")

// ChainError names the first entry at which a chain stops verifying.
type ChainError struct {
	Seq    uint64
	Reason string
}

func (e *ChainError) Error() string {
	return fmt.Sprintf("audit: chain broken at seq %d: %s", e.Seq, e.Reason)
}

// Is makes errors.Is(err, ErrBroken) true for any chain error.
func (e *ChainError) Is(target error) bool { return target == ErrBroken }

// Record is the uplink body on up/log/audit: the exact encoded entry and its hash, so the TMS
// can check the chain without trusting the terminal's decoder:
// Hash = SHA-256("posagent-audit-v1\x00" || Body).
type Record struct {
	Body []byte `cbor:"b"`
	Hash []byte `cbor:"h"`
}

// wireEntry is the encoded form of an Entry (the bytes that are hashed). Time travels as unix
// milliseconds so the encoding does not depend on a time library's choices.
type wireEntry struct {
	Seq     uint64         `cbor:"seq"`
	T       int64          `cbor:"t"`
	Source  string         `cbor:"src"`
	Actor   string         `cbor:"actor,omitempty"`
	Action  string         `cbor:"action"`
	Outcome string         `cbor:"outcome"`
	Fields  map[string]any `cbor:"fields,omitempty"`
	Prev    []byte         `cbor:"prev"`
}

// hashBody is the hash rule of the chain.
func hashBody(body []byte) []byte {
	h := sha256.New()
	h.Write([]byte(hashTag))
	h.Write(body)
	return h.Sum(nil)
}

// encodeEntry encodes e (Hash is ignored) deterministically.
func encodeEntry(e Entry) ([]byte, error) {
	w := wireEntry{
		Seq: e.Seq, T: e.Time.UnixMilli(), Source: e.Source, Actor: e.Actor, Action: e.Action,
		Outcome: e.Outcome, Fields: e.Fields, Prev: e.Prev,
	}
	body, err := tmsproto.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("audit: encode entry: %w", err)
	}
	if len(body) > MaxBodySize {
		return nil, fmt.Errorf("audit: encoded entry is %d bytes: %w", len(body), ErrTooLarge)
	}
	return body, nil
}

// decodeBody decodes and checks an encoded entry; the returned Entry carries the body's hash.
func decodeBody(body []byte) (Entry, error) {
	if len(body) > MaxBodySize {
		return Entry{}, &DecodeError{Err: ErrTooLarge, Detail: fmt.Sprintf("body of %d bytes", len(body))}
	}
	var w wireEntry
	if err := tmsproto.Unmarshal(body, &w); err != nil {
		return Entry{}, &DecodeError{Err: ErrMalformed, Detail: err.Error()}
	}
	if err := checkWire(&w); err != nil {
		return Entry{}, &DecodeError{Err: ErrMalformed, Detail: err.Error()}
	}
	return Entry{
		Seq: w.Seq, Time: time.UnixMilli(w.T).UTC(), Source: w.Source, Actor: w.Actor,
		Action: w.Action, Outcome: w.Outcome, Fields: w.Fields, Prev: w.Prev, Hash: hashBody(body),
	}, nil
}

func checkWire(w *wireEntry) error {
	switch {
	case w.Seq == 0:
		return errors.New("seq 0")
	case len(w.Prev) != HashSize:
		return fmt.Errorf("prev of %d bytes", len(w.Prev))
	case w.Source == "" || w.Action == "" || w.Outcome == "":
		return errors.New("source, action or outcome missing")
	case len(w.Fields) > MaxFields:
		return fmt.Errorf("%d fields", len(w.Fields))
	}
	for _, s := range []string{w.Source, w.Actor, w.Action, w.Outcome} {
		if len(s) > MaxStringLen || !utf8.ValidString(s) {
			return errors.New("bad source, actor, action or outcome")
		}
	}
	for k, v := range w.Fields {
		if k == "" || len(k) > MaxFieldKeyLen || !utf8.ValidString(k) {
			return errors.New("bad field name")
		}
		switch x := v.(type) {
		case string:
			if len(x) > MaxStringLen || !utf8.ValidString(x) {
				return errors.New("bad string field")
			}
		case bool, uint64, int64:
		case float64:
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return errors.New("non-finite number field")
			}
		default:
			return fmt.Errorf("field of type %T", v)
		}
	}
	return nil
}

// DecodeRecord strictly decodes an uplinked Record (the envelope body of an up/log/audit
// message), checks that its hash is the hash of its body and returns the entry. It does not
// check the chain: that is Verifier's job.
func DecodeRecord(raw []byte) (Entry, error) {
	e, err := decodeRecord(raw)
	if err != nil {
		return Entry{}, err
	}
	return e, nil
}

// decodeRecord is DecodeRecord, but also returns the entry when only the hash is wrong, so the
// Verifier can name its seq.
func decodeRecord(raw []byte) (Entry, error) {
	if len(raw) > MaxRecordSize {
		return Entry{}, &DecodeError{Err: ErrTooLarge, Detail: fmt.Sprintf("record of %d bytes", len(raw))}
	}
	var r Record
	if err := tmsproto.Unmarshal(raw, &r); err != nil {
		return Entry{}, &DecodeError{Err: ErrMalformed, Detail: err.Error()}
	}
	if len(r.Hash) != HashSize {
		return Entry{}, &DecodeError{Err: ErrMalformed, Detail: fmt.Sprintf("hash of %d bytes", len(r.Hash))}
	}
	e, err := decodeBody(r.Body)
	if err != nil {
		return Entry{}, err
	}
	if !bytes.Equal(e.Hash, r.Hash) {
		return e, &DecodeError{Err: ErrBadHash, Detail: fmt.Sprintf("seq %d", e.Seq)}
	}
	return e, nil
}

// Verifier checks a stream of uplinked records in seq order: each must be the next seq and
// carry the hash of the one before. The zero value expects the chain from its first entry
// (seq 1, prev all zeros); Resume starts it from a known link instead. A refused record leaves
// the Verifier unchanged, so the genuine next record is still accepted after a forged one.
// Not safe for concurrent use.
type Verifier struct {
	seq  uint64
	hash []byte // nil means the genesis link (32 zero bytes)
}

// Resume makes the next expected record seq+1 with prev = hash (a link already verified, or a
// pruned terminal's anchor).
func (v *Verifier) Resume(seq uint64, hash []byte) {
	v.seq, v.hash = seq, bytes.Clone(hash)
}

// Last returns the last verified link (0 and 32 zero bytes before any).
func (v *Verifier) Last() (seq uint64, hash []byte) {
	if v.hash == nil {
		return v.seq, make([]byte, HashSize)
	}
	return v.seq, bytes.Clone(v.hash)
}

// Next verifies one record (raw: the CBOR of a Record). It returns a *DecodeError for a record
// that cannot be read or whose hash does not match its body, and a *ChainError for a gap, a
// replay or a fork (a prev that is not the last verified hash).
func (v *Verifier) Next(raw []byte) (Entry, error) {
	e, err := decodeRecord(raw)
	if errors.Is(err, ErrBadHash) {
		return Entry{}, &ChainError{Seq: e.Seq, Reason: "edited: the hash is not the hash of the body"}
	}
	if err != nil {
		return Entry{}, err
	}
	want := v.seq + 1
	_, prev := v.Last()
	switch {
	case e.Seq < want:
		return Entry{}, &ChainError{Seq: e.Seq, Reason: fmt.Sprintf("replayed or out of order (next is %d)", want)}
	case e.Seq > want:
		return Entry{}, &ChainError{Seq: want, Reason: fmt.Sprintf("missing (got %d)", e.Seq)}
	case !bytes.Equal(e.Prev, prev):
		return Entry{}, &ChainError{Seq: e.Seq, Reason: "prev is not the hash of the entry before"}
	}
	v.seq, v.hash = e.Seq, bytes.Clone(e.Hash)
	return e, nil
}
