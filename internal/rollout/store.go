package rollout

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Meta is a rollout's bookkeeping besides its plan and terminals.
type Meta struct {
	Created    time.Time `json:"created"`
	Started    time.Time `json:"started,omitzero"`  // first run
	Finished   time.Time `json:"finished,omitzero"` // every terminal final
	Halted     bool      `json:"halted,omitempty"`
	HaltReason string    `json:"haltReason,omitempty"`
	// Waves is how many waves of an exponential pace have begun, WaveAt when the last one did.
	Waves  int       `json:"waves,omitempty"`
	WaveAt time.Time `json:"waveAt,omitzero"`
	KeyID  string    `json:"keyId,omitempty"` // key of the last run that signed
	// Runner names the engine running the rollout and Heartbeat when it last committed: a
	// second engine refuses to run it while the heartbeat is fresh.
	Runner    string    `json:"runner,omitempty"`
	Heartbeat time.Time `json:"heartbeat,omitzero"`
}

// Record is a terminal's state with what resuming it needs.
type Record struct {
	TerminalState
	Index    int       `json:"index"`         // position in the plan's targets
	Ref      string    `json:"ref,omitempty"` // tmsproto.Ref of Raw: how the agent names a command it could not verify
	Raw      []byte    `json:"raw,omitempty"` // the signed command, exactly as published
	Deadline time.Time `json:"deadline,omitzero"`
}

// Saved is a rollout as stored.
type Saved struct {
	Plan    Plan // Targets in plan order
	Meta    Meta
	Records []Record // in plan order
}

// Change is what one commit writes.
type Change struct {
	Plan    *Plan // nil: unchanged (Targets are not rewritten)
	Meta    *Meta // nil: unchanged
	Records []Record
	// ClearHaltRequest forgets a RequestHalt (a resume).
	ClearHaltRequest bool
}

// Store keeps rollouts durably; each method is one transaction.
type Store interface {
	// Create stores a new plan (defaults filled in) with every target pending.
	Create(plan Plan, meta Meta) error
	// Load returns a rollout as stored.
	Load(name string) (*Saved, error)
	// Claim makes runner the rollout's engine unless another one's heartbeat is younger than
	// ttl at now, and returns the rollout as stored.
	Claim(name, runner string, now time.Time, ttl time.Duration) (*Saved, error)
	// Commit writes c. It returns the reason of a halt requested since the last clear (by
	// RequestHalt, from anywhere), which the meta written then also records.
	Commit(name string, c Change) (haltRequest string, err error)
	// RequestHalt asks the engine running the rollout to halt, and marks it halted.
	RequestHalt(name, reason string) error
	// Names lists the stored rollouts.
	Names() ([]string, error)
}

var (
	bucketRollouts = []byte("rollouts")
	bucketTerms    = []byte("terminals")
	keyPlan        = []byte("plan")
	keyMeta        = []byte("meta")
	keyHalt        = []byte("halt")
)

// ErrLocked is returned when the database file stays locked by another process.
var ErrLocked = errors.New("rollout: database is held by another process")

// FileStore is a Store in a bbolt file. The file is opened for each transaction and closed
// after it, so that another process (tmsctl rollout status or stop) can get in between the
// commits of a running engine.
type FileStore struct {
	path string
	// LockWait bounds the wait for another process's transaction.
	LockWait time.Duration
	// mu serialises this process's transactions: a second open of the same file in one
	// process would wait for its own lock.
	mu sync.Mutex
}

// OpenStore opens (creating if needed) the rollout database at path.
func OpenStore(path string) (*FileStore, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("rollout: %w", err)
	}
	s := &FileStore{path: path, LockWait: 10 * time.Second}
	err := s.update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketRollouts)
		return err
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Path is the database file.
func (s *FileStore) Path() string { return s.path }

func (s *FileStore) open(readOnly bool) (*bolt.DB, error) {
	db, err := bolt.Open(s.path, 0o600, &bolt.Options{Timeout: s.LockWait, ReadOnly: readOnly, FreelistType: bolt.FreelistMapType})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s", ErrLocked, s.path)
	}
	if err != nil {
		return nil, fmt.Errorf("rollout: open %s: %w", s.path, err)
	}
	return db, nil
}

func (s *FileStore) update(fn func(*bolt.Tx) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	db, err := s.open(false)
	if err != nil {
		return err
	}
	err = db.Update(fn)
	if cerr := db.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("rollout: close %s: %w", s.path, cerr)
	}
	return err
}

func (s *FileStore) view(fn func(*bolt.Tx) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	db, err := s.open(true)
	if err != nil {
		return err
	}
	err = db.View(fn)
	_ = db.Close() // read-only: nothing to lose
	return err
}

func rolloutBucket(tx *bolt.Tx, name string) (*bolt.Bucket, error) {
	b := tx.Bucket(bucketRollouts).Bucket([]byte(name))
	if b == nil {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	return b, nil
}

func recordKey(i int) []byte { return binary.BigEndian.AppendUint32(nil, uint32(i)) }

func putJSON(b *bolt.Bucket, key []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("rollout: encode %s: %w", key, err)
	}
	return b.Put(key, data)
}

