package termconfig

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/agent/tmsproto"
	bolt "go.etcd.io/bbolt"
)

// BucketName is the top-level bbolt bucket this package owns.
const BucketName = "termconfig"

var (
	keyActive    = []byte("active")
	keyPrevious  = []byte("previous")
	keyHighWater = []byte("highWater")
)

// StaleError is returned by Apply for a document that does not move the configuration
// forward: a lower version, a version already used, or the active version with other content.
type StaleError struct {
	Offered   uint64 // version of the refused document
	Active    uint64 // version in force
	HighWater uint64 // highest version ever applied (above Active after a rollback)
}

func (e *StaleError) Error() string {
	if e.Offered == e.Active {
		return fmt.Sprintf("termconfig: version %d is already active with different content; a change needs a new version", e.Offered)
	}
	return fmt.Sprintf("termconfig: version %d is stale: active version %d, versions up to %d already used", e.Offered, e.Active, e.HighWater)
}

// CorruptError is returned by Open when a stored record fails its checksum or cannot be read.
// The factory configuration is deliberately not used instead: a terminal that silently forgot
// its host and limits would be worse than one that refuses to start.
type CorruptError struct {
	Key string
	Err error
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("termconfig: stored %q record is corrupt: %v", e.Key, e.Err)
}
func (e *CorruptError) Unwrap() error { return e.Err }

// ErrNoPrevious is returned by Rollback when there is no previous document to return to.
var ErrNoPrevious = errors.New("termconfig: no previous configuration")

// Store keeps the active and the previous document durably, in one bbolt bucket.
type Store struct {
	db  *bolt.DB
	log *slog.Logger

	// cur is swapped whole after each commit, so readers never take a lock and never see an
	// active document paired with the wrong previous one.
	cur atomic.Pointer[state]

	mu   sync.Mutex // serialises Apply and Rollback, and guards subs
	subs map[chan *Document]struct{}
}

type state struct {
	active    *Document
	activeEnc []byte
	previous  *Document // nil when there is none
	prevEnc   []byte
	high      uint64
}

// Summary is what the stats message reports about the configuration.
type Summary struct {
	Version uint64 `cbor:"version" json:"version"`
	Digest  string `cbor:"digest" json:"digest"` // Digest of the active document's encoding
}

// Option configures Open.
type Option func(*Store)

// WithLogger sets the logger (default: slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(s *Store) { s.log = l } }

// Open loads the stored configuration, or the factory one when none was ever applied.
func Open(db *bolt.DB, opts ...Option) (*Store, error) {
	factory := Default()
	factoryEnc, err := Encode(factory)
	if err != nil {
		return nil, err
	}
	st := &state{active: factory, activeEnc: factoryEnc}
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(BucketName))
		if b == nil {
			return nil
		}
		return st.load(b)
	})
	if err != nil {
		return nil, err
	}
	s := &Store{
		db:   db,
		log:  slog.Default().With("component", "termconfig"),
		subs: map[chan *Document]struct{}{},
	}
	for _, o := range opts {
		o(s)
	}
	s.cur.Store(st)
	// Rules may tighten between agent versions. A stored document that the new rules refuse
	// still ran the terminal yesterday, so keep it and say so; the TMS fixes it with the next
	// version.
	if err := st.active.Validate(); err != nil {
		s.log.Warn("active configuration fails the current rules", "version", st.active.Version, "err", err)
	}
	return s, nil
}

func (st *state) load(b *bolt.Bucket) error {
	rawA, rawP, rawH := b.Get(keyActive), b.Get(keyPrevious), b.Get(keyHighWater)
	if rawA == nil {
		if rawP != nil || rawH != nil {
			return &CorruptError{Key: string(keyActive), Err: errors.New("missing while other records exist")}
		}
		return nil
	}
	var err error
	if st.active, st.activeEnc, err = loadDocument(rawA); err != nil {
		return &CorruptError{Key: string(keyActive), Err: err}
	}
	high, err := store.Checked(rawH)
	if err == nil && len(high) != 8 {
		err = fmt.Errorf("%d bytes, want 8", len(high))
	}
	if err != nil {
		return &CorruptError{Key: string(keyHighWater), Err: err}
	}
	st.high = binary.BigEndian.Uint64(high)
	if st.high < st.active.Version {
		return &CorruptError{Key: string(keyHighWater), Err: fmt.Errorf("%d below active version %d", st.high, st.active.Version)}
	}
	if rawP != nil {
		if st.previous, st.prevEnc, err = loadDocument(rawP); err != nil {
			return &CorruptError{Key: string(keyPrevious), Err: err}
		}
		if st.previous.Version >= st.active.Version {
			return &CorruptError{Key: string(keyPrevious), Err: fmt.Errorf("version %d not below active %d", st.previous.Version, st.active.Version)}
		}
	}
	return nil
}

