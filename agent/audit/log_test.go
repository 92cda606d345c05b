package audit

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/posagent/posagent/agent/outbox"
)

func TestChainVerifiesAndConcurrentAppendsAreGapless(t *testing.T) {
	e := newEnv(t, 0)
	const workers, each = 8, 25
	var wg sync.WaitGroup
	seqs := make(chan uint64, workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				ent, err := e.log.Append(context.Background(), Event{
					Source: SourceOperator, Actor: "01", Action: "operator.signOn",
					Fields: map[string]any{"worker": w, "i": i},
				})
				if err != nil {
					t.Error(err)
					return
				}
				seqs <- ent.Seq
			}
		})
	}
	wg.Wait()
	close(seqs)
	got := slices.Sorted(func(yield func(uint64) bool) {
		for s := range seqs {
			if !yield(s) {
				return
			}
		}
	})
	for i, s := range got {
		if s != uint64(i+1) {
			t.Fatalf("seqs not gapless and unique: position %d holds %d", i, s)
		}
	}
	rep, err := e.log.Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep != (Report{First: 1, Last: workers * each, Count: workers * each}) {
		t.Fatalf("report %+v", rep)
	}

	recent, err := e.log.Recent(10)
	if err != nil {
		t.Fatal(err)
	}
	if len(recent) != 10 || recent[0].Seq != workers*each-9 || recent[9].Seq != workers*each {
		t.Fatalf("recent: %d entries from %d", len(recent), recent[0].Seq)
	}
	for i := 1; i < len(recent); i++ {
		if !bytes.Equal(recent[i].Prev, recent[i-1].Hash) {
			t.Fatalf("entry %d does not link to %d", recent[i].Seq, recent[i-1].Seq)
		}
	}
}

func TestAppendReturnsWhatIsStored(t *testing.T) {
	e := newEnv(t, 0)
	ent, err := e.log.Append(context.Background(), Event{
		Source: SourceDiag, Actor: "tech-7", Action: "diag.login", Outcome: OutcomeDenied,
		Fields: map[string]any{"method": "token", "reason": "expired", "attempt": 3, "neg": -2, "ok": false},
	})
	if err != nil {
		t.Fatal(err)
	}
	first, err := e.log.Append(context.Background(), Event{Source: SourceAgent, Action: "agent.start"})
	if err != nil {
		t.Fatal(err)
	}
	if ent.Seq != 1 || !bytes.Equal(ent.Prev, make([]byte, HashSize)) || len(ent.Hash) != HashSize {
		t.Fatalf("first entry: seq %d prev %x hash %x", ent.Seq, ent.Prev, ent.Hash)
	}
	if first.Outcome != OutcomeOK || !bytes.Equal(first.Prev, ent.Hash) {
		t.Fatalf("second entry: outcome %q, prev %x", first.Outcome, first.Prev)
	}
	if ent.Time.IsZero() || ent.Fields["attempt"] != uint64(3) || ent.Fields["neg"] != int64(-2) || ent.Fields["ok"] != false {
		t.Fatalf("entry %+v", ent)
	}
	recent, err := e.log.Recent(5)
	if err != nil {
		t.Fatal(err)
	}
	if len(recent) != 2 || !entriesEqual(recent[0], ent) || !entriesEqual(recent[1], first) {
		t.Fatalf("recent %+v\nappended %+v %+v", recent, ent, first)
	}
}

func entriesEqual(a, b Entry) bool {
	if a.Seq != b.Seq || !a.Time.Equal(b.Time) || a.Source != b.Source || a.Actor != b.Actor ||
		a.Action != b.Action || a.Outcome != b.Outcome || !bytes.Equal(a.Prev, b.Prev) ||
		!bytes.Equal(a.Hash, b.Hash) || len(a.Fields) != len(b.Fields) {
		return false
	}
	for k, v := range a.Fields {
		if b.Fields[k] != v {
			return false
		}
	}
	return true
}

