package files

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPutReplacesAndKeepsPrevious(t *testing.T) {
	src := t.TempDir()
	dest := filepath.Join(t.TempDir(), "media", "logos") // created by Put
	l := Locations{"logos": dest}
	for i, body := range []string{"v1", "v2", "v3"} {
		if err := l.Put("logos", "receipt logo.bmp", write(t, src, "in", body)); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	p, err := l.Path("logos", "receipt logo.bmp")
	if err != nil {
		t.Fatal(err)
	}
	if p != filepath.Join(dest, "receipt logo.bmp") {
		t.Fatalf("path %s", p)
	}
	if got := read(t, p); got != "v3" {
		t.Fatalf("file %q", got)
	}
	if got := read(t, p+PrevSuffix); got != "v2" {
		t.Fatalf("previous %q", got)
	}
	entries, _ := os.ReadDir(dest)
	if len(entries) != 2 {
		t.Fatalf("directory holds %d entries (temporary files left?)", len(entries))
	}
	// Never more permissive than 0755 (directory) and 0644 (file); the umask may take more.
	for path, most := range map[string]os.FileMode{dest: 0o755, p: 0o644} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if perm := st.Mode().Perm(); perm&^most != 0 || perm&0o600 != 0o600 {
			t.Errorf("%s mode %v", path, perm)
		}
	}
}

func TestFirstPutHasNoPrevious(t *testing.T) {
	dest := t.TempDir()
	l := Locations{"cfg": dest}
	if err := l.Put("cfg", "tariffs.json", write(t, t.TempDir(), "in", "{}")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dest, "tariffs.json"+PrevSuffix)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("previous of a first put: %v", err)
	}
}

// A cut between writing the temporary file and renaming it leaves that file behind; the next
// Put writes over it and leaves nothing.
func TestLeftoverTemporaryFilesDoNotMatter(t *testing.T) {
	dest := t.TempDir()
	l := Locations{"cfg": dest}
	write(t, dest, "a.txt", "old")
	write(t, dest, ".a.txt.new", "half writ")
	write(t, dest, ".a.txt.prev.new", "half")
	if err := l.Put("cfg", "a.txt", write(t, t.TempDir(), "in", "new")); err != nil {
		t.Fatal(err)
	}
	if read(t, filepath.Join(dest, "a.txt")) != "new" || read(t, filepath.Join(dest, "a.txt.prev")) != "old" {
		t.Fatal("wrong contents")
	}
	entries, _ := os.ReadDir(dest)
	if len(entries) != 2 {
		t.Fatalf("%d entries", len(entries))
	}
}

func TestPutFailureChangesNothing(t *testing.T) {
	dest := t.TempDir()
	l := Locations{"cfg": dest}
	write(t, dest, "a.txt", "old")
	if err := l.Put("cfg", "a.txt", filepath.Join(t.TempDir(), "absent")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("error %v", err)
	}
	if err := l.Put("cfg", "a.txt", t.TempDir()); err == nil {
		t.Fatal("a directory as source was accepted")
	}
	if read(t, filepath.Join(dest, "a.txt")) != "old" {
		t.Fatal("file changed")
	}
	if entries, _ := os.ReadDir(dest); len(entries) != 1 {
		t.Fatalf("%d entries", len(entries))
	}
}

func TestUnknownLocation(t *testing.T) {
	l := Locations{"cfg": t.TempDir(), "empty": ""}
	for _, loc := range []string{"logos", "empty", ""} {
		if _, err := l.Path(loc, "a"); !errors.Is(err, ErrUnknownLocation) {
			t.Errorf("path %q: %v", loc, err)
		}
		if err := l.Put(loc, "a", "/etc/hostname"); !errors.Is(err, ErrUnknownLocation) {
			t.Errorf("put %q: %v", loc, err)
		}
	}
}

func TestNames(t *testing.T) {
	good := []string{"a", "logo.bmp", "tariffs 2026.json", "данные.txt", "a.b.c", strings.Repeat("x", MaxNameLen), "prev", "x.prevv"}
	for _, n := range good {
		if err := ValidName(n); err != nil {
			t.Errorf("%q: %v", n, err)
		}
	}
	bad := []string{"", ".", "..", "../etc/passwd", "a/b", `a\b`, "a..b", ".hidden", "a.prev", "tab\there", "nul\x00", "\xff\xfe",
		strings.Repeat("x", MaxNameLen+1), "new\nline", "bidi\u202e"}
	dest := t.TempDir()
	l := Locations{"cfg": dest}
	src := write(t, t.TempDir(), "in", "x")
	for _, n := range bad {
		err := ValidName(n)
		var ne *NameError
		if !errors.Is(err, ErrInvalidName) || !errors.As(err, &ne) {
			t.Errorf("%q: %v", n, err)
		}
		if _, err := l.Path("cfg", n); !errors.Is(err, ErrInvalidName) {
			t.Errorf("path %q: %v", n, err)
		}
		if err := l.Put("cfg", n, src); !errors.Is(err, ErrInvalidName) {
			t.Errorf("put %q: %v", n, err)
		}
	}
	if entries, _ := os.ReadDir(dest); len(entries) != 0 {
		t.Fatalf("refused names wrote %d entries", len(entries))
	}
	if !bytes.Equal([]byte(read(t, src)), []byte("x")) {
		t.Fatal("source changed")
	}
}

// A Put cut right after its .prev link leaves .prev and the file as one file (two links);
// the next Put must still end with no temporary file.
func TestPreviousAlreadyLinked(t *testing.T) {
	dest := t.TempDir()
	l := Locations{"cfg": dest}
	p := write(t, dest, "a.txt", "cur")
	if err := os.Link(p, p+PrevSuffix); err != nil {
		t.Skip("no hard links here:", err)
	}
	if err := l.Put("cfg", "a.txt", write(t, t.TempDir(), "in", "new")); err != nil {
		t.Fatal(err)
	}
	if read(t, p) != "new" || read(t, p+PrevSuffix) != "cur" {
		t.Fatal("wrong contents")
	}
	if entries, _ := os.ReadDir(dest); len(entries) != 2 {
		t.Fatalf("%d entries: %v", len(entries), entries)
	}
}
