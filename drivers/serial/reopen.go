package serial

import (
	"context"
	"errors"
	"sync"
	"time"
)

// State of a reconnecting port's device.
type State int

// States.
const (
	StateUp   State = iota + 1 // open and usable
	StateGone                  // not there; being reopened
)

func (s State) String() string {
	switch s {
	case StateUp:
		return "up"
	case StateGone:
		return "gone"
	}
	return "unknown"
}

// Event is a change of state of a reconnecting port.
type Event struct {
	State State
	// Port names the device: the configured path or USB identity.
	Port string
	// Err is why the device counts as gone (StateGone), or the last failed reopen attempt
	// (StateUp after attempts failed).
	Err error
	// Attempts is how many opens it took to come back (StateUp).
	Attempts int
}

// ReopenOptions tune a reconnecting port. The zero value is usable.
type ReopenOptions struct {
	// Backoff is the wait before reopen attempt n (0 for the first). The agent passes its
	// full-jitter policy; nil means doubling from 100 ms up to 5 s.
	Backoff func(attempt int) time.Duration
	// OnChange is called, in order and from one goroutine, on every change: gone (also
	// when the first open fails) and back. It must not block for long: reopening waits.
	OnChange func(Event)
	// Check is how often the device file is looked at, so an unplug is reported even while
	// no driver is doing I/O. 0 means every second; negative turns it off (the loss is then
	// noticed on the next Read or Write).
	Check time.Duration
}

func defaultBackoff(attempt int) time.Duration {
	const base, ceiling = 100 * time.Millisecond, 5 * time.Second
	if attempt >= 6 {
		return ceiling
	}
	return min(base<<attempt, ceiling)
}

// Reconnecting is a Port that survives its device going away: callers get ErrGone at once
// while it is gone, and the same Reconnecting works again when it is back — opened by the
// same path, or by USB identity wherever the device re-enumerated.
//
// The read timeout set on it carries over to every reopened port. Drivers that keep
// protocol state (a session with a PIN pad, a printer's mode) should re-initialise after
// an error wrapping ErrGone, since the device they reach afterwards has restarted.
type Reconnecting struct {
	cfg    Config
	opts   ReopenOptions
	ctx    context.Context
	cancel context.CancelFunc
	lostCh chan struct{} // a loss was recorded; the loop reports it and reopens
	done   chan struct{}

	mu      sync.Mutex
	cur     *port // nil while gone
	why     error // why it is gone
	up      chan struct{}
	timeout time.Duration
	closed  bool
}

var _ Port = (*Reconnecting)(nil)

// Reopen opens cfg and keeps it open until Close or until ctx ends (ctx bounds only the
// reopening; Close must still be called). The only error is an invalid cfg: a device that
// is absent at the start is reported through OnChange and waited for like any other loss.
// Config.Modem sets the line levels at every open, but a Reconnecting does not offer
// ModemLines: levels a driver set would silently reset with each new port.
func Reopen(ctx context.Context, cfg Config, opts ReopenOptions) (*Reconnecting, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Backoff == nil {
		opts.Backoff = defaultBackoff
	}
	if opts.Check == 0 {
		opts.Check = time.Second
	}
	r := &Reconnecting{
		cfg:     cfg,
		opts:    opts,
		lostCh:  make(chan struct{}, 1),
		done:    make(chan struct{}),
		up:      make(chan struct{}),
		timeout: cfg.ReadTimeout,
	}
	r.ctx, r.cancel = context.WithCancel(ctx)
	if p, err := r.open(); err != nil {
		r.why = err
	} else {
		r.cur = p
		close(r.up)
	}
	go r.run()
	return r, nil
}

func (r *Reconnecting) open() (*port, error) {
	p, err := Open(r.cfg)
	if err != nil {
		return nil, err
	}
	if m, ok := p.(*modemPort); ok {
		return m.port, nil
	}
	return p.(*port), nil
}

func (r *Reconnecting) run() {
	defer close(r.done)
	var tick <-chan time.Time
	if r.opts.Check > 0 {
		t := time.NewTicker(r.opts.Check)
		defer t.Stop()
		tick = t.C
	}
	for {
		r.mu.Lock()
		cur, why := r.cur, r.why
		r.mu.Unlock()
		if cur == nil {
			r.notify(Event{State: StateGone, Port: r.cfg.name(), Err: why})
			if !r.reopen() {
				return
			}
			continue
		}
		select {
		case <-r.ctx.Done():
			return
		case <-r.lostCh:
		case <-tick:
			if !cur.present() {
				r.lost(cur, &goneError{path: cur.path, op: "check", cause: errors.New("device file gone or replaced")})
			}
		}
	}
}