func getJSON(b *bolt.Bucket, key []byte, v any) error {
	data := b.Get(key)
	if data == nil {
		return fmt.Errorf("rollout: %s missing", key)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("rollout: decode %s: %w", key, err)
	}
	return nil
}

// Create implements Store.
func (s *FileStore) Create(plan Plan, meta Meta) error {
	return s.update(func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketRollouts)
		if root.Bucket([]byte(plan.Name)) != nil {
			return fmt.Errorf("%w: %q", ErrExists, plan.Name)
		}
		b, err := root.CreateBucket([]byte(plan.Name))
		if err != nil {
			return err
		}
		stored := plan
		stored.Targets = nil // they live in the records, in order
		if err := putJSON(b, keyPlan, stored); err != nil {
			return err
		}
		if err := putJSON(b, keyMeta, meta); err != nil {
			return err
		}
		terms, err := b.CreateBucket(bucketTerms)
		if err != nil {
			return err
		}
		for i, id := range plan.Targets {
			r := Record{TerminalState: TerminalState{ID: id, State: StatePending}, Index: i}
			if err := putJSON(terms, recordKey(i), r); err != nil {
				return err
			}
		}
		return nil
	})
}

func load(tx *bolt.Tx, name string) (*Saved, error) {
	b, err := rolloutBucket(tx, name)
	if err != nil {
		return nil, err
	}
	var sv Saved
	if err := getJSON(b, keyPlan, &sv.Plan); err != nil {
		return nil, err
	}
	if err := getJSON(b, keyMeta, &sv.Meta); err != nil {
		return nil, err
	}
	terms := b.Bucket(bucketTerms)
	sv.Records = make([]Record, 0, terms.Stats().KeyN)
	err = terms.ForEach(func(k, v []byte) error {
		var r Record
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("rollout: decode terminal record: %w", err)
		}
		if r.Index != len(sv.Records) {
			return fmt.Errorf("rollout: terminal records out of order at %d", r.Index)
		}
		sv.Records = append(sv.Records, r)
		return nil
	})
	if err != nil {
		return nil, err
	}
	sv.Plan.Targets = make([]string, len(sv.Records))
	for i, r := range sv.Records {
		sv.Plan.Targets[i] = r.ID
	}
	return &sv, nil
}

// Load implements Store.
func (s *FileStore) Load(name string) (*Saved, error) {
	var sv *Saved
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		sv, err = load(tx, name)
		return err
	})
	return sv, err
}

// Claim implements Store.
func (s *FileStore) Claim(name, runner string, now time.Time, ttl time.Duration) (*Saved, error) {
	var sv *Saved
	err := s.update(func(tx *bolt.Tx) error {
		var err error
		if sv, err = load(tx, name); err != nil {
			return err
		}
		m := &sv.Meta
		if m.Runner != "" && m.Runner != runner && now.Sub(m.Heartbeat) < ttl {
			return fmt.Errorf("%w: %s (alive %s ago)", ErrBusy, m.Runner, now.Sub(m.Heartbeat).Round(time.Millisecond))
		}
		m.Runner, m.Heartbeat = runner, now
		b, _ := rolloutBucket(tx, name)
		return putJSON(b, keyMeta, m)
	})
	return sv, err
}

// Commit implements Store.
func (s *FileStore) Commit(name string, c Change) (string, error) {
	var halt string
	err := s.update(func(tx *bolt.Tx) error {
		halt = ""
		b, err := rolloutBucket(tx, name)
		if err != nil {
			return err
		}
		if c.ClearHaltRequest {
			if err := b.Delete(keyHalt); err != nil {
				return err
			}
		}
		halt = string(b.Get(keyHalt))
		if c.Plan != nil {
			stored := *c.Plan
			stored.Targets = nil
			if err := putJSON(b, keyPlan, stored); err != nil {
				return err
			}
		}
		if c.Meta != nil {
			m := *c.Meta
			if halt != "" && !m.Halted {
				m.Halted, m.HaltReason = true, halt
			}
			if err := putJSON(b, keyMeta, m); err != nil {
				return err
			}
		}
		terms := b.Bucket(bucketTerms)
		for _, r := range c.Records {
			if err := putJSON(terms, recordKey(r.Index), r); err != nil {
				return err
			}
		}
		return nil
	})
	return halt, err
}

// RequestHalt implements Store.
func (s *FileStore) RequestHalt(name, reason string) error {
	if reason == "" {
		reason = "stopped by operator"
	}
	return s.update(func(tx *bolt.Tx) error {
		b, err := rolloutBucket(tx, name)
		if err != nil {
			return err
		}
		var m Meta
		if err := getJSON(b, keyMeta, &m); err != nil {
			return err
		}
		if !m.Finished.IsZero() {
			return fmt.Errorf("%w: %q", ErrFinished, name)
		}
		if !m.Halted {
			m.Halted, m.HaltReason = true, reason
			if err := putJSON(b, keyMeta, m); err != nil {
				return err
			}
		}
		return b.Put(keyHalt, []byte(reason))
	})
}

// Names implements Store.
func (s *FileStore) Names() ([]string, error) {
	var names []string
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRollouts).ForEach(func(k, _ []byte) error {
			names = append(names, string(k))
			return nil
		})
	})
	return names, err
}
