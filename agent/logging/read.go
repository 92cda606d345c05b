package logging

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"time"
)

// MaxLineLen is the longest log line ReadRange passes on; longer ones (which the agent does
// not write) are skipped rather than buffered whole.
const MaxLineLen = 256 << 10

// ReadRange calls fn with every line of the current file and its rotated copies whose "time"
// lies in [from, to), oldest file first. A zero from or to leaves that side open. Lines
// without a readable time are skipped. The slice passed to fn is valid only during the call.
// The set of files is fixed when the call starts, so rotation during a long upload neither
// skips nor repeats lines.
func (w *RotatingFile) ReadRange(from, to time.Time, fn func(line []byte) error) error {
	w.mu.Lock()
	files, err := openSet(w.path)
	w.mu.Unlock()
	if err != nil {
		return err
	}
	return readFiles(files, from, to, fn)
}

// ReadRange is RotatingFile.ReadRange for a log file this process does not write, e.g. from
// a command-line tool. Rotation by the writer while it runs may skip or repeat lines.
func ReadRange(path string, from, to time.Time, fn func(line []byte) error) error {
	files, err := openSet(path)
	if err != nil {
		return err
	}
	return readFiles(files, from, to, fn)
}

type openFile struct {
	f     *os.File
	size  int64 // bytes present when opened; later appends belong to the next read
	mtime time.Time
}

// openSet opens path.N … path.1 and path, oldest first. Open descriptors keep reading the
// same content even after a rename.
func openSet(path string) ([]openFile, error) {
	ns := rotatedNumbers(path)
	slices.SortFunc(ns, func(a, b int) int { return b - a })
	names := make([]string, 0, len(ns)+1)
	for _, n := range ns {
		names = append(names, numbered(path, n))
	}
	names = append(names, path)

	var files []openFile
	for _, name := range names {
		f, err := os.Open(name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err == nil {
			var st os.FileInfo
			if st, err = f.Stat(); err == nil {
				files = append(files, openFile{f: f, size: st.Size(), mtime: st.ModTime()})
				continue
			}
			f.Close()
		}
		for _, of := range files {
			of.f.Close()
		}
		return nil, fmt.Errorf("logging: %w", err)
	}
	return files, nil
}

func readFiles(files []openFile, from, to time.Time, fn func([]byte) error) error {
	defer func() {
		for _, of := range files {
			of.f.Close()
		}
	}()
	var br *bufio.Reader
	for _, of := range files {
		// Every line was written before the file's last modification.
		if !from.IsZero() && of.mtime.Before(from) {
			continue
		}
		r := io.LimitReader(of.f, of.size)
		if br == nil {
			br = bufio.NewReaderSize(r, MaxLineLen)
		} else {
			br.Reset(r)
		}
		if err := scanLines(br, from, to, fn); err != nil {
			return err
		}
	}
	return nil
}

func scanLines(br *bufio.Reader, from, to time.Time, fn func([]byte) error) error {
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// Overlong: drop it and everything up to its end.
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return fmt.Errorf("logging: read: %w", err)
			}
			continue
		}
		if err != nil && err != io.EOF {
			return fmt.Errorf("logging: read: %w", err)
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) > 0 {
			if t, ok := LineTime(line); ok && (from.IsZero() || !t.Before(from)) && (to.IsZero() || t.Before(to)) {
				if ferr := fn(line); ferr != nil {
					return ferr
				}
			}
		}
		if err == io.EOF {
			return nil
		}
	}
}

var timePrefix = []byte(`{"time":"`)

// LineTime extracts the "time" of a JSON log line. slog's JSON handler writes it first, so the
// common case is a prefix match; anything else falls back to a JSON decode. A zero time counts
// as none.
func LineTime(line []byte) (time.Time, bool) {
	if rest, ok := bytes.CutPrefix(line, timePrefix); ok {
		if end := bytes.IndexByte(rest, '"'); end > 0 && end <= 64 {
			if t, err := time.Parse(time.RFC3339Nano, string(rest[:end])); err == nil && !t.IsZero() {
				return t, true
			}
		}
	}
	var v struct {
		Time time.Time `json:"time"`
	}
	if json.Unmarshal(line, &v) != nil || v.Time.IsZero() {
		return time.Time{}, false
	}
	return v.Time, true
}
