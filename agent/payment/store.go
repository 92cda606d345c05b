package payment

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/posagent/posagent/agent/store"
)

// What the engine keeps, in bucket "payment": one meta record (terminal state, counters,
// settlement progress), the batch's transactions by id, and their sealed card numbers apart
// (a void, a reversal and a batch upload need the PAN; nothing else may see it).
var (
	bucketName = []byte("payment")
	metaKey    = []byte("meta")
	txnsName   = []byte("txns")
	panName    = []byte("pans")
	// idxName indexes the transactions that still need something ("<state>/<id>"): owed
	// reversals, held ones, stored offline ones — so an operation does not read the batch.
	idxName = []byte("idx")
)

// indexed are the states the index keeps.
var indexed = []State{StatePending, StateReversing, StateHeld, StateStored}

// TermState is the terminal's state (seed 004 §6.1.4).
type TermState string

// Terminal states.
const (
	SignedOut TermState = "signed-out"
	Normal    TermState = "normal"
	Locked    TermState = "locked"
)

// meta is the engine's one record of counters and progress.
type meta struct {
	V     int       `cbor:"v"`
	State TermState `cbor:"state"`
	Test  bool      `cbor:"test"` // test transactions (header state, TEST on receipts)
	Batch int       `cbor:"batch"`
	STAN  int       `cbor:"stan"` // last trace number handed out
	Seq   uint64    `cbor:"seq"`  // last local transaction id
	// ClockOffset is host time minus local time at the last sign-in, seconds.
	ClockOffset int64 `cbor:"clock"`
	SignedInAt  int64 `cbor:"signedIn"`
	// Settle is a settlement in progress, kept until the batch is closed.
	Settle *settleProgress `cbor:"settle,omitempty"`
	// Count is how many transactions the open batch holds (its capacity check).
	Count int `cbor:"count"`
	// Params are the host's downloaded parameters, by tag.
	Params map[string]string `cbor:"params,omitempty"`
}

// settleProgress is where a settlement is, so a restart resumes it: the totals were sent
// (Sent), the host said unbalanced and the batch upload reached Uploaded transactions, the
// end of the upload was acknowledged (UploadDone).
type settleProgress struct {
	Batch      int              `cbor:"batch"`
	Totals     SettlementTotals `cbor:"totals"`
	Answered   bool             `cbor:"answered"` // the 0510 came back
	Upload     bool             `cbor:"upload"`   // a batch upload is owed
	Uploaded   []string         `cbor:"uploaded"` // ids sent in the upload, in order
	UploadDone bool             `cbor:"uploadDone"`
}

func decodeMeta(raw []byte) (meta, error) {
	m := meta{V: 1, State: SignedOut, Batch: 1}
	if raw == nil {
		return m, nil
	}
	if err := cbor.Unmarshal(raw, &m); err != nil {
		return meta{}, fmt.Errorf("payment: meta unreadable: %w", err)
	}
	return m, nil
}

// view runs fn on a read transaction.
func (e *Engine) view(fn func(*bolt.Tx) error) error { return e.o.DB.View(fn) }

// update runs fn in one committed transaction (fn may run more than once: it must only
// read and write through tx).
func (e *Engine) update(ctx context.Context, fn func(*bolt.Tx) error) error {
	return e.o.Commit.Do(ctx, func(tx *store.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketName); err != nil {
			return err
		}
		b := tx.Bucket(bucketName)
		for _, n := range [][]byte{txnsName, panName, idxName} {
			if _, err := b.CreateBucketIfNotExists(n); err != nil {
				return err
			}
		}
		return fn(tx)
	})
}

func readMeta(tx *bolt.Tx) (meta, error) {
	b := tx.Bucket(bucketName)
	if b == nil {
		return decodeMeta(nil)
	}
	return decodeMeta(b.Get(metaKey))
}

func writeMeta(tx *bolt.Tx, m meta) error {
	raw, err := cbor.Marshal(m)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketName).Put(metaKey, raw)
}

