package pty

import (
	"bytes"
	"io"
	"os"
	"testing"
	"time"
)

func TestBytesCrossTheLineExactlyAndUnplugIsSeen(t *testing.T) {
	l, err := Open(t.TempDir(), "dev")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dev, err := os.OpenFile(l.Path(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	// Every byte value, including CR, LF, XON/XOFF and NUL, arrives unchanged both ways.
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	go func() { _, _ = dev.Write(all) }()
	got := make([]byte, len(all))
	if _, err := io.ReadFull(l.Emulator(), got); err != nil || !bytes.Equal(got, all) {
		t.Fatalf("device → emulator: %v", err)
	}
	go func() { _, _ = l.Emulator().Write(all) }()
	if _, err := io.ReadFull(dev, got); err != nil || !bytes.Equal(got, all) {
		t.Fatalf("emulator → device: %v", err)
	}

	// An emulator blocked reading its end is released by the unplug.
	em := l.Emulator()
	released := make(chan error, 1)
	go func() {
		_, err := em.Read(make([]byte, 1))
		released <- err
	}()
	time.Sleep(20 * time.Millisecond)
	l.Unplug()
	select {
	case err := <-released:
		if err == nil {
			t.Fatal("emulator read succeeded after unplug")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("emulator read still blocked after unplug")
	}
	_ = dev.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := dev.Read(got); err == nil {
		t.Fatal("read after unplug succeeded")
	}
	if err := l.Replug(); err != nil {
		t.Fatal(err)
	}
	dev2, err := os.OpenFile(l.Path(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer dev2.Close()
	go func() { _, _ = dev2.Write([]byte("again")) }()
	buf := make([]byte, 5)
	if _, err := io.ReadFull(l.Emulator(), buf); err != nil || string(buf) != "again" {
		t.Fatalf("after replug: %q %v", buf, err)
	}
}