func TestAppendRefusesBadEvents(t *testing.T) {
	e := newEnv(t, 0)
	for _, ev := range []Event{
		{Action: "x"},
		{Source: SourceDiag},
		{Source: SourceDiag, Action: "x", Outcome: "maybe"},
	} {
		if _, err := e.log.Append(context.Background(), ev); !errors.Is(err, ErrBadEvent) {
			t.Errorf("%+v: %v, want ErrBadEvent", ev, err)
		}
	}
	if rep, err := e.log.Verify(context.Background()); err != nil || rep.Count != 0 {
		t.Fatalf("refused events were stored: %+v %v", rep, err)
	}
}

// Each kind of tampering with the stored chain is reported at the seq where it happened.
func TestTamperingDetectedAtTheRightSeq(t *testing.T) {
	cases := []struct {
		name   string
		edit   func(t *testing.T, entries, root *bolt.Bucket) error
		seq    uint64
		reason string
	}{{
		name: "edit a field, hash left",
		edit: func(t *testing.T, entries, _ *bolt.Bucket) error {
			body, err := storedBody(entries, 4)
			if err != nil {
				return err
			}
			old := entries.Get(seqKey(4))[:HashSize]
			edited, err := reencode(body, func(e *Entry) { e.Actor = "someone-else" })
			if err != nil {
				return err
			}
			return putEntry(entries, 4, old, edited)
		},
		seq: 4, reason: "edited",
	}, {
		name: "edit a field, hash recomputed",
		edit: func(t *testing.T, entries, _ *bolt.Bucket) error {
			body, err := storedBody(entries, 4)
			if err != nil {
				return err
			}
			edited, err := reencode(body, func(e *Entry) { e.Outcome = OutcomeOK; e.Fields["i"] = uint64(99) })
			if err != nil {
				return err
			}
			return putEntry(entries, 4, hashBody(edited), edited)
		},
		seq: 5, reason: "does not link",
	}, {
		name: "flip one byte of the body",
		edit: func(t *testing.T, entries, _ *bolt.Bucket) error {
			v := bytes.Clone(entries.Get(seqKey(6)))
			i := bytes.Index(v, []byte("tech-1"))
			if i < 0 {
				t.Fatal("actor not found in stored entry")
			}
			v[i] = 'T'
			return entries.Put(seqKey(6), v)
		},
		seq: 6, reason: "edited",
	}, {
		name: "edit the newest, hash recomputed",
		edit: func(t *testing.T, entries, _ *bolt.Bucket) error {
			body, err := storedBody(entries, 8)
			if err != nil {
				return err
			}
			edited, err := reencode(body, func(e *Entry) { e.Outcome = OutcomeFailed })
			if err != nil {
				return err
			}
			return putEntry(entries, 8, hashBody(edited), edited)
		},
		seq: 8, reason: "not the entry the head names",
	}, {
		name:   "delete one in the middle",
		edit:   func(t *testing.T, entries, _ *bolt.Bucket) error { return entries.Delete(seqKey(3)) },
		seq:    3,
		reason: "missing",
	}, {
		name:   "delete the oldest",
		edit:   func(t *testing.T, entries, _ *bolt.Bucket) error { return entries.Delete(seqKey(1)) },
		seq:    1,
		reason: "missing",
	}, {
		name:   "delete the newest",
		edit:   func(t *testing.T, entries, _ *bolt.Bucket) error { return entries.Delete(seqKey(8)) },
		seq:    8,
		reason: "missing",
	}, {
		name: "insert a well-formed entry after the head",
		edit: func(t *testing.T, entries, _ *bolt.Bucket) error {
			body, err := storedBody(entries, 8)
			if err != nil {
				return err
			}
			forged, err := reencode(body, func(e *Entry) { e.Seq, e.Prev, e.Action = 9, hashBody(body), "forged" })
			if err != nil {
				return err
			}
			return putEntry(entries, 9, hashBody(forged), forged)
		},
		seq: 9, reason: "beyond the head",
	}, {
		name: "insert in the middle, later entries shifted",
		edit: func(t *testing.T, entries, _ *bolt.Bucket) error {
			var bodies [][]byte
			for s := uint64(5); s <= 8; s++ {
				b, err := storedBody(entries, s)
				if err != nil {
					return err
				}
				bodies = append(bodies, b)
			}
			prev, err := storedBody(entries, 4)
			if err != nil {
				return err
			}
			forged, err := reencode(bodies[0], func(e *Entry) { e.Action = "forged"; e.Prev = hashBody(prev) })
			if err != nil {
				return err
			}
			if err := putEntry(entries, 5, hashBody(forged), forged); err != nil {
				return err
			}
			for i, b := range bodies {
				if err := putEntry(entries, uint64(6+i), hashBody(b), b); err != nil {
					return err
				}
			}
			return nil
		},
		seq: 6, reason: "holds the entry of seq 5",
	}, {
		name: "swap two entries",
		edit: func(t *testing.T, entries, _ *bolt.Bucket) error {
			a, b := bytes.Clone(entries.Get(seqKey(2))), bytes.Clone(entries.Get(seqKey(3)))
			if err := entries.Put(seqKey(2), b); err != nil {
				return err
			}
			return entries.Put(seqKey(3), a)
		},
		seq: 2, reason: "holds the entry of seq 3",
	}, {
		name: "renumber after a deletion",
		edit: func(t *testing.T, entries, root *bolt.Bucket) error {
			// Remove entry 5 and move 6..8 down, with their own seqs rewritten and hashes
			// recomputed; the head is rewritten too. Entry 5 (formerly 6) no longer links to 4.
			for s := uint64(6); s <= 8; s++ {
				b, err := storedBody(entries, s)
				if err != nil {
					return err
				}
				nb, err := reencode(b, func(e *Entry) { e.Seq = s - 1 })
				if err != nil {
					return err
				}
				if err := putEntry(entries, s-1, hashBody(nb), nb); err != nil {
					return err
				}
				if s == 8 {
					if err := root.Put([]byte("head"), link{seq: 7, hash: hashBody(nb)}.encode()); err != nil {
						return err
					}
				}
			}
			return entries.Delete(seqKey(8))
		},
		seq: 5, reason: "does not link",
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, 0)
			e.append(8)
			if _, err := e.log.Verify(context.Background()); err != nil {
				t.Fatalf("before tampering: %v", err)
			}
			e.tamper(func(entries, root *bolt.Bucket) error { return c.edit(t, entries, root) })
			_, err := e.log.Verify(context.Background())
			if !errors.Is(err, ErrBroken) {
				t.Fatalf("Verify: %v, want a broken chain", err)
			}
			ce := chainErr(t, err)
			if ce.Seq != c.seq || !strings.Contains(ce.Reason, c.reason) {
				t.Fatalf("broken at %d (%s), want %d (%s)", ce.Seq, ce.Reason, c.seq, c.reason)
			}
		})
	}
}

