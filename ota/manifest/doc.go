// Package manifest is the signed release manifest of an over-the-air update: which
// components (agent builds, per-model system components, APKs, files, certificates,
// configuration) make up a release, their exact sizes and SHA-256 digests, and the policy that
// decides whether a terminal may take it.
//
// The agent does not ship a TUF client (go-tuf costs 3.4 MiB of a 12 MiB budget); instead a
// manifest is one COSE_Sign1 (EdDSA) over the core deterministic CBOR of a Release, signed by a
// distributor release key, and this package gives the protections TUF names. Each attack, and
// what stops it here or downstream:
//
//   - Arbitrary software installation: Verify accepts only a COSE_Sign1 whose protected
//     header names EdDSA and the key id of a trusted release key (bad_algorithm, unknown_key)
//     and whose signature verifies (bad_signature); the payload is decoded strictly (unknown
//     fields, duplicate keys and non-canonical encodings are malformed) and only after the
//     signature is checked. Every component carries its exact Size and SHA256, which the
//     transfer checks before anything is installed (hash_mismatch). Release keys are not the
//     TMS command key: a stolen broker or TMS account cannot mint releases.
//   - Rollback attack (an older, validly signed release replayed): each key signs releases
//     with an increasing Serial, and the terminal keeps the highest serial it accepted per key
//     id; Check refuses a lower one (rollback). Independently, a component whose version is
//     lower than the installed one is refused (downgrade) unless the operator forces it.
//   - Fast-forward attack (a stolen key signs serial 2^63 so genuine releases look old): the
//     high-water marks are per key id, so the distributor withdraws the key from the
//     terminals' trusted set (the release is then unknown_key) and continues with a new key
//     whose mark starts at zero.
//   - Indefinite freeze (a terminal kept on a stale release by replaying it for ever): a
//     release expires (expired), at most MaxValidity after it was issued; Validate refuses a
//     longer window and Check refuses a release issued more than a day in the terminal's
//     future (not_yet_valid), which bounds what clock skew can stretch.
//   - Endless data: the signed form is at most MaxManifestSize, checked before any decoding
//     (oversized), with at most 256 components; each component is at most Terminal.MaxSize
//     (too_large) and the transfer stops at the signed Size (too_large, truncated).
//   - Mix-and-match (components of different releases combined): one signature covers the
//     whole set; a command names its sources by component name and every name must be in the
//     release it carries (mixed_release), so a source cannot bring in a component the
//     release does not list.
//   - Wrong hardware: components are bound to board models (compared case-insensitively) and
//     agent builds to an OS/architecture; a release with nothing for this model is refused
//     (wrong_model), a named component for another model or architecture is refused
//     (wrong_model, wrong_arch), a release with agent builds but none for this architecture is
//     refused (wrong_arch), and Validate refuses two agent builds that could both apply to one
//     terminal.
//
// Not covered, deliberately: threshold signatures (one release key signs; keys are rotated
// through the agent's configuration), and a key signing two different releases under one
// serial (the terminal keeps the serial, not the digest; the signer's tooling must not reuse
// serials).
//
// Every rejection is an *Error with a Reason from one vocabulary shared by the transfer and
// the orchestration, so an ack can say exactly why an update was refused.
package manifest