// loadDocument verifies and decodes a stored document record. The result owns its memory:
// bbolt's slices die with the transaction.
func loadDocument(raw []byte) (*Document, []byte, error) {
	payload, err := store.Checked(raw)
	if err != nil {
		return nil, nil, err
	}
	enc := bytes.Clone(payload)
	var d Document
	if err := tmsproto.Unmarshal(enc, &d); err != nil {
		return nil, nil, err
	}
	return &d, enc, nil
}

// Active returns the document in force (the factory one if none was applied). It is shared:
// do not modify it.
func (s *Store) Active() *Document { return s.cur.Load().active }

// Previous returns the document that was active before the current one, if any. It is shared:
// do not modify it.
func (s *Store) Previous() (*Document, bool) {
	p := s.cur.Load().previous
	return p, p != nil
}

// Summary reports the active version and content digest.
func (s *Store) Summary() Summary {
	st := s.cur.Load()
	return Summary{Version: st.active.Version, Digest: Digest(st.activeEnc)}
}

// Apply validates doc and makes it the active document, keeping the one it replaces as
// previous. Re-applying the active version with the same content changes nothing and returns
// changed=false, so a command delivered twice is harmless. Errors: *ValidationError,
// *StaleError, or a storage error (nothing changed).
func (s *Store) Apply(doc *Document) (changed bool, err error) {
	if err := doc.Validate(); err != nil {
		return false, err
	}
	enc, err := Encode(doc)
	if err != nil {
		return false, err
	}
	// Keep the copy decoded from the very bytes written, so memory never differs from disk
	// and the caller's later edits to doc cannot reach the store.
	var canon Document
	if err := tmsproto.Unmarshal(enc, &canon); err != nil {
		return false, fmt.Errorf("termconfig: re-decode: %w", err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.cur.Load()
	if doc.Version == cur.active.Version && bytes.Equal(enc, cur.activeEnc) {
		return false, nil
	}
	if doc.Version <= cur.high {
		return false, &StaleError{Offered: doc.Version, Active: cur.active.Version, HighWater: cur.high}
	}
	next := &state{active: &canon, activeEnc: enc, high: doc.Version}
	// The factory document is not kept as previous: rolling back to "no host, nothing
	// allowed" is a decommission, not a rollback.
	if cur.active.Version > 0 {
		next.previous, next.prevEnc = cur.active, cur.activeEnc
	}
	if err := s.commit(next); err != nil {
		return false, err
	}
	s.log.Info("terminal configuration applied", "version", doc.Version,
		"replaced", cur.active.Version, "digest", Digest(enc))
	return true, nil
}

// Rollback makes the previous document active again and returns it. The version it leaves
// stays used: the TMS's next document must be numbered above it.
func (s *Store) Rollback() (*Document, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.cur.Load()
	if cur.previous == nil {
		return nil, ErrNoPrevious
	}
	next := &state{active: cur.previous, activeEnc: cur.prevEnc, high: cur.high}
	if err := s.commit(next); err != nil {
		return nil, err
	}
	s.log.Warn("terminal configuration rolled back", "version", next.active.Version,
		"abandoned", cur.active.Version)
	return next.active, nil
}

// commit writes next in one transaction, then publishes it. Called with mu held.
func (s *Store) commit(next *state) error {
	var high [8]byte
	binary.BigEndian.PutUint64(high[:], next.high)
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte(BucketName))
		if err != nil {
			return err
		}
		if err := b.Put(keyActive, store.Check(next.activeEnc)); err != nil {
			return err
		}
		if next.previous != nil {
			err = b.Put(keyPrevious, store.Check(next.prevEnc))
		} else {
			err = b.Delete(keyPrevious)
		}
		if err != nil {
			return err
		}
		return b.Put(keyHighWater, store.Check(high[:]))
	})
	if err != nil {
		return fmt.Errorf("termconfig: store: %w", err)
	}
	s.cur.Store(next)
	for ch := range s.subs {
		// Latest wins: a reader that has not taken the last document gets this one instead,
		// and the send cannot block because only this goroutine (holding mu) sends.
		select {
		case <-ch:
		default:
		}
		ch <- next.active
	}
	return nil
}

// Subscribe returns a channel that first carries the active document and then each document
// that becomes active. A slow reader skips to the latest. cancel stops delivery and closes the
// channel; it may be called more than once.
func (s *Store) Subscribe() (updates <-chan *Document, cancel func()) {
	ch := make(chan *Document, 1)
	s.mu.Lock()
	ch <- s.cur.Load().active
	s.subs[ch] = struct{}{}
	s.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			s.mu.Lock()
			delete(s.subs, ch)
			close(ch)
			s.mu.Unlock()
		})
	}
}
