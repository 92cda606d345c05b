package serial

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	bug "go.bug.st/serial"
)

var (
	// ErrConfig is wrapped by every error of Config.Validate.
	ErrConfig = errors.New("serial: invalid config")
	// ErrClosed is returned by every method of a port after its own Close, including a Read
	// that Close interrupted. It is not ErrGone: nothing happened to the device.
	ErrClosed = errors.New("serial: port closed")
	// ErrFlowStopped is returned by Write when the device held output stopped (XOFF) longer
	// than Config.WriteTimeout; the bytes counted as written have left the port.
	ErrFlowStopped = errors.New("serial: output stopped by the device (XOFF)")
)

// Open opens and sets up the port cfg names. Errors wrap ErrConfig for a bad cfg and ErrGone
// when the device is not there (no such file, no matching USB device, hung up), so a caller
// can tell "plug it in" from "fix the configuration".
func Open(cfg Config) (Port, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	path := cfg.Path
	if cfg.USB != nil {
		var err error
		if path, err = findUSB(*cfg.USB); err != nil {
			return nil, err
		}
	}
	p, err := openPath(path, cfg)
	if err != nil {
		return nil, err
	}
	if cfg.Modem != nil {
		return &modemPort{p}, nil
	}
	return p, nil
}

func openPath(path string, cfg Config) (*port, error) {
	mode := &bug.Mode{
		BaudRate: cfg.Baud,
		DataBits: cfg.dataBits(),
		Parity:   bug.NoParity,
		StopBits: bug.OneStopBit,
	}
	switch cfg.Parity {
	case ParityEven:
		mode.Parity = bug.EvenParity
	case ParityOdd:
		mode.Parity = bug.OddParity
	}
	if cfg.StopBits == 2 {
		mode.StopBits = bug.TwoStopBits
	}
	if cfg.Modem != nil {
		mode.InitialStatusBits = &bug.ModemOutputBits{DTR: cfg.Modem.DTR, RTS: cfg.Modem.RTS}
	}
	// The library has no flow-control setting (it clears CRTSCTS on open), so the kernel flag
	// is set through a descriptor of our own, opened before the library takes the port
	// exclusively; termios settings belong to the device, not to a descriptor.
	var ctl *os.File
	if cfg.Flow == FlowRTSCTS {
		f, err := os.OpenFile(path, os.O_RDWR|syscall.O_NOCTTY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return nil, openError(path, err)
		}
		defer f.Close()
		ctl = f
	}
	raw, err := bug.Open(path, mode)
	if err != nil {
		return nil, openError(path, err)
	}
	if ctl != nil {
		if err := setHardwareFlow(ctl); err != nil {
			raw.Close()
			return nil, fmt.Errorf("serial %s: rts/cts flow control: %w", path, err)
		}
	}
	p := &port{raw: raw, path: path, dev: deviceID(path)}
	if cfg.Flow == FlowXONXOFF {
		p.soft = startSoftFlow(raw, cfg)
	}
	if err := p.SetReadTimeout(cfg.ReadTimeout); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// openError classifies a failed open: a missing or vanished device is ErrGone.
func openError(path string, err error) error {
	var pe *bug.PortError
	if errors.As(err, &pe) && pe.Code() == bug.PortNotFound || errors.Is(err, os.ErrNotExist) || goneErrno(err) {
		return &goneError{path: path, op: "open", cause: err}
	}
	return fmt.Errorf("serial %s: open: %w", path, err)
}

// port adapts a go.bug.st/serial port to the Port contract.
type port struct {
	raw  bug.Port
	path string
	dev  uint64 // device number at open; 0 if unknown
	soft *softFlow

	closed atomic.Bool
	gone   atomic.Pointer[goneError]

	// rmu orders Read and SetReadTimeout: the library keeps the timeout in a plain field that
	// Read uses.
	rmu     sync.Mutex
	timeout time.Duration
	// wmu keeps the descriptor from being closed (and its number reused by another open)
	// while a write, drain or flush is using it.
	wmu sync.RWMutex
	// writing counts writes and drains under way, which flow control may hold up.
	writing atomic.Int32
}

var _ Port = (*port)(nil)

// check is the error for an operation that must not touch the device any more.
func (p *port) check() error {
	if p.closed.Load() {
		return ErrClosed
	}
	if g := p.gone.Load(); g != nil {
		return g
	}
	return nil
}

// fail turns a library error into the contract's: ErrClosed after Close, ErrGone (for good)
// when the device went away.
func (p *port) fail(op string, err error) error {
	if p.closed.Load() {
		return ErrClosed
	}
	if g := p.gone.Load(); g != nil {
		return g
	}
	var pe *bug.PortError
	if errors.As(err, &pe) && pe.Code() == bug.PortClosed || goneErrno(err) {
		g := &goneError{path: p.path, op: op, cause: err}
		if p.gone.CompareAndSwap(nil, g) {
			return g
		}
		return p.gone.Load()
	}
	return fmt.Errorf("serial %s: %s: %w", p.path, op, err)
}

// goneErrno reports errors with which the kernel says the device is no longer there: EIO
// after a hang-up or USB unplug, ENXIO/ENODEV for a vanished device, EBADF when the library
// closed the descriptor under us.
func goneErrno(err error) bool {
	for _, e := range []syscall.Errno{syscall.EIO, syscall.ENXIO, syscall.ENODEV, syscall.EBADF, syscall.EPIPE} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func (p *port) Read(b []byte) (int, error) {
	if err := p.check(); err != nil {
		return 0, err
	}
	if len(b) == 0 {
		return 0, nil
	}
	if p.soft != nil {
		p.rmu.Lock()
		d := p.timeout
		p.rmu.Unlock()
		n, err := p.soft.read(b, d)
		if err != nil && !errors.Is(err, ErrTimeout) {
			return n, p.fail("read", err)
		}
		return n, err
	}
	p.rmu.Lock()
	n, err := p.raw.Read(b)
	p.rmu.Unlock()
	if err != nil {
		return n, p.fail("read", err)
	}
	if n == 0 {
		// The library's way of saying the timeout passed.
		return 0, ErrTimeout
	}
	return n, nil
}

func (p *port) Write(b []byte) (int, error) {
	p.wmu.RLock()
	defer p.wmu.RUnlock()
	p.writing.Add(1)
	defer p.writing.Add(-1)
	if err := p.check(); err != nil {
		return 0, err
	}
	if p.soft != nil {
		n, err := p.soft.write(b)
		if err != nil && !errors.Is(err, ErrFlowStopped) {
			return n, p.fail("write", err)
		}
		return n, err
	}
	written := 0
	for written < len(b) {
		n, err := p.raw.Write(b[written:])
		written += n
		if err != nil {
			return written, p.fail("write", err)
		}
		if n == 0 {
			return written, fmt.Errorf("serial %s: write: %w", p.path, io.ErrShortWrite)
		}
	}
	return written, nil
}

func (p *port) SetReadTimeout(d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("serial %s: negative read timeout %v", p.path, d)
	}
	if err := p.check(); err != nil {
		return err
	}
	p.rmu.Lock()
	defer p.rmu.Unlock()
	p.timeout = d
	if p.soft != nil {
		return nil // the pump reads without a timeout; read applies d
	}
	lib := d
	if d == 0 {
		lib = bug.NoTimeout
	}
	if err := p.raw.SetReadTimeout(lib); err != nil {
		return p.fail("set read timeout", err)
	}
	return nil
}

func (p *port) Drain() error {
	p.wmu.RLock()
	defer p.wmu.RUnlock()
	p.writing.Add(1)
	defer p.writing.Add(-1)
	if err := p.check(); err != nil {
		return err
	}
	if err := p.raw.Drain(); err != nil {
		return p.fail("drain", err)
	}
	return nil
}

func (p *port) ResetInputBuffer() error {
	p.wmu.RLock()
	defer p.wmu.RUnlock()
	if err := p.check(); err != nil {
		return err
	}
	if p.soft != nil {
		p.soft.discard()
	}
	if err := p.raw.ResetInputBuffer(); err != nil {
		return p.fail("reset input", err)
	}
	return nil
}

// Close releases the port; a Read or Write blocked in another goroutine returns ErrClosed.
func (p *port) Close() error {
	if p.closed.Swap(true) {
		return nil
	}
	if p.soft != nil {
		p.soft.close()
	}
	// A write the device holds up with flow control would keep the lock below waiting on the
	// device: discarding the pending output releases it. Without one, what was written still
	// goes out, as on any close of a tty.
	if p.writing.Load() > 0 {
		_ = p.raw.ResetOutputBuffer()
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	err := p.raw.Close()
	if p.soft != nil {
		p.soft.wait()
	}
	if err != nil && p.gone.Load() == nil {
		return fmt.Errorf("serial %s: close: %w", p.path, err)
	}
	return nil
}

// present reports whether the device file the port was opened from still leads to the same
// device, so an unplug is noticed without any I/O.
func (p *port) present() bool {
	if p.check() != nil {
		return false
	}
	return p.dev == 0 || deviceID(p.path) == p.dev
}

// modemPort is a port opened with Config.Modem: the only kind that offers ModemLines.
type modemPort struct{ *port }

var _ ModemLines = (*modemPort)(nil)

func (m *modemPort) SetDTR(on bool) error {
	return m.modem("set dtr", func() error { return m.raw.SetDTR(on) })
}
func (m *modemPort) SetRTS(on bool) error {
	return m.modem("set rts", func() error { return m.raw.SetRTS(on) })
}

func (m *modemPort) CTS() (bool, error) {
	var cts bool
	err := m.modem("cts", func() error {
		bits, err := m.raw.GetModemStatusBits()
		if err == nil {
			cts = bits.CTS
		}
		return err
	})
	return cts, err
}

func (m *modemPort) modem(op string, f func() error) error {
	m.wmu.RLock()
	defer m.wmu.RUnlock()
	if err := m.check(); err != nil {
		return err
	}
	if err := f(); err != nil {
		return m.fail(op, err)
	}
	return nil
}

// goneError wraps ErrGone and the system's reason.
type goneError struct {
	path, op string
	cause    error
}

func (e *goneError) Error() string {
	return fmt.Sprintf("serial %s: %s: device gone: %v", e.path, e.op, e.cause)
}

func (e *goneError) Unwrap() []error { return []error{ErrGone, e.cause} }
