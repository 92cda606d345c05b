package slots

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/google/renameio/v2"

	"github.com/posagent/posagent/agent/tmsproto"
)

// The file format. boot.cbor is read by the launcher, which is the factory binary: code that
// may be years older than the agent that wrote the file. So:
//   - the envelope {v, state, sum} is frozen; v changes only for a format an old launcher must
//     not read (it then falls back to boot.cbor.prev, then to factory);
//   - the state inside is decoded field by field and unknown fields are ignored, so a newer
//     agent may add fields without making old launchers fall back;
//   - sum (SHA-256 of state) turns any damage of the bytes into a detected bad file, rather
//     than a state that decodes to something nobody wrote.
const (
	fileVersion = 1
	maxBootSize = 16 << 10
	maxText     = 1024 // bound of any text in the state; reasons are clipped to it
)

type bootFile struct {
	V     uint   `cbor:"v"`
	State []byte `cbor:"state"`
	Sum   []byte `cbor:"sum"`
}

// errCorrupt marks content that is not a valid boot state (as opposed to an I/O error).
var errCorrupt = errors.New("slots: bad boot state")

func encodeState(st State) ([]byte, error) {
	inner, err := tmsproto.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("slots: encode state: %w", err)
	}
	sum := sha256.Sum256(inner)
	out, err := tmsproto.Marshal(bootFile{V: fileVersion, State: inner, Sum: sum[:]})
	if err != nil {
		return nil, fmt.Errorf("slots: encode state: %w", err)
	}
	return out, nil
}

// decodeState decodes and validates one boot state file; every failure wraps errCorrupt.
func decodeState(data []byte) (State, error) {
	if len(data) > maxBootSize {
		return State{}, fmt.Errorf("%w: %d bytes", errCorrupt, len(data))
	}
	var f bootFile
	if err := tmsproto.Unmarshal(data, &f); err != nil {
		return State{}, fmt.Errorf("%w: %w", errCorrupt, err)
	}
	if f.V != fileVersion {
		return State{}, fmt.Errorf("%w: format version %d", errCorrupt, f.V)
	}
	sum := sha256.Sum256(f.State)
	if !bytes.Equal(sum[:], f.Sum) {
		return State{}, fmt.Errorf("%w: checksum mismatch", errCorrupt)
	}
	var m map[string]any
	if err := tmsproto.Unmarshal(f.State, &m); err != nil {
		return State{}, fmt.Errorf("%w: %w", errCorrupt, err)
	}
	d := fields{m: m}
	st := State{
		Active:        d.text("active"),
		ActiveVersion: d.text("activeVersion"),
		ActiveSum:     d.text("activeSum"),
		Trial:         d.text("trial"),
		TrialVersion:  d.text("trialVersion"),
		TrialSum:      d.text("trialSum"),
		Command:       d.text("command"),
		Tries:         int(d.num("tries", math.MaxInt32)),
		MaxTries:      int(d.num("maxTries", math.MaxInt32)),
		DeadlineSec:   d.num("deadlineSec", math.MaxInt32),
		TrialLast:     d.text("trialLast"),
	}
	if raw, ok := m["last"]; ok {
		lm, ok := raw.(map[string]any)
		if !ok {
			return State{}, fmt.Errorf("%w: last: not a map", errCorrupt)
		}
		l := fields{m: lm}
		st.Last = &Outcome{Slot: l.text("slot"), Version: l.text("version"), Command: l.text("command"),
			Result: l.text("result"), Reason: l.text("reason"), At: l.num("at", math.MaxInt64)}
		if l.err != nil {
			d.err = fmt.Errorf("last: %w", l.err)
		}
	}
	if d.err != nil {
		return State{}, fmt.Errorf("%w: %w", errCorrupt, d.err)
	}
	if err := st.validate(); err != nil {
		return State{}, fmt.Errorf("%w: %w", errCorrupt, err)
	}
	return st, nil
}

// fields reads typed values out of a decoded CBOR map, keeping the first error.
type fields struct {
	m   map[string]any
	err error
}

func (f *fields) text(key string) string {
	v, ok := f.m[key]
	if !ok {
		return ""
	}
	s, ok := v.(string)
	if !ok && f.err == nil {
		f.err = fmt.Errorf("%s: not text", key)
	}
	return s
}

func (f *fields) num(key string, max int64) int64 {
	v, ok := f.m[key]
	if !ok {
		return 0
	}
	var n int64
	switch x := v.(type) {
	case uint64:
		if x > uint64(max) {
			if f.err == nil {
				f.err = fmt.Errorf("%s: %d out of range", key, x)
			}
			return 0
		}
		n = int64(x)
	case int64:
		n = x
	default:
		if f.err == nil {
			f.err = fmt.Errorf("%s: not an integer", key)
		}
		return 0
	}
	if n < 0 && f.err == nil {
		f.err = fmt.Errorf("%s: negative", key)
	}
	return n
}

