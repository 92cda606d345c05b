// Package operator keeps the people who work the terminal (seed 004 §6.2): the system
// administrator, the supervisors and the operators, their passwords, the session of the one
// signed on at the terminal, supervisor approvals and the administrator's password check.
//
// The table lives in bucket "operators" of the agent's database, one record per account
// (format byte 1, then deterministic CBOR). Every change, including each counted password
// failure, is one committed transaction, so a power cut leaves the old or the new table.
// Passwords are stored as PBKDF2-HMAC-SHA256 with a random salt per hash and the iteration
// count beside it; they are never logged, and neither are hashes. Sessions live in memory
// only: after a restart everybody signs on again (seed 004 §6.3.1 note).
//
// Roles, the factory accounts, the rules and the lock-out policy are described in
// docs/operators.md.
package operator