func TestRestartContinuesTheChain(t *testing.T) {
	e := newEnv(t, 0)
	before := e.append(5)
	e.reopen()
	after := e.append(3)
	if after[0].Seq != 6 || !bytes.Equal(after[0].Prev, before[4].Hash) {
		t.Fatalf("after restart: seq %d prev %x, want 6 linked to %x", after[0].Seq, after[0].Prev, before[4].Hash)
	}
	rep, err := e.log.Verify(context.Background())
	if err != nil || rep.Count != 8 || rep.Last != 8 {
		t.Fatalf("%+v %v", rep, err)
	}
	// The uplink stream continues too: the TMS's Verifier accepts every record in order.
	var v Verifier
	for _, raw := range e.uplinked() {
		if _, err := v.Next(raw); err != nil {
			t.Fatal(err)
		}
	}
	if seq, hash := v.Last(); seq != 8 || !bytes.Equal(hash, after[2].Hash) {
		t.Fatalf("verifier ends at %d", seq)
	}
}

func TestPruningKeepsAVerifiableAnchor(t *testing.T) {
	e := newEnv(t, 10)
	all := e.append(35)
	rep, err := e.log.Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep != (Report{First: 26, Last: 35, Count: 10, Anchor: 25}) {
		t.Fatalf("report %+v", rep)
	}
	recent, err := e.log.Recent(100)
	if err != nil {
		t.Fatal(err)
	}
	if len(recent) != 10 || recent[0].Seq != 26 || !bytes.Equal(recent[0].Prev, all[24].Hash) {
		t.Fatalf("recent after pruning: %d entries from %d", len(recent), recent[0].Seq)
	}

	// Raising Keep stops pruning; lowering it prunes step by step, never breaking Verify.
	e.close()
	e.keep = 200
	e.open()
	e.append(100)
	if rep, err := e.log.Verify(context.Background()); err != nil || rep.Count != 110 || rep.Anchor != 25 {
		t.Fatalf("keep 200: %+v %v", rep, err)
	}
	e.close()
	e.keep = 5
	e.open()
	for i := 0; ; i++ {
		e.append(1)
		rep, err := e.log.Verify(context.Background())
		if err != nil {
			t.Fatalf("after %d appends with keep 5: %v", i+1, err)
		}
		if rep.Count == 5 {
			// 110 entries, at most maxPrunePerAppend pruned per append: more than one append.
			if rep.Last != uint64(136+i) || rep.First != rep.Last-4 || i == 0 {
				t.Fatalf("pruned to %+v after %d appends", rep, i+1)
			}
			break
		}
		if rep.Count > 110 || i > 10 {
			t.Fatalf("not pruning: %+v", rep)
		}
	}

	// Tampering with the oldest kept entry is still found.
	rep, err = e.log.Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	e.tamper(func(entries, _ *bolt.Bucket) error { return entries.Delete(seqKey(rep.First)) })
	if ce := chainErr(t, func() error { _, err := e.log.Verify(context.Background()); return err }()); ce.Seq != rep.First {
		t.Fatalf("broken at %d, want %d", ce.Seq, rep.First)
	}
}

