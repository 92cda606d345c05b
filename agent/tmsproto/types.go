package tmsproto

import (
	"reflect"

	"github.com/fxamacker/cbor/v2"
)

var typeMapStringAny = reflect.TypeOf(map[string]any(nil))

// Version is the envelope version this package speaks.
const Version = 1

// Envelope is every uplink payload. Seq increases by one per Stream and survives restarts, so
// the TMS de-duplicates re-sends by (deviceId, stream, seq) and sees any loss as a gap.
type Envelope struct {
	V      uint            `cbor:"v"`
	Stream string          `cbor:"stream"`
	Seq    uint64          `cbor:"seq"`
	TS     int64           `cbor:"ts"` // unix milliseconds
	Kind   string          `cbor:"kind"`
	Body   cbor.RawMessage `cbor:"body"`
}

// Command is the payload inside a signed down/cmd message.
type Command struct {
	ID      string          `cbor:"id"`
	Seq     uint64          `cbor:"seq"`
	Kind    string          `cbor:"kind"`
	Issued  int64           `cbor:"issued"`            // unix seconds
	Expires int64           `cbor:"expires,omitempty"` // unix seconds; 0 = never
	Body    cbor.RawMessage `cbor:"body"`
}

// State is a command's lifecycle state as reported on up/ack.
type State string

const (
	StateAccepted  State = "accepted"
	StateRunning   State = "running"
	StateSucceeded State = "succeeded"
	StateFailed    State = "failed"
	StateRejected  State = "rejected"
)

// Final reports whether no further ack follows this state.
func (s State) Final() bool {
	return s == StateSucceeded || s == StateFailed || s == StateRejected
}

// Reason is a machine-readable cause carried by rejected and failed acks.
type Reason string

const (
	ReasonMalformed    Reason = "malformed"     // not a COSE_Sign1 / not a command
	ReasonOversized    Reason = "oversized"     // larger than MaxCommandSize
	ReasonBadSignature Reason = "bad_signature" // signature does not verify
	ReasonUnknownKey   Reason = "unknown_key"   // kid not among the trusted command keys
	ReasonBadAlgorithm Reason = "bad_algorithm" // not EdDSA
	ReasonExpired      Reason = "expired"       // past its expires time
	ReasonReplayedSeq  Reason = "replayed_seq"  // seq already executed or too old
	ReasonUnknownKind  Reason = "unknown_kind"  // no handler for this kind
	ReasonInvalidBody  Reason = "invalid_body"  // body does not fit the kind
	ReasonInvalidID    Reason = "invalid_id"    // empty or over-long command id
	ReasonExecFailed   Reason = "exec_failed"   // the handler failed
	ReasonInterrupted  Reason = "interrupted"   // the agent stopped mid-way and could not resume
	ReasonInternal     Reason = "internal"      // local storage or other internal failure
)

// Ack is the body of an up/ack record.
type Ack struct {
	ID       string `cbor:"id"`                 // command id; empty when it could not be read
	CmdSeq   uint64 `cbor:"cmdSeq,omitempty"`   // the command's seq
	Kind     string `cbor:"kind,omitempty"`     // the command's kind
	Ref      string `cbor:"ref,omitempty"`      // first 8 bytes of SHA-256 of the raw message, hex
	State    State  `cbor:"state"`              // lifecycle state
	Progress int    `cbor:"progress,omitempty"` // percent, with running
	Stage    string `cbor:"stage,omitempty"`    // a long command's stage (OTA: downloading, installing …)
	Reason   Reason `cbor:"reason,omitempty"`   // with rejected and failed
	Message  string `cbor:"message,omitempty"`  // human-readable detail
	// Duplicate is set when the ack repeats the recorded result of a command id seen before.
	Duplicate bool            `cbor:"duplicate,omitempty"`
	Result    cbor.RawMessage `cbor:"result,omitempty"` // kind-specific result, with succeeded
}

// Online is the body of the retained up/online record and of the Last Will.
type Online struct {
	Online  bool   `cbor:"online"`
	Agent   string `cbor:"agent,omitempty"`   // agent version
	Session uint64 `cbor:"session,omitempty"` // connection counter, persisted
}
