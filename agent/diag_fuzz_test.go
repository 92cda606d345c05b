package agent

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/posagent/posagent/agent/diag"
)

// FuzzDiagActionParams feeds the technician's action parameters (outside input, already
// bounded by the server) to the strict decoder of every parameter shape the agent reads:
// it never panics, refuses with a *diag.ParamError only, and what it accepts encodes back to
// parameters it accepts again unchanged.
func FuzzDiagActionParams(f *testing.F) {
	for _, s := range []string{``, `{}`, `{"name":"logLevel","value":"debug"}`, `{"id":"r-1"}`,
		`{"timeoutSec":30}`, `{"name":1}`, `{"x":true}`, `{} {}`, `[`, "\x00"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		check := func(v any, again any) {
			err := decodeParams(json.RawMessage(raw), v)
			if err != nil {
				var pe *diag.ParamError
				if !errors.As(err, &pe) {
					t.Fatalf("%q: %T %v, want a ParamError", raw, err, err)
				}
				return
			}
			enc, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			if err := decodeParams(enc, again); err != nil {
				t.Fatalf("%q re-encoded as %s refused: %v", raw, enc, err)
			}
			enc2, _ := json.Marshal(again)
			if string(enc) != string(enc2) {
				t.Fatalf("%q: %s then %s", raw, enc, enc2)
			}
		}
		check(&paramsSet{}, &paramsSet{})
		check(&struct {
			TimeoutSec int `json:"timeoutSec"`
		}{}, &struct {
			TimeoutSec int `json:"timeoutSec"`
		}{})
		check(&struct {
			ID string `json:"id"`
		}{}, &struct {
			ID string `json:"id"`
		}{})
		check(&struct{}{}, &struct{}{})
	})
}
