package audit

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/posagent/posagent/agent/outbox"
	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/agent/tmsproto"
)

// BucketName is the top-level bbolt bucket this package owns.
const BucketName = "audit"

// UplinkKind is the envelope kind of an audit record on tmsproto.StreamLogAudit.
const UplinkKind = "audit"

// DefaultKeep is how many entries the terminal keeps when Options.Keep is 0.
const DefaultKeep = 20000

// maxPrunePerAppend bounds the deletions one Append makes, so lowering Keep on a full log
// spreads the pruning over the following appends instead of one huge transaction.
const maxPrunePerAppend = 64

// Layout of the bucket: entries in a sub-bucket keyed by seq (8 bytes big-endian), each value
// the entry's hash followed by its exact encoded body; "head" and "anchor" are links
// (seq 8 bytes + hash): the last entry appended, and the last entry pruned.
var (
	bucketAudit = []byte(BucketName)
	bucketEntry = []byte("e")
	keyHead     = []byte("head")
	keyAnchor   = []byte("anchor")
)

// ErrBadEvent is returned by Append for an event without a source or an action, or with an
// unknown outcome.
var ErrBadEvent = errors.New("audit: bad event")

// Options configure a Log.
type Options struct {
	DB     *store.DB
	Commit *store.Committer
	// Outbox queues each entry on up/log/audit in the entry's own transaction. Nil keeps the
	// entries in the terminal only (unit tests of other packages).
	Outbox *outbox.Outbox
	Keep   int              // entries kept in the terminal (default DefaultKeep); older ones pruned
	Now    func() time.Time // default time.Now
	Logger *slog.Logger
}

// Log is the terminal's audit hash chain. Safe for concurrent use: appends go one at a time
// through the database's single writer, each reading the head in its own transaction, so
// seqs are gapless whatever the number of callers.
type Log struct {
	db     *store.DB
	commit *store.Committer
	out    *outbox.Outbox
	keep   int
	now    func() time.Time
	log    *slog.Logger
}

// Report is the result of a successful Verify.
type Report struct {
	First uint64 `json:"first"` // seq of the oldest entry kept (0 when there is none)
	Last  uint64 `json:"last"`  // seq of the newest entry (0 when there is none)
	Count int    `json:"count"` // entries kept and verified
	// Anchor is the seq of the last pruned entry, whose hash the oldest kept entry links to.
	Anchor uint64 `json:"anchor"`
}

// link is a position in the chain: an entry's seq and hash.
type link struct {
	seq  uint64
	hash []byte
}

func genesis() link { return link{hash: make([]byte, HashSize)} }

func (l link) encode() []byte {
	return append(binary.BigEndian.AppendUint64(make([]byte, 0, 8+HashSize), l.seq), l.hash...)
}

func decodeLink(v []byte) (link, error) {
	if v == nil {
		return genesis(), nil
	}
	if len(v) != 8+HashSize {
		return link{}, fmt.Errorf("link of %d bytes", len(v))
	}
	return link{seq: binary.BigEndian.Uint64(v), hash: bytes.Clone(v[8:])}, nil
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 8), seq) }

