package wire

import (
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Connection states. A connection only moves forward: up → blackhole → dead, up → dead,
// any → closed (by its owner). Transitions other than closed happen under the Link's lock.
const (
	stUp int32 = iota
	stBlackhole
	stDead   // cut by the link: the socket is closed, every operation fails with a reset
	stClosed // closed by its owner
)

// conn is the wrapper: it counts into a Meter and obeys a Link. It has no goroutine of its
// own; everything happens in the caller's Read/Write/Close or in Link.Set.
type conn struct {
	net.Conn
	raw   syscall.RawConn // for TCP_INFO; nil when the inner conn is not a socket
	meter *Meter          // nil = not counted
	link  *Link           // nil = never partitioned
	state atomic.Int32

	// done is closed when the connection leaves the blackhole for good (killed at the heal
	// or by a Reset) or is closed, waking Reads blocked in the blackhole.
	done     chan struct{}
	doneOnce sync.Once
	shutOnce sync.Once
	shutErr  error

	// The read deadline is kept here as well as passed down, because a Read blocked in the
	// blackhole waits in the wrapper, not in the kernel. dlWake (made only while someone
	// waits) is closed when the deadline changes, as a real conn re-arms a pending Read.
	dlMu   sync.Mutex
	rdl    time.Time
	dlWake chan struct{}
}

func newConn(c net.Conn, m *Meter, l *Link) *conn {
	w := &conn{Conn: c, meter: m, link: l, done: make(chan struct{})}
	if sc, ok := c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			w.raw = raw
		}
	}
	return w
}

func (c *conn) segments() (in, out int64) { return tcpSegments(c.raw) }

func (c *conn) opErr(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.Conn.LocalAddr(), Addr: c.Conn.RemoteAddr(), Err: err}
}

func (c *conn) Read(b []byte) (int, error) {
	for {
		switch c.state.Load() {
		case stBlackhole:
			if err := c.waitBlackhole(); err != nil {
				return 0, err
			}
			continue
		case stDead:
			return 0, c.opErr("read", errReset)
		case stClosed:
			return 0, c.opErr("read", net.ErrClosed)
		}
		n, err := c.Conn.Read(b)
		switch c.state.Load() {
		case stUp:
			if n > 0 && c.meter != nil {
				c.meter.bytesIn.Add(int64(n))
			}
			return n, err
		case stBlackhole:
			// The cut came while this Read was in the kernel: what arrived never reached
			// the terminal. Drop it and block like any Read in the blackhole, unless the
			// inner Read failed on its own (its deadline, say).
			if err != nil {
				return 0, err
			}
		}
		// dead or closed: reported at the top of the loop
	}
}

// waitBlackhole blocks until the connection leaves the blackhole (nil: the caller
// re-examines the state) or the read deadline passes.
func (c *conn) waitBlackhole() error {
	for {
		c.dlMu.Lock()
		dl := c.rdl
		if c.dlWake == nil {
			c.dlWake = make(chan struct{})
		}
		wake := c.dlWake
		c.dlMu.Unlock()

		var expired <-chan time.Time
		var t *time.Timer
		if !dl.IsZero() {
			d := time.Until(dl)
			if d <= 0 {
				return c.opErr("read", os.ErrDeadlineExceeded)
			}
			t = time.NewTimer(d)
			expired = t.C
		}
		var err error
		again := false
		select {
		case <-c.done:
		case <-expired:
			err = c.opErr("read", os.ErrDeadlineExceeded)
		case <-wake:
			again = true // the deadline changed: look again
		}
		if t != nil {
			t.Stop()
		}
		if !again {
			return err
		}
	}
}

func (c *conn) Write(b []byte) (int, error) {
	switch c.state.Load() {
	case stBlackhole:
		return len(b), nil
	case stDead:
		return 0, c.opErr("write", errReset)
	case stClosed:
		return 0, c.opErr("write", net.ErrClosed)
	}
	n, err := c.Conn.Write(b)
	if n > 0 && c.meter != nil {
		c.meter.bytesOut.Add(int64(n))
	}
	if err != nil && c.state.Load() == stDead {
		// cut while in the kernel: report the cut, not "use of closed connection"
		err = c.opErr("write", errReset)
	}
	return n, err
}

func (c *conn) SetDeadline(t time.Time) error {
	c.setReadDeadline(t)
	return c.Conn.SetDeadline(t)
}

func (c *conn) SetReadDeadline(t time.Time) error {
	c.setReadDeadline(t)
	return c.Conn.SetReadDeadline(t)
}

func (c *conn) setReadDeadline(t time.Time) {
	c.dlMu.Lock()
	c.rdl = t
	if c.dlWake != nil {
		close(c.dlWake)
		c.dlWake = nil
	}
	c.dlMu.Unlock()
}

// Close closes the connection; its segment counts go to the Meter's closed total.
func (c *conn) Close() error {
	var prev int32
	if c.link != nil {
		prev = c.link.unregister(c)
	} else {
		prev = c.state.Swap(stClosed)
	}
	if prev == stClosed {
		return c.opErr("close", net.ErrClosed)
	}
	c.wake()
	return c.shut()
}

// kill is the link cutting the connection (caller holds the link's lock).
func (c *conn) kill() {
	c.state.Store(stDead)
	c.wake()
	_ = c.shut()
}

func (c *conn) wake() { c.doneOnce.Do(func() { close(c.done) }) }

// shut takes the final segment counts and closes the socket, once, whoever comes first.
func (c *conn) shut() error {
	c.shutOnce.Do(func() {
		if c.meter != nil {
			c.meter.detach(c)
		}
		c.shutErr = c.Conn.Close()
	})
	return c.shutErr
}
