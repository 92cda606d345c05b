package logging

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// RotatingFile is an append-only log file rotated by size: when a write would take it past
// MaxSize, file.N-1 becomes file.N … file becomes file.1 and a new file starts. Writes are
// whole records (one slog line each), so rotation never splits a line. No fsync: a log line
// lost in a power cut is acceptable, the flash wear of syncing every line is not.
type RotatingFile struct {
	path    string
	maxSize int64
	keep    int

	mu     sync.Mutex
	f      *os.File
	size   int64
	closed bool
}

// OpenRotating opens (creating) path for appending. keep is how many rotated files are kept
// besides the current one; maxSize must be positive.
func OpenRotating(path string, maxSize int64, keep int) (*RotatingFile, error) {
	if maxSize <= 0 || keep < 0 {
		return nil, fmt.Errorf("logging: invalid rotation max size %d / keep %d", maxSize, keep)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("logging: %w", err)
	}
	w := &RotatingFile{path: path, maxSize: maxSize, keep: keep}
	if err := w.open(); err != nil {
		return nil, err
	}
	// keep may have been lowered since the last run; older files would otherwise stay forever.
	for _, n := range rotatedNumbers(path) {
		if n > keep {
			_ = os.Remove(numbered(path, n))
		}
	}
	return w, nil
}

func (w *RotatingFile) open() error {
	// 0600: however well the redaction works, the log is nobody else's business.
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("logging: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("logging: %w", err)
	}
	w.f, w.size = f, st.Size()
	return nil
}

// Write appends p, rotating first if p would not fit. If rotation fails the line is still
// written to the current file: a full log is better than a lost one.
func (w *RotatingFile) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, os.ErrClosed
	}
	var rotErr error
	if w.f == nil {
		if err := w.open(); err != nil {
			return 0, err
		}
	}
	if w.size > 0 && w.size+int64(len(p)) > w.maxSize {
		rotErr = w.rotate()
		if w.f == nil {
			return 0, rotErr
		}
	}
	n, err := w.f.Write(p)
	w.size += int64(n)
	if err != nil {
		return n, fmt.Errorf("logging: %w", err)
	}
	return n, rotErr
}

func (w *RotatingFile) rotate() error {
	if err := w.f.Close(); err != nil {
		w.f = nil
		return fmt.Errorf("logging: close for rotation: %w", err)
	}
	w.f = nil
	var errs []error
	if w.keep == 0 {
		if err := os.Remove(w.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	} else {
		for n := w.keep - 1; n >= 1; n-- {
			if err := os.Rename(numbered(w.path, n), numbered(w.path, n+1)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		if err := os.Rename(w.path, numbered(w.path, 1)); err != nil {
			errs = append(errs, err)
		}
	}
	if err := w.open(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("logging: rotate %s: %w", w.path, errors.Join(errs...))
	}
	return nil
}

// Close closes the current file.
func (w *RotatingFile) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}

// Path is the current file's path.
func (w *RotatingFile) Path() string { return w.path }

func numbered(path string, n int) string { return path + "." + strconv.Itoa(n) }

// rotatedNumbers lists the N of every path.N beside path.
func rotatedNumbers(path string) []int {
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		return nil
	}
	prefix := filepath.Base(path) + "."
	var ns []int
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok || rest == "" || strings.TrimLeft(rest, "0123456789") != "" || rest[0] == '0' {
			continue
		}
		if n, err := strconv.Atoi(rest); err == nil && n > 0 {
			ns = append(ns, n)
		}
	}
	return ns
}
