package ecr

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// envelope is every answer of the API (seed 003 §4.14): statusCode 0 with data on success,
// an error code with errorText (and sometimes data.message) otherwise.
type envelope struct {
	Data       any    `json:"data,omitempty"`
	ErrorText  string `json:"errorText,omitempty"`
	StatusCode int    `json:"statusCode"`
}

// Status codes of the envelope.
const (
	CodeOK                = 0
	CodeNoInternet        = 100
	CodeProcessNotFound   = 101
	CodeUnsupportedMethod = 102
	CodeUnableActualize   = 103
	CodeTxnNotFound       = 104
	CodeServiceError      = 105
	CodeBlocked           = 106
	CodeBusy              = 107
	CodeStartFailed       = 108
	CodeGeneric           = 999
)

// Error is an answer other than success: the HTTP status, the envelope's code and text
// exactly as the Smart POS API gives them, and data for the codes that carry a message.
type Error struct {
	HTTP    int
	Code    int
	Text    string
	Message string // data.message (105), or the reason behind a 108
}

func (e *Error) Error() string {
	if e.Message != "" {
		return fmt.Sprintf("ecr: %d %d %s: %s", e.HTTP, e.Code, e.Text, e.Message)
	}
	return fmt.Sprintf("ecr: %d %d %s", e.HTTP, e.Code, e.Text)
}

func (e *Error) envelope() envelope {
	env := envelope{StatusCode: e.Code, ErrorText: e.Text}
	if e.Code == CodeServiceError && e.Message != "" {
		env.Data = map[string]string{"message": e.Message}
	}
	return env
}

// The errors of the API, with their texts to the letter (cash-register software matches them).
var (
	errInvalidURL      = &Error{HTTP: http.StatusNotFound, Code: CodeGeneric, Text: "Invalid Url. Please, contact developers"}
	errAuthFailed      = &Error{HTTP: http.StatusUnauthorized, Code: CodeGeneric, Text: "Authorization failed"}
	errSessionExpired  = &Error{HTTP: http.StatusUnauthorized, Code: CodeGeneric, Text: "Session expires and need to be updated"}
	errTokenExpired    = &Error{HTTP: http.StatusForbidden, Code: CodeGeneric, Text: "Session expires and need to be updated"}
	errInternal        = &Error{HTTP: http.StatusInternalServerError, Code: CodeGeneric, Text: "Internal Error. Please, contact developers"}
	errBlockedHTTP     = &Error{HTTP: http.StatusBadRequest, Code: CodeBlocked, Text: "Payments are blocked"}
	errNoInternet      = &Error{HTTP: http.StatusOK, Code: CodeNoInternet, Text: "No internet"}
	errProcessNotFound = &Error{HTTP: http.StatusOK, Code: CodeProcessNotFound, Text: "Process not found"}
	errUnsupported     = &Error{HTTP: http.StatusOK, Code: CodeUnsupportedMethod, Text: "Unsupported transaction pay method"}
	errUnableActualize = &Error{HTTP: http.StatusOK, Code: CodeUnableActualize, Text: "This transaction is unable to actualize"}
	errTxnNotFound     = &Error{HTTP: http.StatusOK, Code: CodeTxnNotFound, Text: "Transaction not found"}
	errBlocked         = &Error{HTTP: http.StatusOK, Code: CodeBlocked, Text: "Payments are blocked"}
	errBusy            = &Error{HTTP: http.StatusOK, Code: CodeBusy, Text: "Could not register transaction. Last operation was not completed."}
)

// serviceError is 105 with its data.message.
func serviceError(msg string) *Error {
	return &Error{HTTP: http.StatusOK, Code: CodeServiceError, Text: "Error acquired in service process", Message: msg}
}

// startFailed is 108; the reason stays in the exchange log and the agent's log, not in the
// answer (the text is fixed).
func startFailed(reason string) *Error {
	return &Error{HTTP: http.StatusOK, Code: CodeStartFailed, Text: "Could not register transaction. Something went wrong.", Message: reason}
}

// missing is "Missing param: {paramName}".
func missing(param string) *Error {
	return &Error{HTTP: http.StatusBadRequest, Code: CodeGeneric, Text: "Missing param: " + param}
}

// unvalidated is "Param unvalidated: {paramName}. {cause}".
func unvalidated(param, cause string) *Error {
	return &Error{HTTP: http.StatusBadRequest, Code: CodeGeneric, Text: "Param unvalidated: " + param + ". " + cause}
}

// encode renders an envelope; a value that cannot be encoded is an internal error.
func encode(v envelope) (int, []byte) {
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(errInternal.envelope())
		return errInternal.HTTP, b
	}
	return http.StatusOK, b
}
