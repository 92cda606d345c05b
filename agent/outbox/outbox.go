// Package outbox is the durable store-and-forward queue of every uplink record.
//
// A record is written (with its per-stream seq) in a committed, fsynced transaction before
// anybody may publish it, and it is deleted only after the broker's PUBACK. The seq counter of
// each stream lives in the same transaction as the record, so seqs survive restarts and can
// never be handed out twice, and a record that exists has no gap before it.
//
// The queue is bounded by a policy: when full, the oldest statistics records are thinned first
// (a gap in the stats stream is allowed by the contract); records of every other stream are
// kept past the bound, with an alarm raised, up to a hard ceiling that protects the disk.
package outbox

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/agent/tmsproto"
)

var (
	bucketOutbox = []byte("outbox")
	bucketRec    = []byte("rec")
	bucketSeq    = []byte("seq")
)

// ThinnableStream is the only stream whose records may be dropped to respect the bound.
const ThinnableStream = tmsproto.StreamStats

// ErrFull is returned when the outbox holds more than its hard ceiling: the caller must refuse
// the work that would produce the record (a payment, say), since it cannot be kept.
var ErrFull = errors.New("outbox: full beyond its hard ceiling")

// ErrThinned is returned by Append for a statistics record that was dropped at once because
// the outbox is full and holds no older statistics to make room. No seq was used.
var ErrThinned = errors.New("outbox: statistics record dropped, outbox full")

// Options bound the outbox.
type Options struct {
	MaxRecords int   // soft bound on records; statistics are thinned beyond it
	MaxBytes   int64 // soft bound on payload bytes
	// HardMaxBytes is the ceiling past which Append fails with ErrFull. Default 4 × MaxBytes.
	HardMaxBytes int64
	Now          func() time.Time
	Logger       *slog.Logger
	// OnAlarm is called (outside any lock) when the alarm state changes: true when records that
	// may not be thinned are kept beyond the soft bound.
	OnAlarm func(on bool)
}

// Record is one queued uplink record.
type Record struct {
	Key     uint64 // global order of insertion; drains follow it
	Stream  string
	Seq     uint64
	Payload []byte // the encoded tmsproto.Envelope
}

// State is a snapshot of the queue for statistics and diagnostics.
type State struct {
	Records int    `cbor:"records"`
	Bytes   int64  `cbor:"bytes"`
	Thinned uint64 `cbor:"thinned"` // statistics records dropped since start
	Alarm   bool   `cbor:"alarm"`
}

// Outbox is the durable queue. Safe for concurrent use.
type Outbox struct {
	db     *store.DB
	commit *store.Committer
	opts   Options

	notify chan struct{}

	mu      sync.Mutex
	records int
	bytes   int64
	stats   int // how many queued records are statistics
	thinned uint64
	alarm   bool
}