func (st State) validate() error {
	switch st.Active {
	case Factory, A, B:
	default:
		return fmt.Errorf("active slot %q", st.Active)
	}
	if st.Active == Factory && st.ActiveSum != "" {
		return errors.New("factory has no recorded sum")
	}
	if err := checkSum(st.ActiveSum); err != nil {
		return fmt.Errorf("activeSum: %w", err)
	}
	switch st.Trial {
	case "":
		if st.TrialVersion != "" || st.TrialSum != "" || st.Command != "" || st.Tries != 0 ||
			st.MaxTries != 0 || st.DeadlineSec != 0 || st.TrialLast != "" {
			return errors.New("trial fields without a trial")
		}
	case A, B:
		if st.Trial == st.Active {
			return errors.New("the active slot is on trial")
		}
		if st.MaxTries < 1 || st.Tries < 0 || st.DeadlineSec < 1 {
			return fmt.Errorf("trial limits %d/%d, %ds", st.Tries, st.MaxTries, st.DeadlineSec)
		}
		if st.TrialSum == "" {
			return errors.New("trial without a binary sum")
		}
		if err := checkSum(st.TrialSum); err != nil {
			return fmt.Errorf("trialSum: %w", err)
		}
	default:
		return fmt.Errorf("trial slot %q", st.Trial)
	}
	texts := []string{st.ActiveVersion, st.TrialVersion, st.Command, st.TrialLast}
	if l := st.Last; l != nil {
		if l.Slot != A && l.Slot != B {
			return fmt.Errorf("last: slot %q", l.Slot)
		}
		if l.Result != ResultCommitted && l.Result != ResultRolledBack {
			return fmt.Errorf("last: result %q", l.Result)
		}
		texts = append(texts, l.Version, l.Command, l.Reason)
	}
	for _, s := range texts {
		if len(s) > maxText || !utf8.ValidString(s) {
			return errors.New("text too long or not UTF-8")
		}
	}
	return nil
}

func checkSum(s string) error {
	if s == "" {
		return nil
	}
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != sha256.Size {
		return errors.New("not a hex SHA-256")
	}
	return nil
}

// clip bounds a reason to maxText bytes without cutting a UTF-8 sequence.
func clip(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= maxText {
		return s
	}
	cut := maxText
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

func readState(path string) (State, []byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return State{}, nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxBootSize+1))
	if err != nil {
		return State{}, nil, err
	}
	st, err := decodeState(data)
	return st, data, err
}

// load is the state to act on: boot.cbor, else boot.cbor.prev, else factory. Bad content
// falls back silently for the caller (logged once per distinct problem); an I/O error falls
// back too but is returned, so that update never writes on top of a state it could not read.
func (s *Slots) load() (State, error) {
	factory := State{Active: Factory}
	st, _, err := readState(filepath.Join(s.dir, bootName))
	if err == nil {
		return st, nil
	}
	missing := errors.Is(err, fs.ErrNotExist)
	var ioErr error
	if !missing && !errors.Is(err, errCorrupt) {
		ioErr = fmt.Errorf("slots: read %s: %w", bootName, err)
	}
	pst, _, perr := readState(filepath.Join(s.dir, prevName))
	switch {
	case perr == nil:
		s.warnOnce("boot state unusable, using the previous one", "file", bootName, "err", err)
		return pst, ioErr
	case missing && errors.Is(perr, fs.ErrNotExist):
		return factory, nil // never written: the first boot
	default:
		s.warnOnce("boot state and its previous copy unusable, booting factory", "err", err, "prev", perr)
		if ioErr == nil && !errors.Is(perr, errCorrupt) && !errors.Is(perr, fs.ErrNotExist) {
			ioErr = fmt.Errorf("slots: read %s: %w", prevName, perr)
		}
		return factory, ioErr
	}
}

func (s *Slots) warnOnce(msg string, args ...any) {
	key := fmt.Sprint(append([]any{msg}, args...)...)
	s.warnMu.Lock()
	seen := s.warned == key
	s.warned = key
	s.warnMu.Unlock()
	if !seen {
		s.logger().Error(msg, args...)
	}
}

// store writes next after making cur the durable previous copy: whatever instruction a power
// cut hits, boot.cbor is cur or next and boot.cbor.prev is valid, so a damaged boot.cbor
// costs at most the last change.
func (s *Slots) store(cur, next State) error {
	prevData, err := encodeState(cur)
	if err != nil {
		return err
	}
	nextData, err := encodeState(next)
	if err != nil {
		return err
	}
	prevPath := filepath.Join(s.dir, prevName)
	old, err := os.ReadFile(prevPath)
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Stat(filepath.Join(s.dir, bootName)); errors.Is(serr, fs.ErrNotExist) {
			// The first write: there is no state to keep, and a previous copy without a
			// boot.cbor would read as a deleted boot.cbor.
			return s.writeFile(filepath.Join(s.dir, bootName), nextData)
		}
	}
	if err != nil || !bytes.Equal(old, prevData) {
		if err := s.writeFile(prevPath, prevData); err != nil {
			return err
		}
	}
	return s.writeFile(filepath.Join(s.dir, bootName), nextData)
}

func (s *Slots) writeFile(path string, data []byte) error {
	if err := renameio.WriteFile(path, data, 0o644, renameio.WithTempDir(s.dir)); err != nil {
		return fmt.Errorf("slots: write %s: %w", filepath.Base(path), err)
	}
	// renameio syncs the file, not the directory entry the rename changed.
	if err := syncDir(s.dir); err != nil {
		return fmt.Errorf("slots: write %s: %w", filepath.Base(path), err)
	}
	return nil
}
