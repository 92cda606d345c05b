// Package pty gives a device emulator a real serial line: a pseudo-terminal whose device end a
// driver opens by path, exactly as it opens hardware, while the emulator reads and writes the
// other end.
//
// The device is reached through a stable symlink, because real devices come back under the
// same name after an unplug: Unplug closes the emulator's end (the driver sees the device go),
// Replug makes a fresh pseudo-terminal and points the symlink at it.
package pty

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// Line is a pseudo-terminal pair behind a stable device path.
type Line struct {
	path string // the symlink drivers open

	mu     sync.Mutex
	master *os.File
	slave  *os.File // held open so the line does not hang up before the driver opens it
}

// Open creates a line whose device end appears at dir/name.
func Open(dir, name string) (*Line, error) {
	l := &Line{path: filepath.Join(dir, name)}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *Line) open() error {
	raw, slave, err := pty.Open()
	if err != nil {
		return fmt.Errorf("pty: %w", err)
	}
	master, err := pollable(raw)
	if err != nil {
		slave.Close()
		return err
	}
	// Raw mode: a serial line carries bytes, not text; no echo, no CR/LF translation.
	if err := makeRaw(slave); err != nil {
		master.Close()
		slave.Close()
		return err
	}
	tmp := l.path + ".new"
	_ = os.Remove(tmp)
	if err := os.Symlink(slave.Name(), tmp); err != nil {
		master.Close()
		slave.Close()
		return fmt.Errorf("pty: %w", err)
	}
	if err := os.Rename(tmp, l.path); err != nil {
		master.Close()
		slave.Close()
		return fmt.Errorf("pty: %w", err)
	}
	l.mu.Lock()
	l.master, l.slave = master, slave
	l.mu.Unlock()
	return nil
}

// pollable re-opens the emulator's end under Go's poller. creack/pty hands it over in blocking
// mode, where Close cannot interrupt a goroutine blocked in Read: an Unplug would then go
// unnoticed by the emulator and, through it, by the driver.
func pollable(f *os.File) (*os.File, error) {
	defer f.Close()
	fd, err := unix.Dup(int(f.Fd()))
	if err != nil {
		return nil, fmt.Errorf("pty: dup: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("pty: %w", err)
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}

func makeRaw(f *os.File) error {
	t, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	if err != nil {
		return fmt.Errorf("pty: termios: %w", err)
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, t); err != nil {
		return fmt.Errorf("pty: termios: %w", err)
	}
	return nil
}

// Path is the device path a driver opens.
func (l *Line) Path() string { return l.path }

// Emulator is the emulator's end of the line: what the "device" reads and writes.
func (l *Line) Emulator() *os.File {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.master
}

// Unplug closes the emulator's end: the driver's reads and writes fail as on a real unplug,
// and the path goes away as a device node does. (Left in place, the link would point at a
// freed /dev/pts number that another process's terminal may take next, and a driver
// reopening the path would find a stranger on the line.)
func (l *Line) Unplug() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.master != nil {
		_ = os.Remove(l.path)
		l.master.Close()
		l.slave.Close()
		l.master, l.slave = nil, nil
	}
}

// Replug brings the device back under the same path with a fresh line.
func (l *Line) Replug() error {
	l.Unplug()
	return l.open()
}

// Close removes the line and its path.
func (l *Line) Close() error {
	l.Unplug()
	if err := os.Remove(l.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
