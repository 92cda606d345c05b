package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/posagent/posagent/agent/tmsproto"
)

func TestUplinkedRecordsVerify(t *testing.T) {
	e := newEnv(t, 0)
	appended := e.append(6)
	raws := e.uplinked()
	if len(raws) != 6 {
		t.Fatalf("%d records queued, want 6", len(raws))
	}
	var v Verifier
	for i, raw := range raws {
		got, err := v.Next(raw)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if !entriesEqual(got, appended[i]) {
			t.Fatalf("record %d decodes to %+v, appended %+v", i, got, appended[i])
		}
		// The TMS's rule, without this package's decoder: hash = SHA-256(tag || body).
		var r Record
		if err := tmsproto.Unmarshal(raw, &r); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(r.Hash, hashBody(r.Body)) || !bytes.Equal(r.Hash, appended[i].Hash) {
			t.Fatalf("record %d: hash is not SHA-256 of the tagged body", i)
		}
	}
}

func TestVerifierRefusesReplaysForgeriesAndGaps(t *testing.T) {
	e := newEnv(t, 0)
	e.append(5)
	raws := e.uplinked()

	forge := func(raw []byte, change func(*Entry), rehash bool) []byte {
		var r Record
		if err := tmsproto.Unmarshal(raw, &r); err != nil {
			t.Fatal(err)
		}
		body, err := reencode(r.Body, change)
		if err != nil {
			t.Fatal(err)
		}
		h := r.Hash
		if rehash {
			h = hashBody(body)
		}
		out, err := tmsproto.Marshal(Record{Body: body, Hash: h})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}

	var v Verifier
	for _, raw := range raws[:3] {
		if _, err := v.Next(raw); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name   string
		raw    []byte
		seq    uint64
		reason string
	}{
		{"replay of an earlier record", raws[1], 2, "replayed"},
		{"replay of the last record", raws[2], 3, "replayed"},
		{"gap", raws[4], 4, "missing"},
		{"edited, hash kept", forge(raws[3], func(e *Entry) { e.Actor = "intruder" }, false), 4, "edited"},
		{"edited, hash recomputed (fork)", forge(raws[3], func(e *Entry) { e.Prev = bytes.Repeat([]byte{7}, HashSize) }, true), 4, "prev"},
		{"forged next with a valid-looking hash", forge(raws[3], func(e *Entry) { e.Action = "forged" }, true), 0, ""},
	}
	for _, c := range cases {
		_, err := v.Next(c.raw)
		if c.reason == "" {
			// A body change with its hash recomputed is a different but well-formed entry 4:
			// it links to 3, so it is accepted; the genuine entry 5 then no longer links to it.
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if _, err := v.Next(raws[4]); chainErr(t, err).Seq != 5 {
				t.Fatalf("genuine 5 after forged 4: %v", err)
			}
			continue
		}
		ce := chainErr(t, err)
		if ce.Seq != c.seq || !strings.Contains(ce.Reason, c.reason) {
			t.Errorf("%s: broken at %d (%s), want %d (%s)", c.name, ce.Seq, ce.Reason, c.seq, c.reason)
		}
		// A refused record leaves the verifier where it was.
		if seq, _ := v.Last(); seq != 3 {
			t.Fatalf("%s: verifier moved to %d", c.name, seq)
		}
	}

	// Resuming from a known link (the terminal's anchor after pruning) picks up mid-stream.
	var r Verifier
	third, err := DecodeRecord(raws[2])
	if err != nil {
		t.Fatal(err)
	}
	r.Resume(third.Seq, third.Hash)
	for _, raw := range raws[3:] {
		if _, err := r.Next(raw); err != nil {
			t.Fatal(err)
		}
	}
	// A fresh verifier expects the chain from its start.
	var fresh Verifier
	if ce := chainErr(t, func() error { _, err := fresh.Next(raws[1]); return err }()); ce.Seq != 1 {
		t.Fatalf("fresh verifier: broken at %d, want 1", ce.Seq)
	}
}

