// Package slots keeps the agent's A/B binary slots and the boot state that says which one runs,
// and runs the launcher that starts it (Launcher).
//
// Layout of the directory (<data_dir>/slots):
//
//	a/posagent, b/posagent   the two slot binaries (the launcher's own binary is "factory")
//	boot.cbor                the boot state, replaced atomically
//	boot.cbor.prev           the state before the last change, the fallback if boot.cbor is bad
//	lock                     flock(2) taken by every state change
//
// Two processes write the state: the launcher (a try of the trial slot, a rollback) and the
// agent (a trial started, committed or rolled back). Every change is a read-modify-write under
// the file lock, and every decision that runs a binary is made from durable state only: a power
// cut at any instruction leaves either the old or the new state, and the launcher always has
// something to run (at worst its own binary).
//
// The package imports only the standard library, renameio and the project's CBOR codec: it is
// the code path of the launcher, which must keep working whatever an update did to the rest.
package slots

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Slot names.
const (
	Factory = "factory" // the launcher's own binary, always present
	A       = "a"
	B       = "b"
)

// ExitRestart is the agent's exit code asking the launcher to boot again per the state (after
// a trial was started or committed, or for a reboot command).
const ExitRestart = 75

// Defaults of a trial.
const (
	DefaultMaxTries = 3
	DefaultDeadline = 300 * time.Second
)

// Environment the launcher gives its child.
const (
	EnvLauncher = "POSAGENT_LAUNCHER" // the slots directory
	EnvSlot     = "POSAGENT_SLOT"     // the slot the child runs from
	EnvTrial    = "POSAGENT_TRIAL"    // "1" when the child is a trial boot that must Commit
)

// Results of a trial.
const (
	ResultCommitted  = "committed"
	ResultRolledBack = "rolled_back"
)

// File names inside the directory.
const (
	bootName = "boot.cbor"
	prevName = "boot.cbor.prev"
	lockName = "lock"
	binName  = "posagent"
	tmpName  = "posagent.tmp"
)

var (
	// ErrNotOnTrial: Commit or Rollback with no trial in progress (the launcher may have
	// rolled it back already: a rollback by the launcher wins over a late commit).
	ErrNotOnTrial = errors.New("slots: no trial in progress")
	// ErrTrialInProgress: StartTrial while another trial is still undecided.
	ErrTrialInProgress = errors.New("slots: a trial is already in progress")
	// ErrSlotInUse: Install into the active slot or the slot on trial.
	ErrSlotInUse = errors.New("slots: slot is in use")
	// ErrBadSlot: a slot name other than "a" or "b" where a slot binary is meant.
	ErrBadSlot = errors.New("slots: bad slot name")
	// ErrNoBinary: the slot has no complete, executable binary.
	ErrNoBinary = errors.New("slots: slot has no usable binary")
)

// Outcome is how the last trial ended.
type Outcome struct {
	Slot    string `cbor:"slot"`
	Version string `cbor:"version,omitempty"`
	Command string `cbor:"command,omitempty"`
	Result  string `cbor:"result"` // ResultCommitted or ResultRolledBack
	Reason  string `cbor:"reason,omitempty"`
	At      int64  `cbor:"at"` // unix s
}

// State is the boot state.
type State struct {
	Active        string `cbor:"active"` // Factory, A or B
	ActiveVersion string `cbor:"activeVersion,omitempty"`
	// ActiveSum is the hex SHA-256 of the active slot's binary, checked before each start so
	// that a binary damaged on the flash makes the launcher fall back to factory.
	ActiveSum    string `cbor:"activeSum,omitempty"`
	Trial        string `cbor:"trial,omitempty"` // "" or the slot on trial
	TrialVersion string `cbor:"trialVersion,omitempty"`
	TrialSum     string `cbor:"trialSum,omitempty"`
	Command      string `cbor:"command,omitempty"` // the ota.install command that started the trial
	Tries        int    `cbor:"tries,omitempty"`   // boots of the trial slot so far
	MaxTries     int    `cbor:"maxTries,omitempty"`
	DeadlineSec  int64  `cbor:"deadlineSec,omitempty"` // a trial boot must commit within this
	// TrialLast says how the previous boot of the trial ended, for the rollback reason.
	TrialLast string   `cbor:"trialLast,omitempty"`
	Last      *Outcome `cbor:"last,omitempty"`
}

