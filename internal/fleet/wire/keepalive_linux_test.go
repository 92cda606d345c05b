//go:build linux

package wire

import (
	"context"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestTCPKeepAliveOffByDefault reads SO_KEEPALIVE off the dialled socket: off unless the
// Dialer asks for probes, as on the agent's own TMS link.
func TestTCPKeepAliveOffByDefault(t *testing.T) {
	srv := newServer(t)
	for _, tc := range []struct {
		interval time.Duration
		want     int
	}{{0, 0}, {30 * time.Second, 1}} {
		d := &Dialer{TCPKeepAlive: tc.interval}
		c, err := d.Dial(context.Background(), srv.addr(), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		srv.accept(t)
		var on int
		var gerr error
		if err := c.(*conn).raw.Control(func(fd uintptr) {
			on, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE)
		}); err != nil || gerr != nil {
			t.Fatal(err, gerr)
		}
		if on != tc.want {
			t.Errorf("TCPKeepAlive %v: SO_KEEPALIVE %d, want %d", tc.interval, on, tc.want)
		}
		c.Close()
	}
}
