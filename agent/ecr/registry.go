package ecr

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/posagent/posagent/agent/store"
)

// Retention is how long a process can be asked about (seed 003 §4: one day).
const Retention = 24 * time.Hour

var (
	bucketProcs = []byte("ecr.proc")
	bucketMeta  = []byte("ecr.meta")
	keyLastID   = []byte("last")
)

// ErrBusy: another operation has not finished (API code 107).
var ErrBusy = errors.New("ecr: last operation was not completed")

// ErrCorrupt: a stored record does not decode (disk damage); it is treated as absent.
var ErrCorrupt = errors.New("ecr: stored process record is damaged")

// registry keeps the processes: every state that matters is committed before the cash
// register hears of it, so an answer once given survives a power cut. Sub-status changes
// are kept in memory only: after a restart an unfinished process is resolved from the
// payment engine's journal, not from them.
type registry struct {
	db     *store.DB
	commit *store.Committer
	log    *slog.Logger
	now    func() time.Time

	mu     sync.Mutex
	live   map[string]*Process // unfinished and recently touched processes
	active string              // the operation in progress, if any
	lastID int64
	// admit, if set, may refuse a new operation (an update is installing). It is asked after
	// the operation is marked active, so that a gate that marks itself and then asks Busy
	// and an operation that marks itself and then asks admit cannot both go ahead.
	admit func() error
}

func openRegistry(db *store.DB, commit *store.Committer, log *slog.Logger, now func() time.Time) (*registry, error) {
	r := &registry{db: db, commit: commit, log: log, now: now, live: map[string]*Process{}}
	err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketProcs, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		if v := tx.Bucket(bucketMeta).Get(keyLastID); v != nil {
			r.lastID, _ = strconv.ParseInt(string(v), 10, 64)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ecr: open registry: %w", err)
	}
	return r, nil
}

func encodeProc(p *Process) ([]byte, error) {
	b, err := cbor.Marshal(p)
	if err != nil {
		return nil, err
	}
	return store.Check(b), nil
}

func decodeProc(raw []byte) (*Process, error) {
	b, err := store.Checked(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	p := new(Process)
	if err := cbor.Unmarshal(b, p); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return p, nil
}

// nextID is a process id the way Smart POS makes them: the time in milliseconds, kept
// strictly increasing (also across restarts and clock steps back).
func (r *registry) nextID() int64 {
	id := r.now().UnixMilli()
	if id <= r.lastID {
		id = r.lastID + 1
	}
	r.lastID = id
	return id
}

// begin records a new process. An operation (exclusive) is refused while another one runs.
func (r *registry) begin(ctx context.Context, p *Process, exclusive bool) error {
	r.mu.Lock()
	if exclusive && r.active != "" {
		r.mu.Unlock()
		return ErrBusy
	}
	id := r.nextID()
	p.ID = strconv.FormatInt(id, 10)
	p.Created = r.now().UnixMilli()
	if exclusive {
		r.active = p.ID // held while the record is written: a racing start sees it
	}
	r.mu.Unlock()
	if exclusive && r.admit != nil {
		if err := r.admit(); err != nil {
			r.mu.Lock()
			if r.active == p.ID {
				r.active = ""
			}
			r.mu.Unlock()
			return fmt.Errorf("%w: %w", ErrBusy, err)
		}
	}
	rec, err := encodeProc(p)
	if err == nil {
		err = r.commit.Do(ctx, func(tx *bolt.Tx) error {
			if err := tx.Bucket(bucketProcs).Put([]byte(p.ID), rec); err != nil {
				return err
			}
			return tx.Bucket(bucketMeta).Put(keyLastID, []byte(p.ID))
		})
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		if exclusive && r.active == p.ID {
			r.active = ""
		}
		return fmt.Errorf("ecr: record process: %w", err)
	}
	cp := *p
	r.live[p.ID] = &cp
	return nil
}

// save commits a process's new state, then publishes it.
func (r *registry) save(ctx context.Context, p *Process) error {
	rec, err := encodeProc(p)
	if err != nil {
		return err
	}
	if err := r.commit.Do(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketProcs).Put([]byte(p.ID), rec)
	}); err != nil {
		return fmt.Errorf("ecr: save process %s: %w", p.ID, err)
	}
	r.publish(p)
	return nil
}

