package serial_test

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/posagent/posagent/board/sim/pty"
	"github.com/posagent/posagent/drivers/serial"
	"github.com/posagent/posagent/drivers/serial/serialtest"
)

// events collects a reconnecting port's state changes for the test to wait on.
func events() (chan serial.Event, func(serial.Event)) {
	ch := make(chan serial.Event, 16)
	return ch, func(e serial.Event) { ch <- e }
}

func next(t *testing.T, ch chan serial.Event, want serial.State) serial.Event {
	t.Helper()
	select {
	case e := <-ch:
		if e.State != want {
			t.Fatalf("event %+v, want %s", e, want)
		}
		return e
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s event", want)
	}
	return serial.Event{}
}

func TestReconnectingSurvivesUnplug(t *testing.T) {
	ch, on := events()
	line, r := serialtest.Reopen(t, serial.Config{}, serial.ReopenOptions{OnChange: on, Check: -1})
	if r.State() != serial.StateUp {
		t.Fatalf("state %s after opening a present device", r.State())
	}
	exchange(t, r, line.Emulator())

	readErr := make(chan error, 1)
	go func() {
		_, err := r.Read(make([]byte, 1))
		readErr <- err
	}()
	line.Unplug()
	if err := <-readErr; !serial.IsGone(err) {
		t.Fatalf("blocked Read after unplug: %v", err)
	}
	gone := next(t, ch, serial.StateGone)
	if !serial.IsGone(gone.Err) || gone.Port != line.Path() {
		t.Errorf("gone event %+v", gone)
	}
	// While gone, callers hear it at once rather than blocking.
	if _, err := r.Write([]byte("x")); !serial.IsGone(err) {
		t.Errorf("Write while gone: %v", err)
	}

	if err := line.Replug(); err != nil {
		t.Fatal(err)
	}
	back := next(t, ch, serial.StateUp)
	if back.Attempts < 1 {
		t.Errorf("back event %+v", back)
	}
	if err := r.WaitUp(t.Context()); err != nil {
		t.Fatal(err)
	}
	exchange(t, r, line.Emulator())
}

func TestReconnectingNoticesUnplugWithoutIO(t *testing.T) {
	ch, on := events()
	line, r := serialtest.Reopen(t, serial.Config{}, serial.ReopenOptions{OnChange: on, Check: 5 * time.Millisecond})
	line.Unplug()
	next(t, ch, serial.StateGone)
	if r.State() != serial.StateGone {
		t.Errorf("state %s", r.State())
	}
	if err := line.Replug(); err != nil {
		t.Fatal(err)
	}
	next(t, ch, serial.StateUp)
	exchange(t, r, line.Emulator())
}

func TestReconnectingWaitsForAbsentDevice(t *testing.T) {
	dir := t.TempDir()
	ch, on := events()
	cfg := serial.Config{Path: filepath.Join(dir, "ttyPRN"), Baud: 115200, ReadTimeout: time.Minute}
	r, err := serial.Reopen(t.Context(), cfg, serial.ReopenOptions{
		OnChange: on, Backoff: func(int) time.Duration { return 5 * time.Millisecond },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	gone := next(t, ch, serial.StateGone)
	if !serial.IsGone(gone.Err) {
		t.Errorf("first event %+v", gone)
	}
	if _, err := r.Read(make([]byte, 1)); !serial.IsGone(err) {
		t.Errorf("Read before the device exists: %v", err)
	}
	// The timeout set while gone applies to the port opened later.
	if err := r.SetReadTimeout(10 * time.Millisecond); err != nil {
		t.Fatal(err)
	}

	line, err := pty.Open(dir, "ttyPRN")
	if err != nil {
		t.Fatal(err)
	}
	defer line.Close()
	next(t, ch, serial.StateUp)
	if _, err := r.Read(make([]byte, 1)); !errors.Is(err, serial.ErrTimeout) {
		t.Errorf("Read with the timeout set while gone: %v", err)
	}
}

func TestReconnectingCloseUnblocksRead(t *testing.T) {
	_, r := serialtest.Reopen(t, serial.Config{}, serial.ReopenOptions{})
	readErr := make(chan error, 1)
	go func() {
		_, err := io.ReadFull(r, make([]byte, 1))
		readErr <- err
	}()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-readErr; !errors.Is(err, serial.ErrClosed) {
		t.Errorf("Read interrupted by Close: %v", err)
	}
	if err := r.WaitUp(context.Background()); !errors.Is(err, serial.ErrClosed) {
		t.Errorf("WaitUp after Close: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestReopenRejectsBadConfig(t *testing.T) {
	if _, err := serial.Reopen(t.Context(), serial.Config{Baud: 9600}, serial.ReopenOptions{}); !errors.Is(err, serial.ErrConfig) {
		t.Errorf("Reopen without a port: %v", err)
	}
}
