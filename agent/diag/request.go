package diag

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"unicode/utf8"
)

// readBody reads a POST body: at most MaxBody bytes, and JSON when there is one (a form post
// from another site cannot forge an application/json body without a CORS preflight).
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, *apiError) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return nil, &apiError{status: http.StatusRequestEntityTooLarge, code: codeTooLarge, msg: "the body is larger than 16 KiB"}
	case err != nil:
		return nil, &apiError{status: http.StatusBadRequest, code: codeBadRequest, msg: "the body could not be read"}
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, nil
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return nil, &apiError{status: http.StatusBadRequest, code: codeBadRequest, msg: "the body must be application/json"}
	}
	return b, nil
}

// loginBody is POST /api/login's body: a technician token or the administrator password.
type loginBody struct {
	Token    string `json:"token"`
	Password string `json:"password"`
}

// errBadLogin is a login body that is not exactly one credential.
var errBadLogin = errors.New(`diag: the login body must be {"token":…} or {"password":…}`)

// maxCredential bounds a credential; the token's own bound (4 KiB) is auth's to enforce.
const maxCredential = 8 << 10

// decodeLogin decodes a login body strictly: one JSON object, known fields, exactly one
// credential. The error never quotes the body.
func decodeLogin(b []byte) (loginBody, error) {
	var l loginBody
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return loginBody{}, errBadLogin
	}
	if dec.More() {
		return loginBody{}, errBadLogin
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return loginBody{}, errBadLogin
	}
	l.Token = strings.TrimSpace(l.Token)
	if (l.Token == "") == (l.Password == "") || len(l.Token) > maxCredential || len(l.Password) > maxCredential {
		return loginBody{}, errBadLogin
	}
	return l, nil
}

// errBadParams is an action body that is not one JSON object.
var errBadParams = errors.New("diag: an action's parameters must be one JSON object")

// decodeParams checks an action's body: empty (no parameters) or one JSON object. It returns
// the raw object for the Terminal and its top-level members for the audit entry.
func decodeParams(b []byte) (json.RawMessage, map[string]any, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || bytes.Equal(b, []byte("null")) {
		return nil, nil, nil
	}
	if b[0] != '{' {
		return nil, nil, errBadParams
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, nil, errBadParams
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, nil, errBadParams
	}
	return json.RawMessage(b), m, nil
}

// Audit entries carry at most maxAuditParams parameters, strings clipped to maxAuditString.
const (
	maxAuditParams = 12
	maxAuditString = 128
)

// secretNames are parameter names whose value is never recorded. The audit log redacts such
// names too; leaving them out here means the value never even reaches it.
var secretNames = []string{"password", "passwd", "token", "pin", "key", "track", "pan", "secret",
	"cookie", "csrf", "cvv", "auth"}

// reservedFields are the audit fields the server writes itself.
var reservedFields = map[string]bool{"action": true, "error": true, "ms": true, "remote": true, "method": true}

// auditFields keeps the scalar parameters that are safe to record: nested values are left
// out, secret-looking names redacted, URLs stripped of their password, strings clipped.
func auditFields(params map[string]any) map[string]any {
	if len(params) == 0 {
		return nil
	}
	names := make([]string, 0, len(params))
	for k := range params {
		names = append(names, k)
	}
	sort.Strings(names)
	out := make(map[string]any)
	for _, k := range names {
		if len(out) == maxAuditParams {
			break
		}
		if reservedFields[k] || k == "" || len(k) > 64 || !utf8.ValidString(k) {
			continue
		}
		if secretName(k) {
			out[k] = "[redacted]"
			continue
		}
		switch v := params[k].(type) {
		case string:
			out[k] = safeString(v)
		case bool:
			out[k] = v
		case json.Number:
			if i, err := v.Int64(); err == nil {
				out[k] = i
			} else {
				out[k] = clip(v.String(), 32)
			}
		}
	}
	return out
}

func secretName(k string) bool {
	lk := strings.ToLower(k)
	for _, s := range secretNames {
		if strings.Contains(lk, s) {
			return true
		}
	}
	return false
}

// safeString is a parameter value as it may be recorded: a token is redacted and a URL loses
// its password (a broker URL may carry one).
func safeString(v string) string {
	if strings.HasPrefix(strings.TrimSpace(v), "pat1.") {
		return "[redacted]"
	}
	if strings.Contains(v, "://") {
		if u, err := url.Parse(v); err == nil && u.User != nil {
			u.User = url.User(u.User.Username())
			v = u.String()
		} else if err != nil && strings.Contains(v, "@") {
			return "[redacted]"
		}
	}
	return clip(v, maxAuditString)
}

// clip cuts s to at most n bytes without splitting a UTF-8 sequence.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
