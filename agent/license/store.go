package license

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/posagent/posagent/agent/store"
	bolt "go.etcd.io/bbolt"
)

// BucketName is the top-level bbolt bucket this package owns.
const BucketName = "license"

var (
	keyCurrent = []byte("current") // the installed licence, sealed
	keyAsked   = []byte("asked")   // when a licence was last asked for, unix seconds, sealed
)

// Options configure a Store.
type Options struct {
	// ReleaseKeys are the distributor's licence signing keys, by key id (configuration
	// [[license.release_keys]]). None: every licence is refused and none is valid.
	ReleaseKeys map[string]ed25519.PublicKey
	// Terminal is what licences must be bound to: the serial number and CurrentPlatform().
	Terminal Terminal
	// Commit, if set, carries the writes (sharing fsyncs with the rest of the agent);
	// otherwise they are plain bbolt transactions.
	Commit *store.Committer
	// Skew is the clock-skew allowance (default DefaultSkew).
	Skew time.Duration
	// Now is the clock (default time.Now).
	Now    func() time.Time
	Logger *slog.Logger
}

// State names for Status.
const (
	StateValid   = "valid"
	StateMissing = "missing"
	StateExpired = "expired"
	StateInvalid = "invalid"
)

// Status is the licence section of the statistics.
type Status struct {
	State    string   `cbor:"state" json:"state"`                           // valid, missing, expired, invalid
	ID       string   `cbor:"id,omitempty" json:"id,omitempty"`             // the licence installed
	Expires  int64    `cbor:"expires,omitempty" json:"expires,omitempty"`   // unix s; absent = never
	Features []string `cbor:"features,omitempty" json:"features,omitempty"` // what it covers
	Reason   string   `cbor:"reason,omitempty" json:"reason,omitempty"`     // why invalid or expired
}

// Store keeps the installed licence in its bucket and answers Check.
type Store struct {
	db     *bolt.DB
	commit *store.Committer
	v      *Verifier
	term   Terminal
	skew   time.Duration
	now    func() time.Time
	log    *slog.Logger

	mu    sync.Mutex // serialises Install
	cur   atomic.Pointer[state]
	asked atomic.Int64 // unix seconds a licence was last asked for; 0 never
}

// state is swapped whole after each commit, so Check never takes a lock.
type state struct {
	info    *Info  // the licence in use; nil if none
	raw     []byte // its bytes
	invalid error  // a stored licence that no longer verifies (info is nil then)
	badID   string // its id, when it could still be read
}

// Open loads the stored licence and verifies it again: signature with the current release
// keys, serial and platform. One that fails is treated as absent, with a logged reason.
func Open(db *bolt.DB, opts Options) (*Store, error) {
	v, err := NewVerifier(opts.ReleaseKeys)
	if err != nil {
		return nil, err
	}
	s := &Store{db: db, commit: opts.Commit, v: v, term: opts.Terminal, skew: opts.Skew, now: opts.Now, log: opts.Logger}
	if s.skew <= 0 {
		s.skew = DefaultSkew
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("component", "license")
	st := &state{}
	var asked int64
	var rawCur, rawAsked []byte
	if err := db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket([]byte(BucketName)); b != nil {
			rawCur, rawAsked = bytes.Clone(b.Get(keyCurrent)), bytes.Clone(b.Get(keyAsked))
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("license: %w", err)
	}
	if rawAsked != nil {
		if p, err := store.Checked(rawAsked); err == nil && len(p) == 8 {
			asked = int64(binary.BigEndian.Uint64(p))
		} else {
			s.log.Warn("stored last-asked time is unreadable; asking again", "err", err)
		}
	}
	if rawCur != nil {
		raw, err := store.Checked(rawCur)
		if err != nil {
			st.invalid = fail(ErrMalformed, err, "stored record")
		} else {
			st.raw = raw
			info, err := v.Verify(raw)
			if err == nil {
				err = info.Bind(s.term)
			}
			if err != nil {
				st.invalid = err
				if p, perr := Parse(raw); perr == nil {
					st.badID = p.ID
				}
			} else {
				st.info = &info
			}
		}
		if st.invalid != nil {
			s.log.Warn("stored licence no longer verifies; treated as absent", "id", st.badID, "err", st.invalid)
		}
	}
	s.cur.Store(st)
	s.asked.Store(asked)
	return s, nil
}

// Terminal is what this store binds licences to.
func (s *Store) Terminal() Terminal { return s.term }

// Install verifies raw (signature, serial, platform, validity now) and makes it the
// installed licence in one transaction: on any failure the licence in use stays, and a power
// cut leaves either the old or the new one. Installing the licence already installed changes
// nothing. Errors are *Error (the licence was refused) or a storage error.
func (s *Store) Install(ctx context.Context, raw []byte) (Info, error) {
	info, err := s.v.VerifyFor(raw, s.term, s.now(), s.skew)
	if err != nil {
		return Info{}, err
	}
	raw = bytes.Clone(raw)
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.cur.Load()
	if cur.info != nil && bytes.Equal(cur.raw, raw) {
		return *cur.info, nil
	}
	sealed := store.Check(raw)
	if err := s.write(ctx, func(b *bolt.Bucket) error { return b.Put(keyCurrent, sealed) }); err != nil {
		return Info{}, err
	}
	s.cur.Store(&state{info: &info, raw: raw})
	replaced := ""
	if cur.info != nil {
		replaced = cur.info.ID
	}
	s.log.Info("licence installed", "id", info.ID, "kid", info.KeyID, "features", info.Features,
		"expires", info.Expires, "replaced", replaced)
	return info, nil
}

func (s *Store) write(ctx context.Context, fn func(*bolt.Bucket) error) error {
	tx := func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte(BucketName))
		if err != nil {
			return err
		}
		return fn(b)
	}
	var err error
	if s.commit != nil {
		err = s.commit.Do(ctx, tx)
	} else {
		err = s.db.Update(tx)
	}
	if err != nil {
		return fmt.Errorf("license: store: %w", err)
	}
	return nil
}