// Slots is the slots directory. Its methods are safe for concurrent use, by goroutines and by
// processes.
type Slots struct {
	dir string
	// Logger receives the recoveries from a bad boot.cbor; set it before use (default
	// slog.Default()).
	Logger *slog.Logger

	mu  sync.Mutex // flock does not exclude goroutines sharing one open file
	now func() time.Time

	warnMu sync.Mutex
	warned string // the last recovery logged, so that polling does not repeat it
}

// Open opens dir (<data_dir>/slots), creating it, and removes what interrupted writes left.
func Open(dir string) (*Slots, error) {
	if dir == "" {
		return nil, errors.New("slots: empty directory")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("slots: %w", err)
	}
	for _, d := range []string{abs, filepath.Join(abs, A), filepath.Join(abs, B)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("slots: %w", err)
		}
	}
	s := &Slots{dir: abs, now: time.Now}
	unlock, err := s.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	// Temporary files of writes cut short; under the lock nobody is writing them now.
	entries, err := os.ReadDir(abs)
	if err != nil {
		return nil, fmt.Errorf("slots: %w", err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "."+bootName) {
			_ = os.Remove(filepath.Join(abs, e.Name()))
		}
	}
	for _, slot := range []string{A, B} {
		_ = os.Remove(filepath.Join(abs, slot, tmpName))
	}
	return s, nil
}

// Dir is the slots directory (absolute).
func (s *Slots) Dir() string { return s.dir }

func (s *Slots) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

// Path is the binary of slot ("a" or "b"); "" for any other name.
func (s *Slots) Path(slot string) string {
	if slot != A && slot != B {
		return ""
	}
	return filepath.Join(s.dir, slot, binName)
}

// State is the current boot state. A missing boot.cbor is {Active: "factory"}; a bad one falls
// back to boot.cbor.prev and then to factory (logged): reading the state never fails for bad
// content, so the launcher always has something to boot. The error is only for a directory
// that cannot be read at all, and even then the State returned is factory.
func (s *Slots) State() (State, error) {
	return s.load()
}

// Inactive is the slot an update goes to: "a" when factory or b is active, else "b".
func (s *Slots) Inactive() string {
	st, _ := s.load()
	if st.Active == A {
		return B
	}
	return A
}

// Install copies the verified file src into slot's binary: streamed into posagent.tmp,
// fsync, mode 0755, rename, fsync of the directory. The active slot and the slot on trial are
// refused (ErrSlotInUse): the binary that runs, or may run on the next boot, is never touched.
func (s *Slots) Install(slot, src string) error {
	if slot != A && slot != B {
		return fmt.Errorf("%w: %q", ErrBadSlot, slot)
	}
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	st, err := s.load()
	if err != nil {
		return err
	}
	if slot == st.Active {
		return fmt.Errorf("%w: %s is active", ErrSlotInUse, slot)
	}
	if slot == st.Trial {
		return fmt.Errorf("%w: %s is on trial", ErrSlotInUse, slot)
	}
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("slots: install: %w", err)
	}
	defer in.Close()
	dir := filepath.Join(s.dir, slot)
	tmp := filepath.Join(dir, tmpName)
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o700)
	if err != nil {
		return fmt.Errorf("slots: install: %w", err)
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Chmod(0o755) // explicit: the umask may have cut the create mode
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, binName))
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("slots: install %s: %w", slot, err)
	}
	return nil
}

// StartTrial records that slot (installed with Install) boots next, on trial: the launcher
// starts it at most maxTries times (≤ 0: DefaultMaxTries), each boot must Commit within
// deadline (≤ 0: DefaultDeadline; rounded up to whole seconds), else the launcher rolls back.
// The binary's SHA-256 is recorded now and checked before every boot.
func (s *Slots) StartTrial(slot, version, command string, maxTries int, deadline time.Duration) error {
	if slot != A && slot != B {
		return fmt.Errorf("%w: %q", ErrBadSlot, slot)
	}
	if maxTries <= 0 {
		maxTries = DefaultMaxTries
	}
	if deadline <= 0 {
		deadline = DefaultDeadline
	}
	secs := int64((deadline + time.Second - 1) / time.Second)
	return s.update(func(st *State) error {
		if st.Trial != "" {
			return fmt.Errorf("%w: slot %s (%s)", ErrTrialInProgress, st.Trial, st.TrialVersion)
		}
		if slot == st.Active {
			return fmt.Errorf("%w: %s is active", ErrSlotInUse, slot)
		}
		sum, err := fileSum(s.Path(slot))
		if err != nil {
			return err
		}
		st.Trial, st.TrialVersion, st.TrialSum, st.Command = slot, version, sum, command
		st.Tries, st.MaxTries, st.DeadlineSec, st.TrialLast = 0, maxTries, secs, ""
		return nil
	})
}

