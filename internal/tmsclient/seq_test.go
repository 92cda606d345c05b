package tmsclient

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestSeqFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seq.json")
	clock := time.UnixMilli(1000)
	f, err := NewSeqFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f.now = func() time.Time { return clock }

	next := func(f *SeqFile, dev string) uint64 {
		t.Helper()
		n, err := f.Next(dev)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if got := next(f, "A"); got != 1000 {
		t.Errorf("first seq %d, want the clock 1000", got)
	}
	if got := next(f, "A"); got != 1001 {
		t.Errorf("second seq %d, want 1001 (the clock did not move)", got)
	}
	if got := next(f, "B"); got != 1000 {
		t.Errorf("other device %d, want 1000", got)
	}

	// A new instance (a new process) continues from the file, even with the clock behind.
	g, err := NewSeqFile(path)
	if err != nil {
		t.Fatal(err)
	}
	g.now = func() time.Time { return time.UnixMilli(5) }
	if got := next(g, "A"); got != 1002 {
		t.Errorf("after reopening: %d, want 1002", got)
	}
	// And jumps with the clock.
	g.now = func() time.Time { return time.UnixMilli(9000) }
	if got := next(g, "A"); got != 9000 {
		t.Errorf("clock ahead: %d, want 9000", got)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v", st.Mode().Perm())
	}
}

func TestSeqFileConcurrentUnique(t *testing.T) {
	f, err := NewSeqFile(filepath.Join(t.TempDir(), "seq.json"))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[uint64]bool{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 10 {
				n, err := f.Next("A")
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seen[n] {
					t.Errorf("seq %d handed out twice", n)
				}
				seen[n] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

func TestSeqFileDamaged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seq.json")
	if err := os.WriteFile(path, []byte(`{"A": "x"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewSeqFile(path); err == nil {
		t.Error("damaged state file accepted")
	}
	// An empty file (e.g. created by hand) is an empty state.
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewSeqFile(path); err != nil {
		t.Errorf("empty state file: %v", err)
	}
}

func TestMemorySeq(t *testing.T) {
	m := NewMemorySeq()
	m.now = func() time.Time { return time.UnixMilli(50) }
	a, _ := m.Next("A")
	b, _ := m.Next("A")
	if a != 50 || b != 51 {
		t.Errorf("seqs %d, %d; want 50, 51", a, b)
	}
}

// TestSeqFileNextBatch: a batch gives every device a seq above its last one (a device named
// twice gets two), the file keeps them, and Next after it goes on from there.
func TestSeqFileNextBatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seq.json")
	f, err := NewSeqFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f.now = func() time.Time { return time.UnixMilli(0) }
	first, err := f.Next("A")
	if err != nil {
		t.Fatal(err)
	}
	seqs, err := f.NextBatch([]string{"A", "B", "A"})
	if err != nil {
		t.Fatal(err)
	}
	if seqs[0] <= first || seqs[2] <= seqs[0] || seqs[1] == 0 {
		t.Fatalf("batch %v after %d", seqs, first)
	}
	g, err := NewSeqFile(path)
	if err != nil {
		t.Fatal(err)
	}
	g.now = f.now
	for dev, last := range map[string]uint64{"A": seqs[2], "B": seqs[1]} {
		n, err := g.Next(dev)
		if err != nil {
			t.Fatal(err)
		}
		if n <= last {
			t.Errorf("%s: %d after the batch's %d", dev, n, last)
		}
	}
}
