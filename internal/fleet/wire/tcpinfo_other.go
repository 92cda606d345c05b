//go:build !linux

package wire

import "syscall"

// tcpSegments: segment counters are a Linux TCP_INFO feature; elsewhere Traffic carries
// payload bytes only and IPBytes underestimates.
func tcpSegments(syscall.RawConn) (in, out int64) { return 0, 0 }