// publish updates the in-memory copy (sub-status changes, and after save).
func (r *registry) publish(p *Process) {
	cp := *p
	r.mu.Lock()
	defer r.mu.Unlock()
	r.live[p.ID] = &cp
	if p.Final() && r.active == p.ID {
		r.active = ""
	}
}

// release ends the exclusive hold without a final state (a start that failed).
func (r *registry) release(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.active == id {
		r.active = ""
	}
}

// get returns a copy of a process: from memory when live, else from the store. Processes
// past the retention are not found.
func (r *registry) get(id string) (*Process, error) {
	r.mu.Lock()
	if p, ok := r.live[id]; ok {
		cp := *p
		r.mu.Unlock()
		return r.fresh(&cp)
	}
	r.mu.Unlock()
	var p *Process
	err := r.db.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bucketProcs).Get([]byte(id))
		if raw == nil {
			return nil
		}
		var err error
		p, err = decodeProc(raw)
		return err
	})
	if err != nil {
		r.log.Warn("ecr: process record unreadable", "process", id, "err", err)
		return nil, err
	}
	if p == nil {
		return nil, nil
	}
	return r.fresh(p)
}

func (r *registry) fresh(p *Process) (*Process, error) {
	if r.now().Sub(time.UnixMilli(p.Created)) > Retention {
		return nil, nil
	}
	return p, nil
}

// activeID is the operation in progress, if any.
func (r *registry) activeID() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.active
}

// unfinished lists the stored processes that did not reach a final state, and the
// successful ones the cash register has not collected yet (abandonment watch), for the
// recovery after a restart.
func (r *registry) pending() ([]*Process, error) {
	var out []*Process
	cutoff := r.now().Add(-Retention).UnixMilli()
	err := r.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketProcs).ForEach(func(k, v []byte) error {
			p, err := decodeProc(v)
			if err != nil {
				r.log.Warn("ecr: process record unreadable", "process", string(k), "err", err)
				return nil
			}
			if p.Created >= cutoff && (!p.Final() || p.Status == StatusSuccess && !p.Collected && p.Cancel == nil) {
				out = append(out, p)
			}
			return nil
		})
	})
	return out, err
}

// purge drops processes past the retention from the store and from memory; it keeps memory
// to the unfinished and recent ones.
func (r *registry) purge(ctx context.Context) error {
	now := r.now()
	cutoff := now.Add(-Retention).UnixMilli()
	r.mu.Lock()
	for id, p := range r.live {
		// Finished and untouched for a while: served from the store from now on.
		if id != r.active && p.Final() && (p.Collected || p.Created < cutoff) && now.Sub(time.UnixMilli(p.Finished)) > time.Minute {
			delete(r.live, id)
		}
	}
	r.mu.Unlock()
	var old [][]byte
	if err := r.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketProcs).Cursor()
		// Ids are milliseconds of the same width for centuries: key order is time order.
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			id, err := strconv.ParseInt(string(k), 10, 64)
			if err == nil && id >= cutoff {
				break
			}
			old = append(old, append([]byte(nil), k...))
		}
		return nil
	}); err != nil || len(old) == 0 {
		return err
	}
	return r.commit.Do(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketProcs)
		for _, k := range old {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

// uncollected lists successful processes in memory whose cash register has not seen them
// and that the terminal has not cancelled.
func (r *registry) uncollected() []*Process {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*Process
	for _, p := range r.live {
		if p.Status == StatusSuccess && !p.Collected && p.Cancel == nil {
			cp := *p
			out = append(out, &cp)
		}
	}
	return out
}
