package logging

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
)

func TestRingKeepsRecentRedactedLines(t *testing.T) {
	l, err := New(Options{Level: slog.LevelInfo, Stderr: io.Discard, Ring: 3})
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Recent(10); len(got) != 0 {
		t.Fatalf("empty ring: %q", got)
	}
	l.Logger.Info("paid with "+pan16, "password", "hunter2", "n", 1)
	l.Logger.Debug("below the level")
	got := l.Recent(10)
	if len(got) != 1 {
		t.Fatalf("lines: %q", got)
	}
	if strings.Contains(got[0], pan16) || strings.Contains(got[0], "hunter2") {
		t.Errorf("ring kept a secret: %q", got[0])
	}
	if !strings.Contains(got[0], pan16Mask) || !strings.Contains(got[0], "password="+Redacted) {
		t.Errorf("ring line not masked as the logs are: %q", got[0])
	}

	// The level is shared: debug turned on reaches the ring too.
	l.SetLevel(slog.LevelDebug)
	for i := range 5 {
		l.Logger.Debug(fmt.Sprintf("line %d", i))
	}
	got = l.Recent(0)
	if len(got) != 3 {
		t.Fatalf("a ring of 3 kept %d lines: %q", len(got), got)
	}
	for i, want := range []string{"line 2", "line 3", "line 4"} {
		if !strings.Contains(got[i], want) {
			t.Errorf("line %d = %q, want %q (oldest first)", i, got[i], want)
		}
	}
	if got := l.Recent(2); len(got) != 2 || !strings.Contains(got[1], "line 4") || !strings.Contains(got[0], "line 3") {
		t.Errorf("Recent(2) = %q", got)
	}
}

func TestRingWithoutOption(t *testing.T) {
	l, err := New(Options{Stderr: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	l.Logger.Info("x")
	if got := l.Recent(5); got != nil {
		t.Errorf("no ring asked, got %q", got)
	}
}

func TestRingWriteSplitsAndBounds(t *testing.T) {
	r := NewRing(4)
	if _, err := r.Write([]byte("a\nb\n\nc")); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", maxRingLine*2)
	if _, err := r.Write([]byte(long + "\n")); err != nil {
		t.Fatal(err)
	}
	got := r.Recent(0)
	if len(got) != 4 || got[0] != "a" || got[1] != "b" || got[2] != "c" {
		t.Fatalf("lines: %q", got[:min(3, len(got))])
	}
	if len(got[3]) > maxRingLine+8 {
		t.Errorf("a %d-byte line kept whole (%d)", len(long), len(got[3]))
	}
}
