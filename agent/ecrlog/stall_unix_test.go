//go:build unix

package ecrlog

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A disk that stops taking writes (here a pipe nobody reads) must not hold up the cash
// register: Record returns at once, lines beyond the queue are dropped and counted, and the
// queued ones are written once the disk moves again.
func TestRecordDoesNotWaitForAStalledDisk(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ecr.log")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skip("mkfifo:", err)
	}
	// The reading end must exist for the log's open to succeed without blocking.
	r, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	l, err := Open(path, 1<<30, 1, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// About 1 KiB a line: the pipe's buffer (64 KiB) holds a few dozen, the queue 256.
	const total = 1000
	resp := []byte(`{"statusCode":0,"data":{"pad":"` + strings.Repeat("x", 1000) + `"}}`)
	for range total {
		l.Record(Entry{Method: "GET", Path: "/v2/status", Response: resp})
	}
	if _, dropped, _ := l.Stats(); dropped == 0 {
		t.Fatal("nothing dropped while the disk was stalled")
	}
	drained := make(chan int64)
	go func() {
		n, _ := io.Copy(io.Discard, r)
		drained <- n
	}()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	lines, dropped, errs := l.Stats()
	if lines+dropped != total || errs != 0 || lines < queueLen {
		t.Errorf("Stats = %d written, %d dropped, %d errors of %d", lines, dropped, errs, total)
	}
	r.Close()
	<-drained
}
