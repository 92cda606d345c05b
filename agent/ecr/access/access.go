package access

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/posagent/posagent/agent/store"
)

// Defaults.
const (
	DefaultTokenTTL   = 24 * time.Hour  // seed 003 §4.6
	DefaultRequestTTL = 2 * time.Minute // how long a registration waits for the operator
)

// Errors callers test with errors.Is. Failures of the database come wrapped as they are;
// certificate errors are *CertError.
var (
	ErrBadName      = errors.New("access: bad cash register name")
	ErrPending      = errors.New("access: another registration request is pending")
	ErrDenied       = errors.New("access: registration denied")
	ErrTimeout      = errors.New("access: registration not decided in time")
	ErrNoRequest    = errors.New("access: no such pending registration request")
	ErrNoToken      = errors.New("access: no access token")
	ErrUnknownToken = errors.New("access: unknown access token")
	ErrExpired      = errors.New("access: access token expired")
	ErrSuperseded   = errors.New("access: access token replaced by a newer one")
	ErrUnknownName  = errors.New("access: no cash register of that name")
	ErrWrongRefresh = errors.New("access: wrong refresh token")
	ErrEmptyRefresh = errors.New("access: empty refresh token")
	ErrClosed       = errors.New("access: store closed")
)

// AuditFunc receives security events (see the package documentation for the actions). Fields
// never hold a token.
type AuditFunc func(ctx context.Context, action string, fields map[string]any)

// Options configure a Store. The zero value is usable.
type Options struct {
	Now        func() time.Time // default time.Now
	TokenTTL   time.Duration    // lifetime of an access token; default DefaultTokenTTL
	RequestTTL time.Duration    // how long Register waits for a decision; default DefaultRequestTTL
	Logger     *slog.Logger     // default slog.Default()
	Audit      AuditFunc        // nil: no audit
}

// Register is a registered cash register as List shows it.
type Register struct {
	Name       string
	Registered time.Time // last approved registration
	Expires    time.Time // of the current access token
	LastSeen   time.Time // last successful Check since Open; zero if none (not persisted)
}

// Store is the registered cash registers, their tokens and the pending registration request.
type Store struct {
	db         *store.DB
	commit     *store.Committer
	now        func() time.Time
	tokenTTL   time.Duration
	requestTTL time.Duration
	log        *slog.Logger
	audit      AuditFunc

	// wmu serialises every change, so each sees the state the previous one committed.
	wmu    sync.Mutex
	state  atomic.Pointer[state] // replaced (never modified) after each committed change
	closed atomic.Bool

	pmu     sync.Mutex // guards pending
	pending *pendingReq
	notify  chan struct{}
}

// state is an immutable snapshot of the committed records with the token index Check uses.
type state struct {
	names  map[string]*entry
	tokens map[hash]tokenRef
}

type entry struct {
	rec     *record
	expires time.Time
	// seen is shared by every snapshot for the same name, so LastSeen survives changes.
	seen *atomic.Int64 // unix ns of the last successful Check; 0 never
}

// tokenRef is what an access token hash leads to.
type tokenRef struct {
	name     string
	replaced int64 // unix s when it was replaced; 0 for a name's current token
}

