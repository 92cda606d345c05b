package audit

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/outbox"
	"github.com/posagent/posagent/agent/store"
)

// benchLog is the agent's arrangement on a temporary directory: bbolt store, group committer,
// outbox and audit log, each entry stored and queued for upload in one fsynced transaction.
func benchLog(b *testing.B, keep int) *Log {
	l, _ := benchLogOutbox(b, keep)
	return l
}

// benchLogOutbox is benchLog with its outbox.
func benchLogOutbox(b *testing.B, keep int) (*Log, *outbox.Outbox) {
	b.Helper()
	db, err := store.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	commit := store.NewCommitter(db)
	b.Cleanup(func() {
		commit.Close()
		_ = db.Close()
	})
	ob, err := outbox.Open(db, commit, outbox.Options{})
	if err != nil {
		b.Fatal(err)
	}
	l, err := Open(Options{DB: db, Commit: commit, Outbox: ob, Keep: keep})
	if err != nil {
		b.Fatal(err)
	}
	return l, ob
}

// benchEvent is a technician action as the diagnostics port records it: actor, action and the
// fields it sends (method, remote address, device, an integer).
func benchEvent(i int) Event {
	return Event{Source: SourceDiag, Actor: "tech42", Action: "test.print",
		Fields: map[string]any{"action": "test.print", "remote": "192.0.2.7", "device": "printer", "i": i}}
}

// fill appends n entries from many goroutines, so the group commit shares fsyncs and a large
// log is ready in seconds; it returns the rate reached.
func fill(b *testing.B, l *Log, n int) float64 {
	b.Helper()
	const writers = 64
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	start := time.Now()
	for range writers {
		wg.Go(func() {
			for {
				i := int(next.Add(1))
				if i > n {
					return
				}
				if _, err := l.Append(context.Background(), benchEvent(i)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	return float64(n) / time.Since(start).Seconds()
}

// BenchmarkAppend is one audit entry stored, chained and queued on up/log/audit, fsync
// included. "one-writer" is a technician's pace (each entry waits for its own commit);
// "8-writers" lets the committer group the entries waiting; "pruning" is a full log at its
// Keep bound, where each append also deletes the oldest entry and moves the anchor.
func BenchmarkAppend(b *testing.B) {
	b.Run("one-writer", func(b *testing.B) {
		l := benchLog(b, 0)
		var last Entry
		i := 0
		for b.Loop() {
			e, err := l.Append(context.Background(), benchEvent(i))
			if err != nil {
				b.Fatal(err)
			}
			last = e
			i++
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
		body, err := encodeEntry(last)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(len(body)), "B/entry")
	})
	// The baseline: the same record queued on up/log/audit with outbox.Append alone (one
	// fsynced transaction, as every uplink record costs), alternated with the audit Append so
	// that both see the same disk and load.
	b.Run("vs-outbox", func(b *testing.B) {
		l, ob := benchLogOutbox(b, 0)
		ctx := context.Background()
		var auditT, outboxT time.Duration
		i := 0
		for b.Loop() {
			t := time.Now()
			e, err := l.Append(ctx, benchEvent(i))
			if err != nil {
				b.Fatal(err)
			}
			auditT += time.Since(t)
			body, err := encodeEntry(e)
			if err != nil {
				b.Fatal(err)
			}
			rec := Record{Body: body, Hash: e.Hash}
			t = time.Now()
			if _, err := ob.Append(ctx, "log/audit-baseline", UplinkKind, rec); err != nil {
				b.Fatal(err)
			}
			outboxT += time.Since(t)
			i++
		}
		b.ReportMetric(float64(auditT.Nanoseconds())/float64(b.N), "audit-ns/op")
		b.ReportMetric(float64(outboxT.Nanoseconds())/float64(b.N), "outbox-ns/op")
		b.ReportMetric(float64(auditT)/float64(outboxT), "audit/outbox")
	})
	b.Run("8-writers", func(b *testing.B) {
		l := benchLog(b, 0)
		b.SetParallelism(4) // 4 × GOMAXPROCS (2 here) = 8 writers
		var i atomic.Int64
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := l.Append(context.Background(), benchEvent(int(i.Add(1)))); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	})
	b.Run("pruning", func(b *testing.B) {
		const keep = 1000
		l := benchLog(b, keep)
		fill(b, l, keep+10)
		i := 0
		b.ResetTimer()
		for b.Loop() {
			if _, err := l.Append(context.Background(), benchEvent(i)); err != nil {
				b.Fatal(err)
			}
			i++
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	})
}

// BenchmarkLog20000 reads a log holding DefaultKeep (20 000) entries: Verify walks the whole
// chain (the audit.verify action), Recent is the console's audit page (GET /api/audit).
func BenchmarkLog20000(b *testing.B) {
	l := benchLog(b, 0)
	rate := fill(b, l, DefaultKeep)
	b.Logf("filled %d entries at %.0f entries/s (64 writers, group commit)", DefaultKeep, rate)
	b.Run("verify", func(b *testing.B) {
		for b.Loop() {
			rep, err := l.Verify(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			if rep.Count != DefaultKeep {
				b.Fatalf("verified %d entries, want %d", rep.Count, DefaultKeep)
			}
		}
		b.ReportMetric(float64(DefaultKeep)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	})
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("recent-%d", n), func(b *testing.B) {
			for b.Loop() {
				es, err := l.Recent(n)
				if err != nil {
					b.Fatal(err)
				}
				if len(es) != n {
					b.Fatalf("got %d entries, want %d", len(es), n)
				}
			}
		})
	}
}
