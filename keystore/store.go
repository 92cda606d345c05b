package keystore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/posagent/posagent/agent/store"
)

// Role is what a key is for, independent of where it is: "kek0".."kek9" (the terminal master
// keys, one of which is active), "pik", "mak", "tdk" (the working keys).
type Role string

// Working key roles.
const (
	RolePIK Role = "pik"
	RoleMAK Role = "mak"
	RoleTDK Role = "tdk"
)

// KEKRole is the role of master key index i.
func KEKRole(i int) Role { return Role("kek" + strconv.Itoa(i)) }

// DefaultKEKSlots is how many master key indexes there are (the terminal configuration's
// hostParameters.masterKeyIndex is 0..9).
const DefaultKEKSlots = 10

var kekRole = regexp.MustCompile(`^kek([0-9])$`)

// kekIndex is the master key index of a KEK role, or -1.
func kekIndex(r Role) int {
	m := kekRole.FindStringSubmatch(string(r))
	if m == nil {
		return -1
	}
	i, _ := strconv.Atoi(m[1])
	return i
}

// usageOf is the usage a role's key must have.
func usageOf(r Role) (Usage, bool) {
	switch r {
	case RolePIK:
		return UsagePIK, true
	case RoleMAK:
		return UsageMAK, true
	case RoleTDK:
		return UsageTDK, true
	}
	if kekIndex(r) >= 0 {
		return UsageKEK, true
	}
	return 0, false
}

// Entry is a role's key as the store knows it: where it is and where it came from. It is
// what the TMS operator sees per terminal (seed 001: key-loading status).
type Entry struct {
	Role      Role      `cbor:"role" json:"role"`
	Slot      int       `cbor:"slot" json:"slot"`
	Usage     Usage     `cbor:"usage" json:"-"`
	Algorithm Algorithm `cbor:"alg" json:"-"`
	Length    int       `cbor:"len" json:"len"`
	KCV       string    `cbor:"kcv" json:"kcv"`
	Parent    Role      `cbor:"parent,omitempty" json:"parent,omitempty"` // the KEK a working key came under
	LoadedAt  int64     `cbor:"at" json:"at"`                             // unix s
	Command   string    `cbor:"cmd,omitempty" json:"command,omitempty"`   // the TMS command that loaded it
	Source    string    `cbor:"src" json:"source"`                        // "tr31", "signin", "factory"
}

// keyMap is the one durable record: which physical slot holds each role's key.
type keyMap struct {
	V       int            `cbor:"v"`
	Version uint64         `cbor:"ver"`
	Entries map[Role]Entry `cbor:"entries"`
}

var (
	bucket = []byte("keystore")
	mapKey = []byte("map")
)

// Errors of the store (backends' errors come wrapped through it as well).
var (
	ErrUnknownRole = errors.New("keystore: unknown key role")
	ErrNoSlots     = errors.New("keystore: no free key slots")
	// ErrStaleKey: a working key was loaded under another master key than the active one —
	// the terminal must sign in again.
	ErrStaleKey = errors.New("keystore: working key belongs to another master key")
	ErrBadLoad  = errors.New("keystore: bad key load request")
)

// Options configure a Store.
type Options struct {
	DB      *store.DB
	Commit  *store.Committer
	Backend Backend
	// KEKSlots is how many master key indexes exist; default DefaultKEKSlots.
	KEKSlots int
	Logger   *slog.Logger
	Now      func() time.Time
}

// Store maps key roles to a backend's slots.
type Store struct {
	o   Options
	log *slog.Logger

	loadMu sync.Mutex // one load or erase at a time

	mu        sync.Mutex
	m         keyMap
	activeKEK int
}