// Open loads the registered cash registers from db. Writes go through commit, sharing fsyncs
// with the rest of the agent; with a nil commit they are plain bbolt transactions. The
// database and the committer stay the caller's to close.
func Open(db *store.DB, commit *store.Committer, o Options) (*Store, error) {
	if db == nil {
		return nil, errors.New("access: no database")
	}
	s := &Store{db: db, commit: commit, now: o.Now, tokenTTL: o.TokenTTL, requestTTL: o.RequestTTL,
		log: o.Logger, audit: o.Audit, notify: make(chan struct{}, 1)}
	if s.now == nil {
		s.now = time.Now
	}
	if s.tokenTTL <= 0 {
		s.tokenTTL = DefaultTokenTTL
	}
	if s.requestTTL <= 0 {
		s.requestTTL = DefaultRequestTTL
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	recs := map[string]*record{}
	err := db.View(func(tx *store.Tx) error {
		b := tx.Bucket([]byte(BucketName))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			r, err := decodeRecord(k, v)
			if err != nil {
				// One damaged record must not shut every cash register out: that one
				// registers again (which overwrites it) or is removed.
				s.log.Error("ECR registration record unreadable; the cash register must register again",
					"err", err)
				return nil
			}
			recs[r.Name] = r
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("access: load: %w", err)
	}
	s.state.Store(s.build(recs, nil))
	s.log.Info("ECR access loaded", "registered", len(recs))
	return s, nil
}

// build makes the snapshot for recs, keeping LastSeen from prev.
func (s *Store) build(recs map[string]*record, prev *state) *state {
	st := &state{names: make(map[string]*entry, len(recs)), tokens: make(map[hash]tokenRef, 2*len(recs))}
	for name, r := range recs {
		e := &entry{rec: r, expires: time.Unix(r.Expires, 0)}
		if prev != nil && prev.names[name] != nil {
			e.seen = prev.names[name].seen
		} else {
			e.seen = new(atomic.Int64)
		}
		st.names[name] = e
		for _, o := range r.Old {
			st.tokens[hash(o.Hash)] = tokenRef{name: name, replaced: o.At}
		}
		st.tokens[hash(r.Access)] = tokenRef{name: name}
	}
	return st
}

// Close ends a pending registration (its Register returns ErrClosed) and refuses further
// changes. Check and List keep answering from memory.
func (s *Store) Close() error {
	s.closed.Store(true)
	s.pmu.Lock()
	p := s.pending
	if p != nil && !p.claimed {
		s.pending = nil
		p.done <- result{err: ErrClosed}
	}
	s.pmu.Unlock()
	if p != nil {
		s.signal()
	}
	return nil
}

// Check tells which cash register token belongs to. The name is also returned with
// ErrExpired and ErrSuperseded, for the log; with any error the request must be refused.
//
// The lookup is by the token's SHA-256: timing can at most reveal something about a hash,
// which does not help to find a token, so no constant-time search is needed.
func (s *Store) Check(token string) (string, error) {
	if token == "" {
		return "", ErrNoToken
	}
	if !wellFormed(token) {
		return "", ErrUnknownToken
	}
	st := s.state.Load()
	ref, ok := st.tokens[hashToken(token)]
	if !ok {
		return "", ErrUnknownToken
	}
	now := s.now()
	if ref.replaced != 0 {
		if now.Unix()-ref.replaced >= int64(SupersededTTL/time.Second) {
			return "", ErrUnknownToken
		}
		return ref.name, ErrSuperseded
	}
	e := st.names[ref.name]
	if !now.Before(e.expires) {
		return ref.name, ErrExpired
	}
	e.seen.Store(now.UnixNano())
	return ref.name, nil
}

// List returns the registered cash registers in name order.
func (s *Store) List() []Register {
	st := s.state.Load()
	out := make([]Register, 0, len(st.names))
	for _, e := range st.names {
		reg := Register{Name: e.rec.Name, Registered: time.Unix(e.rec.Registered, 0), Expires: e.expires}
		if ns := e.seen.Load(); ns != 0 {
			reg.LastSeen = time.Unix(0, ns)
		}
		out = append(out, reg)
	}
	slices.SortFunc(out, func(a, b Register) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Remove deletes a cash register's registration (diagnostics port, TMS): its tokens, current
// and replaced, stop working at once and answer ErrUnknownToken.
func (s *Store) Remove(ctx context.Context, name string) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.state.Load().names[name] == nil {
		return fmt.Errorf("%w: %q", ErrUnknownName, name)
	}
	if err := s.write(ctx, nil, name); err != nil {
		return err
	}
	s.log.Info("ECR registration removed", "name", name)
	s.emit(ctx, "ecr.remove", map[string]any{"name": name})
	return nil
}

// Revoke replaces a cash register's token pair (/v2/revoke). presentedAccess is the access
// token the request carried: it may be expired but must be the name's current one; refresh
// must be the name's current refresh token. The old access token stops working at once.
func (s *Store) Revoke(ctx context.Context, name, refresh, presentedAccess string) (Tokens, error) {
	tok, err := s.revoke(ctx, name, refresh, presentedAccess)
	if err != nil {
		f := map[string]any{"reason": reasonOf(err)}
		if ValidName(name) {
			f["name"] = name
		}
		s.emit(ctx, "ecr.revoke.refused", f)
		return Tokens{}, err
	}
	s.log.Info("ECR token revoked", "name", name, "expires", tok.Expires)
	s.emit(ctx, "ecr.revoke", map[string]any{"name": name, "expires": tok.Expires})
	return tok, nil
}

func (s *Store) revoke(ctx context.Context, name, refresh, presentedAccess string) (Tokens, error) {
	if refresh == "" {
		return Tokens{}, ErrEmptyRefresh
	}
	if presentedAccess == "" {
		return Tokens{}, ErrNoToken
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	st := s.state.Load()
	e := st.names[name]
	if e == nil {
		return Tokens{}, ErrUnknownName
	}
	ph := hashToken(presentedAccess)
	if subtle.ConstantTimeCompare(ph[:], e.rec.Access) != 1 {
		ref, ok := st.tokens[ph]
		if ok && ref.replaced != 0 && s.now().Unix()-ref.replaced < int64(SupersededTTL/time.Second) {
			return Tokens{}, ErrSuperseded
		}
		return Tokens{}, ErrUnknownToken
	}
	rh := hashToken(refresh)
	if subtle.ConstantTimeCompare(rh[:], e.rec.Refresh) != 1 {
		return Tokens{}, ErrWrongRefresh
	}
	return s.issue(ctx, e.rec, name, time.Unix(e.rec.Registered, 0))
}

// issue makes and commits a new token pair for name, replacing old (nil for a new name);
// registered is the time of the approval the pair descends from (zero: now). The caller holds
// wmu.
func (s *Store) issue(ctx context.Context, old *record, name string, registered time.Time) (Tokens, error) {
	now := s.now()
	if registered.IsZero() {
		registered = now
	}
	tok := Tokens{Access: newToken(), Refresh: newToken(), Expires: time.Unix(now.Add(s.tokenTTL).Unix(), 0)}
	ah, rh := hashToken(tok.Access), hashToken(tok.Refresh)
	r := &record{Name: name, Registered: registered.Unix(), Expires: tok.Expires.Unix(),
		Access: ah[:], Refresh: rh[:], Old: supersede(old, now)}
	if err := s.write(ctx, r, ""); err != nil {
		return Tokens{}, err
	}
	return tok, nil
}

// write commits one record put or one deletion, then publishes the new snapshot. The caller
// holds wmu.
func (s *Store) write(ctx context.Context, put *record, del string) error {
	if s.closed.Load() {
		return ErrClosed
	}
	var enc []byte
	if put != nil {
		var err error
		if enc, err = encodeRecord(put); err != nil {
			return err
		}
	}
	// The committer may run fn more than once, so it only touches the transaction.
	fn := func(tx *store.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte(BucketName))
		if err != nil {
			return err
		}
		if put != nil {
			return b.Put([]byte(put.Name), enc)
		}
		return b.Delete([]byte(del))
	}
	var err error
	if s.commit != nil {
		err = s.commit.Do(ctx, fn)
	} else {
		err = s.db.Update(fn)
	}
	if err != nil {
		return fmt.Errorf("access: commit: %w", err)
	}
	prev := s.state.Load()
	recs := make(map[string]*record, len(prev.names)+1)
	for name, e := range prev.names {
		recs[name] = e.rec
	}
	if put != nil {
		recs[put.Name] = put
	} else {
		delete(recs, del)
	}
	s.state.Store(s.build(recs, prev))
	return nil
}

// emit sends an audit event and logs it at debug level (the audit log is the record).
func (s *Store) emit(ctx context.Context, action string, fields map[string]any) {
	if s.log.Enabled(ctx, slog.LevelDebug) {
		attrs := make([]any, 0, 2*len(fields))
		for _, k := range slices.Sorted(maps.Keys(fields)) {
			attrs = append(attrs, k, fields[k])
		}
		s.log.DebugContext(ctx, action, attrs...)
	}
	if s.audit != nil {
		s.audit(ctx, action, fields)
	}
}

// reasonOf names an error for the audit log.
func reasonOf(err error) string {
	for _, e := range []struct {
		err    error
		reason string
	}{{ErrEmptyRefresh, "emptyRefresh"}, {ErrNoToken, "noToken"}, {ErrUnknownName, "unknownName"},
		{ErrSuperseded, "superseded"}, {ErrUnknownToken, "unknownToken"},
		{ErrWrongRefresh, "wrongRefresh"}, {ErrClosed, "closed"}} {
		if errors.Is(err, e.err) {
			return e.reason
		}
	}
	return "error"
}
