package ecrclient

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
)

// The envelope comes from the network: decoding must never panic, and its result must be one of
// three things: a success with object data, an *APIError, or ErrMalformed.
func FuzzDecodeEnvelope(f *testing.F) {
	for _, b := range []string{specPaymentStarted, specCardSuccess, specRegisterBusy, specInvalidURL, "", "null",
		`{"statusCode":0,"data":null}`, `{"statusCode":1e3}`, `[]`} {
		f.Add(http.StatusOK, []byte(b))
	}
	f.Add(http.StatusForbidden, []byte(""))
	f.Add(http.StatusBadRequest, []byte(specPaymentBad))
	f.Fuzz(func(t *testing.T, code int, body []byte) {
		env, err := DecodeEnvelope(code, body)
		if env.HTTP != code {
			t.Fatalf("HTTP %d, want %d", env.HTTP, code)
		}
		var ae *APIError
		switch {
		case err == nil:
			if code != http.StatusOK || env.StatusCode != CodeOK {
				t.Fatalf("success for HTTP %d code %d", code, env.StatusCode)
			}
			if len(env.Data) > 0 && !json.Valid(env.Data) {
				t.Fatalf("data %q is not JSON", env.Data)
			}
			if len(env.Data) > 0 && bytes.TrimSpace(env.Data)[0] != '{' {
				t.Fatalf("data %q is not an object", env.Data)
			}
		case errors.As(err, &ae):
			if ae.HTTP != code || (code == http.StatusOK && ae.Code == CodeOK) {
				t.Fatalf("APIError %+v for HTTP %d", *ae, code)
			}
			_ = ae.Message()
			_ = ae.Error()
		case errors.Is(err, ErrMalformed):
			if code != http.StatusOK {
				t.Fatalf("malformed for HTTP %d; a non-200 is always an APIError", code)
			}
		default:
			t.Fatalf("error %v (%T) is none of the three", err, err)
		}
		if err != nil || len(env.Data) == 0 {
			return
		}
		// Whatever object a success carries, the status decoder copes.
		if s, err := DecodeStatus(env.Data); err == nil {
			_ = s.Extra()
		}
	})
}

// A status decodes to a status with a non-empty Status and its own copy of the data, or to
// ErrMalformed.
func FuzzDecodeStatus(f *testing.F) {
	for _, b := range []string{specStatusWait, specQRSuccess, specCardSuccess, specQRRefund, specCardRefund, specFail,
		specUnknown} {
		var env struct{ Data json.RawMessage }
		if err := json.Unmarshal([]byte(b), &env); err != nil {
			f.Fatal(err)
		}
		f.Add([]byte(env.Data))
	}
	f.Add([]byte(`{"status":"success","totals":{"a":1},"chequeInfo":{"pinEntered":true}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		in := bytes.Clone(data)
		s, err := DecodeStatus(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if s.Status == "" {
			t.Fatal("accepted a status without status")
		}
		if !json.Valid(s.Raw) {
			t.Fatalf("Raw %q is not JSON", s.Raw)
		}
		for i := range data {
			data[i] = 'x'
		}
		if !bytes.Equal(bytes.TrimSpace(in), s.Raw) {
			t.Fatal("Raw shares the caller's buffer")
		}
		for k := range s.Extra() {
			if statusFields[k] {
				t.Fatalf("Extra holds the known field %q", k)
			}
		}
	})
}
