package logging

import (
	"bytes"
	"log/slog"
	"sync"
)

// DefaultRingLines is how many recent lines the diagnostics port shows by default.
const DefaultRingLines = 500

// maxRingLine bounds one kept line: a runaway attribute must not hold the ring's memory.
const maxRingLine = 2 << 10

// Ring keeps the most recent log lines in memory, formatted as text, for the diagnostics
// port: a technician sees the agent's log without the file (which may be off) and without a
// TMS round trip. It is an io.Writer fed one line per record by a text handler placed behind
// the redacting layer, so what it keeps is already masked.
type Ring struct {
	mu    sync.Mutex
	lines []string
	next  int
	full  bool
}

// NewRing keeps the last size lines (DefaultRingLines when size <= 0).
func NewRing(size int) *Ring {
	if size <= 0 {
		size = DefaultRingLines
	}
	return &Ring{lines: make([]string, size)}
}

// Handler is a text handler writing into the ring at level. Put it behind
// NewRedactingHandler (New does).
func (r *Ring) Handler(level slog.Leveler) slog.Handler {
	return slog.NewTextHandler(r, &slog.HandlerOptions{Level: level})
}

// Write keeps each line of p (a handler writes one record per call).
func (r *Ring) Write(p []byte) (int, error) {
	n := len(p)
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(p) > 0 {
		line := p
		if i := bytes.IndexByte(p, '\n'); i >= 0 {
			line, p = p[:i], p[i+1:]
		} else {
			p = nil
		}
		if len(line) == 0 {
			continue
		}
		if len(line) > maxRingLine {
			line = append(line[:maxRingLine:maxRingLine], " …"...)
		}
		r.lines[r.next] = string(bytes.ToValidUTF8(line, []byte("?")))
		r.next = (r.next + 1) % len(r.lines)
		if r.next == 0 {
			r.full = true
		}
	}
	return n, nil
}

// Recent returns at most n of the newest lines, oldest first (all kept lines when n <= 0).
func (r *Ring) Recent(n int) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	count := r.next
	if r.full {
		count = len(r.lines)
	}
	if n <= 0 || n > count {
		n = count
	}
	out := make([]string, 0, n)
	start := r.next - n
	if start < 0 {
		start += len(r.lines)
	}
	for i := range n {
		out = append(out, r.lines[(start+i)%len(r.lines)])
	}
	return out
}
