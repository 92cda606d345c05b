// Package access is the protected mode of the cash-register (ECR) API: which cash registers
// may call the terminal, with which tokens, and the terminal's HTTPS certificate. It holds the
// state and the rules; the HTTP server (package ecr) maps them to the API's answers.
//
// # Registration
//
// A cash register asks for access by name (/v2/register). Register creates the one pending
// request and blocks until an operator decides on the terminal (Approve or Deny, from the PIN
// pad or the diagnostics port), RequestTTL passes, or the caller's context ends. The agent
// learns about requests through Requests, a coalescing notification channel: after each signal
// it calls Pending and shows the request, or clears the screen when there is none. One channel
// covers both the appearance and the end (approval, denial, timeout, cancellation) of a request,
// which a "new request" callback alone could not.
//
// # Tokens
//
// Access and refresh tokens are 32 lowercase hex characters (128 random bits). Only their
// SHA-256 hashes are stored, so a copy of the database lets nobody in; the tokens exist only in
// the answer to the cash register. The whole token table is held in memory (loaded at Open,
// replaced after every committed change), so Check, called on every API request, never touches
// the disk.
//
// # Errors and the API
//
//	ErrPending       → 105, data.message "Register Error. Last register request not completed"
//	ErrNoToken       → 401 "Authorization failed"
//	ErrUnknownToken  → 401 "Authorization failed"
//	ErrSuperseded    → 401 "Session expires and need to be updated"
//	ErrExpired       → 403
//	ErrWrongRefresh  → 105, data.message "Revoke Error. Wrong refresh token"
//	ErrEmptyRefresh  → 999 "Param unvalidated: refreshToken. It's empty"
//	ErrBadName       → 999 "Param unvalidated: name. ..."
//
// # Audit
//
// Every registration request and its outcome, every revoke (and refused revoke) and every
// removal goes to Options.Audit with action names prefixed "ecr.": ecr.register.request,
// ecr.register.approve, ecr.register.deny, ecr.register.timeout, ecr.register.cancel,
// ecr.revoke, ecr.revoke.refused, ecr.remove. The fields never hold a token or a hash.
//
// # Certificate
//
// LoadOrCreateCertificate keeps the terminal's own self-signed ECDSA P-256 certificate in a
// directory and renews it when needed; LoadCertificate loads and checks a pair an operator
// supplied instead.
package access
