package tmsclient

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/big"

	"github.com/fxamacker/cbor/v2"
	"github.com/posagent/posagent/agent/tmsproto"
)

// EnvelopeJSON renders an uplink envelope as one line of JSON (no trailing newline):
// {"v","stream","seq","ts","kind","body"}, the body decoded generically with byte strings in
// standard base64.
func EnvelopeJSON(env *tmsproto.Envelope) ([]byte, error) {
	body, err := cborToJSONValue(env.Body)
	if err != nil {
		return nil, fmt.Errorf("tmsclient: envelope body: %w", err)
	}
	return marshalLine(struct {
		V      uint   `json:"v"`
		Stream string `json:"stream"`
		Seq    uint64 `json:"seq"`
		TS     int64  `json:"ts"`
		Kind   string `json:"kind"`
		Body   any    `json:"body"`
	}{env.V, env.Stream, env.Seq, env.TS, env.Kind, body})
}

// uplinkLine is the JSON form of an Uplink, as `tmsctl watch` prints it.
type uplinkLine struct {
	Device   string  `json:"device,omitempty"`
	Topic    string  `json:"topic"`
	Stream   string  `json:"stream,omitempty"`
	Seq      *uint64 `json:"seq,omitempty"`
	TS       *int64  `json:"ts,omitempty"`
	Kind     string  `json:"kind,omitempty"`
	Body     any     `json:"body,omitempty"`
	Retained bool    `json:"retained,omitempty"`
	Error    string  `json:"error,omitempty"`
	Raw      []byte  `json:"raw,omitempty"` // only when the payload could not be decoded
}

// UplinkJSON renders an uplink as one line of JSON: {device, topic, stream, seq, ts, kind,
// body}, plus retained when set. It never fails on a bad payload: an undecodable record is
// rendered with "error" and its raw bytes in base64, because a watcher must show it, not hide it.
func UplinkJSON(u Uplink) ([]byte, error) {
	l := uplinkLine{Device: u.DeviceID, Topic: u.Topic, Stream: u.Stream, Retained: u.Retained}
	switch {
	case u.Err != nil:
		l.Error = u.Err.Error()
		l.Raw = u.Raw
	case u.Envelope != nil:
		env := u.Envelope
		l.Seq, l.TS, l.Kind = &env.Seq, &env.TS, env.Kind
		body, err := cborToJSONValue(env.Body)
		if err != nil {
			l.Error = "body: " + err.Error()
			l.Raw = u.Raw
		} else {
			l.Body = body
		}
	}
	return marshalLine(l)
}

// AckJSON renders an acknowledgement as one line of JSON, with the result decoded generically.
func AckJSON(a tmsproto.Ack) ([]byte, error) {
	var result any
	if len(a.Result) > 0 {
		var err error
		if result, err = cborToJSONValue(a.Result); err != nil {
			return nil, fmt.Errorf("tmsclient: ack result: %w", err)
		}
	}
	return marshalLine(struct {
		ID        string          `json:"id"`
		CmdSeq    uint64          `json:"cmdSeq,omitempty"`
		Kind      string          `json:"kind,omitempty"`
		Ref       string          `json:"ref,omitempty"`
		State     tmsproto.State  `json:"state"`
		Progress  int             `json:"progress,omitempty"`
		Reason    tmsproto.Reason `json:"reason,omitempty"`
		Message   string          `json:"message,omitempty"`
		Duplicate bool            `json:"duplicate,omitempty"`
		Result    any             `json:"result,omitempty"`
	}{a.ID, a.CmdSeq, a.Kind, a.Ref, a.State, a.Progress, a.Reason, a.Message, a.Duplicate, result})
}

func marshalLine(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// Bodies carry receipts and logs; "<" and "&" are more readable as themselves.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("tmsclient: render JSON: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// cborToJSONValue decodes CBOR with tmsproto's strict limits into a value encoding/json can
// render faithfully.
func cborToJSONValue(raw cbor.RawMessage) (any, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	var v any
	if err := tmsproto.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	return jsonSafe(v), nil
}

// jsonSafe replaces what encoding/json would refuse or garble: NaN and infinities (no JSON
// form; rendered as strings) and big integers (a big.Int value would render as {}).
func jsonSafe(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k] = jsonSafe(e)
		}
		return t
	case []any:
		for i, e := range t {
			t[i] = jsonSafe(e)
		}
		return t
	case float64:
		return safeFloat(t)
	case float32:
		return safeFloat(float64(t))
	case big.Int:
		return json.Number(t.String())
	case *big.Int:
		return json.Number(t.String())
	}
	return v
}

func safeFloat(f float64) any {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	}
	return f
}
