// Package files places delivered files (file components of a release, file.put) into named
// locations: directories the agent's configuration maps names to, so a command never names
// a path on the terminal.
//
// A Put replaces the file atomically and keeps the one it replaces as name+".prev": a power
// cut at any instruction leaves either the old or the new file complete under name, and
// the previous version is not lost.
package files

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// MaxNameLen bounds a file name in bytes.
const MaxNameLen = 128

// PrevSuffix is appended to a name for the version it replaced.
const PrevSuffix = ".prev"

// ErrUnknownLocation is returned for a location the configuration does not name.
var ErrUnknownLocation = errors.New("files: unknown location")

// ErrInvalidName is returned (wrapped in a *NameError) for a file name that is not allowed.
var ErrInvalidName = errors.New("files: invalid file name")

// NameError says why a file name is refused.
type NameError struct {
	Name   string
	Reason string
}

func (e *NameError) Error() string { return fmt.Sprintf("files: file name %q: %s", e.Name, e.Reason) }

// Is makes errors.Is(err, ErrInvalidName) hold.
func (e *NameError) Is(target error) bool { return target == ErrInvalidName }

// ValidName checks a file name: one path element, printable UTF-8, at most MaxNameLen
// bytes, no leading dot (temporary files start with one) and no ".prev" suffix (the name of
// a kept previous version).
func ValidName(name string) error {
	bad := func(reason string) error { return &NameError{Name: name, Reason: reason} }
	switch {
	case name == "":
		return bad("empty")
	case len(name) > MaxNameLen:
		return bad(fmt.Sprintf("longer than %d bytes", MaxNameLen))
	case !utf8.ValidString(name):
		return bad("not UTF-8")
	case strings.ContainsAny(name, `/\`):
		return bad("contains a path separator")
	case strings.Contains(name, ".."):
		return bad(`contains ".."`)
	case name[0] == '.':
		return bad("starts with a dot")
	case strings.HasSuffix(name, PrevSuffix):
		return bad(fmt.Sprintf("ends with %q, the suffix of kept previous versions", PrevSuffix))
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return bad("contains a non-printable character")
		}
	}
	return nil
}

// Locations maps location names to directories.
type Locations map[string]string

func (l Locations) dir(location string) (string, error) {
	dir, ok := l[location]
	if !ok || dir == "" {
		return "", fmt.Errorf("%w %q", ErrUnknownLocation, location)
	}
	return dir, nil
}

// Path is where the file name of location lives (it may not exist yet).
func (l Locations) Path(location, name string) (string, error) {
	dir, err := l.dir(location)
	if err != nil {
		return "", err
	}
	if err := ValidName(name); err != nil {
		return "", err
	}
	return filepath.Join(dir, name), nil
}

// putMu serialises Puts: their temporary names are fixed per target, so a Put cut short by
// a power cut leaves nothing that piles up, and two Puts of one name must not share them.
var putMu sync.Mutex

// Put copies src into location as name (mode 0644), creating the location's directory
// (0755) if needed. The copy is written and synced under a temporary name in the same
// directory; then the current file, if any, is kept as name+".prev" (replacing an older
// one) and the new file renamed over name; the directory is synced last.
func (l Locations) Put(location, name, src string) error {
	target, err := l.Path(location, name)
	if err != nil {
		return err
	}
	putMu.Lock()
	defer putMu.Unlock()
	dir := filepath.Dir(target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("files: %w", err)
	}
	tmp := filepath.Join(dir, "."+name+".new")
	if err := copyFile(tmp, src); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	kept, err := keepPrevious(target)
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	// The .prev rename must be durable before the new file can take the name, or a cut could
	// leave the new file with an older .prev than the one it replaced.
	if kept {
		if err := syncDir(dir); err != nil {
			_ = os.Remove(tmp)
			return err
		}
	}
	if err := os.Rename(tmp, target); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("files: %w", err)
	}
	return syncDir(dir)
}

// copyFile writes src to dst (truncating a leftover of an earlier cut) and syncs it.
func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("files: source: %w", err)
	}
	defer in.Close()
	if fi, err := in.Stat(); err != nil {
		return fmt.Errorf("files: source: %w", err)
	} else if !fi.Mode().IsRegular() {
		return fmt.Errorf("files: source %s is not a regular file", src)
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("files: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("files: copy: %w", err)
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return fmt.Errorf("files: %w", err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("files: %w", err)
	}
	return nil
}

// keepPrevious makes name+".prev" a complete copy of target, atomically, while target stays
// in place: a hard link where the file system has them, else a synced copy. A cut leaves the
// old .prev or the new one, never a partial file.
func keepPrevious(target string) (kept bool, err error) {
	cur, err := os.Lstat(target)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("files: %w", err)
	}
	// A Put cut after its .prev link already made .prev the current file. A rename between
	// two links of one file would do nothing and leave the temporary link behind.
	if prev, err := os.Lstat(target + PrevSuffix); err == nil && os.SameFile(cur, prev) {
		return true, nil
	}
	dir, name := filepath.Split(target)
	tmp := filepath.Join(dir, "."+name+PrevSuffix+".new")
	_ = os.Remove(tmp)
	if err := os.Link(target, tmp); err != nil {
		if err := copyFile(tmp, target); err != nil {
			_ = os.Remove(tmp)
			return false, err
		}
	}
	if err := os.Rename(tmp, target+PrevSuffix); err != nil {
		_ = os.Remove(tmp)
		return false, fmt.Errorf("files: keep previous: %w", err)
	}
	return true, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("files: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("files: sync %s: %w", dir, err)
	}
	return nil
}
