package diag

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzLoginBody: the login decoder never panics, and what it accepts is exactly one
// credential that a re-encoding of the decoded body gives back.
func FuzzLoginBody(f *testing.F) {
	f.Add([]byte(`{"token":"pat1.AAAA"}`))
	f.Add([]byte(`{"password":"secret"}`))
	f.Add([]byte(`{"token":"a","password":"b"}`))
	f.Add([]byte(`{"token":"  pat1.x  "} `))
	f.Add([]byte(`{"token":"x"}{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := decodeLogin(b)
		if err != nil {
			if l != (loginBody{}) {
				t.Fatalf("refused body left %+v", l)
			}
			if err != errBadLogin { // a fixed message: it cannot quote a credential
				t.Fatalf("error %v", err)
			}
			return
		}
		if (l.Token == "") == (l.Password == "") {
			t.Fatalf("accepted %q as %+v: not exactly one credential", b, l)
		}
		if len(l.Token) > maxCredential || len(l.Password) > maxCredential || l.Token != strings.TrimSpace(l.Token) {
			t.Fatalf("accepted %+v", l)
		}
		again, err := json.Marshal(l)
		if err != nil {
			t.Fatal(err)
		}
		l2, err := decodeLogin(again)
		if err != nil || l2 != l {
			t.Fatalf("re-encoded %s decodes to %+v, %v", again, l2, err)
		}
	})
}

// FuzzActionParams: the action body decoder never panics, passes on only one JSON object,
// and the audit fields made from it are bounded scalars with no token in them.
func FuzzActionParams(f *testing.F) {
	f.Add([]byte(``))
	f.Add([]byte(`{"timeoutSec":30}`))
	f.Add([]byte(`{"name":"tmsBroker","value":"mqtts://u:p@h:8883"}`))
	f.Add([]byte(`{"id":"reg-1","nested":{"a":[1,2]},"pin":"1234"}`))
	f.Add([]byte(`[1,2]`))
	f.Add([]byte(`{"a":1} {"b":2}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		raw, params, err := decodeParams(b)
		if err != nil {
			if raw != nil || params != nil {
				t.Fatal("refused body passed on")
			}
			return
		}
		if raw == nil {
			if params != nil {
				t.Fatal("parameters without a body")
			}
			return
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(raw, &obj); err != nil {
			t.Fatalf("passed on %q, not one object: %v", raw, err)
		}
		fields := auditFields(params)
		if len(fields) > maxAuditParams {
			t.Fatalf("%d audit fields", len(fields))
		}
		for k, v := range fields {
			if reservedFields[k] || !utf8.ValidString(k) {
				t.Fatalf("field name %q", k)
			}
			switch v := v.(type) {
			case string:
				if len(v) > maxAuditString+len("…") || strings.HasPrefix(strings.TrimSpace(v), "pat1.") {
					t.Fatalf("field %s = %q", k, v)
				}
				if secretName(k) && v != "[redacted]" {
					t.Fatalf("secret-looking field %s kept %q", k, v)
				}
			case bool, int64:
			default:
				t.Fatalf("field %s is a %T", k, v)
			}
		}
	})
}