// reopen tries until the port is open again (true) or the context ends (false).
func (r *Reconnecting) reopen() bool {
	var last error
	for attempt := 0; ; attempt++ {
		t := time.NewTimer(r.opts.Backoff(attempt))
		select {
		case <-r.ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		p, err := r.open()
		if err != nil {
			last = err
			continue
		}
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			p.Close()
			return false
		}
		_ = p.SetReadTimeout(r.timeout) // valid: it was accepted before
		r.cur, r.why = p, nil
		close(r.up)
		r.mu.Unlock()
		r.notify(Event{State: StateUp, Port: r.cfg.name(), Err: last, Attempts: attempt + 1})
		return true
	}
}

func (r *Reconnecting) notify(e Event) {
	if r.opts.OnChange != nil && r.ctx.Err() == nil {
		r.opts.OnChange(e)
	}
}

// lost records that p failed with err, unless p was already replaced.
func (r *Reconnecting) lost(p *port, err error) {
	r.mu.Lock()
	if r.cur != p {
		r.mu.Unlock()
		return
	}
	r.cur, r.why = nil, err
	r.up = make(chan struct{})
	r.mu.Unlock()
	p.Close()
	select {
	case r.lostCh <- struct{}{}:
	default:
	}
}

// current is the open port, or the error to give while there is none.
func (r *Reconnecting) current() (*port, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	if r.cur == nil {
		return nil, &goneError{path: r.cfg.name(), op: "reopen", cause: r.why}
	}
	return r.cur, nil
}

// do runs one operation on the current port and turns a loss into ErrGone for the caller
// and a reopen for everyone.
func (r *Reconnecting) do(f func(p *port) error) error {
	p, err := r.current()
	if err != nil {
		return err
	}
	err = f(p)
	if err == nil || !(IsGone(err) || errors.Is(err, ErrClosed)) {
		return err
	}
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if errors.Is(err, ErrClosed) {
		// The port was closed under us because another goroutine saw the loss first.
		return &goneError{path: p.path, op: "reopen", cause: err}
	}
	r.lost(p, err)
	return err
}

// Read implements Port.
func (r *Reconnecting) Read(b []byte) (n int, err error) {
	err = r.do(func(p *port) (e error) { n, e = p.Read(b); return e })
	return n, err
}

// Write implements Port.
func (r *Reconnecting) Write(b []byte) (n int, err error) {
	err = r.do(func(p *port) (e error) { n, e = p.Write(b); return e })
	return n, err
}

// SetReadTimeout implements Port; the timeout also applies to ports opened later.
func (r *Reconnecting) SetReadTimeout(d time.Duration) error {
	if d < 0 {
		return errors.New("serial: negative read timeout")
	}
	r.mu.Lock()
	r.timeout = d
	r.mu.Unlock()
	err := r.do(func(p *port) error { return p.SetReadTimeout(d) })
	if IsGone(err) {
		return nil // kept for the next port
	}
	return err
}

// Drain implements Port.
func (r *Reconnecting) Drain() error { return r.do((*port).Drain) }

// ResetInputBuffer implements Port.
func (r *Reconnecting) ResetInputBuffer() error { return r.do((*port).ResetInputBuffer) }

// State is the device's current state.
func (r *Reconnecting) State() State {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur == nil {
		return StateGone
	}
	return StateUp
}

// WaitUp waits until the device is open, ctx ends, or the port is closed.
func (r *Reconnecting) WaitUp(ctx context.Context) error {
	r.mu.Lock()
	up, closed := r.up, r.closed
	r.mu.Unlock()
	if closed {
		return ErrClosed
	}
	select {
	case <-up:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-r.done:
		if _, err := r.current(); err != nil {
			return err
		}
		return nil
	}
}

// Close stops reopening and closes the port; blocked calls return ErrClosed.
func (r *Reconnecting) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	p := r.cur
	r.cur = nil
	r.mu.Unlock()
	r.cancel()
	var err error
	if p != nil {
		err = p.Close()
	}
	<-r.done
	return err
}