// Open loads the queue's counters from db. commit serialises writes with the other owners of
// the database.
func Open(db *store.DB, commit *store.Committer, opts Options) (*Outbox, error) {
	if opts.MaxRecords <= 0 {
		opts.MaxRecords = 20000
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 16 << 20
	}
	if opts.HardMaxBytes <= 0 {
		opts.HardMaxBytes = 4 * opts.MaxBytes
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	o := &Outbox{db: db, commit: commit, opts: opts, notify: make(chan struct{}, 1)}
	err := db.Update(func(tx *bolt.Tx) error {
		root, err := tx.CreateBucketIfNotExists(bucketOutbox)
		if err != nil {
			return err
		}
		if _, err := root.CreateBucketIfNotExists(bucketSeq); err != nil {
			return err
		}
		rec, err := root.CreateBucketIfNotExists(bucketRec)
		if err != nil {
			return err
		}
		return rec.ForEach(func(k, v []byte) error {
			r, err := decodeRecord(k, v)
			if err != nil {
				return err
			}
			o.count(r.Stream, len(r.Payload), +1)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("outbox: open: %w", err)
	}
	return o, nil
}

// Notify is signalled (never blocking, coalesced) whenever records are committed.
func (o *Outbox) Notify() <-chan struct{} { return o.notify }

// Append durably queues a record on stream and returns its seq once it is committed.
func (o *Outbox) Append(ctx context.Context, stream, kind string, body any) (uint64, error) {
	raw, err := encodeBody(body)
	if err != nil {
		return 0, err
	}
	var seq uint64
	err = o.commit.Do(ctx, func(tx *store.Tx) error {
		var err error
		seq, err = o.appendRaw(tx, stream, kind, raw)
		return err
	})
	if errors.Is(err, ErrThinned) {
		o.mu.Lock()
		o.thinned++
		o.mu.Unlock()
	}
	return seq, err
}

// AppendTx queues a record inside the caller's transaction, so it commits (or not) together
// with the caller's own state change — a command's journal entry and its ack, say.
func (o *Outbox) AppendTx(tx *store.Tx, stream, kind string, body any) (uint64, error) {
	raw, err := encodeBody(body)
	if err != nil {
		return 0, err
	}
	return o.appendRaw(tx, stream, kind, raw)
}

func encodeBody(body any) (cbor.RawMessage, error) {
	if raw, ok := body.(cbor.RawMessage); ok {
		return raw, nil
	}
	raw, err := tmsproto.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("outbox: encode body: %w", err)
	}
	return raw, nil
}

func (o *Outbox) appendRaw(tx *store.Tx, stream, kind string, body cbor.RawMessage) (uint64, error) {
	if stream == "" || len(stream) > 255 {
		return 0, fmt.Errorf("outbox: bad stream name %q", stream)
	}
	root := tx.Bucket(bucketOutbox)
	if root == nil {
		return 0, errors.New("outbox: not opened on this database")
	}
	rec, seqs := root.Bucket(bucketRec), root.Bucket(bucketSeq)

	o.mu.Lock()
	records, size, stats := o.records, o.bytes, o.stats
	o.mu.Unlock()
	if size > o.opts.HardMaxBytes {
		return 0, ErrFull
	}
	full := records >= o.opts.MaxRecords || size >= o.opts.MaxBytes
	if full && stats > 0 {
		// Make room by dropping the oldest statistics record. Seqs already handed out stay
		// handed out, so the TMS sees this as a gap in the stats stream, as the contract allows.
		if err := o.thinOldestStats(tx, rec); err != nil {
			return 0, err
		}
	} else if full && stream == ThinnableStream {
		return 0, ErrThinned
	}

	seq := uint64(1)
	if v := seqs.Get([]byte(stream)); len(v) == 8 {
		seq = binary.BigEndian.Uint64(v) + 1
	}
	payload, err := tmsproto.Marshal(tmsproto.Envelope{
		V: tmsproto.Version, Stream: stream, Seq: seq,
		TS: o.opts.Now().UnixMilli(), Kind: kind, Body: body,
	})
	if err != nil {
		return 0, fmt.Errorf("outbox: encode envelope: %w", err)
	}
	key, err := rec.NextSequence()
	if err != nil {
		return 0, err
	}
	if err := seqs.Put([]byte(stream), binary.BigEndian.AppendUint64(nil, seq)); err != nil {
		return 0, err
	}
	if err := rec.Put(binary.BigEndian.AppendUint64(nil, key), encodeValue(stream, seq, payload)); err != nil {
		return 0, err
	}
	n := len(payload)
	tx.OnCommit(func() {
		o.count(stream, n, +1)
		o.signal()
		o.checkAlarm()
	})
	return seq, nil
}

func (o *Outbox) thinOldestStats(tx *store.Tx, rec *bolt.Bucket) error {
	c := rec.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		r, err := decodeRecord(k, v)
		if err != nil {
			return err
		}
		if r.Stream != ThinnableStream {
			continue
		}
		if err := c.Delete(); err != nil {
			return err
		}
		n := len(r.Payload)
		tx.OnCommit(func() {
			o.count(ThinnableStream, n, -1)
			o.mu.Lock()
			o.thinned++
			o.mu.Unlock()
		})
		return nil
	}
	return nil
}

// Read returns up to max records with keys greater than after, in order.
func (o *Outbox) Read(after uint64, max int) ([]Record, error) {
	var out []Record
	err := o.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketOutbox).Bucket(bucketRec).Cursor()
		for k, v := c.Seek(binary.BigEndian.AppendUint64(nil, after+1)); k != nil && len(out) < max; k, v = c.Next() {
			r, err := decodeRecord(k, v)
			if err != nil {
				return err
			}
			r.Payload = bytes.Clone(r.Payload) // v is only valid inside the transaction
			out = append(out, r)
		}
		return nil
	})
	return out, err
}

