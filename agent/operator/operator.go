package operator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/agent/termconfig"
	bolt "go.etcd.io/bbolt"
)

// BucketName is the top-level bbolt bucket this package owns: one record per operator, keyed
// by code.
const BucketName = "operators"

// recordFormat is the first byte of every stored record.
const recordFormat = 1

// Role is what a person may do at the terminal.
type Role string

// Roles (seed 004 §6.2).
const (
	RoleAdmin      Role = "admin"      // system administrator: parameters, test mode; sets the supervisor
	RoleSupervisor Role = "supervisor" // manages operators, authorises refunds and voids, never transacts
	RoleOperator   Role = "operator"   // transacts
)

// CanTransact reports whether a role may sign the terminal in with the host and run card
// operations: operators only (the supervisor and the administrator never transact).
func CanTransact(r Role) bool { return r == RoleOperator }

// Factory accounts, created when the bucket is first made. Their passwords are public (the
// conventional UnionPay terminal defaults, docs/operators.md) and must be changed before the
// account can do anything else.
const (
	AdminCode                 = "99"
	SupervisorCode            = "00"
	FactoryAdminPassword      = "12345678"
	FactorySupervisorPassword = "123456"
)

// Limits.
const (
	// MinOperators is the capacity every terminal has for operators (role operator), besides
	// the administrator and the supervisors (seed 004 §6.2.2); cashierProfile.maxOperators can
	// only raise it.
	MinOperators = 10
	// MaxSupervisors bounds the supervisor accounts.
	MaxSupervisors = 5
	// MaxNameLen bounds an operator's display name, in bytes.
	MaxNameLen = 40
	// DefaultLockout is how long an account stays locked after maxPasswordAttempts
	// consecutive failures (PCI DSS v4.0 requirement 8.3.4: at least 30 minutes or until an
	// administrator resets it).
	DefaultLockout = 30 * time.Minute
)

// Errors. Every error of the package wraps one of them.
var (
	ErrBadCredentials = errors.New("operator: wrong code or password")
	ErrLockedOut      = errors.New("operator: locked out after too many wrong passwords")
	ErrMustChange     = errors.New("operator: the password must be changed first")
	ErrForbidden      = errors.New("operator: not allowed")
	ErrExists         = errors.New("operator: code already in use")
	ErrNotFound       = errors.New("operator: no such operator")
	ErrCapacity       = errors.New("operator: operator table full")
	ErrWeakPassword   = errors.New("operator: password not acceptable")
	ErrInvalid        = errors.New("operator: invalid code, role or name")
	// errSignedOn refuses to remove or disable the operator signed on (seed 004 §6.2.2); it
	// wraps ErrForbidden. With one session at a time the manager is the one signed on, so
	// this is a guard rather than a reachable case.
	errSignedOn = fmt.Errorf("%w: the operator is signed on", ErrForbidden)
	// ErrNoSession refuses a change made with a session that is not the current one (signed
	// off, replaced or expired); it wraps ErrForbidden.
	ErrNoSession = fmt.Errorf("%w: not signed on", ErrForbidden)
)

// Operator is one account as List shows it; the password hash never leaves the store.
type Operator struct {
	Code        string `json:"code"`
	Role        Role   `json:"role"`
	Name        string `json:"name,omitempty"`
	Disabled    bool   `json:"disabled,omitempty"`
	MustChange  bool   `json:"mustChange,omitempty"`  // signs on only to change the password
	Failures    int    `json:"failures,omitempty"`    // consecutive wrong passwords
	LockedUntil int64  `json:"lockedUntil,omitempty"` // unix s; 0 or past: not locked
	Created     int64  `json:"created"`               // unix s
	Changed     int64  `json:"changed"`               // unix s, last change of the account or password
}

// Session is a person signed on at the terminal.
type Session struct {
	Code       string
	Role       Role
	Since      int64 // unix s
	MustChange bool  // the session may only change its own password
	ID         string
}

// CanTransact reports whether the session may run card operations: an operator's, with a
// password that need not be changed.
func (s Session) CanTransact() bool { return CanTransact(s.Role) && !s.MustChange && s.ID != "" }

// Approval is a supervisor's authorisation of one operation.
type Approval struct {
	ID         string               // random, for the transaction record and the audit log
	Op         termconfig.Operation // what was approved
	Supervisor string               // who approved (code)
	Operator   string               // who was signed on, if anyone
	At         int64                // unix s
}

// AuditFunc receives every security event: action names are listed in docs/operators.md;
// fields never hold a password or a hash.
type AuditFunc func(ctx context.Context, action string, fields map[string]any)

