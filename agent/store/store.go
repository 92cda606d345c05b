// Package store opens the agent's durable local database.
//
// It is one bbolt file: every Update is a crash-safe transaction committed with one fsync
// (two checksummed meta pages, so a power cut leaves the last committed state). Each owner of
// durable state (outbox, command journal, terminal configuration, …) keeps its own top-level
// bucket and is the only code that writes it.
package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// DB is the agent's database.
type DB = bolt.DB

// Tx is a transaction on it.
type Tx = bolt.Tx

// ErrLocked is returned when another process holds the database.
var ErrLocked = errors.New("store: database is held by another process")

// Open opens (creating if needed) the database file in dir.
func Open(dir string) (*DB, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	path := filepath.Join(dir, "posagent.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		// A second agent on the same directory must fail, not wait forever.
		Timeout: 2 * time.Second,
		// Keep the mapping small on a terminal; bbolt grows it as needed.
		InitialMmapSize: 0,
		// Free-list sync costs a write per commit and only speeds up reopening; the terminal
		// opens the file once per boot.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s", ErrLocked, path)
	}
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	return db, nil
}
