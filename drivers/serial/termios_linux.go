package serial

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

func setHardwareFlow(f *os.File) error {
	fd := int(f.Fd())
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return err
	}
	t.Cflag |= unix.CRTSCTS
	return unix.IoctlSetTermios(fd, unix.TCSETS, t)
}

// deviceID is the device number behind path (following symlinks); 0 if there is none.
func deviceID(path string) uint64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0
	}
	return uint64(st.Rdev)
}