// An entry is stored and queued for upload in one transaction: when the outbox refuses the
// record, the entry is not stored either.
func TestEntryAndUplinkCommitTogether(t *testing.T) {
	e := newEnv(t, 0)
	e.obOpts = outbox.Options{MaxRecords: 1000, MaxBytes: 1000, HardMaxBytes: 2000, Logger: slog.New(slog.DiscardHandler)}
	e.reopen()
	var ok int
	var full error
	for range 100 {
		_, err := e.log.Append(context.Background(), Event{Source: SourceECR, Actor: "cr-1", Action: "ecr.register",
			Fields: map[string]any{"note": strings.Repeat("x", 200)}})
		if err != nil {
			full = err
			break
		}
		ok++
	}
	if !errors.Is(full, outbox.ErrFull) {
		t.Fatalf("after %d appends: %v, want outbox.ErrFull", ok, full)
	}
	rep, err := e.log.Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Count != ok || len(e.uplinked()) != ok {
		t.Fatalf("%d appends succeeded, %d entries stored, %d queued", ok, rep.Count, len(e.uplinked()))
	}
}

func TestRecentBounds(t *testing.T) {
	e := newEnv(t, 0)
	if r, err := e.log.Recent(10); err != nil || len(r) != 0 {
		t.Fatalf("empty log: %v %v", r, err)
	}
	e.append(3)
	for _, n := range []int{-1, 0} {
		if r, err := e.log.Recent(n); err != nil || len(r) != 0 {
			t.Fatalf("Recent(%d): %d entries, %v", n, len(r), err)
		}
	}
	if r, err := e.log.Recent(50); err != nil || len(r) != 3 || r[0].Seq != 1 {
		t.Fatalf("Recent(50): %d entries, %v", len(r), err)
	}
}
