package serial

import (
	"io"
	"sync"
	"time"

	bug "go.bug.st/serial"
)

// Software XON/XOFF (see FlowXONXOFF for the trade-off).
const (
	xon  = 0x11
	xoff = 0x13

	// softBufMax bounds what the pump holds for a driver that is not reading; past it the
	// pump stops reading and the kernel's buffer takes over.
	softBufMax = 64 << 10
)

// softFlow owns all reading of a port with software flow control. The kernel leaves XON and
// XOFF alone (the library clears IXON), so they arrive as data; the pump takes them out and
// keeps the paused state that Write obeys.
type softFlow struct {
	raw          bug.Port
	chunk        int
	writeTimeout time.Duration
	done         chan struct{}

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change of the fields below
	buf     []byte
	paused  bool
	err     error // the pump's last read error: the port is finished
	closed  bool
}

func startSoftFlow(raw bug.Port, cfg Config) *softFlow {
	// About 10 ms of line time per chunk: after an XOFF at most one chunk (plus the UART's
	// FIFO) still goes out, and the pause between chunks costs a few per cent of the rate.
	chunk := max(cfg.Baud/1000, 16)
	s := &softFlow{
		raw:          raw,
		chunk:        chunk,
		writeTimeout: cfg.WriteTimeout,
		done:         make(chan struct{}),
		changed:      make(chan struct{}),
	}
	go s.pump()
	return s
}

// broadcast wakes every waiter; s.mu must be held.
func (s *softFlow) broadcast() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *softFlow) pump() {
	defer close(s.done)
	tmp := make([]byte, 512)
	for {
		s.mu.Lock()
		for len(s.buf) >= softBufMax && !s.closed {
			ch := s.changed
			s.mu.Unlock()
			<-ch
			s.mu.Lock()
		}
		closed := s.closed
		s.mu.Unlock()
		if closed {
			return
		}
		// No timeout: Close unblocks the read.
		n, err := s.raw.Read(tmp)
		s.mu.Lock()
		for _, c := range tmp[:n] {
			switch c {
			case xon:
				s.paused = false
			case xoff:
				s.paused = true
			default:
				s.buf = append(s.buf, c)
			}
		}
		if err != nil {
			s.err = err
		}
		if n > 0 || err != nil {
			s.broadcast()
		}
		s.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// read waits up to timeout (0: for ever) for data. Buffered data is delivered before an
// error the pump met after it.
func (s *softFlow) read(b []byte, timeout time.Duration) (int, error) {
	var expired <-chan time.Time
	for {
		s.mu.Lock()
		if len(s.buf) > 0 {
			full := len(s.buf) >= softBufMax
			n := copy(b, s.buf)
			s.buf = s.buf[:copy(s.buf, s.buf[n:])]
			if full {
				s.broadcast()
			}
			s.mu.Unlock()
			return n, nil
		}
		if err := s.finished(); err != nil {
			s.mu.Unlock()
			return 0, err
		}
		ch := s.changed
		s.mu.Unlock()
		if expired == nil && timeout > 0 {
			t := time.NewTimer(timeout)
			defer t.Stop()
			expired = t.C
		}
		select {
		case <-ch:
		case <-expired:
			return 0, ErrTimeout
		}
	}
}

// finished is the error that ends all I/O, or nil; s.mu must be held.
func (s *softFlow) finished() error {
	if s.closed {
		return ErrClosed
	}
	return s.err
}

func (s *softFlow) write(b []byte) (int, error) {
	written := 0
	for written < len(b) {
		if err := s.waitResumed(); err != nil {
			return written, err
		}
		end := min(written+s.chunk, len(b))
		for written < end {
			n, err := s.raw.Write(b[written:end])
			written += n
			if err != nil {
				return written, err
			}
			if n == 0 {
				return written, io.ErrShortWrite
			}
		}
		// Out of the kernel's buffer before the next chunk, or an XOFF would only take effect
		// after everything queued there.
		if err := s.raw.Drain(); err != nil {
			return written, err
		}
	}
	return written, nil
}

func (s *softFlow) waitResumed() error {
	var expired <-chan time.Time
	for {
		s.mu.Lock()
		if err := s.finished(); err != nil {
			s.mu.Unlock()
			return err
		}
		if !s.paused {
			s.mu.Unlock()
			return nil
		}
		ch := s.changed
		s.mu.Unlock()
		if expired == nil && s.writeTimeout > 0 {
			t := time.NewTimer(s.writeTimeout)
			defer t.Stop()
			expired = t.C
		}
		select {
		case <-ch:
		case <-expired:
			return ErrFlowStopped
		}
	}
}

func (s *softFlow) discard() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf = s.buf[:0]
	s.broadcast()
}

// close wakes every waiter; the pump itself ends when the library port is closed.
func (s *softFlow) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.broadcast()
}

func (s *softFlow) wait() { <-s.done }
