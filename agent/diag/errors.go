package diag

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/posagent/posagent/agent/diag/auth"
)

// Error codes of the API (docs/diag.md).
const (
	codeUnauthenticated    = "unauthenticated"
	codeSessionExpired     = "session_expired"
	codeBadCredentials     = "bad_credentials"
	codeTokenExpired       = "token_expired"
	codeTokenInvalid       = "token_invalid"
	codeTokenWrongTerminal = "token_wrong_terminal"
	codeTokenRevoked       = "token_revoked"
	codeAdminPasswordOff   = "admin_password_off"
	codeLockedOut          = "locked_out"
	codeForbidden          = "forbidden"
	codeCSRF               = "csrf"
	codeBadRequest         = "bad_request"
	codeUnknownAction      = "unknown_action"
	codeNotFound           = "not_found"
	codeMethodNotAllowed   = "method_not_allowed"
	codeTooLarge           = "too_large"
	codeInternal           = "internal"
)

// apiError is an answer that is not a success: {"error":code,"message":…}.
type apiError struct {
	status int
	code   string
	msg    string
	until  time.Time // locked_out only
}

func (e *apiError) Error() string { return e.code + ": " + e.msg }

// errorBody is the JSON of an apiError.
type errorBody struct {
	Error   string    `json:"error"`
	Message string    `json:"message,omitempty"`
	Until   time.Time `json:"until,omitzero"`
}

func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.status, errorBody{Error: e.code, Message: e.msg, Until: e.until})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":"internal","message":"answer not encodable"}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// loginError maps a refused login to its answer. The message names the reason only: never the
// token or password presented.
func loginError(err error) *apiError {
	unauth := func(code, msg string) *apiError {
		return &apiError{status: http.StatusUnauthorized, code: code, msg: msg}
	}
	var locked *auth.LockedError
	switch {
	case errors.As(err, &locked):
		return &apiError{status: http.StatusLocked, code: codeLockedOut,
			msg: "too many failed sign-ins: the port is locked", until: locked.Until}
	case errors.Is(err, auth.ErrLockedOut):
		return &apiError{status: http.StatusLocked, code: codeLockedOut, msg: "too many failed sign-ins: the port is locked"}
	case errors.Is(err, auth.ErrTokenExpired):
		return unauth(codeTokenExpired, "the technician token has expired")
	case errors.Is(err, auth.ErrTokenNotYet):
		return unauth(codeTokenInvalid, "the technician token is not valid yet (check the terminal's clock)")
	case errors.Is(err, auth.ErrTokenWrongTerminal):
		return unauth(codeTokenWrongTerminal, "the technician token is not for this terminal")
	case errors.Is(err, auth.ErrTokenRevoked):
		return unauth(codeTokenRevoked, "the technician token has been revoked")
	case errors.Is(err, auth.ErrTokenSignature):
		return unauth(codeTokenInvalid, "the technician token's signature does not verify")
	case errors.Is(err, auth.ErrTokenTooLong):
		return unauth(codeTokenInvalid, "the technician token is valid for longer than the policy allows")
	case errors.Is(err, auth.ErrTokenRole):
		return unauth(codeTokenInvalid, "the technician token names an unknown role")
	case errors.Is(err, auth.ErrTokenMalformed):
		return unauth(codeTokenInvalid, "the technician token is malformed")
	case errors.Is(err, auth.ErrAdminPasswordOff):
		return unauth(codeAdminPasswordOff, "the administrator password is not accepted on this port")
	case errors.Is(err, auth.ErrBadCredentials):
		return unauth(codeBadCredentials, "wrong password or token")
	}
	return nil
}

// sessionError maps a refused session to its answer.
func sessionError(err error) *apiError {
	if errors.Is(err, auth.ErrSessionExpired) {
		return &apiError{status: http.StatusUnauthorized, code: codeSessionExpired, msg: "the session has ended: sign in again"}
	}
	return &apiError{status: http.StatusUnauthorized, code: codeUnauthenticated, msg: "sign in first"}
}