// Commit makes the slot on trial the active one (Last = committed). ErrNotOnTrial when no
// trial is in progress any more, e.g. because the launcher rolled it back first, and, in a
// process the launcher started, when this process is not the trial boot: an agent the launcher
// ran from the active slot (it could not count the try) is healthy, but that says nothing of
// the binary on trial.
func (s *Slots) Commit() error {
	return s.update(func(st *State) error {
		if st.Trial == "" {
			return ErrNotOnTrial
		}
		if slot, under := Current(); under && (slot != st.Trial || !OnTrial()) {
			return fmt.Errorf("%w: this process is slot %s, the trial is slot %s", ErrNotOnTrial, slot, st.Trial)
		}
		st.Last = &Outcome{Slot: st.Trial, Version: st.TrialVersion, Command: st.Command,
			Result: ResultCommitted, At: s.now().Unix()}
		st.Active, st.ActiveVersion, st.ActiveSum = st.Trial, st.TrialVersion, st.TrialSum
		clearTrial(st)
		return nil
	})
}

// Rollback abandons the trial (Last = rolled_back with reason); the active slot stays.
// ErrNotOnTrial when no trial is in progress.
func (s *Slots) Rollback(reason string) error {
	return s.rollback("", "", reason)
}

// rollback abandons the trial of slot started by command ("" = whichever): the launcher names
// the trial it judged, so that it cannot roll back a newer one or one committed meanwhile.
func (s *Slots) rollback(slot, command, reason string) error {
	return s.update(func(st *State) error {
		if st.Trial == "" || (slot != "" && (st.Trial != slot || st.Command != command)) {
			return ErrNotOnTrial
		}
		st.Last = &Outcome{Slot: st.Trial, Version: st.TrialVersion, Command: st.Command,
			Result: ResultRolledBack, Reason: clip(reason), At: s.now().Unix()}
		clearTrial(st)
		return nil
	})
}

// beginTry counts one more boot of the trial (durably, before the boot) and records how the
// previous one ended.
func (s *Slots) beginTry(slot, command, previous string) (State, error) {
	var out State
	err := s.update(func(st *State) error {
		if st.Trial == "" || st.Trial != slot || st.Command != command {
			return ErrNotOnTrial
		}
		st.Tries++
		if previous != "" {
			st.TrialLast = clip(previous)
		}
		out = *st
		return nil
	})
	return out, err
}

func clearTrial(st *State) {
	st.Trial, st.TrialVersion, st.TrialSum, st.Command, st.TrialLast = "", "", "", "", ""
	st.Tries, st.MaxTries, st.DeadlineSec = 0, 0, 0
}

// update is the one way the state changes: under the lock, read, change, write.
func (s *Slots) update(change func(*State) error) error {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	cur, err := s.load()
	if err != nil {
		return err
	}
	next := cur
	if cur.Last != nil {
		last := *cur.Last
		next.Last = &last
	}
	if err := change(&next); err != nil {
		return err
	}
	if err := next.validate(); err != nil {
		return fmt.Errorf("slots: refusing to write an invalid state: %w", err)
	}
	return s.store(cur, next)
}

// Current is the slot this process was started from and whether a launcher started it; an
// agent started without the launcher is "factory", false.
func Current() (slot string, underLauncher bool) {
	if os.Getenv(EnvLauncher) == "" {
		return Factory, false
	}
	switch slot := os.Getenv(EnvSlot); slot {
	case A, B:
		return slot, true
	default:
		return Factory, true
	}
}

// LauncherDir is the slots directory of the launcher that started this process ("" without a
// launcher).
func LauncherDir() string { return os.Getenv(EnvLauncher) }

// OnTrial reports whether this process is a trial boot, which must Commit once healthy.
func OnTrial() bool { return os.Getenv(EnvLauncher) != "" && os.Getenv(EnvTrial) == "1" }

// fileSum is the hex SHA-256 of a slot binary, which must be a regular executable file.
func fileSum(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrNoBinary, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrNoBinary, err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o100 == 0 || fi.Size() == 0 {
		return "", fmt.Errorf("%w: %s: not an executable file", ErrNoBinary, path)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("%w: %w", ErrNoBinary, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
