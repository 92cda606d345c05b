package termconfig

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"

	"github.com/posagent/posagent/agent/store"
	bolt "go.etcd.io/bbolt"
)

func openDB(t testing.TB, dir string) *bolt.DB {
	t.Helper()
	db, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func openStore(t testing.TB, db *bolt.DB) *Store {
	t.Helper()
	s, err := Open(db, quiet)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var quiet = WithLogger(slog.New(slog.DiscardHandler))

// reopen closes db and opens the same directory again, as after a restart.
func reopen(t testing.TB, db *bolt.DB) *Store {
	t.Helper()
	dir := filepath.Dir(db.Path())
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return openStore(t, openDB(t, dir))
}

func apply(t testing.TB, s *Store, d *Document, wantChanged bool) {
	t.Helper()
	changed, err := s.Apply(d)
	if err != nil {
		t.Fatalf("Apply(version %d): %v", d.Version, err)
	}
	if changed != wantChanged {
		t.Fatalf("Apply(version %d) changed=%v, want %v", d.Version, changed, wantChanged)
	}
}

func wantStale(t testing.TB, s *Store, d *Document) {
	t.Helper()
	before := s.Summary()
	changed, err := s.Apply(d)
	var se *StaleError
	if !errors.As(err, &se) || changed {
		t.Fatalf("Apply(version %d) = %v, %v; want *StaleError", d.Version, changed, err)
	}
	if se.Offered != d.Version || se.Active != before.Version {
		t.Fatalf("StaleError %+v for version %d over %d", se, d.Version, before.Version)
	}
	if after := s.Summary(); after != before {
		t.Fatalf("refused document changed the store: %v -> %v", before, after)
	}
}

func TestStoreFactoryWhenEmpty(t *testing.T) {
	s := openStore(t, openDB(t, t.TempDir()))
	sameDoc(t, s.Active(), Default())
	if _, ok := s.Previous(); ok {
		t.Fatal("previous document on an empty store")
	}
	if sum := s.Summary(); sum.Version != 0 || sum.Digest != Digest(mustEncode(t, Default())) {
		t.Fatalf("Summary = %+v", sum)
	}
	// The factory document is active already: applying it is a no-op, not a change.
	apply(t, s, Default(), false)
}

func TestStoreApplyKeepsPreviousAndSurvivesRestart(t *testing.T) {
	db := openDB(t, t.TempDir())
	s := openStore(t, db)
	apply(t, s, docFor(t, 1), true)
	if _, ok := s.Previous(); ok {
		t.Fatal("the factory document was kept as previous")
	}
	apply(t, s, docFor(t, 2), true)
	apply(t, s, docFor(t, 7), true)

	s = reopen(t, db)
	sameDoc(t, s.Active(), docFor(t, 7))
	prev, ok := s.Previous()
	if !ok {
		t.Fatal("no previous after restart")
	}
	sameDoc(t, prev, docFor(t, 2))
	if sum := s.Summary(); sum.Version != 7 || sum.Digest != Digest(mustEncode(t, docFor(t, 7))) {
		t.Fatalf("Summary = %+v", sum)
	}
}

func TestStoreApplyIsIdempotent(t *testing.T) {
	s := openStore(t, openDB(t, t.TempDir()))
	apply(t, s, docFor(t, 3), true)
	updates, cancel := s.Subscribe()
	defer cancel()
	<-updates // the active document, delivered on subscription

	apply(t, s, docFor(t, 3), false)
	// An equal document that went through JSON.
	viaJSON, err := json.Marshal(docFor(t, 3))
	if err != nil {
		t.Fatal(err)
	}
	d, err := DecodeJSON(viaJSON)
	if err != nil {
		t.Fatal(err)
	}
	apply(t, s, d, false)
	select {
	case d := <-updates:
		t.Fatalf("re-apply notified subscribers of version %d", d.Version)
	default:
	}
	if _, ok := s.Previous(); ok {
		t.Fatal("re-apply created a previous document")
	}
}

func TestStoreRejectsStale(t *testing.T) {
	s := openStore(t, openDB(t, t.TempDir()))
	apply(t, s, docFor(t, 5), true)

	different := docFor(t, 5)
	different.AuthHost.MerchantName = "Another shop"
	wantStale(t, s, different)
	wantStale(t, s, docFor(t, 4))
	wantStale(t, s, Default())
	sameDoc(t, s.Active(), docFor(t, 5))
}

func TestStoreRejectsInvalid(t *testing.T) {
	s := openStore(t, openDB(t, t.TempDir()))
	apply(t, s, docFor(t, 1), true)
	bad := docFor(t, 2)
	bad.HostParameters.MaxBatchSize = 10
	changed, err := s.Apply(bad)
	if changed || len(violationPaths(t, err)) == 0 {
		t.Fatalf("Apply(invalid) = %v, %v", changed, err)
	}
	sameDoc(t, s.Active(), docFor(t, 1))
}

func TestStoreIsolatedFromCallerEdits(t *testing.T) {
	s := openStore(t, openDB(t, t.TempDir()))
	d := docFor(t, 1)
	apply(t, s, d, true)
	d.AuthHost.Addresses[0] = "evil.example:1"
	d.AuthHost.MerchantName = "changed"
	sameDoc(t, s.Active(), docFor(t, 1))
}

func TestStoreRollback(t *testing.T) {
	db := openDB(t, t.TempDir())
	s := openStore(t, db)
	if _, err := s.Rollback(); !errors.Is(err, ErrNoPrevious) {
		t.Fatalf("Rollback on factory = %v", err)
	}
	apply(t, s, docFor(t, 1), true)
	apply(t, s, docFor(t, 2), true)
	got, err := s.Rollback()
	if err != nil {
		t.Fatal(err)
	}
	sameDoc(t, got, docFor(t, 1))
	if _, err := s.Rollback(); !errors.Is(err, ErrNoPrevious) {
		t.Fatalf("second Rollback = %v", err)
	}
	// Version 2 was used; the TMS must number its next document above it.
	wantStale(t, s, docFor(t, 2))
	apply(t, s, docFor(t, 1), false)

	s = reopen(t, db)
	sameDoc(t, s.Active(), docFor(t, 1))
	wantStale(t, s, docFor(t, 2))
	apply(t, s, docFor(t, 3), true)
	prev, _ := s.Previous()
	sameDoc(t, prev, docFor(t, 1))
}

func TestStoreSubscribe(t *testing.T) {
	s := openStore(t, openDB(t, t.TempDir()))
	updates, cancel := s.Subscribe()
	if d := <-updates; d.Version != 0 {
		t.Fatalf("first delivery is version %d, want the active 0", d.Version)
	}
	apply(t, s, docFor(t, 1), true)
	if d := <-updates; d.Version != 1 {
		t.Fatalf("got version %d, want 1", d.Version)
	}
	// A reader that falls behind skips to the latest document.
	apply(t, s, docFor(t, 2), true)
	apply(t, s, docFor(t, 3), true)
	if d := <-updates; d.Version != 3 {
		t.Fatalf("got version %d, want 3", d.Version)
	}
	if _, err := s.Rollback(); err != nil {
		t.Fatal(err)
	}
	if d := <-updates; d.Version != 2 {
		t.Fatalf("after rollback got version %d, want 2", d.Version)
	}
	cancel()
	cancel()
	if _, ok := <-updates; ok {
		t.Fatal("channel open after cancel")
	}
	apply(t, s, docFor(t, 4), true) // must not panic on the closed channel
}

func TestStoreConcurrentApply(t *testing.T) {
	s := openStore(t, openDB(t, t.TempDir()))
	updates, cancel := s.Subscribe()
	defer cancel()
	const n = 12
	docs := make([]*Document, n+1)
	for v := 1; v <= n; v++ {
		docs[v] = docFor(t, uint64(v))
	}
	var wg sync.WaitGroup
	for v := 1; v <= n; v++ {
		wg.Go(func() {
			var se *StaleError
			if _, err := s.Apply(docs[v]); err != nil && !errors.As(err, &se) {
				t.Errorf("Apply(%d): %v", v, err)
			}
			_ = s.Active().Version
			s.Summary()
		})
	}
	wg.Wait()
	sameDoc(t, s.Active(), docs[n])
	if d := <-updates; d.Version != n {
		t.Fatalf("subscriber's latest is version %d, want %d", d.Version, n)
	}
}

func TestStoreDetectsCorruption(t *testing.T) {
	// flip inverts one bit of byte at (counted from the end when negative).
	flip := func(at int) func(v []byte) []byte {
		return func(v []byte) []byte {
			if at < 0 {
				at += len(v)
			}
			v[at] ^= 0x01
			return v
		}
	}
	tests := []struct {
		name    string
		key     []byte
		edit    func(v []byte) []byte // nil deletes the record
		wantKey string
	}{
		{"active payload bit", keyActive, flip(-10), "active"},
		{"active checksum bit", keyActive, flip(5), "active"},
		{"active format", keyActive, flip(0), "active"},
		{"active truncated", keyActive, func(v []byte) []byte { return v[:20] }, "active"},
		{"active payload cut", keyActive, func(v []byte) []byte { return v[:len(v)-1] }, "active"},
		{"active missing", keyActive, nil, "active"},
		{"previous payload bit", keyPrevious, flip(100), "previous"},
		{"high-water bit", keyHighWater, flip(40), "highWater"},
		{"high-water missing", keyHighWater, nil, "highWater"},
		{"high-water below active", keyHighWater, func([]byte) []byte {
			var b [8]byte
			binary.BigEndian.PutUint64(b[:], 1)
			return store.Check(b[:])
		}, "highWater"},
		{"previous not older", keyPrevious, func([]byte) []byte { return store.Check(mustEncode(t, docFor(t, 9))) }, "previous"},
		{"active not a document", keyActive, func([]byte) []byte { return store.Check([]byte{0xa1, 0x61, 'x', 0x01}) }, "active"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := openDB(t, t.TempDir())
			s := openStore(t, db)
			apply(t, s, docFor(t, 1), true)
			apply(t, s, docFor(t, 2), true)
			err := db.Update(func(tx *bolt.Tx) error {
				b := tx.Bucket([]byte(BucketName))
				if tt.edit == nil {
					return b.Delete(tt.key)
				}
				return b.Put(tt.key, tt.edit(bytes.Clone(b.Get(tt.key))))
			})
			if err != nil {
				t.Fatal(err)
			}
			s, err = Open(db, quiet)
			var ce *CorruptError
			if !errors.As(err, &ce) || s != nil {
				t.Fatalf("Open = %v, %v; want *CorruptError", s, err)
			}
			if ce.Key != tt.wantKey {
				t.Fatalf("corrupt key %q, want %q (%v)", ce.Key, tt.wantKey, err)
			}
		})
	}
}