// Open creates the bucket if needed.
func Open(o Options) (*Log, error) {
	if o.DB == nil || o.Commit == nil {
		return nil, errors.New("audit: DB and Commit are required")
	}
	if o.Keep <= 0 {
		o.Keep = DefaultKeep
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	err := o.DB.Update(func(tx *bolt.Tx) error {
		root, err := tx.CreateBucketIfNotExists(bucketAudit)
		if err != nil {
			return err
		}
		_, err = root.CreateBucketIfNotExists(bucketEntry)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("audit: open: %w", err)
	}
	return &Log{db: o.DB, commit: o.Commit, out: o.Outbox, keep: o.Keep, now: o.Now, log: o.Logger}, nil
}

// Append records e as the next entry and queues it for upload, both in one transaction: the
// entry is either stored and queued, or neither. The outcome "" means OutcomeOK; fields whose
// name looks like a secret are redacted, card numbers in text masked, strings clipped to
// MaxStringLen bytes and at most MaxFields fields kept. The entry returned is exactly what
// was stored.
func (l *Log) Append(ctx context.Context, e Event) (Entry, error) {
	if e.Outcome == "" {
		e.Outcome = OutcomeOK
	}
	switch {
	case e.Source == "" || e.Action == "":
		return Entry{}, fmt.Errorf("%w: source and action are required", ErrBadEvent)
	case e.Outcome != OutcomeOK && e.Outcome != OutcomeDenied && e.Outcome != OutcomeFailed:
		return Entry{}, fmt.Errorf("%w: unknown outcome %q", ErrBadEvent, clip(e.Outcome, 32))
	}
	base := Entry{
		Time:    l.now().UTC().Truncate(time.Millisecond),
		Source:  clip(e.Source, MaxStringLen),
		Actor:   text(e.Actor),
		Action:  clip(e.Action, MaxStringLen),
		Outcome: e.Outcome,
		Fields:  sanitize(e.Fields),
	}
	var stored Entry
	// The function may run more than once (the Committer retries a failed group one by one),
	// so everything it decides comes from the transaction.
	err := l.commit.Do(ctx, func(tx *store.Tx) error {
		root := tx.Bucket(bucketAudit)
		if root == nil {
			return errors.New("audit: not opened on this database")
		}
		head, err := decodeLink(root.Get(keyHead))
		if err != nil {
			return fmt.Errorf("audit: head: %w", err)
		}
		ent := base
		ent.Seq, ent.Prev = head.seq+1, head.hash
		body, err := encodeEntry(ent)
		if err != nil {
			return err
		}
		if stored, err = decodeBody(body); err != nil {
			return fmt.Errorf("audit: entry does not read back: %w", err)
		}
		entries := root.Bucket(bucketEntry)
		if err := entries.Put(seqKey(ent.Seq), append(bytes.Clone(stored.Hash), body...)); err != nil {
			return err
		}
		if err := root.Put(keyHead, link{seq: ent.Seq, hash: stored.Hash}.encode()); err != nil {
			return err
		}
		if l.out != nil {
			rec := Record{Body: body, Hash: stored.Hash}
			if _, err := l.out.AppendTx(tx, tmsproto.StreamLogAudit, UplinkKind, rec); err != nil {
				return fmt.Errorf("audit: queue: %w", err)
			}
		}
		return l.prune(root, entries, ent.Seq)
	})
	if err != nil {
		return Entry{}, err
	}
	return stored, nil
}

// prune deletes the entries beyond Keep, oldest first, and moves the anchor to the last one
// deleted so Verify keeps a known starting link.
func (l *Log) prune(root, entries *bolt.Bucket, last uint64) error {
	anchor, err := decodeLink(root.Get(keyAnchor))
	if err != nil {
		return fmt.Errorf("audit: anchor: %w", err)
	}
	if last-anchor.seq <= uint64(l.keep) {
		return nil
	}
	n := min(last-anchor.seq-uint64(l.keep), maxPrunePerAppend)
	c := entries.Cursor()
	var moved bool
	for k, v := c.First(); k != nil && n > 0; k, v = c.First() {
		if len(k) != 8 || len(v) < HashSize {
			return fmt.Errorf("audit: prune: corrupt entry %x", k)
		}
		anchor = link{seq: binary.BigEndian.Uint64(k), hash: bytes.Clone(v[:HashSize])}
		if err := c.Delete(); err != nil {
			return err
		}
		moved = true
		n--
	}
	if !moved {
		return nil
	}
	return root.Put(keyAnchor, anchor.encode())
}

// Recent returns the newest n entries (at most Keep), newest last.
func (l *Log) Recent(n int) ([]Entry, error) {
	n = min(n, l.keep)
	if n <= 0 {
		return []Entry{}, nil
	}
	out := make([]Entry, 0, min(n, 1024))
	err := l.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketAudit).Bucket(bucketEntry).Cursor()
		for k, v := c.Last(); k != nil && len(out) < n; k, v = c.Prev() {
			if len(v) < HashSize {
				return &DecodeError{Err: ErrMalformed, Detail: fmt.Sprintf("stored entry %x", k)}
			}
			e, err := decodeBody(v[HashSize:])
			if err != nil {
				return fmt.Errorf("audit: stored entry %x: %w", k, err)
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

// Verify walks the stored chain from the anchor to the head. It returns a *ChainError naming
// the first seq at which the chain stops verifying: an entry whose body no longer matches its
// hash (edited), a missing seq (removed), an entry out of place (reordered) or one that does
// not link to the entry before it, and an entry beyond the head or a head that is not the last
// entry (inserted or removed at the end).
func (l *Log) Verify(ctx context.Context) (Report, error) {
	var rep Report
	err := l.db.View(func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketAudit)
		anchor, err := decodeLink(root.Get(keyAnchor))
		if err != nil {
			return &ChainError{Seq: 0, Reason: "anchor unreadable: " + err.Error()}
		}
		head, err := decodeLink(root.Get(keyHead))
		if err != nil {
			return &ChainError{Seq: anchor.seq + 1, Reason: "head unreadable: " + err.Error()}
		}
		rep.Anchor = anchor.seq
		prev := anchor
		c := root.Bucket(bucketEntry).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			want := prev.seq + 1
			if rep.Count%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			if len(k) != 8 {
				return &ChainError{Seq: want, Reason: fmt.Sprintf("stray key %x", k)}
			}
			if key := binary.BigEndian.Uint64(k); key != want {
				if key < want {
					return &ChainError{Seq: key, Reason: "entry before the anchor"}
				}
				return &ChainError{Seq: want, Reason: "missing"}
			}
			if want > head.seq {
				return &ChainError{Seq: want, Reason: fmt.Sprintf("beyond the head (%d)", head.seq)}
			}
			if len(v) < HashSize {
				return &ChainError{Seq: want, Reason: "truncated"}
			}
			body := v[HashSize:]
			hash := hashBody(body)
			if !bytes.Equal(hash, v[:HashSize]) {
				return &ChainError{Seq: want, Reason: "edited: the body does not match its hash"}
			}
			e, err := decodeBody(body)
			if err != nil {
				return &ChainError{Seq: want, Reason: "unreadable: " + err.Error()}
			}
			if e.Seq != want {
				return &ChainError{Seq: want, Reason: fmt.Sprintf("holds the entry of seq %d", e.Seq)}
			}
			if !bytes.Equal(e.Prev, prev.hash) {
				return &ChainError{Seq: want, Reason: "does not link to the entry before"}
			}
			if rep.Count == 0 {
				rep.First = want
			}
			rep.Count++
			prev = link{seq: want, hash: hash}
		}
		if prev.seq != head.seq {
			return &ChainError{Seq: prev.seq + 1, Reason: fmt.Sprintf("missing (the head is %d)", head.seq)}
		}
		if !bytes.Equal(prev.hash, head.hash) {
			return &ChainError{Seq: head.seq, Reason: "edited: not the entry the head names"}
		}
		rep.Last = head.seq
		return nil
	})
	if err != nil {
		return Report{}, err
	}
	return rep, nil
}
