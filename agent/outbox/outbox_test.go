package outbox

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/agent/tmsproto"
)

func open(t *testing.T, dir string, opts Options) (*Outbox, func()) {
	t.Helper()
	db, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	c := store.NewCommitter(db)
	o, err := Open(db, c, opts)
	if err != nil {
		t.Fatal(err)
	}
	return o, func() { c.Close(); db.Close() }
}

func TestAppendReadDeleteAndSeqSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	o, closeFn := open(t, dir, Options{})
	for i := 1; i <= 3; i++ {
		seq, err := o.Append(ctx, tmsproto.StreamEvent, "test", map[string]int{"i": i})
		if err != nil || seq != uint64(i) {
			t.Fatalf("append %d: seq %d err %v", i, seq, err)
		}
	}
	if _, err := o.Append(ctx, tmsproto.StreamAck, "ack", map[string]int{}); err != nil {
		t.Fatal(err)
	}
	recs, err := o.Read(0, 10)
	if err != nil || len(recs) != 4 {
		t.Fatalf("read: %d records, %v", len(recs), err)
	}
	env, err := tmsproto.DecodeEnvelope(recs[1].Payload)
	if err != nil {
		t.Fatal(err)
	}
	if env.Stream != tmsproto.StreamEvent || env.Seq != 2 || env.Kind != "test" {
		t.Fatalf("envelope %+v", env)
	}
	if recs[3].Stream != tmsproto.StreamAck || recs[3].Seq != 1 {
		t.Fatalf("record %+v", recs[3])
	}
	if err := o.Delete(ctx, recs[0].Key, recs[1].Key, recs[1].Key); err != nil {
		t.Fatal(err)
	}
	if st := o.State(); st.Records != 2 {
		t.Fatalf("state after delete %+v", st)
	}
	closeFn()

	o, closeFn = open(t, dir, Options{})
	defer closeFn()
	if st := o.State(); st.Records != 2 {
		t.Fatalf("state after reopen %+v", st)
	}
	seq, err := o.Append(ctx, tmsproto.StreamEvent, "test", map[string]int{})
	if err != nil || seq != 4 {
		t.Fatalf("seq after reopen %d %v", seq, err)
	}
	recs, _ = o.Read(recs[2].Key, 10)
	if len(recs) != 2 || recs[0].Stream != tmsproto.StreamAck {
		t.Fatalf("read after key: %+v", recs)
	}
}

func TestConcurrentAppendsGetDistinctContiguousSeqs(t *testing.T) {
	o, closeFn := open(t, t.TempDir(), Options{})
	defer closeFn()
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[uint64]bool{}
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				seq, err := o.Append(context.Background(), tmsproto.StreamLogAgent, "line", map[string]int{"i": i})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seen[seq] {
					t.Errorf("seq %d handed out twice", seq)
				}
				seen[seq] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for s := uint64(1); s <= 400; s++ {
		if !seen[s] {
			t.Fatalf("seq %d missing", s)
		}
	}
}

func TestBoundThinsStatsFirstAndKeepsTheRestWithAlarm(t *testing.T) {
	var alarms []bool
	o, closeFn := open(t, t.TempDir(), Options{MaxRecords: 5, OnAlarm: func(on bool) { alarms = append(alarms, on) }})
	defer closeFn()
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if _, err := o.Append(ctx, tmsproto.StreamStats, "stats", map[string]int{"i": i}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 2; i++ {
		if _, err := o.Append(ctx, tmsproto.StreamAck, "ack", map[string]int{"i": i}); err != nil {
			t.Fatal(err)
		}
	}
	// Full: each new record pushes out the oldest stats record.
	for i := 0; i < 3; i++ {
		if _, err := o.Append(ctx, tmsproto.StreamReceipt, "receipt", map[string]int{"i": i}); err != nil {
			t.Fatal(err)
		}
	}
	st := o.State()
	if st.Records != 5 || st.Thinned != 3 || st.Alarm {
		t.Fatalf("after thinning: %+v", st)
	}
	// Nothing left to thin: a stats record is dropped before it gets a seq …
	if _, err := o.Append(ctx, tmsproto.StreamStats, "stats", map[string]int{}); !errors.Is(err, ErrThinned) {
		t.Fatalf("stats when full: %v", err)
	}
	if last, _ := o.LastSeq(tmsproto.StreamStats); last != 3 {
		t.Fatalf("stats seq moved to %d", last)
	}
	// … and an event is kept anyway, with the alarm raised.
	if _, err := o.Append(ctx, tmsproto.StreamEvent, "event", map[string]int{}); err != nil {
		t.Fatal(err)
	}
	if st := o.State(); st.Records != 6 || !st.Alarm {
		t.Fatalf("over the bound: %+v", st)
	}
	recs, _ := o.Read(0, 100)
	var keys []uint64
	for _, r := range recs {
		keys = append(keys, r.Key)
	}
	if err := o.Delete(ctx, keys...); err != nil {
		t.Fatal(err)
	}
	if st := o.State(); st.Records != 0 || st.Alarm {
		t.Fatalf("drained: %+v", st)
	}
	if len(alarms) != 2 || !alarms[0] || alarms[1] {
		t.Fatalf("alarm transitions %v", alarms)
	}
}

func TestHardCeiling(t *testing.T) {
	o, closeFn := open(t, t.TempDir(), Options{MaxRecords: 1000, MaxBytes: 100, HardMaxBytes: 200})
	defer closeFn()
	ctx := context.Background()
	big := map[string]string{"x": string(make([]byte, 120))}
	var err error
	for i := 0; i < 5 && err == nil; i++ {
		_, err = o.Append(ctx, tmsproto.StreamReceipt, "receipt", big)
	}
	if !errors.Is(err, ErrFull) {
		t.Fatalf("want ErrFull, got %v", err)
	}
}

func BenchmarkAppend(b *testing.B) {
	db, err := store.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	c := store.NewCommitter(db)
	defer c.Close()
	o, err := Open(db, c, Options{MaxRecords: 1 << 30, MaxBytes: 1 << 40})
	if err != nil {
		b.Fatal(err)
	}
	body := map[string]any{"level": "info", "msg": "a typical log line of moderate length", "n": 12345}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := o.Append(context.Background(), tmsproto.StreamLogAgent, "log", body); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
