package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/tmsproto"
)

// fuzzChain builds a fixed, valid chain of n uplink records (the seeds' and FuzzVerifierNext's
// starting point).
func fuzzChain(tb testing.TB, n int) [][]byte {
	tb.Helper()
	var out [][]byte
	prev := make([]byte, HashSize)
	for i := range n {
		body, err := encodeEntry(Entry{
			Seq: uint64(i + 1), Time: time.UnixMilli(1740823200000 + int64(i)), Source: SourceDiag,
			Actor: "tech-1", Action: "selftest", Outcome: OutcomeOK,
			Fields: map[string]any{"i": uint64(i), "device": "printer", "ok": true},
			Prev:   prev,
		})
		if err != nil {
			tb.Fatal(err)
		}
		prev = hashBody(body)
		raw, err := tmsproto.Marshal(Record{Body: body, Hash: prev})
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, raw)
	}
	return out
}

// checkDecoded holds for every entry a decoder accepts.
func checkDecoded(t *testing.T, raw []byte, e Entry) {
	var r Record
	if err := tmsproto.Unmarshal(raw, &r); err != nil {
		t.Fatalf("accepted a record that does not decode as Record: %v", err)
	}
	if !bytes.Equal(e.Hash, hashBody(r.Body)) || !bytes.Equal(e.Hash, r.Hash) {
		t.Fatal("accepted a record whose hash is not the hash of its body")
	}
	if e.Seq == 0 || len(e.Prev) != HashSize || len(e.Fields) > MaxFields {
		t.Fatalf("accepted an entry outside the limits: %+v", e)
	}
	if _, err := json.Marshal(e); err != nil {
		t.Fatalf("accepted entry does not render as JSON: %v", err)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	for _, raw := range fuzzChain(f, 2) {
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		e, err := DecodeRecord(raw)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		checkDecoded(t, raw, e)
	})
}

func FuzzVerifierNext(f *testing.F) {
	chain := fuzzChain(f, 3)
	f.Add(chain[1])
	f.Fuzz(func(t *testing.T, raw []byte) {
		var v Verifier
		first, err := v.Next(fuzzChain(t, 1)[0])
		if err != nil {
			t.Fatal(err)
		}
		e, err := v.Next(raw)
		seq, hash := v.Last()
		if err != nil {
			var ce *ChainError
			var de *DecodeError
			if !errors.As(err, &ce) && !errors.As(err, &de) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			if seq != 1 || !bytes.Equal(hash, first.Hash) {
				t.Fatalf("a refused record moved the verifier to %d", seq)
			}
			return
		}
		checkDecoded(t, raw, e)
		if e.Seq != 2 || !bytes.Equal(e.Prev, first.Hash) || seq != 2 || !bytes.Equal(hash, e.Hash) {
			t.Fatalf("accepted seq %d (prev %x) after seq 1 (%x)", e.Seq, e.Prev, first.Hash)
		}
	})
}