// Delete removes delivered records. Keys already gone are ignored, since a record can be
// delivered twice (once before and once after a reconnect).
func (o *Outbox) Delete(ctx context.Context, keys ...uint64) error {
	if len(keys) == 0 {
		return nil
	}
	return o.commit.Do(ctx, func(tx *store.Tx) error {
		rec := tx.Bucket(bucketOutbox).Bucket(bucketRec)
		for _, key := range keys {
			k := binary.BigEndian.AppendUint64(nil, key)
			v := rec.Get(k)
			if v == nil {
				continue
			}
			r, err := decodeRecord(k, v)
			if err != nil {
				return err
			}
			if err := rec.Delete(k); err != nil {
				return err
			}
			stream, n := r.Stream, len(r.Payload)
			tx.OnCommit(func() { o.count(stream, n, -1) })
		}
		tx.OnCommit(o.checkAlarm)
		return nil
	})
}

// LastSeq returns the last seq handed out on stream (0 if none).
func (o *Outbox) LastSeq(stream string) (uint64, error) {
	var seq uint64
	err := o.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketOutbox).Bucket(bucketSeq).Get([]byte(stream)); len(v) == 8 {
			seq = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	return seq, err
}

// State returns the current counters.
func (o *Outbox) State() State {
	o.mu.Lock()
	defer o.mu.Unlock()
	return State{Records: o.records, Bytes: o.bytes, Thinned: o.thinned, Alarm: o.alarm}
}

func (o *Outbox) count(stream string, n, sign int) {
	o.mu.Lock()
	o.records += sign
	o.bytes += int64(sign * n)
	if stream == ThinnableStream {
		o.stats += sign
	}
	o.mu.Unlock()
}

func (o *Outbox) signal() {
	select {
	case o.notify <- struct{}{}:
	default:
	}
}

// checkAlarm raises the alarm when the soft bound is exceeded with nothing left to thin and
// clears it once the queue is back under 90 % of the bound (hysteresis, so it does not flap).
func (o *Outbox) checkAlarm() {
	o.mu.Lock()
	over := o.records > o.opts.MaxRecords || o.bytes > o.opts.MaxBytes
	under := o.records*10 < o.opts.MaxRecords*9 && o.bytes*10 < o.opts.MaxBytes*9
	changed := false
	switch {
	case !o.alarm && over:
		o.alarm, changed = true, true
	case o.alarm && under:
		o.alarm, changed = false, true
	}
	on, records, size := o.alarm, o.records, o.bytes
	o.mu.Unlock()
	if !changed {
		return
	}
	if on {
		o.opts.Logger.Warn("outbox over its bound: keeping records that may not be dropped", "records", records, "bytes", size)
	} else {
		o.opts.Logger.Info("outbox back under its bound", "records", records, "bytes", size)
	}
	if o.opts.OnAlarm != nil {
		o.opts.OnAlarm(on)
	}
}

// A stored value is: stream length (1 byte), stream, seq (8 bytes), envelope.
func encodeValue(stream string, seq uint64, payload []byte) []byte {
	v := make([]byte, 0, 1+len(stream)+8+len(payload))
	v = append(v, byte(len(stream)))
	v = append(v, stream...)
	v = binary.BigEndian.AppendUint64(v, seq)
	return append(v, payload...)
}

// CorruptError reports a stored record that cannot be read back.
type CorruptError struct{ Key []byte }

func (e *CorruptError) Error() string { return fmt.Sprintf("outbox: corrupt record %x", e.Key) }

func decodeRecord(k, v []byte) (Record, error) {
	if len(k) != 8 || len(v) < 1 || len(v) < 1+int(v[0])+8 {
		return Record{}, &CorruptError{Key: bytes.Clone(k)}
	}
	n := int(v[0])
	return Record{
		Key:     binary.BigEndian.Uint64(k),
		Stream:  string(v[1 : 1+n]),
		Seq:     binary.BigEndian.Uint64(v[1+n : 9+n]),
		Payload: v[9+n:],
	}, nil
}
