package transfer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/google/renameio/v2"

	"github.com/posagent/posagent/agent/tmsproto"
)

// maxStateSize bounds a checkpoint file: a few integers and a hash state of about 100 bytes.
const maxStateSize = 4 << 10

// FileState keeps a transfer's checkpoint in one CBOR file, replaced atomically on every Save.
// It is for tools and tests; the agent keeps its checkpoints in its database.
type FileState struct {
	Path string
}

// Load reads the checkpoint; ok is false when none was saved yet.
func (s FileState) Load() (Checkpoint, bool, error) {
	data, err := os.ReadFile(s.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return Checkpoint{}, false, nil
	}
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("transfer: checkpoint: %w", err)
	}
	if len(data) > maxStateSize {
		return Checkpoint{}, false, fmt.Errorf("transfer: checkpoint %s: %d bytes, more than %d", s.Path, len(data), maxStateSize)
	}
	var cp Checkpoint
	if err := tmsproto.Unmarshal(data, &cp); err != nil {
		return Checkpoint{}, false, fmt.Errorf("transfer: checkpoint %s: %w", s.Path, err)
	}
	return cp, true, nil
}

// Save replaces the checkpoint file and returns once the new one is durable.
func (s FileState) Save(cp Checkpoint) error {
	data, err := tmsproto.Marshal(cp)
	if err != nil {
		return fmt.Errorf("transfer: checkpoint: %w", err)
	}
	if err := renameio.WriteFile(s.Path, data, 0o600); err != nil {
		return fmt.Errorf("transfer: checkpoint: %w", err)
	}
	// renameio syncs the file, not the directory entry that the rename changed.
	return SyncDir(filepath.Dir(s.Path))
}

// Remove deletes the checkpoint file (after the transfer's file has been used).
func (s FileState) Remove() error {
	if err := os.Remove(s.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("transfer: checkpoint: %w", err)
	}
	return SyncDir(filepath.Dir(s.Path))
}
