package tmsclient

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/posagent/posagent/agent/tmsproto"
)

func TestEnvelopeJSON(t *testing.T) {
	body, err := tmsproto.Marshal(map[string]any{
		"paper": "out", "n": -3, "blob": []byte{0, 1, 2}, "f": math.Inf(1), "nested": map[string]any{"list": []any{1.5, nil}},
	})
	if err != nil {
		t.Fatal(err)
	}
	env := &tmsproto.Envelope{V: 1, Stream: "event", Seq: 17, TS: 1700000000123, Kind: "paper", Body: body}
	got, err := EnvelopeJSON(env)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"v":1,"stream":"event","seq":17,"ts":1700000000123,"kind":"paper","body":{"blob":"AAEC","f":"+Inf","n":-3,"nested":{"list":[1.5,null]},"paper":"out"}}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	env.Body = cbor.RawMessage{0xa1, 0x01, 0x02} // integer key: not a body
	if _, err := EnvelopeJSON(env); err == nil {
		t.Error("a map with an integer key rendered")
	}
}

func TestUplinkJSON(t *testing.T) {
	payload := envelope(t, "log/ecr", 5, "ecr", map[string]any{"line": "<STX>"})
	u := decodeUplink("tms/v1/T-1/up/log/ecr", payload, true)
	got, err := UplinkJSON(u)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"device":"T-1","topic":"tms/v1/T-1/up/log/ecr","stream":"log/ecr","seq":5,"ts":1700000000005,"kind":"ecr","body":{"line":"<STX>"},"retained":true}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}

	bad := decodeUplink("tms/v1/T-1/up/event", []byte{0xff}, false)
	got, err = UplinkJSON(bad)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(got, &m); err != nil {
		t.Fatal(err)
	}
	if m["error"] == nil || m["raw"] != "/w==" || m["device"] != "T-1" {
		t.Errorf("bad record rendered as %s", got)
	}
	if u := decodeUplink("tms/v1/bad id/up/x", payload, false); u.Err == nil || u.DeviceID != "" {
		t.Errorf("bad topic: %+v", u)
	}
}

func TestAckJSON(t *testing.T) {
	got, err := AckJSON(tmsproto.Ack{Ref: "00ff", State: tmsproto.StateRejected, Reason: tmsproto.ReasonBadSignature, Message: "no"})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"id":"","ref":"00ff","state":"rejected","reason":"bad_signature","message":"no"}`; string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if _, err := AckJSON(tmsproto.Ack{ID: "x", State: "succeeded", Result: cbor.RawMessage{0xff}}); err == nil {
		t.Error("undecodable result rendered")
	}
}

func TestDecodeAck(t *testing.T) {
	ok, _ := tmsproto.Marshal(tmsproto.Ack{ID: "c", State: tmsproto.StateRunning, Progress: 40})
	if a, err := DecodeAck(ok); err != nil || a.Progress != 40 {
		t.Errorf("DecodeAck: %+v, %v", a, err)
	}
	for name, v := range map[string]any{
		"unknown state": map[string]any{"id": "c", "state": "exploded"},
		"no id or ref":  map[string]any{"state": "accepted"},
		"unknown field": map[string]any{"id": "c", "state": "accepted", "extra": 1},
		"not a map":     []any{1},
	} {
		b, _ := tmsproto.Marshal(v)
		if _, err := DecodeAck(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzUplinkJSON feeds arbitrary payloads through the uplink decoder and the JSON renderer:
// nothing panics, every record renders as valid JSON, and a decoded envelope carries a
// stream and kind.
func FuzzUplinkJSON(f *testing.F) {
	f.Add("tms/v1/T-1/up/event", envelope(f, "event", 1, "paper", map[string]any{"a": []byte{1}}))
	f.Add("tms/v1/T-1/up/ack", envelope(f, "ack", 2, "ack", tmsproto.Ack{ID: "x", State: "accepted"}))
	f.Add("tms/v1/T-1/up/stats", envelope(f, "stats", 3, "stats", map[string]any{"f": 1.5, "n": -1}))
	f.Add("tms/v1/T-1/up/event", []byte{0xa0})
	f.Add("tms/v1/x/up/online", []byte{0xa6, 0x61, 0x76, 0x01})
	f.Add("nope", []byte("junk"))
	f.Fuzz(func(t *testing.T, topic string, payload []byte) {
		u := decodeUplink(topic, payload, false)
		if u.Err == nil && (u.Envelope == nil || u.Envelope.Stream == "" || u.Envelope.Kind == "") {
			t.Fatalf("decoded without error but incomplete: %+v", u)
		}
		line, err := UplinkJSON(u)
		if err != nil {
			t.Fatal(err)
		}
		if !json.Valid(line) || strings.Contains(string(line), "\n") {
			t.Fatalf("not one JSON line: %q", line)
		}
	})
}

// FuzzDecodeAck: arbitrary ack bodies never panic, and an accepted ack renders as JSON with a
// known state.
func FuzzDecodeAck(f *testing.F) {
	for _, a := range []tmsproto.Ack{
		{ID: "c1", State: tmsproto.StateAccepted},
		{ID: "c1", CmdSeq: 9, Kind: "reboot", State: tmsproto.StateRunning, Progress: 50},
		{Ref: "0011223344556677", State: tmsproto.StateRejected, Reason: tmsproto.ReasonBadSignature, Message: "x"},
		{ID: "c1", State: tmsproto.StateSucceeded, Duplicate: true, Result: cbor.RawMessage{0xa1, 0x61, 0x61, 0x01}},
	} {
		b, err := tmsproto.Marshal(a)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0xa1, 0x65, 's', 't', 'a', 't', 'e', 0x61, 'x'})
	f.Fuzz(func(t *testing.T, body []byte) {
		a, err := DecodeAck(body)
		if err != nil {
			return
		}
		if a.ID == "" && a.Ref == "" {
			t.Fatal("ack without id or ref accepted")
		}
		line, err := AckJSON(a)
		if err != nil {
			// A result that is well-formed CBOR for RawMessage but not for a generic decode
			// (e.g. a map with integer keys) is refused, not rendered wrongly.
			return
		}
		if !json.Valid(line) {
			t.Fatalf("invalid JSON %q", line)
		}
	})
}

// BenchmarkUplinkDecodeRender is the per-record cost of `tmsctl watch`: decode and render.
func BenchmarkUplinkDecodeRender(b *testing.B) {
	payload := envelope(b, "stats", 42, "stats", map[string]any{
		"agent": "1.4.2", "uptime": 86400, "cpu": 0.12, "mem": map[string]any{"rss": 21_000_000, "free": 512_000_000},
		"counters": map[string]any{"tx": 1234, "declined": 7, "reversals": 1},
	})
	b.ReportAllocs()
	for b.Loop() {
		u := decodeUplink("tms/v1/T-1/up/stats", payload, false)
		if _, err := UplinkJSON(u); err != nil {
			b.Fatal(err)
		}
	}
}
