// Package tmsproto is the wire contract between the agent and a TMS: topics, the CBOR uplink
// envelope, signed commands (COSE_Sign1 with Ed25519) and command acknowledgements.
//
// Both sides use it: the agent to verify commands and encode its uplink, cmd/tmsctl to sign
// commands and decode the uplink. docs/protocol.md is the normative description; keep the two
// in step.
//
// Every decoder here bounds its input before decoding and rejects anything it does not know
// (unknown fields, duplicate map keys, indefinite lengths, tags), because the bytes come from a
// network and a mistake here is a remote crash or a command executed twice.
package tmsproto
