package wire

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
)

// Mode is the state of a terminal's network path.
type Mode int

// Partition modes. Up heals.
//
//   - Blackhole: a dead radio path. Writes are swallowed (reported as written, not counted),
//     reads block (until the link changes, the connection is closed or its read deadline
//     passes), new dials hang until the dial timeout then fail: only keepalive notices it.
//   - Reset: the modem reports the loss. Live connections are closed at once (their Reads
//     and Writes fail with a connection reset), new dials fail at once (network
//     unreachable).
//
// Healing (Set(Up)) lets new dials through. A connection that lived through a blackhole
// does NOT come back: its byte stream has lost whatever was swallowed, so it cannot carry
// MQTT any more, and a mobile NAT that dropped the flow's state would answer its next
// segment with a reset anyway. At the heal such a connection is closed and its blocked
// Read (and any later Read or Write) fails with a connection reset, which is what the
// terminal would see on its first packet after coverage returns.
const (
	Up Mode = iota
	Blackhole
	Reset
)

// String returns "up", "blackhole" or "reset".
func (m Mode) String() string {
	switch m {
	case Up:
		return "up"
	case Blackhole:
		return "blackhole"
	case Reset:
		return "reset"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ParseMode is the inverse of Mode.String, for flags.
func ParseMode(s string) (Mode, error) {
	for _, m := range []Mode{Up, Blackhole, Reset} {
		if m.String() == s {
			return m, nil
		}
	}
	return Up, fmt.Errorf("wire: unknown link mode %q (want up, blackhole or reset)", s)
}

// ErrPartitioned is in the chain of every error the wrapper makes up because a Link is not
// Up (alongside the errno a real network would give: ENETUNREACH, ECONNRESET, or a
// timeout), so callers can tell a simulated cut from a real failure.
var ErrPartitioned = errors.New("wire: link partitioned")

// linkError is the made-up network error: it matches ErrPartitioned and the errno, and
// reports Timeout like the net package's errors so that net.Error users behave as with a
// real network.
type linkError struct {
	msg     string
	cause   error
	timeout bool
}

func (e *linkError) Error() string   { return e.msg }
func (e *linkError) Timeout() bool   { return e.timeout }
func (e *linkError) Temporary() bool { return e.timeout }
func (e *linkError) Unwrap() []error { return []error{ErrPartitioned, e.cause} }

var (
	errUnreachable = &linkError{msg: "network is unreachable (link reset)", cause: syscall.ENETUNREACH}
	errReset       = &linkError{msg: "connection reset by peer (link cut)", cause: syscall.ECONNRESET}
	errDialTimeout = &linkError{msg: "i/o timeout (link blackholed)", cause: os.ErrDeadlineExceeded, timeout: true}
)

// Link is one terminal's network path: the switch a scenario flips to partition it. The
// zero value is Up. Safe for concurrent use.
type Link struct {
	mode atomic.Int32

	mu    sync.Mutex
	conns []*conn       // live connections dialled through this link
	heal  chan struct{} // non-nil while not Up; closed when healed (wakes hanging dials)
}

// Mode returns the current mode.
func (l *Link) Mode() Mode { return Mode(l.mode.Load()) }

// Set switches the link; it applies to live connections and future dials. An unknown mode
// is ignored.
func (l *Link) Set(m Mode) {
	if m != Up && m != Blackhole && m != Reset {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if Mode(l.mode.Load()) == m {
		return
	}
	l.mode.Store(int32(m))
	switch m {
	case Up:
		// Connections that were blackholed lost bytes: they die now (see Mode).
		live := l.conns[:0]
		for _, c := range l.conns {
			if c.state.Load() == stBlackhole {
				c.kill()
				continue
			}
			live = append(live, c)
		}
		clear(l.conns[len(live):])
		l.conns = live
		close(l.heal)
		l.heal = nil
	case Blackhole:
		for _, c := range l.conns {
			c.state.CompareAndSwap(stUp, stBlackhole)
		}
		if l.heal == nil {
			l.heal = make(chan struct{})
		}
	case Reset:
		for _, c := range l.conns {
			c.kill()
		}
		clear(l.conns)
		l.conns = l.conns[:0]
		if l.heal == nil {
			l.heal = make(chan struct{})
		}
	}
}

// register puts a freshly dialled connection under the link's current mode and, under the
// same lock (so that a concurrent Set cannot cut it half-registered), on its meter. A dial
// that completes just as the link is Reset is refused like one that started after.
func (l *Link) register(c *conn) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch Mode(l.mode.Load()) {
	case Reset:
		return errUnreachable
	case Blackhole:
		c.state.Store(stBlackhole)
	}
	if c.meter != nil {
		c.meter.attach(c)
	}
	l.conns = append(l.conns, c)
	return nil
}

// unregister marks c closed by its owner and returns its previous state.
func (l *Link) unregister(c *conn) int32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.conns = removeConn(l.conns, c)
	return c.state.Swap(stClosed)
}

// gate reports whether a dial may go ahead now: nil if Up, errUnreachable if Reset, or
// (when Blackhole) a channel closed at the next heal.
func (l *Link) gate() (<-chan struct{}, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch Mode(l.mode.Load()) {
	case Reset:
		return nil, errUnreachable
	case Blackhole:
		return l.heal, nil
	}
	return nil, nil
}
