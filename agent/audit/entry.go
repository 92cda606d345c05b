// Package audit is the terminal's tamper-evident audit log: every login, failure and action —
// from a technician on the diagnostics port, an operator, a cash register or the TMS — is one
// entry in a hash chain kept in the database and sent up on up/log/audit.
//
// Each entry carries the hash of the one before it, and its own hash covers its exact encoded
// bytes, so an edited, removed or inserted entry breaks the chain at that point, both in the
// terminal's copy and in the copy the TMS receives.
package audit

import "time"

// Sources of audit events.
const (
	SourceDiag     = "diag"     // a technician on the diagnostics port (web console or CLI)
	SourceTMS      = "tms"      // a command from the TMS
	SourceOperator = "operator" // the terminal's operators and administrator
	SourceECR      = "ecr"      // cash-register registrations and tokens
	SourceAgent    = "agent"    // the agent itself (start, policy changes)
)

// Outcomes of audit events.
const (
	OutcomeOK     = "ok"
	OutcomeDenied = "denied" // refused: bad credentials, lock-out, not allowed for the role
	OutcomeFailed = "failed" // allowed, but the action failed
)

// Event is what a caller records. Fields must not carry secrets: Append replaces the value of
// any field whose name looks like one (password, token, pin, key, track, pan, secret, cookie,
// csrf) with "[redacted]".
type Event struct {
	Source  string         // one of the Source constants
	Actor   string         // technician id, "admin", operator code, cash-register id, command id
	Action  string         // e.g. "diag.login", "selftest", "operator.signOn", "cmd.config.apply"
	Outcome string         // one of the Outcome constants; empty means OutcomeOK
	Fields  map[string]any // small scalar details (strings, integers, booleans)
}

// Entry is one link of the chain as stored and as sent up. Its encoded form — the bytes that
// are hashed — is wireEntry (record.go): the same CBOR names, with Time as unix milliseconds
// under "t"; Hash is not part of it.
type Entry struct {
	Seq     uint64         `cbor:"seq" json:"seq"`
	Time    time.Time      `cbor:"-" json:"time"`
	Source  string         `cbor:"src" json:"source"`
	Actor   string         `cbor:"actor,omitempty" json:"actor,omitempty"`
	Action  string         `cbor:"action" json:"action"`
	Outcome string         `cbor:"outcome" json:"outcome"`
	Fields  map[string]any `cbor:"fields,omitempty" json:"fields,omitempty"`
	Prev    []byte         `cbor:"prev" json:"prev"` // hash of the entry before (32 zero bytes for the first)
	Hash    []byte         `cbor:"-" json:"hash"`    // SHA-256 over the domain tag and the encoded entry
}