func readTxn(tx *bolt.Tx, id string) (*Txn, error) {
	b := tx.Bucket(bucketName)
	if b == nil {
		return nil, ErrNotFound
	}
	raw := b.Bucket(txnsName).Get([]byte(id))
	if raw == nil {
		return nil, ErrNotFound
	}
	var t Txn
	if err := cbor.Unmarshal(raw, &t); err != nil {
		return nil, fmt.Errorf("payment: transaction %s unreadable: %w", id, err)
	}
	return &t, nil
}

func writeTxn(tx *bolt.Tx, t *Txn) error {
	raw, err := cbor.Marshal(t)
	if err != nil {
		return err
	}
	b := tx.Bucket(bucketName)
	if err := b.Bucket(txnsName).Put([]byte(t.ID), raw); err != nil {
		return err
	}
	return index(b.Bucket(idxName), t.ID, t.State)
}

// index files id under its state, if the index keeps that state, and nowhere else.
func index(idx *bolt.Bucket, id string, st State) error {
	for _, s := range indexed {
		k := []byte(string(s) + "/" + id)
		if s == st {
			if err := idx.Put(k, nil); err != nil {
				return err
			}
		} else if err := idx.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// eachIn calls fn for every transaction in one of states, oldest first within each state.
func eachIn(tx *bolt.Tx, fn func(*Txn) error, states ...State) error {
	b := tx.Bucket(bucketName)
	if b == nil || b.Bucket(idxName) == nil {
		return nil
	}
	c := b.Bucket(idxName).Cursor()
	for _, st := range states {
		prefix := []byte(string(st) + "/")
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			t, err := readTxn(tx, string(k[len(prefix):]))
			if err != nil {
				return err
			}
			if err := fn(t); err != nil {
				return err
			}
		}
	}
	return nil
}

// countIn counts the transactions in a state.
func countIn(tx *bolt.Tx, st State) int {
	b := tx.Bucket(bucketName)
	if b == nil || b.Bucket(idxName) == nil {
		return 0
	}
	n := 0
	c := b.Bucket(idxName).Cursor()
	prefix := []byte(string(st) + "/")
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		n++
	}
	return n
}

// eachTxn calls fn for every transaction, oldest first (ids sort by creation).
func eachTxn(tx *bolt.Tx, fn func(*Txn) error) error {
	b := tx.Bucket(bucketName)
	if b == nil {
		return nil
	}
	return b.Bucket(txnsName).ForEach(func(k, v []byte) error {
		var t Txn
		if err := cbor.Unmarshal(v, &t); err != nil {
			return fmt.Errorf("payment: transaction %s unreadable: %w", k, err)
		}
		return fn(&t)
	})
}

func putPAN(tx *bolt.Tx, id string, sealed []byte) error {
	return tx.Bucket(bucketName).Bucket(panName).Put([]byte(id), sealed)
}

func getPAN(tx *bolt.Tx, id string) []byte {
	b := tx.Bucket(bucketName)
	if b == nil {
		return nil
	}
	return b.Bucket(panName).Get([]byte(id))
}

// clearBatch removes every transaction of the batch and its sealed card data, except held
// reversals.
func clearBatch(tx *bolt.Tx, batch int) (int, error) {
	b := tx.Bucket(bucketName)
	var ids [][]byte
	err := b.Bucket(txnsName).ForEach(func(k, v []byte) error {
		var t Txn
		if err := cbor.Unmarshal(v, &t); err != nil {
			return err
		}
		// A held reversal stays: money may have moved, and a person has to settle it.
		if t.Batch == batch && t.State != StateHeld {
			ids = append(ids, append([]byte(nil), k...))
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, id := range ids {
		if err := b.Bucket(txnsName).Delete(id); err != nil {
			return 0, err
		}
		if err := b.Bucket(panName).Delete(id); err != nil {
			return 0, err
		}
		if err := index(b.Bucket(idxName), string(id), ""); err != nil {
			return 0, err
		}
	}
	return len(ids), nil
}

// ErrNotFound: no such transaction in the batch.
var ErrNotFound = errors.New("payment: transaction not found")
