package tmsclient

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/google/renameio/v2"
)

// SeqSource hands out command sequence numbers: strictly increasing per device. The agent
// refuses any seq it has already executed, so a source must never go back, not even across
// restarts of the sender.
type SeqSource interface {
	Next(deviceID string) (uint64, error)
}

// nextSeq is the rule every source follows: one more than the last, but never behind the
// clock in milliseconds. The clock floor keeps two senders that do not share state (a fresh
// state file, another machine) ahead of what either issued more than a millisecond ago.
func nextSeq(last uint64, now time.Time) uint64 {
	next := last + 1
	if ms := now.UnixMilli(); ms > 0 && uint64(ms) > next {
		next = uint64(ms)
	}
	return next
}

// MemorySeq is a SeqSource that lives as long as the process: right for a long-running
// sender such as the fleet simulator, where the clock floor covers restarts.
type MemorySeq struct {
	mu   sync.Mutex
	last map[string]uint64
	now  func() time.Time
}

// NewMemorySeq returns an empty in-memory source.
func NewMemorySeq() *MemorySeq {
	return &MemorySeq{last: make(map[string]uint64), now: time.Now}
}

// Next implements SeqSource.
func (m *MemorySeq) Next(deviceID string) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := nextSeq(m.last[deviceID], m.now())
	m.last[deviceID] = n
	return n, nil
}

// SeqFile is a SeqSource persisted in a JSON file mapping device id to the last seq issued.
// Each Next re-reads the file and replaces it atomically before returning, so a seq is on disk
// before it can be on the wire, and a second process using the same file sees it. Two
// processes issuing for the same device in the same millisecond are not serialised: the file
// is not locked.
type SeqFile struct {
	path string
	mu   sync.Mutex
	now  func() time.Time
}

// maxSeqFileSize bounds the state file read: it holds one small entry per device.
const maxSeqFileSize = 64 << 20

// NewSeqFile uses path as the state file, creating it on the first Next. An existing file is
// read now so a damaged one is reported before anything is signed.
func NewSeqFile(path string) (*SeqFile, error) {
	f := &SeqFile{path: path, now: time.Now}
	if _, err := f.load(); err != nil {
		return nil, err
	}
	return f, nil
}

// Path is the state file's path.
func (f *SeqFile) Path() string { return f.path }

// Next implements SeqSource.
func (f *SeqFile) Next(deviceID string) (uint64, error) {
	seqs, err := f.NextBatch([]string{deviceID})
	if err != nil {
		return 0, err
	}
	return seqs[0], nil
}

// NextBatch is Next for many devices at the cost of one file write: a rollout over ten
// thousand terminals would otherwise rewrite the whole file ten thousand times. A device named
// twice gets two increasing seqs.
func (f *SeqFile) NextBatch(deviceIDs []string) ([]uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	state, err := f.load()
	if err != nil {
		return nil, err
	}
	now := f.now()
	seqs := make([]uint64, len(deviceIDs))
	for i, id := range deviceIDs {
		seqs[i] = nextSeq(state[id], now)
		state[id] = seqs[i]
	}
	data, err := json.MarshalIndent(state, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("tmsclient: seq state: %w", err)
	}
	if err := renameio.WriteFile(f.path, append(data, '\n'), 0o600); err != nil {
		return nil, fmt.Errorf("tmsclient: seq state: %w", err)
	}
	// renameio syncs the file but not the directory entry; without this a power cut can bring
	// back the old file and with it seqs already used.
	if err := syncDir(filepath.Dir(f.path)); err != nil {
		return nil, err
	}
	return seqs, nil
}

func (f *SeqFile) load() (map[string]uint64, error) {
	state := make(map[string]uint64)
	fh, err := os.Open(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return state, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tmsclient: seq state: %w", err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, fmt.Errorf("tmsclient: seq state: %w", err)
	}
	if st.Size() > maxSeqFileSize {
		return nil, fmt.Errorf("tmsclient: seq state %s: %d bytes, more than %d", f.path, st.Size(), maxSeqFileSize)
	}
	if st.Size() == 0 {
		return state, nil
	}
	if err := json.NewDecoder(fh).Decode(&state); err != nil {
		return nil, fmt.Errorf("tmsclient: seq state %s: %w", f.path, err)
	}
	return state, nil
}
