package tmsproto

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"testing"
)

func testKey(t testing.TB) (ed25519.PublicKey, ed25519.PrivateKey) {
	// A fixed seed keeps the fuzz seeds valid across runs.
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	return priv.Public().(ed25519.PublicKey), priv
}

func TestSignVerifyRoundTrip(t *testing.T) {
	pub, priv := testKey(t)
	v, err := NewVerifier(map[string]ed25519.PublicKey{"k1": pub})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := Marshal(map[string]any{"version": 3})
	raw, err := SignCommand(priv, "k1", Command{ID: "a", Seq: 5, Kind: "config.apply", Issued: 100, Body: body})
	if err != nil {
		t.Fatal(err)
	}
	cmd, err := v.Verify(raw)
	if err != nil {
		t.Fatal(err)
	}
	if cmd.ID != "a" || cmd.Seq != 5 || cmd.Kind != "config.apply" || !bytes.Equal(cmd.Body, body) {
		t.Fatalf("%+v", cmd)
	}
}

func TestVerifyRejections(t *testing.T) {
	pub, priv := testKey(t)
	_, other, _ := ed25519.GenerateKey(nil)
	v, _ := NewVerifier(map[string]ed25519.PublicKey{"k1": pub})
	sign := func(key ed25519.PrivateKey, kid string, c Command) []byte {
		raw, err := SignCommand(key, kid, c)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	good := Command{ID: "a", Seq: 1, Kind: "stats.now", Issued: 1}
	noID, noKind, noSeq := good, good, good
	noID.ID, noKind.Kind, noSeq.Seq = "", "", 0
	long := good
	long.ID = string(bytes.Repeat([]byte("x"), MaxCommandIDLen+1))
	cases := map[string]struct {
		raw  []byte
		want Reason
	}{
		"other key":   {sign(other, "k1", good), ReasonBadSignature},
		"unknown kid": {sign(priv, "k2", good), ReasonUnknownKey},
		"garbage":     {[]byte{1, 2, 3}, ReasonMalformed},
		"empty":       {nil, ReasonMalformed},
		"oversized":   {make([]byte, MaxCommandSize+1), ReasonOversized},
		"no id":       {sign(priv, "k1", noID), ReasonInvalidID},
		"long id":     {sign(priv, "k1", long), ReasonInvalidID},
		"no kind":     {sign(priv, "k1", noKind), ReasonMalformed},
		"seq 0":       {sign(priv, "k1", noSeq), ReasonMalformed},
	}
	for name, c := range cases {
		_, err := v.Verify(c.raw)
		var re *RejectError
		if !errors.As(err, &re) || re.Reason != c.want {
			t.Errorf("%s: %v, want %s", name, err, c.want)
		}
	}
}

func TestDecoderLimits(t *testing.T) {
	// Duplicate map keys, indefinite lengths, tags and deep nesting are all refused.
	cases := map[string][]byte{
		"duplicate key": {0xa2, 0x61, 0x76, 0x01, 0x61, 0x76, 0x02},
		"indefinite":    {0xbf, 0x61, 0x76, 0x01, 0xff},
		"tag":           {0xc1, 0x01},
		"deep":          append(bytes.Repeat([]byte{0x81}, 40), 0x01),
	}
	for name, data := range cases {
		var v any
		if err := Unmarshal(data, &v); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	var env Envelope
	unknown, _ := Marshal(map[string]any{"v": 1, "stream": "s", "seq": 1, "ts": 1, "kind": "k", "body": map[string]any{}, "extra": 1})
	if err := Unmarshal(unknown, &env); err == nil {
		t.Error("unknown envelope field accepted")
	}
}

func TestEnvelopeRoundTripAndTopics(t *testing.T) {
	body, _ := Marshal(map[string]int{"x": 1})
	raw, _ := Marshal(Envelope{V: Version, Stream: StreamStats, Seq: 9, TS: 1, Kind: "stats", Body: body})
	env, err := DecodeEnvelope(raw)
	if err != nil || env.Seq != 9 || env.Stream != StreamStats {
		t.Fatalf("%+v %v", env, err)
	}
	if d, s, ok := ParseUpTopic(UpTopic("T-1", StreamLogPOS)); !ok || d != "T-1" || s != StreamLogPOS {
		t.Fatalf("topic round trip: %q %q %v", d, s, ok)
	}
	for _, bad := range []string{"tms/v1/a b/up/x", "tms/v2/T/up/x", "tms/v1/T/down/cmd", "tms/v1/T/up/"} {
		if _, _, ok := ParseUpTopic(bad); ok {
			t.Errorf("%q parsed", bad)
		}
	}
	if ValidDeviceID("") == nil || ValidDeviceID("a/b") == nil || ValidDeviceID("SIM_0-1") != nil {
		t.Error("device id validation")
	}
}

// FuzzDecodeEnvelope: whatever arrives on an uplink topic, decoding returns a value or an
// error, never a panic, and what decodes re-encodes to something that decodes the same.
func FuzzDecodeEnvelope(f *testing.F) {
	body, _ := Marshal(map[string]any{"a": 1, "b": []any{"x", 2.5}})
	good, _ := Marshal(Envelope{V: Version, Stream: StreamAck, Seq: 1, TS: 2, Kind: "ack", Body: body})
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte{0xa0})
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := DecodeEnvelope(data)
		if err != nil {
			return
		}
		again, err := Marshal(env)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		env2, err := DecodeEnvelope(again)
		if err != nil || env2.Seq != env.Seq || env2.Stream != env.Stream || env2.Kind != env.Kind {
			t.Fatalf("round trip: %+v %v", env2, err)
		}
	})
}

// FuzzVerifyCommand: any down/cmd payload is verified or rejected with a reason, never a panic,
// and nothing that was not signed by the trusted key is ever accepted.
func FuzzVerifyCommand(f *testing.F) {
	pub, priv := testKey(f)
	v, _ := NewVerifier(map[string]ed25519.PublicKey{"k1": pub})
	body, _ := Marshal(map[string]any{"version": 1})
	good, _ := SignCommand(priv, "k1", Command{ID: "c1", Seq: 1, Kind: "config.apply", Issued: 1, Body: body})
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add([]byte{0xd2, 0x84, 0x40, 0xa0, 0xf6, 0x40})
	f.Fuzz(func(t *testing.T, data []byte) {
		cmd, err := v.Verify(data)
		if err != nil {
			var re *RejectError
			if !errors.As(err, &re) || re.Reason == "" {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if cmd.ID == "" || cmd.Kind == "" || cmd.Seq == 0 {
			t.Fatalf("accepted an incomplete command %+v", cmd)
		}
	})
}

// FuzzCommandPayload goes past the signature: the command decoder itself on arbitrary CBOR.
func FuzzCommandPayload(f *testing.F) {
	p, _ := Marshal(Command{ID: "c1", Seq: 1, Kind: "stats.now", Issued: 1, Body: []byte{0xa0}})
	f.Add(p)
	f.Add([]byte{0xa1, 0x62, 0x69, 0x64, 0x61, 0x78})
	f.Fuzz(func(t *testing.T, data []byte) {
		var c Command
		_ = Unmarshal(data, &c)
	})
}
