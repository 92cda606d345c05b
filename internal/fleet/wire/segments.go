package wire

import (
	"errors"
	"net"
	"sync"
	"syscall"
	"time"
)

// ErrNoSegments: the kernel's TCP segment counters cannot be read on this machine (not
// Linux, or a user-mode emulator that passes TCP_INFO through as a 4-byte option), so
// Traffic.IPBytes would be the payload alone. A measurement that bills headers must refuse
// to run rather than report a figure a third too low.
var ErrNoSegments = errors.New("wire: TCP segment counters (TCP_INFO) not available on this machine")

var segProbe struct {
	once sync.Once
	err  error
}

// SegmentsCounted reports whether Traffic's segment counts are real here: nil, or
// ErrNoSegments with the reason. The answer is probed once per process on a loopback
// connection that has certainly sent segments (it wrote a byte and had it read).
func SegmentsCounted() error {
	segProbe.once.Do(func() { segProbe.err = probeSegments() })
	return segProbe.err
}

func probeSegments() error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return errors.Join(ErrNoSegments, err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		s, err := l.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- s
	}()
	c, err := net.DialTimeout("tcp", l.Addr().String(), 5*time.Second)
	if err != nil {
		return errors.Join(ErrNoSegments, err)
	}
	defer c.Close()
	s := <-accepted
	if s == nil {
		return errors.Join(ErrNoSegments, errors.New("probe connection not accepted"))
	}
	defer s.Close()
	if _, err := c.Write([]byte{1}); err != nil {
		return errors.Join(ErrNoSegments, err)
	}
	if _, err := s.Read(make([]byte, 1)); err != nil {
		return errors.Join(ErrNoSegments, err)
	}
	var rc syscall.RawConn
	if sc, ok := c.(syscall.Conn); ok {
		rc, _ = sc.SyscallConn()
	}
	if _, out := tcpSegments(rc); out == 0 {
		return ErrNoSegments
	}
	return nil
}