// Current returns the installed licence if there is one that verifies for this terminal. It
// may have expired since: Check and Status judge the time.
func (s *Store) Current() (Info, bool) {
	if s == nil {
		return Info{}, false
	}
	if i := s.cur.Load().info; i != nil {
		return cloneInfo(*i), true
	}
	return Info{}, false
}

func cloneInfo(i Info) Info {
	i.Features = slices.Clone(i.Features)
	return i
}

// Check is the enforcement API: nil when a licence covering feature is installed and valid
// now; otherwise an error wrapping ErrUnlicensed and the cause (ErrNoLicense, ErrExpired,
// ErrNotYetValid, ErrFeatureNotCovered, or why a stored licence no longer verifies). It is
// cheap (no lock, no I/O) and safe on a nil Store (unlicensed).
func (s *Store) Check(feature string) error {
	if s == nil {
		return fmt.Errorf("%w: %w", ErrUnlicensed, ErrNoLicense)
	}
	st := s.cur.Load()
	switch {
	case st.info == nil && st.invalid != nil:
		return fmt.Errorf("%w: %w", ErrUnlicensed, st.invalid)
	case st.info == nil:
		return fmt.Errorf("%w: %w", ErrUnlicensed, ErrNoLicense)
	}
	if err := st.info.Valid(s.now(), s.skew); err != nil {
		return fmt.Errorf("%w: %w", ErrUnlicensed, err)
	}
	if !st.info.Covers(feature) {
		return fmt.Errorf("%w: %w", ErrUnlicensed, fail(ErrFeatureNotCovered, nil, "licence %s covers %v, not %q", st.info.ID, st.info.Features, feature))
	}
	return nil
}

// Status reports the licence for the statistics, judging the time now.
func (s *Store) Status() Status {
	if s == nil {
		return Status{State: StateMissing}
	}
	st := s.cur.Load()
	switch {
	case st.info == nil && st.invalid != nil:
		return Status{State: StateInvalid, ID: st.badID, Reason: ReasonOf(st.invalid)}
	case st.info == nil:
		return Status{State: StateMissing}
	}
	out := Status{State: StateValid, ID: st.info.ID, Expires: st.info.Expires, Features: slices.Clone(st.info.Features)}
	if err := st.info.Valid(s.now(), s.skew); err != nil {
		out.State, out.Reason = StateInvalid, ReasonOf(err)
		if errors.Is(err, ErrExpired) {
			out.State = StateExpired
		}
	}
	return out
}

// LastAsked is when MarkAsked last recorded a request for a licence (zero: never).
func (s *Store) LastAsked() time.Time {
	if a := s.asked.Load(); a != 0 {
		return time.Unix(a, 0)
	}
	return time.Time{}
}

// MarkAskedTx records inside tx that a licence was asked for at t, so the caller can commit
// it together with the request itself. The in-memory value follows when tx commits.
func (s *Store) MarkAskedTx(tx *bolt.Tx, t time.Time) error {
	b, err := tx.CreateBucketIfNotExists([]byte(BucketName))
	if err != nil {
		return err
	}
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], uint64(t.Unix()))
	if err := b.Put(keyAsked, store.Check(v[:])); err != nil {
		return err
	}
	// No lock here: OnCommit runs inside the committer, which an Install may be waiting on.
	tx.OnCommit(func() { s.asked.Store(t.Unix()) })
	return nil
}
