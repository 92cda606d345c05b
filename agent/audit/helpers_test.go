package audit

import (
	"context"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/posagent/posagent/agent/outbox"
	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/agent/tmsproto"
)

// env is a real database, group committer, outbox and audit log in a temporary directory.
type env struct {
	t      *testing.T
	dir    string
	keep   int
	obOpts outbox.Options
	db     *store.DB
	commit *store.Committer
	ob     *outbox.Outbox
	log    *Log
	clock  *clock
}

// clock is a settable time source (entries carry times; the tests check them).
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Millisecond)
	return c.t
}

func newEnv(t *testing.T, keep int) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), keep: keep,
		clock: &clock{t: time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)}}
	e.open()
	t.Cleanup(e.close)
	return e
}

func (e *env) open() {
	e.t.Helper()
	db, err := store.Open(e.dir)
	if err != nil {
		e.t.Fatal(err)
	}
	e.db, e.commit = db, store.NewCommitter(db)
	if e.ob, err = outbox.Open(db, e.commit, e.obOpts); err != nil {
		e.t.Fatal(err)
	}
	if e.log, err = Open(Options{DB: db, Commit: e.commit, Outbox: e.ob, Keep: e.keep, Now: e.clock.Now}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) close() {
	if e.db == nil {
		return
	}
	e.commit.Close()
	_ = e.db.Close()
	e.db = nil
}

func (e *env) reopen() {
	e.t.Helper()
	e.close()
	e.open()
}

// tamper stops the agent's database and edits the file with bbolt directly, as someone with
// the terminal's storage in hand would, then opens everything again.
func (e *env) tamper(edit func(entries, root *bolt.Bucket) error) {
	e.t.Helper()
	e.close()
	db, err := bolt.Open(filepath.Join(e.dir, "posagent.db"), 0o600, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		root := tx.Bucket([]byte(BucketName))
		return edit(root.Bucket([]byte("e")), root)
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		e.t.Fatal(err)
	}
	e.open()
}

func (e *env) append(n int) []Entry {
	e.t.Helper()
	out := make([]Entry, 0, n)
	for i := range n {
		ent, err := e.log.Append(context.Background(), Event{
			Source: SourceDiag, Actor: "tech-1", Action: "selftest",
			Fields: map[string]any{"i": i, "device": "printer"},
		})
		if err != nil {
			e.t.Fatal(err)
		}
		out = append(out, ent)
	}
	return out
}

// uplinked returns the bodies of the records queued on up/log/audit, in queue order.
func (e *env) uplinked() [][]byte {
	e.t.Helper()
	recs, err := e.ob.Read(0, 1<<20)
	if err != nil {
		e.t.Fatal(err)
	}
	var out [][]byte
	for _, r := range recs {
		if r.Stream != tmsproto.StreamLogAudit {
			continue
		}
		var env tmsproto.Envelope
		if err := tmsproto.Unmarshal(r.Payload, &env); err != nil {
			e.t.Fatal(err)
		}
		if env.Kind != UplinkKind || env.Seq != r.Seq {
			e.t.Fatalf("envelope kind %q seq %d, record seq %d", env.Kind, env.Seq, r.Seq)
		}
		out = append(out, env.Body)
	}
	return out
}

// storedBody returns the encoded entry kept under seq (hash prefix removed).
func storedBody(entries *bolt.Bucket, seq uint64) ([]byte, error) {
	v := entries.Get(binary.BigEndian.AppendUint64(nil, seq))
	if len(v) < HashSize {
		return nil, fmt.Errorf("no entry %d", seq)
	}
	return append([]byte(nil), v[HashSize:]...), nil
}

// reencode decodes a stored body, lets change alter it, and encodes it again.
func reencode(body []byte, change func(*Entry)) ([]byte, error) {
	ent, err := decodeBody(body)
	if err != nil {
		return nil, err
	}
	change(&ent)
	return encodeEntry(ent)
}

func putEntry(entries *bolt.Bucket, seq uint64, hash, body []byte) error {
	return entries.Put(binary.BigEndian.AppendUint64(nil, seq), append(append([]byte(nil), hash...), body...))
}

func chainErr(t *testing.T, err error) *ChainError {
	t.Helper()
	ce, ok := err.(*ChainError)
	if !ok {
		t.Fatalf("got %v, want a *ChainError", err)
	}
	return ce
}
