//go:build linux

package wire

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// tcpSegments reads the kernel's segment counters of a TCP socket; an unreadable socket
// (already closed, not TCP) counts as zero rather than failing the caller's accounting.
func tcpSegments(rc syscall.RawConn) (in, out int64) {
	if rc == nil {
		return 0, 0
	}
	var info *unix.TCPInfo
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		info, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil || gerr != nil {
		return 0, 0
	}
	return int64(info.Segs_in), int64(info.Segs_out)
}
