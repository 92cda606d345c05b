package files

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/posagent/posagent/internal/crashtest"
)

var putHelper = crashtest.Helper{Test: "TestHelperPutLoop", Env: "POSAGENT_FILES_CRASH_DIR"}

// versions are the two contents the helper alternates: large enough that a copy takes a
// while, different in every block so a mix of the two is detected.
func versions() [2][]byte {
	var v [2][]byte
	for i := range v {
		b := make([]byte, 256<<10)
		for j := range b {
			b[j] = byte('A'+i) ^ byte(j>>9)
		}
		v[i] = b
	}
	return v
}

// TestHelperPutLoop is the child process: it puts the two versions in turn until killed.
func TestHelperPutLoop(t *testing.T) {
	dir := putHelper.Dir()
	if dir == "" {
		t.Skip("crash helper; run by TestPutSurvivesKill")
	}
	v := versions()
	var srcs [2]string
	for i := range v {
		srcs[i] = filepath.Join(dir, "src", string(rune('a'+i)))
		if err := os.MkdirAll(filepath.Dir(srcs[i]), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(srcs[i], v[i], 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l := Locations{"loc": filepath.Join(dir, "loc")}
	if err := l.Put("loc", "data.bin", srcs[0]); err != nil {
		t.Fatal(err)
	}
	crashtest.Ready(t)
	for i := 1; ; i++ {
		if err := l.Put("loc", "data.bin", srcs[i%2]); err != nil {
			t.Fatal(err)
		}
	}
}

// Killed at a random instruction in a loop of Puts, the file is always one complete version,
// so is the previous one, and the next Put works.
func TestPutSurvivesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns child processes")
	}
	v := versions()
	rnd := crashtest.Rand(t)
	oneOf := func(what string, b []byte) {
		t.Helper()
		if !bytes.Equal(b, v[0]) && !bytes.Equal(b, v[1]) {
			t.Fatalf("%s is neither version (%d bytes)", what, len(b))
		}
	}
	for trial := range 20 {
		dir := t.TempDir()
		putHelper.KillAfterReady(t, dir, time.Duration(rnd.IntN(40))*time.Millisecond)
		loc := filepath.Join(dir, "loc")
		got, err := os.ReadFile(filepath.Join(loc, "data.bin"))
		if err != nil {
			t.Fatalf("trial %d: %v", trial, err)
		}
		oneOf("the file", got)
		prev, err := os.ReadFile(filepath.Join(loc, "data.bin"+PrevSuffix))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		if err == nil {
			oneOf("the previous file", prev)
		}
		l := Locations{"loc": loc}
		if err := l.Put("loc", "data.bin", filepath.Join(dir, "src", "b")); err != nil {
			t.Fatalf("trial %d: put after the kill: %v", trial, err)
		}
		if b, _ := os.ReadFile(filepath.Join(loc, "data.bin")); !bytes.Equal(b, v[1]) {
			t.Fatalf("trial %d: put after the kill did not take", trial)
		}
		if b, _ := os.ReadFile(filepath.Join(loc, "data.bin"+PrevSuffix)); !bytes.Equal(b, got) {
			t.Fatalf("trial %d: the file before the put was not kept", trial)
		}
		if entries, _ := os.ReadDir(loc); len(entries) != 2 {
			t.Fatalf("trial %d: %d entries after a clean put: %v", trial, len(entries), entries)
		}
	}
}
