package ecrclient

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
)

// Status codes of the envelope (docs: /work/shared/spec/ecr-api.md, "Error codes"). 999 is the
// generic code of the HTTP-level errors (400, 401, 404, 500); the HTTP status tells them apart.
const (
	CodeOK                  = 0
	CodeNoInternet          = 100
	CodeProcessNotFound     = 101
	CodeUnsupportedMethod   = 102
	CodeNotActualizable     = 103
	CodeTransactionNotFound = 104
	CodeService             = 105
	CodeBlocked             = 106
	CodeBusy                = 107
	CodeStartFailed         = 108
	CodeGeneric             = 999
)

// Sentinels an *APIError matches with errors.Is, so that callers branch on meaning rather than
// on numbers. The code sentinels match whatever the HTTP status (106 arrives with 400 or 200);
// the HTTP sentinels match the HTTP status whatever the code.
var (
	ErrNoInternet          = errors.New("ecr: no internet")
	ErrProcessNotFound     = errors.New("ecr: process not found")
	ErrUnsupportedMethod   = errors.New("ecr: unsupported transaction pay method")
	ErrNotActualizable     = errors.New("ecr: transaction is unable to actualize")
	ErrTransactionNotFound = errors.New("ecr: transaction not found")
	ErrService             = errors.New("ecr: error in service process")
	ErrBlocked             = errors.New("ecr: payments are blocked")
	ErrBusy                = errors.New("ecr: last operation was not completed")
	ErrStartFailed         = errors.New("ecr: could not register transaction")

	ErrBadRequest   = errors.New("ecr: bad request")          // HTTP 400
	ErrUnauthorized = errors.New("ecr: authorization failed") // HTTP 401
	ErrForbidden    = errors.New("ecr: token expired")        // HTTP 403: past expirationDate
	ErrNotFound     = errors.New("ecr: invalid url")          // HTTP 404
	ErrInternal     = errors.New("ecr: terminal internal error")
)

// ErrMalformed is wrapped by every error about a response that is not what the API promises
// (not an envelope, a field of the wrong type, a success without its data).
var ErrMalformed = errors.New("ecrclient: malformed response")

// ErrTooLarge is returned for a response body over MaxResponseSize.
var ErrTooLarge = errors.New("ecrclient: response too large")

var codeSentinels = map[int]error{
	CodeNoInternet:          ErrNoInternet,
	CodeProcessNotFound:     ErrProcessNotFound,
	CodeUnsupportedMethod:   ErrUnsupportedMethod,
	CodeNotActualizable:     ErrNotActualizable,
	CodeTransactionNotFound: ErrTransactionNotFound,
	CodeService:             ErrService,
	CodeBlocked:             ErrBlocked,
	CodeBusy:                ErrBusy,
	CodeStartFailed:         ErrStartFailed,
}

var httpSentinels = map[int]error{
	http.StatusBadRequest:          ErrBadRequest,
	http.StatusUnauthorized:        ErrUnauthorized,
	http.StatusForbidden:           ErrForbidden,
	http.StatusNotFound:            ErrNotFound,
	http.StatusInternalServerError: ErrInternal,
}

// Envelope is the one response shape of every call. HTTP is the response's HTTP status, not
// part of the JSON.
type Envelope struct {
	StatusCode int             `json:"statusCode"`
	Data       json.RawMessage `json:"data,omitempty"`
	ErrorText  string          `json:"errorText,omitempty"`
	HTTP       int             `json:"-"`
}

// APIError is an answer of the terminal that is not a success: a statusCode other than 0 or an
// HTTP status other than 200. Code is 0 when the body was no envelope (a bare 403, a proxy's
// page).
type APIError struct {
	HTTP int
	Code int
	Text string
	Data json.RawMessage
}

func (e *APIError) Error() string {
	msg := "ecr: "
	if e.HTTP != http.StatusOK {
		msg += "HTTP " + strconv.Itoa(e.HTTP)
		if t := http.StatusText(e.HTTP); t != "" {
			msg += " " + t
		}
		if e.Code != 0 || e.Text != "" {
			msg += ": "
		}
	}
	if e.Code != 0 {
		msg += "code " + strconv.Itoa(e.Code)
		if e.Text != "" {
			msg += " "
		}
	}
	msg += e.Text
	if m := e.Message(); m != "" {
		msg += " (" + m + ")"
	}
	return msg
}

// Message is data.message, the detail the terminal adds to a 105 ("Register Error. Last
// register request not completed"); empty when there is none.
func (e *APIError) Message() string {
	var d struct {
		Message string `json:"message"`
	}
	if len(e.Data) == 0 || json.Unmarshal(e.Data, &d) != nil {
		return ""
	}
	return d.Message
}

// Is matches the sentinels above by code and by HTTP status.
func (e *APIError) Is(target error) bool {
	if s, ok := codeSentinels[e.Code]; ok && s == target {
		return true
	}
	if s, ok := httpSentinels[e.HTTP]; ok && s == target {
		return true
	}
	return false
}

// DecodeEnvelope reads a response body. It returns an *APIError (with the envelope filled in as
// far as the body allows) for any answer but a success, and an error wrapping ErrMalformed for
// an HTTP 200 whose body is no envelope. A success's data, when present, is a JSON object.
func DecodeEnvelope(httpStatus int, body []byte) (Envelope, error) {
	env := Envelope{HTTP: httpStatus}
	var raw struct {
		StatusCode *int            `json:"statusCode"`
		Data       json.RawMessage `json:"data"`
		ErrorText  *string         `json:"errorText"`
	}
	err := decodeObject(body, &raw)
	if err == nil && raw.StatusCode == nil {
		err = errors.New("no statusCode")
	}
	if err == nil && !isObjectOrNull(raw.Data) {
		err = errors.New("data is not an object")
	}
	if err != nil {
		if httpStatus != http.StatusOK {
			// A non-200 without an envelope still says what happened (403 has no body by the
			// spec); the HTTP status is the answer.
			return env, &APIError{HTTP: httpStatus}
		}
		return env, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	env.StatusCode = *raw.StatusCode
	if !isNull(raw.Data) {
		env.Data = bytes.Clone(raw.Data)
	}
	if raw.ErrorText != nil {
		env.ErrorText = *raw.ErrorText
	}
	if httpStatus != http.StatusOK || env.StatusCode != CodeOK {
		return env, &APIError{HTTP: httpStatus, Code: env.StatusCode, Text: env.ErrorText, Data: env.Data}
	}
	return env, nil
}

// decodeObject unmarshals a JSON object; anything else (an array, a number, null) is refused,
// since json.Unmarshal would quietly leave v at its zero value for null.
func decodeObject(b []byte, v any) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return errors.New("not a JSON object")
	}
	return json.Unmarshal(b, v)
}

func isNull(b json.RawMessage) bool {
	return len(b) == 0 || string(bytes.TrimSpace(b)) == "null"
}

func isObjectOrNull(b json.RawMessage) bool {
	if isNull(b) {
		return true
	}
	b = bytes.TrimSpace(b)
	return b[0] == '{'
}
