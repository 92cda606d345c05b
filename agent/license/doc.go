// Package license holds the terminal's software licence: the file a distributor issues for one
// terminal, verified and kept in the agent's database.
//
// A licence is a COSE_Sign1 (RFC 9052, EdDSA over Ed25519, the key id in the protected header)
// signed with a release key of the distributor. Release keys are not the TMS command keys: the
// TMS only carries the licence (command license.put) and cannot forge one. The payload is a CBOR
// map (core deterministic encoding, decoded strictly: size bound first, unknown or missing
// fields, duplicate keys, indefinite lengths and tags refused):
//
//	{v: 1, id, serial, platform, features: [text], issued, notBefore, expires}
//
// A licence is bound to one terminal serial number and one platform ("linux-arm64",
// "linux-armv7", "android-arm64", or "*" for any), carries the features it covers ("payments",
// "qr", "ecr", …) and a validity window (unix seconds; expires 0 = never) judged with a small
// clock-skew allowance.
//
// # What is enforced
//
// Store.Check(feature) is the enforcement API: the payment engine calls Check("payments")
// before every payment operation and the cash-register (ECR) API calls Check("ecr"); without a
// valid licence covering the feature they refuse the operation with an error wrapping
// ErrUnlicensed. Expiry is judged at every call, so a licence that expires while the agent runs
// stops payments at that moment. Terminal management never depends on the licence: commands,
// configuration, statistics, logs and software updates keep working on an unlicensed terminal,
// which is how it gets its licence (it asks with a license.request record on up/req).
//
// A licence stored earlier is verified again when the store opens; one that no longer verifies
// (its release key was withdrawn, or the terminal's serial changed) is treated as absent, with
// the reason logged and reported in the statistics.
//
// Every failure is an *Error whose Kind is one of the sentinel errors (ErrMalformed,
// ErrSignature, ErrUnknownKey, ErrOtherTerminal, ErrOtherPlatform, ErrExpired,
// ErrNotYetValid), so errors.Is works; nothing in this package panics on input.
package license