// Open reads the key map. The owner then calls Reconcile once the backend can answer (a PIN
// pad is attached some time after start).
func Open(o Options) (*Store, error) {
	if o.KEKSlots <= 0 || o.KEKSlots > 10 {
		o.KEKSlots = DefaultKEKSlots
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Store{o: o, log: o.Logger.With("svc", "keystore", "backend", o.Backend.Name())}
	err := o.DB.View(func(tx *bolt.Tx) error {
		m, err := readMap(tx)
		s.m = m
		return err
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

func readMap(tx *bolt.Tx) (keyMap, error) {
	m := keyMap{V: 1, Entries: map[Role]Entry{}}
	b := tx.Bucket(bucket)
	if b == nil {
		return m, nil
	}
	raw := b.Get(mapKey)
	if raw == nil {
		return m, nil
	}
	if err := cbor.Unmarshal(raw, &m); err != nil {
		return keyMap{}, fmt.Errorf("keystore: key map unreadable: %w", err)
	}
	if m.Entries == nil {
		m.Entries = map[Role]Entry{}
	}
	return m, nil
}

// Reconcile drops map entries the backend does not back: an entry whose slot is empty or
// holds another key (zeroised by a tamper, erased before the map was written), so the map
// never promises a key that is not there. A backend that cannot answer leaves the map as it
// is.
func (s *Store) Reconcile(ctx context.Context) error {
	// Not while a load runs: its new slots would look like keys the map does not back yet.
	s.loadMu.Lock()
	defer s.loadMu.Unlock()
	keys, err := s.o.Backend.Keys(ctx)
	if err != nil {
		// A PIN pad not answering yet must not lose the map: keep it and check next time.
		s.log.Warn("cannot list the backend's keys; key map kept as it is", "err", err)
		return nil
	}
	bySlot := map[int]Key{}
	for _, k := range keys {
		bySlot[k.Slot] = k
	}
	s.mu.Lock()
	next := s.m
	next.Entries = map[Role]Entry{}
	var dropped []Role
	for r, e := range s.m.Entries {
		if k, ok := bySlot[e.Slot]; ok && k.KCV == e.KCV && k.Usage == e.Usage {
			next.Entries[r] = e
		} else {
			dropped = append(dropped, r)
		}
	}
	s.mu.Unlock()
	if len(dropped) == 0 {
		return nil
	}
	slices.Sort(dropped)
	s.log.Warn("keys missing from the backend dropped from the key map", "roles", dropped)
	return s.commit(ctx, next)
}

// commit writes the map in one transaction and makes it current.
func (s *Store) commit(ctx context.Context, next keyMap) error {
	next.Version++
	raw, err := cbor.Marshal(next)
	if err != nil {
		return err
	}
	err = s.o.Commit.Do(ctx, func(tx *store.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucket)
		if err != nil {
			return err
		}
		return b.Put(mapKey, raw)
	})
	if err != nil {
		return fmt.Errorf("keystore: write key map: %w", err)
	}
	s.mu.Lock()
	s.m = next
	s.mu.Unlock()
	return nil
}

// SetActiveKEK selects the master key index working keys must come under (the terminal
// configuration's hostParameters.masterKeyIndex).
func (s *Store) SetActiveKEK(i int) {
	s.mu.Lock()
	s.activeKEK = i
	s.mu.Unlock()
}

// ActiveKEK is the selected master key index.
func (s *Store) ActiveKEK() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.activeKEK
}

// Item is one key of a load: a TR-31 block, or a TDES key encrypted under the parent KEK
// with its check value (the UnionPay sign-in form).
type Item struct {
	Role      Role
	Block     string
	Encrypted []byte
	Check     []byte
	// KCV, when set, is the check value the key must have (6 hex digits, as a key
	// management system prints it next to the block): a different key fails the load.
	KCV string
}

// Load is a set of keys replaced together.
type Load struct {
	Items []Item
	// KEK is the master key index the working keys of Items come under; -1: the active one.
	KEK int
	// Command and Source are recorded with every key: the TMS command id, and "tr31",
	// "signin" or "factory".
	Command, Source string
}

// Load puts a key set in: every key into a free slot first, then the map in one
// transaction. Any failure leaves the keys in use as they were.
func (s *Store) Load(ctx context.Context, l Load) ([]Entry, error) {
	s.loadMu.Lock()
	defer s.loadMu.Unlock()
	if len(l.Items) == 0 {
		return nil, fmt.Errorf("%w: no keys", ErrBadLoad)
	}
	s.mu.Lock()
	cur := s.m
	active := s.activeKEK
	s.mu.Unlock()
	kek := l.KEK
	if kek < 0 {
		kek = active
	}
	if kek >= s.o.KEKSlots {
		return nil, fmt.Errorf("%w: master key index %d (0..%d)", ErrBadLoad, kek, s.o.KEKSlots-1)
	}

	// KEKs first: a working key of the same load may come under a new KEK.
	items := slices.Clone(l.Items)
	slices.SortStableFunc(items, func(a, b Item) int {
		ka, kb := kekIndex(a.Role) >= 0, kekIndex(b.Role) >= 0
		switch {
		case ka && !kb:
			return -1
		case kb && !ka:
			return 1
		}
		return 0
	})
	seen := map[Role]bool{}
	for _, it := range items {
		u, ok := usageOf(it.Role)
		if !ok || (u == UsageKEK && kekIndex(it.Role) >= s.o.KEKSlots) {
			return nil, fmt.Errorf("%w: %q", ErrUnknownRole, it.Role)
		}
		if seen[it.Role] {
			return nil, fmt.Errorf("%w: %s twice", ErrBadLoad, it.Role)
		}
		seen[it.Role] = true
		if (it.Block == "") == (it.Encrypted == nil) {
			return nil, fmt.Errorf("%w: %s needs a key block or an encrypted key", ErrBadLoad, it.Role)
		}
		if it.Encrypted != nil && u == UsageKEK {
			return nil, fmt.Errorf("%w: %s: a master key comes in a key block", ErrBadLoad, it.Role)
		}
	}

	free := s.freeSlots(cur)
	if len(free) < len(items) {
		return nil, fmt.Errorf("%w: %d needed, %d free", ErrNoSlots, len(items), len(free))
	}
	next := keyMap{V: 1, Version: cur.Version, Entries: map[Role]Entry{}}
	for r, e := range cur.Entries {
		next.Entries[r] = e
	}
	now := s.o.Now().Unix()
	var loaded []Entry
	for i, it := range items {
		slot := free[i]
		want, _ := usageOf(it.Role)
		parentRole := Role("")
		parent := TransportSlot
		if want != UsageKEK {
			parentRole = KEKRole(kek)
			pe, ok := next.Entries[parentRole]
			if !ok {
				return nil, fmt.Errorf("%w: %s: master key %s is not loaded", ErrNoKey, it.Role, parentRole)
			}
			parent = pe.Slot
		}
		var k Key
		var err error
		if it.Block != "" {
			k, err = s.o.Backend.LoadBlock(ctx, slot, parent, it.Block)
		} else {
			k, err = s.o.Backend.LoadEncrypted(ctx, slot, parent, want, it.Encrypted, it.Check)
		}
		if err != nil {
			return nil, fmt.Errorf("keystore: %s: %w", it.Role, err)
		}
		if k.Usage != want {
			return nil, fmt.Errorf("%w: %s: the key block is for %s", ErrWrongUsage, it.Role, k.Usage)
		}
		if it.KCV != "" && !strings.EqualFold(it.KCV, k.KCV) {
			return nil, fmt.Errorf("%w: %s: expected %s, the key has %s", ErrKCVMismatch, it.Role, strings.ToUpper(it.KCV), k.KCV)
		}
		e := Entry{Role: it.Role, Slot: slot, Usage: k.Usage, Algorithm: k.Algorithm, Length: k.Length,
			KCV: k.KCV, Parent: parentRole, LoadedAt: now, Command: l.Command, Source: l.Source}
		next.Entries[it.Role] = e
		loaded = append(loaded, e)
	}
	if err := s.commit(ctx, next); err != nil {
		return nil, err
	}
	for _, e := range loaded {
		s.log.Info("key loaded", "role", e.Role, "slot", e.Slot, "kcv", e.KCV, "alg", e.Algorithm.String(), "command", e.Command)
	}
	return loaded, nil
}

// freeSlots are the backend's slots no role uses, lowest first.
func (s *Store) freeSlots(m keyMap) []int {
	used := map[int]bool{TransportSlot: true}
	for _, e := range m.Entries {
		used[e.Slot] = true
	}
	var free []int
	for i := 1; i <= s.o.Backend.MaxSlot(); i++ {
		if !used[i] {
			free = append(free, i)
		}
	}
	return free
}

// Erase zeroises the keys (the transport key too with transport) and empties the map.
func (s *Store) Erase(ctx context.Context, transport bool, why string) error {
	s.loadMu.Lock()
	defer s.loadMu.Unlock()
	if err := s.o.Backend.Erase(ctx, transport); err != nil {
		return fmt.Errorf("keystore: erase: %w", err)
	}
	s.mu.Lock()
	ver := s.m.Version
	s.mu.Unlock()
	if err := s.commit(ctx, keyMap{V: 1, Version: ver, Entries: map[Role]Entry{}}); err != nil {
		return err
	}
	s.log.Warn("keys erased", "transport_too", transport, "why", why)
	return nil
}

// Forget empties the map without touching the backend: the backend zeroised itself (a PIN
// pad's tamper response).
func (s *Store) Forget(ctx context.Context, why string) error {
	s.loadMu.Lock()
	defer s.loadMu.Unlock()
	s.mu.Lock()
	ver := s.m.Version
	s.mu.Unlock()
	s.log.Warn("key map emptied", "why", why)
	return s.commit(ctx, keyMap{V: 1, Version: ver, Entries: map[Role]Entry{}})
}

// Entries are the loaded roles, sorted.
func (s *Store) Entries() []Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Entry, 0, len(s.m.Entries))
	for _, e := range s.m.Entries {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Entry) int { return bytes.Compare([]byte(a.Role), []byte(b.Role)) })
	return out
}

// working is the entry of a working key role, checked to belong to the active master key.
func (s *Store) working(r Role) (Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m.Entries[r]
	if !ok {
		return Entry{}, fmt.Errorf("%w: %s not loaded", ErrNoKey, r)
	}
	if want := KEKRole(s.activeKEK); e.Parent != want {
		return Entry{}, fmt.Errorf("%w: %s came under %s, the active master key is %s", ErrStaleKey, r, e.Parent, want)
	}
	return e, nil
}

// MAC computes a MAC with the working MAK.
func (s *Store) MAC(ctx context.Context, alg MACAlgorithm, data []byte) ([]byte, error) {
	e, err := s.working(RoleMAK)
	if err != nil {
		return nil, err
	}
	return s.o.Backend.MAC(ctx, e.Slot, alg, data)
}

// PINKeySlot is the backend slot of the working PIK, for a PIN entry on the PIN pad.
func (s *Store) PINKeySlot() (int, error) {
	e, err := s.working(RolePIK)
	if err != nil {
		return 0, err
	}
	return e.Slot, nil
}

// BackendName is the backend's name.
func (s *Store) BackendName() string { return s.o.Backend.Name() }