// Options configure a Store.
type Options struct {
	DB *store.DB
	// Commit, if set, carries the writes (sharing fsyncs with the rest of the agent);
	// otherwise they are plain bbolt transactions.
	Commit *store.Committer
	// Policy returns the active cashier profile (nil: termconfig.Default's).
	Policy func() termconfig.CashierProfile
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Audit, if set, receives every sign-on, failure, lock-out, change and approval.
	Audit AuditFunc
	// Iterations is the PBKDF2 iteration count for new hashes (default DefaultIterations(),
	// floor MinIterations).
	Iterations int
	// Lockout is how long maxPasswordAttempts consecutive failures lock an account (default
	// DefaultLockout).
	Lockout time.Duration
}

// record is an operator as stored.
type record struct {
	Code        string `cbor:"code"`
	Role        Role   `cbor:"role"`
	Name        string `cbor:"name,omitempty"`
	Disabled    bool   `cbor:"disabled,omitempty"`
	MustChange  bool   `cbor:"mustChange,omitempty"`
	Failures    int    `cbor:"failures,omitempty"`
	LockedUntil int64  `cbor:"lockedUntil,omitempty"`
	Created     int64  `cbor:"created"`
	Changed     int64  `cbor:"changed"`
	Hash        secret `cbor:"hash"`
}

func (r *record) public() Operator {
	return Operator{Code: r.Code, Role: r.Role, Name: r.Name, Disabled: r.Disabled,
		MustChange: r.MustChange, Failures: r.Failures, LockedUntil: r.LockedUntil,
		Created: r.Created, Changed: r.Changed}
}

var (
	encMode = func() cbor.EncMode {
		m, err := cbor.CoreDetEncOptions().EncMode()
		if err != nil {
			panic(err)
		}
		return m
	}()
	decMode = func() cbor.DecMode {
		m, err := cbor.DecOptions{DupMapKey: cbor.DupMapKeyEnforcedAPF, MaxArrayElements: 16,
			MaxMapPairs: 32, IndefLength: cbor.IndefLengthForbidden}.DecMode()
		if err != nil {
			panic(err)
		}
		return m
	}()
)

func encodeRecord(r *record) ([]byte, error) {
	b, err := encMode.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("operator: encode %s: %w", r.Code, err)
	}
	return append([]byte{recordFormat}, b...), nil
}

func decodeRecord(key, raw []byte) (*record, error) {
	if len(raw) < 2 || raw[0] != recordFormat {
		return nil, fmt.Errorf("operator: record %q: unknown format", key)
	}
	var r record
	if err := decMode.Unmarshal(raw[1:], &r); err != nil {
		return nil, fmt.Errorf("operator: record %q: %w", key, err)
	}
	if r.Code != string(key) || !validCode(r.Code) {
		return nil, fmt.Errorf("operator: record %q: code %q", key, r.Code)
	}
	switch r.Role {
	case RoleAdmin, RoleSupervisor, RoleOperator:
	default:
		return nil, fmt.Errorf("operator: record %q: role %q", key, r.Role)
	}
	return &r, nil
}

// Store is the operator table and the session at the terminal.
type Store struct {
	db      *bolt.DB
	commit  *store.Committer
	policy  func() termconfig.CashierProfile
	log     *slog.Logger
	now     func() time.Time
	audit   AuditFunc
	iter    int
	lockout time.Duration
	dummy   secret // what an unknown code is checked against, so it costs the same

	wmu sync.Mutex // serialises every change and every password check

	mu       sync.Mutex // guards table and the session
	table    map[string]*record
	sess     *Session
	lastSeen time.Time
}

