package syncio

import (
	"bytes"
	"strings"
	"sync"
	"testing"
)

func TestConcurrentWritesStayWhole(t *testing.T) {
	var under bytes.Buffer
	w, b := NewWriter(&under), &Buffer{}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Go(func() {
			for i := 0; i < 100; i++ {
				_, _ = w.Write([]byte("0123456789\n"))
				_, _ = b.Write([]byte("0123456789\n"))
				_ = b.String()
			}
		})
	}
	wg.Wait()
	for name, s := range map[string]string{"Writer": under.String(), "Buffer": b.String()} {
		lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
		if len(lines) != 800 {
			t.Fatalf("%s: %d lines", name, len(lines))
		}
		for _, l := range lines {
			if l != "0123456789" {
				t.Fatalf("%s: torn line %q", name, l)
			}
		}
	}
	b.Reset()
	if b.String() != "" {
		t.Fatal("reset")
	}
}

// TestTailKeepsTheLastBytes: writes beyond Max push the oldest bytes out; Reset empties it.
func TestTailKeepsTheLastBytes(t *testing.T) {
	tail := &Tail{Max: 8}
	for _, s := range []string{"abc", "defgh", "ijk"} {
		if n, err := tail.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("write %q: %d, %v", s, n, err)
		}
	}
	if got := tail.String(); got != "defghijk" {
		t.Fatalf("tail %q, want %q", got, "defghijk")
	}
	tail.Reset()
	if got := tail.String(); got != "" {
		t.Fatalf("after Reset: %q", got)
	}
}
