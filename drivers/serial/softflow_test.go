package serial_test

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/posagent/posagent/drivers/serial"
	"github.com/posagent/posagent/drivers/serial/serialtest"
)

const (
	xon  = 0x11
	xoff = 0x13
)

// readByte reads one data byte; every flow byte sent before it has been seen by then.
func readByte(t *testing.T, p serial.Port) byte {
	t.Helper()
	b := make([]byte, 1)
	if _, err := io.ReadFull(p, b); err != nil {
		t.Fatal(err)
	}
	return b[0]
}

func TestXONXOFFPausesWritesAndHidesFlowBytes(t *testing.T) {
	line, p := serialtest.Open(t, serial.Config{Flow: serial.FlowXONXOFF, WriteTimeout: 50 * time.Millisecond})
	emu := line.Emulator()

	if _, err := emu.Write([]byte{xoff, 'A'}); err != nil {
		t.Fatal(err)
	}
	if b := readByte(t, p); b != 'A' {
		t.Fatalf("read %q, want the data byte after XOFF", b)
	}
	// Stopped: nothing goes out, and the writer is not held for ever.
	if n, err := p.Write([]byte("held")); n != 0 || !errors.Is(err, serial.ErrFlowStopped) {
		t.Fatalf("Write under XOFF = %d, %v", n, err)
	}

	if _, err := emu.Write([]byte{xon, 'B'}); err != nil {
		t.Fatal(err)
	}
	if b := readByte(t, p); b != 'B' {
		t.Fatalf("read %q, want the data byte after XON", b)
	}
	long := bytes.Repeat([]byte("0123456789"), 300) // many chunks
	errc := make(chan error, 1)
	go func() { _, err := p.Write(long); errc <- err }()
	got := make([]byte, len(long))
	if _, err := io.ReadFull(emu, got); err != nil || !bytes.Equal(got, long) {
		t.Fatalf("after XON the device got %d bytes, %v", len(got), err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func TestXONXOFFWriterWaitsForXON(t *testing.T) {
	// No write timeout: the writer waits until the device resumes.
	line, p := serialtest.Open(t, serial.Config{Flow: serial.FlowXONXOFF})
	emu := line.Emulator()
	if _, err := emu.Write([]byte{xoff, 'A'}); err != nil {
		t.Fatal(err)
	}
	readByte(t, p)
	errc := make(chan error, 1)
	go func() { _, err := p.Write([]byte("later")); errc <- err }()
	if _, err := emu.Write([]byte{xon}); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(emu, got); err != nil || string(got) != "later" {
		t.Fatalf("device got %q, %v", got, err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func TestXONXOFFReadSideAndUnplug(t *testing.T) {
	line, p := serialtest.Open(t, serial.Config{Flow: serial.FlowXONXOFF, ReadTimeout: 20 * time.Millisecond})
	emu := line.Emulator()
	if _, err := emu.Write([]byte{'a', xoff, 'b', xon, 'c', xoff}); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 3)
	if _, err := io.ReadFull(p, got); err != nil || string(got) != "abc" {
		t.Fatalf("read %q, %v: flow bytes must not reach the driver", got, err)
	}
	if _, err := p.Read(got); !errors.Is(err, serial.ErrTimeout) {
		t.Fatalf("silent line: %v", err)
	}
	// Held by XOFF when the device goes away: the writer learns it is gone.
	errc := make(chan error, 1)
	go func() { _, err := p.Write([]byte("x")); errc <- err }()
	line.Unplug()
	if err := <-errc; !serial.IsGone(err) {
		t.Errorf("write held by XOFF, then unplug: %v", err)
	}
	if _, err := p.Read(got); !serial.IsGone(err) {
		t.Errorf("read after unplug: %v", err)
	}
}

func TestCloseReleasesWriterHeldByXOFF(t *testing.T) {
	line, p := serialtest.Open(t, serial.Config{Flow: serial.FlowXONXOFF})
	if _, err := line.Emulator().Write([]byte{xoff, 'A'}); err != nil {
		t.Fatal(err)
	}
	readByte(t, p)
	errc := make(chan error, 1)
	go func() { _, err := p.Write([]byte("never")); errc <- err }()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, serial.ErrClosed) {
		t.Errorf("held write after Close: %v", err)
	}
}