// Open loads the operator table, creating it with the factory accounts on the first open.
func Open(o Options) (*Store, error) {
	if o.DB == nil {
		return nil, errors.New("operator: no database")
	}
	s := &Store{db: o.DB, commit: o.Commit, policy: o.Policy, log: o.Logger, now: o.Now,
		audit: o.Audit, iter: o.Iterations, lockout: o.Lockout, table: map[string]*record{}}
	if s.policy == nil {
		def := termconfig.Default().CashierProfile
		s.policy = func() termconfig.CashierProfile { return def }
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.iter == 0 {
		s.iter = DefaultIterations()
	}
	s.iter = max(s.iter, MinIterations)
	if s.lockout <= 0 {
		s.lockout = DefaultLockout
	}
	var err error
	if s.dummy, err = newSecret("0000", s.iter); err != nil {
		return nil, err
	}
	exists := false
	err = s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(BucketName))
		if b == nil {
			return nil
		}
		exists = true
		return b.ForEach(func(k, v []byte) error {
			r, err := decodeRecord(k, v)
			if err != nil {
				return err
			}
			s.table[r.Code] = r
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	if !exists {
		if err := s.createFactory(); err != nil {
			return nil, err
		}
	}
	s.log.Info("operator table loaded", "accounts", len(s.table), "iterations", s.iter)
	return s, nil
}

// createFactory makes the bucket with the administrator and the supervisor, in one
// transaction.
func (s *Store) createFactory() error {
	now := s.now().Unix()
	var recs []*record
	for _, f := range []struct {
		code, pw string
		role     Role
		name     string
	}{{AdminCode, FactoryAdminPassword, RoleAdmin, "Administrator"},
		{SupervisorCode, FactorySupervisorPassword, RoleSupervisor, "Supervisor"}} {
		h, err := newSecret(f.pw, s.iter)
		if err != nil {
			return err
		}
		recs = append(recs, &record{Code: f.code, Role: f.role, Name: f.name, MustChange: true,
			Created: now, Changed: now, Hash: h})
	}
	if err := s.put(context.Background(), recs, nil, true); err != nil {
		return err
	}
	s.log.Warn("operator table created with the factory accounts; their passwords must be changed",
		"admin", AdminCode, "supervisor", SupervisorCode)
	s.emit(context.Background(), "operator.factoryCreated", map[string]any{
		"admin": AdminCode, "supervisor": SupervisorCode})
	return nil
}

// put commits records and deletions as one transaction, then updates the table. The caller
// holds wmu (or is Open).
func (s *Store) put(ctx context.Context, recs []*record, del []string, create bool) error {
	enc := make([][]byte, len(recs))
	for i, r := range recs {
		var err error
		if enc[i], err = encodeRecord(r); err != nil {
			return err
		}
	}
	fn := func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(BucketName))
		if b == nil {
			if !create {
				return errors.New("operator: bucket missing")
			}
			var err error
			if b, err = tx.CreateBucket([]byte(BucketName)); err != nil {
				return err
			}
		}
		for i, r := range recs {
			if err := b.Put([]byte(r.Code), enc[i]); err != nil {
				return err
			}
		}
		for _, c := range del {
			if err := b.Delete([]byte(c)); err != nil {
				return err
			}
		}
		return nil
	}
	var err error
	if s.commit != nil {
		err = s.commit.Do(ctx, fn)
	} else {
		err = s.db.Update(fn)
	}
	if err != nil {
		return fmt.Errorf("operator: commit: %w", err)
	}
	s.mu.Lock()
	for _, r := range recs {
		s.table[r.Code] = r
	}
	for _, c := range del {
		delete(s.table, c)
	}
	s.mu.Unlock()
	return nil
}

// get returns a copy of the record for code, or nil.
func (s *Store) get(code string) *record {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.table[code]
	if r == nil {
		return nil
	}
	c := *r
	return &c
}

// List returns every account in code order, without password hashes.
func (s *Store) List() []Operator {
	s.mu.Lock()
	out := make([]Operator, 0, len(s.table))
	for _, r := range s.table {
		out = append(out, r.public())
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b Operator) int {
		if a.Code < b.Code {
			return -1
		}
		if a.Code > b.Code {
			return 1
		}
		return 0
	})
	return out
}

// Get returns one account.
func (s *Store) Get(code string) (Operator, bool) {
	r := s.get(code)
	if r == nil {
		return Operator{}, false
	}
	return r.public(), true
}

// Profile is the cashier profile in force, with the package's floors and defaults applied:
// maxOperators at least MinOperators, passwordMinLength 4..12, maxPasswordAttempts 3 when
// unset, supervisorApproval refund and void when unset.
func (s *Store) Profile() termconfig.CashierProfile {
	p := s.policy()
	p.MaxOperators = max(p.MaxOperators, MinOperators)
	p.PasswordMinLength = min(max(p.PasswordMinLength, 4), maxDigit)
	if p.MaxPasswordAttempts == 0 {
		p.MaxPasswordAttempts = 3
	}
	if len(p.SupervisorApproval) == 0 {
		p.SupervisorApproval = []termconfig.Operation{termconfig.OpRefund, termconfig.OpVoid}
	} else {
		p.SupervisorApproval = slices.Clone(p.SupervisorApproval)
	}
	return p
}

// NeedsApproval reports whether op needs a supervisor's authorisation (Authorise) before an
// operator may run it: the operations in cashierProfile.supervisorApproval, refund and void
// when the list is empty.
func (s *Store) NeedsApproval(op termconfig.Operation) bool {
	return slices.Contains(s.Profile().SupervisorApproval, op)
}

// emit sends an audit event and logs it (debug level: the audit log is the record).
func (s *Store) emit(ctx context.Context, action string, fields map[string]any) {
	if s.log.Enabled(ctx, slog.LevelDebug) {
		attrs := make([]any, 0, 2*len(fields))
		for k, v := range fields {
			attrs = append(attrs, k, v)
		}
		s.log.DebugContext(ctx, action, attrs...)
	}
	if s.audit != nil {
		s.audit(ctx, action, fields)
	}
}

func randomID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)
}