func TestDecodeRecordIsStrict(t *testing.T) {
	e := newEnv(t, 0)
	e.append(1)
	good := e.uplinked()[0]
	var r Record
	if err := tmsproto.Unmarshal(good, &r); err != nil {
		t.Fatal(err)
	}
	enc := func(v any) []byte {
		b, err := tmsproto.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	withBody := func(w wireEntry) []byte {
		body := enc(w)
		return enc(Record{Body: body, Hash: hashBody(body)})
	}
	base := wireEntry{Seq: 1, T: 1, Source: "diag", Action: "x", Outcome: "ok", Prev: make([]byte, HashSize)}
	mod := func(f func(*wireEntry)) []byte { w := base; f(&w); return withBody(w) }
	cases := map[string]struct {
		raw  []byte
		want error
	}{
		"empty":           {nil, ErrMalformed},
		"not cbor":        {[]byte("hello"), ErrMalformed},
		"short hash":      {enc(Record{Body: r.Body, Hash: r.Hash[:10]}), ErrMalformed},
		"wrong hash":      {enc(Record{Body: r.Body, Hash: bytes.Repeat([]byte{1}, HashSize)}), ErrBadHash},
		"unknown field":   {enc(map[string]any{"b": r.Body, "h": r.Hash, "x": 1}), ErrMalformed},
		"too large":       {make([]byte, MaxRecordSize+1), ErrTooLarge},
		"seq zero":        {mod(func(w *wireEntry) { w.Seq = 0 }), ErrMalformed},
		"short prev":      {mod(func(w *wireEntry) { w.Prev = w.Prev[:5] }), ErrMalformed},
		"no action":       {mod(func(w *wireEntry) { w.Action = "" }), ErrMalformed},
		"nested field":    {mod(func(w *wireEntry) { w.Fields = map[string]any{"a": []any{1}} }), ErrMalformed},
		"long field":      {mod(func(w *wireEntry) { w.Fields = map[string]any{"a": strings.Repeat("x", 300)} }), ErrMalformed},
		"too many fields": {mod(func(w *wireEntry) { w.Fields = manyFields(40) }), ErrMalformed},
		"bytes field":     {mod(func(w *wireEntry) { w.Fields = map[string]any{"a": []byte{1}} }), ErrMalformed},
	}
	for name, c := range cases {
		if _, err := DecodeRecord(c.raw); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
	if _, err := DecodeRecord(mod(func(w *wireEntry) { w.Fields = map[string]any{"n": 1, "s": "x", "b": true, "f": 1.5} })); err != nil {
		t.Fatalf("well-formed record refused: %v", err)
	}
}

func manyFields(n int) map[string]any {
	m := map[string]any{}
	for i := range n {
		m[fmt.Sprintf("f%02d", i)] = i
	}
	return m
}

func TestSecretsAreRedactedAndValuesBounded(t *testing.T) {
	e := newEnv(t, 0)
	const pan = "6222021234567890128" // Luhn-valid, 19 digits
	secrets := map[string]any{
		"password": "hunter2-secret", "adminPassword": "hunter2-secret", "token": "pat1.AAAA-secret",
		"pan": pan, "cardPan": pan, "cookie": "posdiag=abc-secret", "csrf": "csrf-secret",
		"pinBlock": "0412AC-secret", "key": "00112233-secret", "track2": pan + "=2512-secret",
		"session_cookie": "x-secret", "X-CSRF-Token": "h-secret",
	}
	kept := map[string]any{
		"tokenId": "jti-42", "keyKcv": "A1B2C3", "company": "Acme", "method": "token",
		"note": "card " + pan + " used", "long": strings.Repeat("ж", 200), "elapsed": 1500,
	}
	fields := map[string]any{}
	for k, v := range secrets {
		fields[k] = v
	}
	for k, v := range kept {
		fields[k] = v
	}
	ent, err := e.log.Append(context.Background(), Event{Source: SourceDiag, Actor: "tech " + pan, Action: "diag.login", Fields: fields})
	if err != nil {
		t.Fatal(err)
	}
	for k := range secrets {
		if ent.Fields[k] != Redacted {
			t.Errorf("field %q = %v, want redacted", k, ent.Fields[k])
		}
	}
	if ent.Fields["tokenId"] != "jti-42" || ent.Fields["keyKcv"] != "A1B2C3" || ent.Fields["company"] != "Acme" ||
		ent.Fields["method"] != "token" || ent.Fields["elapsed"] != uint64(1500) {
		t.Errorf("non-secret fields changed: %v", ent.Fields)
	}
	if ent.Fields["note"] != "card 622202*********0128 used" || strings.Contains(ent.Actor, pan) {
		t.Errorf("card number not masked: note %q actor %q", ent.Fields["note"], ent.Actor)
	}
	long := ent.Fields["long"].(string)
	if len(long) > MaxStringLen || !utf8.ValidString(long) || len(long) < MaxStringLen-1 {
		t.Errorf("long value: %d bytes, valid UTF-8 %v", len(long), utf8.ValidString(long))
	}
	// Nothing secret in what is stored or what goes up.
	rec, err := e.log.Recent(1)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(rec)
	for _, blob := range [][]byte{js, e.uplinked()[0]} {
		if bytes.Contains(blob, []byte("secret")) || bytes.Contains(blob, []byte(pan)) {
			t.Fatalf("secret in %q", blob)
		}
	}
}

func TestFieldCountBounded(t *testing.T) {
	e := newEnv(t, 0)
	ent, err := e.log.Append(context.Background(), Event{Source: SourceTMS, Actor: "cmd-1", Action: "cmd.config.apply", Fields: manyFields(40)})
	if err != nil {
		t.Fatal(err)
	}
	if len(ent.Fields) != MaxFields || ent.Fields[droppedField] != uint64(40-(MaxFields-1)) {
		t.Fatalf("%d fields, dropped %v", len(ent.Fields), ent.Fields[droppedField])
	}
	if ent.Fields["f00"] != uint64(0) || ent.Fields["f30"] != uint64(30) || ent.Fields["f31"] != nil {
		t.Fatalf("kept the wrong fields: %v", ent.Fields)
	}
	ent, err = e.log.Append(context.Background(), Event{Source: SourceTMS, Action: "x", Fields: manyFields(MaxFields)})
	if err != nil || len(ent.Fields) != MaxFields || ent.Fields[droppedField] != nil {
		t.Fatalf("exactly %d fields: %v %v", MaxFields, ent.Fields, err)
	}
}
