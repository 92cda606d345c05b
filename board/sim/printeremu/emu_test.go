package printeremu

import (
	"bytes"
	"errors"
	"image/png"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/posagent/posagent/drivers/serial"
	"github.com/posagent/posagent/drivers/serial/serialtest"
)

// host is the test's end of the line: a real serial port on the pty.
type host struct {
	t    *testing.T
	port serial.Port
	flow []byte // XON/XOFF seen while reading replies
}

func start(t *testing.T, cfg Config) (*Emulator, *host) {
	t.Helper()
	line := serialtest.Line(t)
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	e, err := New(line, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	p, err := serial.Open(serialtest.Config(line, serial.Config{ReadTimeout: 20 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return e, &host{t: t, port: p}
}

func (h *host) send(b ...byte) {
	h.t.Helper()
	if _, err := h.port.Write(b); err != nil {
		h.t.Fatal(err)
	}
}

// replies reads until n reply bytes (not XON/XOFF) arrived or the time is up.
func (h *host) replies(n int, within time.Duration) []byte {
	h.t.Helper()
	var out []byte
	deadline := time.Now().Add(within)
	buf := make([]byte, 64)
	for len(out) < n && time.Now().Before(deadline) {
		k, err := h.port.Read(buf)
		for _, b := range buf[:k] {
			if b == XON || b == XOFF {
				h.flow = append(h.flow, b)
			} else {
				out = append(out, b)
			}
		}
		if err != nil && !errors.Is(err, serial.ErrTimeout) {
			h.t.Fatal(err)
		}
	}
	return out
}

func (h *host) status(n byte) byte {
	h.t.Helper()
	h.send(0x10, 0x04, n)
	r := h.replies(1, 2*time.Second)
	if len(r) != 1 {
		h.t.Fatalf("no answer to DLE EOT %d", n)
	}
	return r[0]
}

var barrier42 = []byte{0x1D, '(', 'H', 6, 0, 48, 48, '0', '0', '4', '2'}
var answer42 = []byte{0x37, 0x22, '0', '0', '4', '2', 0x00}

func TestEmulatorStatus(t *testing.T) {
	e, h := start(t, Config{})
	for n := byte(1); n <= 4; n++ {
		if s := h.status(n); s != 0x12 {
			t.Errorf("DLE EOT %d = %#02x on a healthy printer", n, s)
		}
	}
	e.SetCoverOpen(true)
	e.SetPaperNearEnd(true)
	if s := h.status(1); s != 0x1A {
		t.Errorf("printer status %#02x, want offline 0x1a", s)
	}
	if s := h.status(2); s != 0x16 {
		t.Errorf("offline cause %#02x, want cover open 0x16", s)
	}
	if s := h.status(4); s != 0x1E {
		t.Errorf("paper %#02x, want near end 0x1e", s)
	}
	if !bytes.Contains(h.flow, []byte{XOFF}) {
		t.Error("no XOFF when the printer went offline")
	}
	e.SetCoverOpen(false)
	e.SetPaperOut(true)
	if s := h.status(4); s != 0x7E {
		t.Errorf("paper %#02x, want out and near end 0x7e", s)
	}
	e.SetCutterError(true)
	if s := h.status(3); s != 0x1A {
		t.Errorf("error cause %#02x, want autocutter 0x1a", s)
	}
	e.SetCutterError(false)
	e.LoadPaper()
	h.flow = nil
	if s := h.status(1); s != 0x12 {
		t.Errorf("printer status %#02x after loading paper", s)
	}
	if !bytes.Contains(h.flow, []byte{XON}) {
		t.Error("no XON when the printer came back")
	}
}

func TestEmulatorProcessIDComesAfterPrinting(t *testing.T) {
	e, h := start(t, Config{PrintSpeed: 100})
	h.send(0x1B, '@')
	for i := 0; i < 10; i++ {
		h.send([]byte("line\n")...)
	}
	h.send(barrier42...)
	if got := h.replies(len(answer42), 5*time.Second); !bytes.Equal(got, answer42) {
		t.Fatalf("answer % x", got)
	}
	if n := strings.Count(e.Pending(), "line\n"); n != 10 {
		t.Errorf("answered with %d of 10 lines printed", n)
	}
}

func TestEmulatorPaperOutKeepsBuffer(t *testing.T) {
	e, h := start(t, Config{})
	e.PaperOutAfter(2)
	h.send(0x1B, '@')
	h.send([]byte("1\n2\n3\n4\n")...)
	h.send(barrier42...)
	if got := h.replies(1, 300*time.Millisecond); len(got) != 0 {
		t.Fatalf("answered % x without paper", got)
	}
	if s := h.status(4); s != 0x72 {
		t.Errorf("paper status %#02x, want out 0x72", s)
	}
	if !bytes.Contains(h.flow, []byte{XOFF}) {
		t.Error("no XOFF at paper out")
	}
	if got := e.Pending(); got != "1\n2\n" {
		t.Errorf("printed %q before the paper ran out", got)
	}
	e.LoadPaper()
	if got := h.replies(len(answer42), 2*time.Second); !bytes.Equal(got, answer42) {
		t.Fatalf("answer after loading paper % x", got)
	}
	if got := e.Pending(); got != "1\n2\n3\n4\n" {
		t.Errorf("printed %q", got)
	}
}

func TestEmulatorClearBuffers(t *testing.T) {
	e, h := start(t, Config{})
	e.PaperOutAfter(1)
	h.send([]byte("1\n2\n3\n")...)
	h.send(barrier42...)
	h.replies(1, 200*time.Millisecond) // nothing comes: the printer waits for paper
	h.send(0x10, 0x14, 8, 1, 3, 20, 1, 6, 2, 8)
	if got := h.replies(3, 2*time.Second); !bytes.Equal(got, []byte{0x37, 0x25, 0x00}) {
		t.Fatalf("clear answered % x", got)
	}
	e.LoadPaper()
	h.send([]byte("after\n")...)
	h.send(barrier42...)
	if got := h.replies(len(answer42), 2*time.Second); !bytes.Equal(got, answer42) {
		t.Fatalf("answer % x", got)
	}
	if got := e.Pending(); got != "1\nafter\n" {
		t.Errorf("printed %q: the cleared lines came back", got)
	}
	if s := e.Stats(); s.Clears != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestEmulatorOverflowWhenXOFFIgnored(t *testing.T) {
	e, h := start(t, Config{BufferSize: 512, XOffFree: 128, XOnFree: 256, Unpaced: true})
	e.SetCoverOpen(true) // nothing is printed, so the buffer only fills
	h.send(bytes.Repeat([]byte("x"), 2000)...)
	h.send(0x10, 0x04, 1) // real-time requests still get through a full buffer
	if got := h.replies(1, 2*time.Second); len(got) != 1 || got[0] != 0x1A {
		t.Fatalf("status % x through a full buffer", got)
	}
	if s := e.Stats(); s.Overflow != 2000-512 || s.XOFF == 0 {
		t.Errorf("stats %+v, want %d bytes lost", s, 2000-512)
	}
}

func TestEmulatorFaults(t *testing.T) {
	e, h := start(t, Config{Seed: 1})
	e.SetFaults(Faults{Truncate: true})
	h.send(0x10, 0x04, 1)
	h.send(barrier42...)
	if got := h.replies(7, 300*time.Millisecond); !bytes.Equal(got, answer42[:6]) {
		t.Errorf("truncated replies % x, want the answer without its NUL", got)
	}

	e.SetFaults(Faults{Corrupt: true})
	h.send(0x10, 0x04, 1)
	if got := h.replies(1, time.Second); len(got) != 1 || got[0]&0x80 == 0 {
		t.Errorf("corrupted status % x", got)
	}

	e.SetFaults(Faults{Silent: true})
	e.SetCoverOpen(true)
	h.send(0x10, 0x04, 1)
	if got := h.replies(1, 300*time.Millisecond); len(got) != 0 || len(h.flow) != 0 {
		t.Errorf("a silent printer said % x and flow % x", got, h.flow)
	}
	e.SetCoverOpen(false)

	e.SetFaults(Faults{Delay: 300 * time.Millisecond})
	t0 := time.Now()
	h.send(0x10, 0x04, 1)
	if got := h.replies(1, 2*time.Second); len(got) != 1 {
		t.Fatal("no delayed answer")
	}
	if d := time.Since(t0); d < 300*time.Millisecond {
		t.Errorf("answered after %v, before the delay", d)
	}

	e.SetFaults(Faults{Noise: true})
	if got := h.replies(20, 3*time.Second); len(got)+len(h.flow) < 20 {
		t.Errorf("only %d noise bytes", len(got))
	}
	e.SetFaults(Faults{})
	time.Sleep(50 * time.Millisecond)
	h.port.ResetInputBuffer()
	if s := h.status(1); s != 0x12 {
		t.Errorf("status %#02x after the faults", s)
	}
}

func TestEmulatorUnplugReplug(t *testing.T) {
	line := serialtest.Line(t)
	e, err := New(line, Config{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	cfg := serialtest.Config(line, serial.Config{ReadTimeout: 20 * time.Millisecond})
	p, err := serial.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := &host{t: t, port: p}
	if s := h.status(1); s != 0x12 {
		t.Fatalf("status %#02x", s)
	}
	e.Unplug()
	if _, err := p.Read(make([]byte, 1)); !serial.IsGone(err) {
		t.Fatalf("read after unplug: %v", err)
	}
	p.Close()
	if err := e.Replug(); err != nil {
		t.Fatal(err)
	}
	p, err = serial.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	h.port = p
	if s := h.status(1); s != 0x12 {
		t.Fatalf("status %#02x after replug", s)
	}
}

func TestEmulatorWritesReceipts(t *testing.T) {
	dir := t.TempDir()
	e, h := start(t, Config{OutDir: dir, Dots: 576})
	h.send(0x1B, '@')
	h.send([]byte("hello\n")...)
	h.send(0x1D, 'V', 66, 0)
	h.send(barrier42...)
	if got := h.replies(len(answer42), 2*time.Second); !bytes.Equal(got, answer42) {
		t.Fatalf("answer % x", got)
	}
	rs := e.Receipts()
	if len(rs) != 1 || rs[0].Text != "hello\n" || rs[0].PNGPath == "" {
		t.Fatalf("receipts %+v", rs)
	}
	txt, err := os.ReadFile(rs[0].TextPath)
	if err != nil || string(txt) != "hello\n" {
		t.Errorf("text file %q, %v", txt, err)
	}
	f, err := os.Open(rs[0].PNGPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if img.Bounds().Dx() != 576 || img.Bounds().Dy() != 30 {
		t.Errorf("png %v", img.Bounds())
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
